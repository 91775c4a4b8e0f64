"""Configuration of one posterior inference: the engine, the sampler and their settings.

Strings from a caller (``"surrogate"``, ``"smc"``) are parsed once, here, into ``Engine`` and
``Method``; everything downstream compares enum members. Both enums are ``str`` subclasses (equal
to, and hashed like, their names), so a record written with ``json`` holds the plain names.

One default for every entry point (the Python API, every CLI command, every study):
``DEFAULT_ENGINE`` with ``DEFAULT_METHOD`` at the seed's budget. The seed's contract fixes it
(``PosteriorInferenceConfig()`` must reproduce the seed notebook). The exact, calibrated path is
``engine="simulator", method="smc"``.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

__all__ = ["Engine", "Method", "DEFAULT_ENGINE", "DEFAULT_METHOD", "CEMPosteriorConfig", "SMCPosteriorConfig",
           "PosteriorInferenceConfig", "SEED_INFERENCE", "default_inference", "config_from_budget"]


class Engine(str, enum.Enum):
    """What computes the current at a parameter vector: the flow-matching surrogate, or the
    simulator itself (exact, no discrepancy)."""

    SURROGATE = "surrogate"
    SIMULATOR = "simulator"

    def __str__(self) -> str:
        return self.value

    # Equal to its name as a string, so hashed like it too: a dict keyed by names finds a member.
    __hash__ = str.__hash__


class Method(str, enum.Enum):
    """The sampler: cross-entropy importance sampling with a Laplace stage, tempered SMC, or the
    amortised posterior q(theta | trace) corrected by importance sampling against the engine's
    likelihood (``amortized``; SMC from q when the weights fail their diagnostics) or as it is
    (``amortized_raw``, no likelihood evaluated)."""

    CEM = "cem"
    SMC = "smc"
    AMORTIZED = "amortized"
    AMORTIZED_RAW = "amortized_raw"

    def __str__(self) -> str:
        return self.value

    # Equal to its name as a string, so hashed like it too: a dict keyed by names finds a member.
    __hash__ = str.__hash__


DEFAULT_ENGINE = Engine.SURROGATE
DEFAULT_METHOD = Method.CEM


def _parse(enum_type, value, name: str):
    try:
        return enum_type(value)
    except ValueError:
        allowed = " or ".join(repr(m.value) for m in enum_type)
        raise ValueError(f"{name}: must be {allowed}, got {value!r}") from None


def parse_engine(value) -> Engine:
    """``Engine`` from its name; ValueError naming the field otherwise."""
    return _parse(Engine, value, "engine")


def parse_method(value) -> Method:
    """``Method`` from its name; ValueError naming the field otherwise."""
    return _parse(Method, value, "method")


def _require_ints(obj, **minimum) -> None:
    """ValueError naming the first field that is not an integer >= its minimum."""
    for name, lo in minimum.items():
        v = getattr(obj, name)
        if not (isinstance(v, int) and v >= lo):
            raise ValueError(f"{name}: must be an integer >= {lo}, got {v!r}")


@dataclass(frozen=True)
class CEMPosteriorConfig:
    """Cross-entropy proposal adaptation, a Laplace stage and importance weighting.

    ``n_particles`` per iteration, ``n_iterations`` proposals; the proposal of iteration t+1 is the
    weighted Gaussian fit to the ``elite_fraction`` best particles so far, widened by
    ``inflation`` (an importance proposal must be wider than the posterior) and mixed with the
    first proposal at ``defensive_weight``. Then, when the likelihood is differentiable, up to
    ``n_newton`` damped Gauss-Newton iterations from the ``n_starts`` best particles, and
    ``n_particles`` draws from a multivariate t (``t_dof`` degrees of freedom) on the mode with the
    inverse Gauss-Newton Hessian times ``laplace_scale^2`` as its scale, truncated to the prior's
    support (``n_newton = 0``: CEM only). ``min_ess``: below it the result warns.
    How the defaults were chosen: ``docs/posterior.md``.
    """

    n_particles: int = 64
    n_iterations: int = 4
    elite_fraction: float = 0.25
    inflation: float = 1.5
    defensive_weight: float = 0.1
    min_ess: float = 10.0
    n_newton: int = 16
    n_starts: int = 1
    t_dof: float = 5.0
    laplace_scale: float = 1.2

    def __post_init__(self):
        _require_ints(self, n_particles=4, n_iterations=1, n_starts=1, n_newton=0)
        if not 0.0 < self.elite_fraction <= 1.0:
            raise ValueError(f"elite_fraction: must be in (0, 1], got {self.elite_fraction}")
        if not self.inflation >= 1.0:
            raise ValueError(f"inflation: must be >= 1, got {self.inflation}")
        if not 0.0 <= self.defensive_weight < 1.0:
            raise ValueError(f"defensive_weight: must be in [0, 1), got {self.defensive_weight}")
        if not self.t_dof > 2.0:
            raise ValueError(f"t_dof: must be > 2, got {self.t_dof}")


@dataclass(frozen=True)
class SMCPosteriorConfig:
    """Adaptive tempered SMC with ``n_particles``.

    After each resampling, Metropolis moves alternate an independence proposal (a Student-t
    mixture fitted to the particles) and a random walk: at least ``n_moves``
    (``n_moves + final_moves`` at temperature 1), then until the median whitened squared distance
    the particles have moved from where the resampling left them reaches ``jump_target x dim``
    (``final_jump_target`` at temperature 1; 2 x dim = independent draws), at most ``max_moves``;
    at most ``max_stages`` temperatures, each keeping the incremental weights' ESS at
    ``target_ess_fraction`` of the particles. The defaults pass a simulation-based calibration on
    a linear-Gaussian problem of the cv task's shape (``bench/sbc_linear_smc.py``;
    ``docs/posterior.md``).
    """

    n_particles: int = 2048
    n_moves: int = 2
    max_stages: int = 60
    target_ess_fraction: float = 0.5
    final_moves: int = 2
    max_moves: int = 32
    jump_target: float = 1.0
    final_jump_target: float = 2.0

    def __post_init__(self):
        _require_ints(self, n_particles=16, n_moves=1, max_stages=1, final_moves=0, max_moves=1)
        if not 0.05 <= self.target_ess_fraction < 1.0:
            raise ValueError(f"target_ess_fraction: must be in [0.05, 1), got {self.target_ess_fraction}")
        if self.max_moves < self.n_moves + self.final_moves:
            raise ValueError(f"max_moves: must be >= n_moves + final_moves = {self.n_moves + self.final_moves}, "
                             f"got {self.max_moves}")
        for name in ("jump_target", "final_jump_target"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0.0 <= value <= 2.0):
                raise ValueError(f"{name}: must be in [0, 2], got {value}")


@dataclass(frozen=True)
class PosteriorInferenceConfig:
    """Everything one inference needs besides the data.

    ``obs_noise_std``: observation noise sd in the units of the observed current (dataset units,
    mA). ``method``: ``Method`` or its name (``"cem"``, ``"smc"``), parsed here; ``engine``:
    ``Engine`` or its name (``"surrogate"``, ``"simulator"``). ``cem`` / ``smc``: the settings of
    each sampler (only the chosen method's are used). ``n_mc_per_particle`` flow draws averaged per
    particle and ``n_integration_steps`` Euler steps of the flow (surrogate engine only).
    ``use_discrepancy`` adds the surrogate's calibrated discrepancy to the likelihood covariance.
    ``amortized_draws``: draws of q per case (``method="amortized"``; its SMC fallback uses
    ``smc``'s settings). ``parameter_error`` mixes the prior into the parameter posterior at the
    model's calibrated weight and ``band_scale`` scales the discrepancy's part of the predictive variance by the
    model's calibrated factor (both surrogate engine only, and only for the method they were
    calibrated for; ``ecsfm.posterior.prior_weight``).
    Raises ValueError naming the field on a bad value.
    """

    cem: CEMPosteriorConfig = field(default_factory=CEMPosteriorConfig)
    n_mc_per_particle: int = 2
    n_integration_steps: int = 60
    obs_noise_std: float = 0.02
    method: Method = DEFAULT_METHOD
    engine: Engine = DEFAULT_ENGINE
    smc: SMCPosteriorConfig = field(default_factory=SMCPosteriorConfig)
    use_discrepancy: bool = True
    parameter_error: bool = True
    band_scale: bool = True
    amortized_draws: int = 1024

    def __post_init__(self):
        _require_ints(self, n_mc_per_particle=1, n_integration_steps=1, amortized_draws=16)
        if not (math.isfinite(self.obs_noise_std) and self.obs_noise_std > 0):
            raise ValueError(f"obs_noise_std: must be finite and > 0, got {self.obs_noise_std}")
        object.__setattr__(self, "method", parse_method(self.method))
        object.__setattr__(self, "engine", parse_engine(self.engine))

    @property
    def n_particles(self) -> int:
        """The chosen sampler's particle count (draws of q for the amortised methods)."""
        if self.method in (Method.AMORTIZED, Method.AMORTIZED_RAW):
            return self.amortized_draws
        return self.cem.n_particles if self.method is Method.CEM else self.smc.n_particles


#: The seed notebook's inference budget, in the seed's key names (the studies record it so): the
#: CEM defaults above and the flow's draws and steps.
SEED_INFERENCE = {"n_particles": CEMPosteriorConfig.n_particles, "n_iters": CEMPosteriorConfig.n_iterations,
                  "elite_frac": CEMPosteriorConfig.elite_fraction,
                  "n_mc": PosteriorInferenceConfig.n_mc_per_particle,
                  "n_steps": PosteriorInferenceConfig.n_integration_steps}


def default_inference(method=DEFAULT_METHOD) -> dict:
    """The seed's budget for ``method`` in the seed's keys; ``n_particles`` is the sampler's own
    default (64 CEM proposals per iteration, or ``SMCPosteriorConfig``'s count for SMC)."""
    method = parse_method(method)
    if method is Method.CEM:
        return dict(SEED_INFERENCE)
    if method in (Method.AMORTIZED, Method.AMORTIZED_RAW):
        return {**SEED_INFERENCE, "n_particles": PosteriorInferenceConfig.amortized_draws}
    return {**SEED_INFERENCE, "n_particles": SMCPosteriorConfig.n_particles}


def config_from_budget(budget: dict | None = None, *, method=DEFAULT_METHOD, engine=DEFAULT_ENGINE,
                       obs_noise_std: float = PosteriorInferenceConfig.obs_noise_std,
                       **options) -> PosteriorInferenceConfig:
    """A ``PosteriorInferenceConfig`` from a budget in the seed's keys (``SEED_INFERENCE``;
    default ``default_inference(method)``): the particle count goes to the chosen sampler.
    ``options``: further ``PosteriorInferenceConfig`` fields (``parameter_error=``, ...)."""
    method = parse_method(method)
    b = default_inference(method) if budget is None else {**default_inference(method), **budget}
    if method is Method.CEM:
        sampler = {"cem": CEMPosteriorConfig(n_particles=int(b["n_particles"]), n_iterations=int(b["n_iters"]),
                                             elite_fraction=float(b["elite_frac"]))}
    elif method in (Method.AMORTIZED, Method.AMORTIZED_RAW):
        sampler = {"amortized_draws": int(b["n_particles"])}
    else:
        sampler = {"smc": SMCPosteriorConfig(n_particles=int(b["n_particles"]))}
    return PosteriorInferenceConfig(**sampler, n_mc_per_particle=int(b["n_mc"]),
                                    n_integration_steps=int(b["n_steps"]), obs_noise_std=float(obs_noise_std),
                                    engine=parse_engine(engine), method=method, **options)
