"""Model comparison among variants of the cell by log evidence (``ecsfm infer --compare``).

Each variant is a full joint fit (``run_joint_infer``) into its own folder; the variant with the
largest log evidence (the SMC estimate, ``docs/posterior.md``) is chosen. Evidence differences
of a few nats are decisive (Jeffreys: > 2.3 strong, > 4.6 decisive); within ~1 nat the variants
are equally supported and the simpler one (listed first) is kept. Every variant is also
model-checked, and an inadequate one is never chosen while an adequate one exists.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from .._atomic import write_text
from ..posterior import MECHANISM_H0, MECHANISM_SLOTS
from .infer_measured import parse_priors, run_joint_infer

__all__ = ["COMPARE_KEYS", "parse_compare", "run_comparison", "model_probabilities", "COMPARISON_SCHEMA_VERSION"]

COMPARISON_SCHEMA_VERSION = 2  # 2: posterior model probabilities with their Monte Carlo errors
#: what --compare can vary -> (the run_joint_infer argument it sets, how a value is read)
COMPARE_KEYS = {
    "background": "polynomial degree of the background per trace: 0, 1, 2, 3",
    "cdl": "polynomial degree of Cdl's dependence on the potential: 0 (constant), 1, 2, 3",
    "geometry": "the electrode's diffusion field: planar, disc (with its edge), sphere, hemisphere (the radius from "
                "the area)",
    "ru": "free, or a value in ohm that fixes it (e.g. 0.1 for negligible)",
    "d_red": "tied (= D_ox) or free",
    "alpha": "prior ranges LOW:HIGH, e.g. 0.3:0.7,0.1:0.9",
    "mechanism": "the couple's mechanism: E, EC, ECcat, CE, convection, EC2 (ecsfm.sim; their rate constants are fitted)",
}
#: within this many nats the simpler (earlier) variant is kept
EVIDENCE_TIE_NATS = 1.0


def _setting(key: str, value: str) -> dict:
    """The ``run_joint_infer`` arguments one ``key=value`` sets (merged into ``known``/``priors``)."""
    if key == "background":
        if value not in ("0", "1", "2", "3"):
            raise ValueError(f"compare: background takes degrees 0-3, got {value!r}")
        return {"background_degree": int(value)}
    if key == "cdl":
        if value not in ("0", "1", "2", "3"):
            raise ValueError(f"compare: cdl takes degrees 0-3, got {value!r}")
        return {"cdl_degree": int(value)}
    if key == "geometry":
        if value not in ("planar", "disc", "microdisc", "sphere", "hemisphere"):
            raise ValueError(f"compare: geometry takes planar, disc, sphere or hemisphere, got {value!r}")
        return {"geometry": value}
    if key == "ru":
        if value == "free":
            return {}
        try:
            ru = float(value)
        except ValueError:
            raise ValueError(f"compare: ru takes 'free' or a value in ohm, got {value!r}") from None
        if not ru > 0:
            raise ValueError(f"compare: a fixed ru must be > 0 ohm, got {value!r}")
        return {"known": [f"ru={ru:g}"]}
    if key == "d_red":
        if value not in ("tied", "free"):
            raise ValueError(f"compare: d_red takes 'tied' or 'free', got {value!r}")
        return {"tie_d_red": value == "tied"}
    if key == "mechanism":
        if value not in MECHANISM_SLOTS:
            raise ValueError(f"compare: mechanism takes {', '.join(MECHANISM_SLOTS)}, got {value!r}")
        return {"mechanism": value, "solver_h0": MECHANISM_H0}  # one discretisation for every candidate
    parse_priors([f"alpha={value}"])  # raises on a bad range
    return {"priors": [f"alpha={value}"]}


def parse_compare(items) -> list[tuple[str, dict]]:
    """``KEY=V1,V2,...`` items -> the variants to fit, as (name, run_joint_infer arguments); several
    items combine (every combination). Raises ValueError naming the item."""
    axes = []
    for item in items:
        key, sep, values = (x.strip() for x in str(item).partition("="))
        if not sep or key not in COMPARE_KEYS or not values:
            raise ValueError(f"compare: expected KEY=V1,V2 with KEY one of {', '.join(COMPARE_KEYS)}, got {item!r}")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if len(vals) < 2:
            raise ValueError(f"compare: {key} needs at least two variants, got {values!r}")
        axes.append([(f"{key}={v}", _setting(key, v)) for v in vals])
    if not axes:
        raise ValueError("compare: give at least one KEY=V1,V2")
    variants = []
    for combo in itertools.product(*axes):
        kw: dict = {}
        for _, setting in combo:
            for k, v in setting.items():
                kw[k] = kw.get(k, []) + v if isinstance(v, list) else v
        variants.append((",".join(name for name, _ in combo), kw))
    return variants


def model_probabilities(log_evidence, log_evidence_se) -> tuple[list[float], list[float]]:
    """Posterior probabilities of the variants under equal prior odds, ``exp(ln Z_m) / sum exp(ln Z)``,
    with their Monte Carlo standard errors propagated from those of ``ln Z`` (independent runs;
    first order: ``d p_m / d ln Z_i = p_m (delta_mi - p_i)``)."""
    z = np.asarray(log_evidence, np.float64)
    se = np.asarray(log_evidence_se, np.float64)
    p = np.exp(z - z.max())
    p = p / p.sum()
    jac = p[:, None] * (np.eye(p.size) - p[None, :])
    return p.tolist(), np.sqrt((jac**2) @ se**2).tolist()


def run_comparison(variants, *, out_dir, known=(), priors=(), **fit) -> dict:
    """Fit every variant (``parse_compare``) with ``run_joint_infer(**fit)`` into
    ``out_dir/<variant>/`` and write ``out_dir/comparison.json``: per variant its log evidence with
    its Monte Carlo error, its posterior probability among the variants (``model_probabilities``),
    model check and headline parameters; the chosen variant and why. Returns that record."""
    out = Path(out_dir)
    rows = []
    for name, setting in variants:
        kw = dict(fit, known=list(known) + setting.get("known", []), priors=list(priors) + setting.get("priors", []))
        kw.update({k: v for k, v in setting.items() if k not in ("known", "priors")})
        folder = out / name.replace("=", "-").replace(",", "_").replace(":", "-")
        summary = run_joint_infer(out_dir=folder, **kw)
        rows.append({"variant": name, "folder": str(folder), "log_evidence": summary["log_evidence"],
                     "log_evidence_se": summary["log_evidence_se"], "adequate": summary["model_check"]["adequate"],
                     "check_p_value": summary["model_check"]["p_value"],
                     "parameters": {n: summary["parameters"][n]["q50"] for n in summary["parameters"] if "[" not in n},
                     "seconds": summary["seconds"]})
    prob, prob_se = model_probabilities([r["log_evidence"] for r in rows], [r["log_evidence_se"] for r in rows])
    for r, p, e in zip(rows, prob, prob_se):
        r["probability"], r["probability_se"] = p, e
    pool = [r for r in rows if r["adequate"]] or rows
    best = max(r["log_evidence"] for r in pool)
    chosen = next(r for r in pool if r["log_evidence"] >= best - EVIDENCE_TIE_NATS)
    why = (f"largest log evidence among the {'adequate ' if pool is not rows else ''}variants"
           + ("" if chosen["log_evidence"] == best else f" within {EVIDENCE_TIE_NATS:g} nat of the best: the simpler"))
    record = {"schema_version": COMPARISON_SCHEMA_VERSION, "variants": rows, "chosen": chosen["variant"],
              "reason": why, "none_adequate": not any(r["adequate"] for r in rows)}
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "comparison.json", json.dumps(record, indent=1, default=float))
    return record
