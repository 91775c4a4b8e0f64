"""The typed result of a posterior inference.

``PosteriorResult`` is a frozen dataclass; it is also a read-only mapping over its field names,
so the seed's ``post["posterior_mean_norm"]`` reads keep working. Arrays are numpy; ``core`` is
the conditioning vector's length, ``N`` the number of weighted samples, ``L`` the trace length.
For a joint fit of several traces, the per-trace fields (``PER_TRACE_FIELDS``) hold one entry per
trace; ``trace(k)`` gives the single-trace view.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .config import Engine, Method

__all__ = ["PosteriorResult", "PER_TRACE_FIELDS"]

#: Fields that hold one entry per trace in a joint fit.
PER_TRACE_FIELDS = ("predictive_mean_current", "predictive_std_current", "predictive_std_current_noise_free",
                    "predictive_var_parameters", "predictive_var_discrepancy", "predictive_band_scale",
                    "observed_current", "observed_mask", "reliability", "reliability_heldout")


@dataclass(frozen=True, eq=False)
class PosteriorResult(Mapping):
    """A posterior over the free slots of the conditioning vector, and its predictive.

    Parameters (raw units of each slot: ``ParamSpace.units``; known slots have sd 0):
    ``posterior_mean_raw``, ``posterior_std_raw`` (core,), ``posterior_samples_raw`` (N, core) with
    normalised ``posterior_weights`` (N,); ``posterior_mean_norm``, ``posterior_std_norm`` (core,)
    in the model's normalised units; ``posterior_std_raw_sampler`` (core,): the sampler's sds before
    the prior weight was mixed in (``parameter_error_prior_weight``, 0 when none);
    ``prior_std_raw`` (core,); ``parameter_names`` and ``free_indices``.

    Predictive of an observation (dataset units, mA): ``predictive_mean_current``,
    ``predictive_std_current`` (L,) and ``predictive_std_current_noise_free``; the variance parts
    ``predictive_var_parameters`` and ``predictive_var_discrepancy`` (L,) and the
    ``predictive_band_scale`` the latter entered with; ``observed_current``, ``observed_mask``
    (L,); ``reliability`` (observed points) and ``reliability_heldout`` (masked-out points, None
    when every point is observed): ``compute_reliability_metrics``' dicts.

    Sampler: ``ess``, ``pareto_k``, ``log_evidence`` (nats), ``n_likelihood_evaluations``,
    ``sampler`` (temperatures, moves, acceptance for SMC; batch sizes for CEM), ``warnings``
    (readable messages), ``method``, ``engine``, ``task``, ``stage``, ``n_traces``.
    """

    posterior_mean_norm: np.ndarray
    posterior_std_norm: np.ndarray
    posterior_mean_raw: np.ndarray
    posterior_std_raw: np.ndarray
    posterior_samples_raw: np.ndarray
    posterior_weights: np.ndarray
    predictive_mean_current: object
    predictive_std_current: object
    predictive_std_current_noise_free: object
    predictive_var_parameters: object
    predictive_var_discrepancy: object
    predictive_band_scale: object
    observed_current: object
    observed_mask: object
    reliability: object
    reliability_heldout: object
    parameter_names: list
    free_indices: list
    prior_std_raw: np.ndarray
    parameter_error_prior_weight: float
    posterior_std_raw_sampler: np.ndarray
    ess: float
    pareto_k: float
    log_evidence: float
    n_likelihood_evaluations: int
    warnings: list
    method: Method
    engine: Engine
    sampler: dict
    task: str | None
    stage: str | None
    n_traces: int

    # -- read-only mapping over the field names (the seed reads results as dicts) -------------
    def __getitem__(self, key: str):
        if key not in _FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)

    def trace(self, k: int) -> PosteriorResult:
        """The result seen from trace ``k`` of a joint fit: its per-trace fields, the shared rest.
        Raises IndexError for a trace that does not exist; a single-trace result is its own view."""
        if self.n_traces == 1 and not isinstance(self.reliability, list):
            if k != 0:
                raise IndexError(f"trace: this result has one trace, got {k}")
            return self
        if not 0 <= k < self.n_traces:
            raise IndexError(f"trace: must be in [0, {self.n_traces}), got {k}")
        return dataclasses.replace(self, n_traces=1, **{f: getattr(self, f)[k] for f in PER_TRACE_FIELDS})


_FIELDS = tuple(f.name for f in dataclasses.fields(PosteriorResult))
