"""Bad input, for every subcommand and the public functions that take user data: each case gives a
one-line error naming the field (and the allowed range or vocabulary), exit status 2 (command) or
ValueError (API), no traceback, and leaves what was already written untouched.

Every case is refused before any simulation is compiled, so the whole matrix runs in-process in
seconds. The output given to the commands is a folder (or, for ``simulate``/``import``, a file)
that already holds data; its files' bytes and modification times must not change.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ecsfm import data, io, sim
from ecsfm.cli import main
from ecsfm.fm import load_surrogate
from ecsfm.posterior import JointConfig, fit_joint, trace_from_measurement
from ecsfm.posterior import PosteriorInferenceConfig, infer_parameter_posterior
from ecsfm.data import CoreLayout
from ecsfm.fm import default_assets

TINY = dict(recipe="curriculum_multitask", n_samples=8, chunk_size=8, max_species=1, target_len=20, nx=2, seed=5)
_E = np.concatenate([np.linspace(0.2, -0.4, 300), np.linspace(-0.4, 0.2, 300)[1:]])


def _table(rows, header="E/V,I/A", sep=",") -> str:
    return header + "\n" + "\n".join(sep.join(r) for r in rows) + "\n"


def _cv_rows(fmt=lambda e, i: (f"{e:.5f}", f"{i:.6e}")):
    return [fmt(e, 1e-6 * np.tanh(10 * e)) for e in _E]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Every input file of the matrix, a tiny dataset and its damaged copies, the shipped model."""
    root = tmp_path_factory.mktemp("bad")
    f = {"root": root}

    def put(name, content):
        path = root / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        f[name.split(".")[0]] = str(path)

    rows = _cv_rows()
    put("cv_100mV.csv", _table(rows))
    put("empty.csv", "")
    put("header_only.csv", "E/V,I/A\n")
    put("nan_100mV.csv", _table([r if k != 40 else (r[0], "nan") for k, r in enumerate(rows)]))
    put("inf_100mV.csv", _table([r if k != 40 else ("inf", r[1]) for k, r in enumerate(rows)]))
    put("ragged_100mV.csv", _table(rows) + "0.1\n")
    put("backwards_100mV.csv", _table([(f"{(k % 50) * 0.01:g}", *r) for k, r in enumerate(rows)], "t/s,E/V,I/A"))
    put("pipes_100mV.csv", _table(rows, "E/V|I/A", "|"))
    put("onecolumn_100mV.csv", _table([(r[0],) for r in rows], "E/V"))
    put("binary_100mV.csv", bytes(range(256)) * 20)
    put("latin1_100mV.csv", _table(_cv_rows(lambda e, i: (f"{e:.5f}", f"{i * 1e6:.4f}")), "E/V;I/µA", ";")
        .encode("latin-1"))
    put("utf16_100mV.csv", _table(rows, "E/V\tI/A", "\t").encode("utf-16"))
    put("bad_unit_100mV.csv", _table(rows, "E/V,I/furlong"))
    put("short_100mV.csv", _table(rows[:5]))
    put("flat_100mV.csv", _table([("0.1", r[1]) for r in rows]))
    put("text.npz", "hello")
    put("not_json.json", "{not json")
    put("list.json", "[1, 2]")
    (root / "folder_100mV.csv").mkdir()
    f["folder"] = str(root / "folder_100mV.csv")
    f["missing"] = str(root / "missing_100mV.csv")
    f["missing_dir"] = str(root / "no_such_folder")
    np.savez(root / "nokeys.npz", foo=np.zeros(3))
    f["nokeys"] = str(root / "nokeys.npz")

    # Measurements in the npz layout of `ecsfm infer`, from a cv row of the shipped chunk.
    ckpt, chunk = default_assets()
    f["model"] = str(ckpt.parent)
    _, _, meta, geometry = load_surrogate(ckpt.parent)
    z = data.read_npz(chunk)
    r = int(np.flatnonzero(z["task_id"] == meta["task_names"].index("cv"))[0])
    core = CoreLayout.from_meta(geometry["meta"]).core(z["p"][r], int(z["task_id"][r]), int(z["stage_id"][r]))
    good = dict(e=z["e"][r], i_obs=z["i"][r], known_p_core=core)
    f["api"] = dict(meta=meta, geometry=geometry, **good)
    with_nan = np.where(np.arange(z["e"][r].size) == 7, np.nan, 1.0)
    variants = {
        "good": {}, "nan_i": dict(i_obs=z["i"][r] * with_nan),
        "inf_i": dict(i_obs=np.where(np.isnan(with_nan), np.inf, z["i"][r])),
        "nan_e": dict(e=z["e"][r] * with_nan), "short": dict(i_obs=z["i"][r][:100]),
        "two_rows": dict(i_obs=np.stack([z["i"][r]] * 2)), "strings": dict(i_obs=np.asarray(["a"] * z["i"][r].size)),
        "mask_none": dict(i_mask=np.zeros(z["i"][r].size)), "mask_nan": dict(i_mask=with_nan),
        "mask_two": dict(i_mask=np.arange(z["i"][r].size) < 2), "no_core": dict(known_p_core=None),
        "short_core": dict(known_p_core=core[:5]), "short_kmask": dict(known_p_mask=np.ones(3, bool)),
        "no_e": dict(e=None),
    }
    for name, change in variants.items():
        arrays = {k: v for k, v in {**good, **change}.items() if v is not None}
        np.savez(root / f"{name}.npz", **arrays)
        f[name] = str(root / f"{name}.npz")

    # A dataset and damaged copies (each with a manifest whose sha256 matches the damaged chunk).
    ds = root / "ds"
    data.generate(data.Plan(**TINY), ds, progress=False)
    f["ds"] = str(ds)
    manifest = json.loads((ds / "manifest.json").read_text())

    def damaged(name, change):
        dst = root / name
        shutil.copytree(ds, dst)
        arrays = change(data.read_npz(ds / "chunk_0.npz"))
        m = json.loads(json.dumps(manifest))
        m["chunks"][0]["sha256"] = data.write_npz(dst / "chunk_0.npz", arrays)
        (dst / "manifest.json").write_text(json.dumps(m))
        f[name] = str(dst)

    damaged("ds_no_i", lambda a: {k: v for k, v in a.items() if k != "i"})
    damaged("ds_nan", lambda a: {**a, "i": np.where(np.arange(a["i"].size).reshape(a["i"].shape) == 3, np.nan, a["i"])})
    for name, text in (("ds_empty", None), ("ds_bad_json", "{not json"), ("ds_no_keys", "{}"), ("ds_blank", "")):
        (root / name).mkdir()
        if text is not None:
            (root / name / "manifest.json").write_text(text)
        f[name] = str(root / name)
    (root / "model_empty").mkdir()
    f["model_empty"] = str(root / "model_empty")

    # The outputs: a folder already holding results, a file already holding a result.
    (root / "out").mkdir()
    (root / "out" / "keep.json").write_text('{"kept": true}')
    (root / "out" / "posterior_summary.json").write_text('{"earlier": "result"}')
    (root / "out.csv").write_text("t,E,i\n0,0,0\n")
    (root / "out.npz").write_bytes(b"earlier result")
    f.update(out=str(root / "out"), out_csv=str(root / "out.csv"), out_npz=str(root / "out.npz"),
             out_file=str(root / "out" / "keep.json"))
    return f


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) if p.is_file() else None
            for p in sorted(root.rglob("*"))}


SIM_CV = ["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.1", "--step", "0.01"]
SIM = [*SIM_CV, "--out", "{out_csv}"]
INFER = ["infer", "--out", "{out}", "--area", "1", "--measurement"]
JOINT = ["infer", "--out", "{out}", "--area", "0.07", "--known", "c_ox=1", "--measurement", "{cv_100mV}",
         "--measurement", "{cv_100mV}"]
STUDY = ["--out", "{out}", "--no-progress"]

# (argv, fragments the one-line error must contain)
CLI_CASES = {
    # simulate: physical values, labels, outputs
    "simulate area 0": ([*SIM, "--area", "0"], ["area", "(0, 1e+06]"]),
    "simulate area nan": ([*SIM, "--area", "nan"], ["area", "finite"]),
    "simulate radius no unit": ([*SIM, "--geometry", "sphere", "--radius", "5"], ["--radius", "unit", "um"]),
    "simulate radius 0": ([*SIM, "--geometry", "sphere", "--radius", "0um"], ["--radius", "> 0"]),
    "simulate radius missing": ([*SIM, "--geometry", "hemisphere"], ["--radius", "needs"]),
    "simulate disc radius missing": ([*SIM, "--geometry", "disc"], ["--radius", "needs"]),
    "simulate disc radius no unit": ([*SIM, "--geometry", "microdisc", "--radius", "10"], ["--radius", "unit", "um"]),
    "simulate radius planar": ([*SIM, "--radius", "1mm"], ["--radius", "planar"]),
    "simulate thickness missing": ([*SIM, "--geometry", "thin-layer"], ["--thickness", "needs"]),
    "simulate thickness no unit": ([*SIM, "--geometry", "thin-layer", "--thickness", "20"], ["--thickness", "unit"]),
    "simulate thickness planar": ([*SIM, "--thickness", "20um"], ["--thickness", "thin layer"]),
    "simulate rde without rpm": ([*SIM, "--geometry", "rotating-disc", "--radius", "2.5mm"], ["--rpm", "rotation"]),
    "simulate rde rpm 0": ([*SIM, "--geometry", "rotating-disc", "--radius", "2.5mm", "--rpm", "0"], ["--rpm", "> 0"]),
    "simulate rpm planar": ([*SIM, "--rpm", "1000"], ["--rpm", "only it"]),
    "simulate viscosity 0": ([*SIM, "--geometry", "rotating-disc", "--radius", "2.5mm", "--rpm", "100", "--viscosity",
                              "0"], ["viscosity", "(0, 10]"]),
    "simulate area contradicts": ([*SIM, "--geometry", "sphere", "--radius", "1mm", "--area", "1"],
                                  ["--area", "contradicts", "0.1257"]),
    "simulate mV as V": (["simulate", "cv", "--e-start", "300", "--e-vertex", "-300", "--scan-rate", "100",
                          "--out", "{out_csv}"], ["--e-start", "300 mV = 0.3 V", "--force"]),
    "simulate too many points": (["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0.1",
                                  "--step", "1e-6", "--out", "{out_csv}"], ["1200001 time points", "--force"]),
    "simulate scan rate 0": (["simulate", "cv", "--e-start", "0.3", "--e-vertex", "-0.3", "--scan-rate", "0",
                              "--out", "{out_csv}"], ["--scan-rate", "> 0"]),
    "simulate scan rate inf": (["simulate", "lsv", "--e-start", "0.3", "--e-end", "-0.3", "--scan-rate", "inf",
                                "--out", "{out_csv}"], ["--scan-rate", "finite"]),
    "simulate e_start nan": (["simulate", "cv", "--e-start", "nan", "--e-vertex", "-0.3", "--scan-rate", "0.1",
                              "--out", "{out_csv}"], ["--e-start", "finite"]),
    "simulate c_ox < 0": ([*SIM, "--c-ox", "-1"], ["--c-ox", "[0, 100000]"]),
    "simulate d_ox 0": ([*SIM, "--d-ox", "0"], ["--d-ox", "(0, 1)"]),
    "simulate k0 0": ([*SIM, "--k0", "0"], ["k0", "(0, 1e+06]"]),
    "simulate alpha 2": ([*SIM, "--alpha", "2"], ["alpha", "(0, 1)"]),
    "simulate n 0": ([*SIM, "--n", "0"], ["n:", "(0, 10]"]),
    "simulate temperature 0": ([*SIM, "--temperature", "0"], ["temperature", "(0, 1000]"]),
    "simulate ru < 0": ([*SIM, "--ru", "-1"], ["ru", "[0, 1e+09]"]),
    "simulate cdl < 0": ([*SIM, "--cdl", "-1"], ["cdl", "[0, 1]"]),
    "simulate couple key": ([*SIM, "--couple", "zeta=1"], ["--couple", "zeta", "e0, k0"]),
    "simulate couple value": ([*SIM, "--couple", "e0=abc"], ["--couple", "e0", "not a number"]),
    "simulate not a number": (["simulate", "cv", "--e-start", "a", "--e-vertex", "-0.3", "--scan-rate", "0.1",
                               "--out", "{out_csv}"], ["--e-start", "invalid float"]),
    "simulate technique": (["simulate", "xyz", "--out", "{out_csv}"], ["invalid choice", "cv", "eis"]),
    "simulate ca duration 0": (["simulate", "ca", "--e-initial", "0.3", "--e-step", "-0.3", "--duration", "0",
                                "--out", "{out_csv}"], ["duration", "> 0"]),
    "simulate swv frequency 0": (["simulate", "swv", "--e-start", "0", "--e-end", "-0.3", "--frequency", "0",
                                  "--out", "{out_csv}"], ["frequency", "> 0"]),
    "simulate dpv width > period": (["simulate", "dpv", "--e-start", "0", "--e-end", "-0.3", "--pulse-width", "1",
                                     "--period", "0.5", "--out", "{out_csv}"], ["--pulse-width", "< period"]),
    "simulate staircase fraction 2": (["simulate", "staircase", "--e-start", "0.3", "--e-vertex", "-0.3",
                                       "--scan-rate", "0.1", "--sample-fraction", "2", "--out", "{out_csv}"],
                                      ["--sample-fraction", "(0, 1]"]),
    "simulate eis f_min 0": (["simulate", "eis", "--f-min", "0", "--out", "{out_csv}"], ["--f-min", "(0, f_max"]),
    "simulate eis no equilibrium": (["simulate", "eis", "--c-red", "0", "--out", "{out_csv}"], ["--e-dc", "> 0"]),
    "simulate out is a folder": ([*SIM_CV, "--out", "{out}"], ["--out", "is a folder"]),
    "simulate plot is a folder": ([*SIM, "--plot", "{out}"], ["--plot", "is a folder"]),
    # demo, generate
    "demo out is a file": (["demo", "--out", "{out_file}"], ["--out", "is a file"]),
    "generate recipe": (["generate", "--recipe", "xyz", "--n-samples", "10", *STUDY], ["recipe", "curriculum_multitask"]),
    "generate n_samples 0": (["generate", "--n-samples", "0", *STUDY], ["--n-samples", "[1, 1000000000]"]),
    "generate max_species 0": (["generate", "--n-samples", "10", "--max-species", "0", *STUDY], ["--max-species", "[1, 16]"]),
    "generate seed < 0": (["generate", "--n-samples", "10", "--seed", "-1", *STUDY], ["seed", "[0, 2^63)"]),
    "generate workers 0": (["generate", "--n-samples", "10", "--workers", "0", *STUDY], ["--workers", ">= 1"]),
    "generate out is a file": (["generate", "--n-samples", "10", "--out", "{out_file}"], ["--out", "is a file"]),
    "generate into another dataset": (["generate", "--n-samples", "16", "--chunk-size", "8", "--max-species", "1",
                                       "--target-len", "20", "--nx", "2", "--seed", "5", "--out", "{ds}",
                                       "--no-progress"], ["different dataset"]),
    # data inspect, train, evaluate, export: dataset and model folders
    "inspect missing folder": (["data", "inspect", "{missing_dir}", "--out", "{out}"], ["data", "does not exist"]),
    "inspect a file": (["data", "inspect", "{cv_100mV}", "--out", "{out}"], ["data", "is a file"]),
    "inspect no manifest": (["data", "inspect", "{ds_empty}", "--out", "{out}"], ["data", "no manifest.json"]),
    "inspect manifest not JSON": (["data", "inspect", "{ds_bad_json}", "--out", "{out}"], ["manifest", "not valid JSON"]),
    "inspect manifest empty": (["data", "inspect", "{ds_blank}", "--out", "{out}"], ["manifest", "not valid JSON"]),
    "inspect manifest keys": (["data", "inspect", "{ds_no_keys}", "--out", "{out}"], ["manifest", "lacks", "chunks"]),
    "inspect chunk keys": (["data", "inspect", "{ds_no_i}", "--out", "{out}"], ["chunk_0.npz", "missing arrays ['i']"]),
    "inspect gallery 0": (["data", "inspect", "{ds}", "--gallery", "0", "--out", "{out}"], ["gallery", "[1, 1000]"]),
    "inspect out is a file": (["data", "inspect", "{ds}", "--out", "{out_file}"], ["--out", "is a file"]),
    "train missing folder": (["train", "--data", "{missing_dir}", *STUDY], ["data", "does not exist"]),
    "train a file": (["train", "--data", "{cv_100mV}", *STUDY], ["data", "is a file"]),
    "train no manifest": (["train", "--data", "{ds_empty}", *STUDY], ["data", "no manifest.json"]),
    "train manifest not JSON": (["train", "--data", "{ds_bad_json}", *STUDY], ["manifest", "not valid JSON"]),
    "train manifest keys": (["train", "--data", "{ds_no_keys}", *STUDY], ["manifest", "lacks"]),
    "train chunk keys": (["train", "--data", "{ds_no_i}", *STUDY], ["chunk_0.npz", "missing arrays ['i']"]),
    "train NaN in a chunk": (["train", "--data", "{ds_nan}", *STUDY], ["chunk_0.npz", "'i'", "NaN or Inf"]),
    "train steps 0": (["train", "--data", "{ds}", "--steps", "0", *STUDY], ["steps", "[1, 1000000000]"]),
    "train lr nan": (["train", "--data", "{ds}", "--lr", "nan", *STUDY], ["lr", "(0, 1)"]),
    "train max_minutes < 0": (["train", "--data", "{ds}", "--max-minutes", "-1", *STUDY], ["--max-minutes", "> 0"]),
    "train arch": (["train", "--data", "{ds}", "--arch", "xyz", *STUDY], ["--arch", "invalid choice", "conv"]),
    "train out is a file": (["train", "--data", "{ds}", "--out", "{out_file}"], ["--out", "is a file"]),
    "evaluate model missing": (["evaluate", "--model", "{missing_dir}", "--data", "{ds}", "--out", "{out}"],
                               ["model", "not a model folder"]),
    "evaluate model empty": (["evaluate", "--model", "{model_empty}", "--data", "{ds}", "--out", "{out}"],
                             ["model", "model_meta.json"]),
    "evaluate data missing": (["evaluate", "--model", "{model}", "--data", "{missing_dir}", "--out", "{out}"],
                              ["data", "does not exist"]),
    "evaluate rows 0": (["evaluate", "--model", "{model}", "--data", "{ds}", "--rows", "0", *STUDY],
                        ["rows", "[1, 100000]"]),
    "evaluate draws 0": (["evaluate", "--model", "{model}", "--data", "{ds}", "--draws", "0", *STUDY],
                         ["draws", "[1, 1024]"]),
    "export model missing": (["export", "--model", "{missing_dir}", "--data", "{ds}", "--out", "{out}"],
                             ["model", "not a model folder"]),
    "export data not JSON": (["export", "--model", "{model}", "--data", "{ds_bad_json}", "--out", "{out}"],
                             ["manifest", "not valid JSON"]),
    "export rows 0": (["export", "--model", "{model}", "--data", "{ds}", "--rows", "0", "--out", "{out}"],
                      ["n_rows", ">= 8"]),
    "recalibrate model missing": (["recalibrate", "--model", "{missing_dir}"], ["model", "not a model folder"]),
    "recalibrate rows 4": (["recalibrate", "--model", "{model}", "--rows-per-task", "4", "--no-progress"],
                           ["n_per_task", ">= 8"]),
    # import: files, encodings, delimiters, values, labels
    "import missing file": (["import", "{missing}", "--out", "{out_npz}"], ["missing_100mV.csv", "no such file"]),
    "import a folder": (["import", "{folder}", "--out", "{out_npz}"], ["folder_100mV.csv", "is a directory"]),
    "import empty file": (["import", "{empty}", "--out", "{out_npz}"], ["empty.csv", "no numeric data"]),
    "import header only": (["import", "{header_only}", "--out", "{out_npz}"], ["no numeric data rows"]),
    "import NaN": (["import", "{nan_100mV}", "--out", "{out_npz}"], ["line 42", "NaN or Inf", "I/A"]),
    "import Inf": (["import", "{inf_100mV}", "--out", "{out_npz}"], ["line 42", "NaN or Inf", "E/V"]),
    "import ragged row": (["import", "{ragged_100mV}", "--out", "{out_npz}"], ["line 601", "empty value", "I/A"]),
    "import time backwards": (["import", "{backwards_100mV}", "--out", "{out_npz}"], ["line 52", "time is not increasing"]),
    "import unknown delimiter": (["import", "{pipes_100mV}", "--out", "{out_npz}"], ["no numeric data", "comma, tab"]),
    "import one column": (["import", "{onecolumn_100mV}", "--out", "{out_npz}"], ["no numeric data"]),
    "import binary": (["import", "{binary_100mV}", "--out", "{out_npz}"], ["binary data", "text/CSV"]),
    "import npz of another layout": (["import", "{good}", "--out", "{out_npz}"], ["not an ecsfm measurement"]),
    "import unit in header": (["import", "{bad_unit_100mV}", "--out", "{out_npz}"], ["furlong"]),
    "import potential constant": (["import", "{flat_100mV}", "--scan-rate", "0.1", "--out", "{out_npz}"],
                                  ["line 3", "repeats the row before"]),
    "import current unit": (["import", "{cv_100mV}", "--current-unit", "furlong", "--out", "{out_npz}"],
                            ["current-unit", "A, mA, uA"]),
    "import scan rate 0": (["import", "{cv_100mV}", "--scan-rate", "0", "--out", "{out_npz}"], ["scan-rate", "> 0"]),
    "import scan rate nan": (["import", "{cv_100mV}", "--scan-rate", "nan", "--out", "{out_npz}"], ["scan-rate", "> 0"]),
    "import cycle 9": (["import", "{cv_100mV}", "--cycle", "9", "--out", "{out_npz}"], ["cycle", "[0, 0]"]),
    "import format": (["import", "{cv_100mV}", "--format", "xyz", "--out", "{out_npz}"], ["--format", "biologic"]),
    "import format chi": (["import", "{cv_100mV}", "--format", "chi", "--out", "{out_npz}"], ["CH Instruments"]),
    "import format biologic": (["import", "{cv_100mV}", "--format", "biologic", "--out", "{out_npz}"], ["EC-Lab"]),
    "import sign convention": (["import", "{cv_100mV}", "--sign-convention", "xyz", "--out", "{out_npz}"],
                               ["--sign-convention", "iupac"]),
    "import out is a folder": (["import", "{cv_100mV}", "--out", "{out}"], ["--out", "is a folder"]),
    # infer, one file (npz layout and CSV)
    "infer missing file": ([*INFER, "{missing}"], ["missing_100mV.csv", "does not exist"]),
    "infer a folder": ([*INFER, "{folder}"], ["folder_100mV.csv", "is a directory"]),
    "infer npz not an npz": ([*INFER, "{text}"], ["text.npz", "not a readable npz"]),
    "infer npz wrong keys": ([*INFER, "{nokeys}"], ["missing key 'e'", "needs e, i_obs", "ecsfm import"]),
    "infer npz missing e": ([*INFER, "{no_e}"], ["missing key 'e'"]),
    "infer npz NaN current": ([*INFER, "{nan_i}"], ["observed current", "NaN or Inf"]),
    "infer npz Inf current": ([*INFER, "{inf_i}"], ["observed current", "NaN or Inf"]),
    "infer npz NaN potential": ([*INFER, "{nan_e}"], ["applied_signal", "NaN or Inf"]),
    "infer npz lengths": ([*INFER, "{short}"], ["e, i_obs, i_mask", "256 points"]),
    "infer npz 2-D current": ([*INFER, "{two_rows}"], ["256 points", "(2, 256)"]),
    "infer npz strings": ([*INFER, "{strings}"], ["'i_obs'", "numeric"]),
    "infer npz mask empty": ([*INFER, "{mask_none}"], ["0 observed point", "at least 3"]),
    "infer npz mask two points": ([*INFER, "{mask_two}"], ["2 observed point", "at least 3"]),
    "infer npz mask NaN": ([*INFER, "{mask_nan}"], ["i_mask", "[0, 1]"]),
    "infer npz no known_p_core": ([*INFER, "{no_core}"], ["known_p_core"]),
    "infer npz known_p_core length": ([*INFER, "{short_core}"], ["known_p_core", "expected 28"]),
    "infer npz known_p_mask length": ([*INFER, "{short_kmask}"], ["known_p_mask", "expected 28"]),
    "infer task": ([*INFER, "{good}", "--task", "xyz"], ["task", "'cv'"]),
    "infer stage": ([*INFER, "{good}", "--stage", "xyz"], ["stage", "'intermediate'"]),
    "infer engine": ([*INFER, "{good}", "--engine", "xyz"], ["--engine", "simulator"]),
    "infer noise 0": ([*INFER, "{good}", "--noise", "0"], ["noise", "> 0"]),
    "infer noise nan": ([*INFER, "{good}", "--noise", "nan"], ["noise", "> 0"]),
    "infer particles 0": ([*INFER, "{good}", "--particles", "0"], ["particles", "[4, 65536]"]),
    "infer couples 0": ([*INFER, "{good}", "--couples", "0"], ["couples", "[1, 2]"]),
    "infer area 0": ([*INFER, "{good}", "--area", "0"], ["area", "> 0"]),
    "infer known name": ([*INFER, "{good}", "--known", "zeta=1"], ["known", "zeta", "d_ox"]),
    "infer known k0 0": ([*INFER, "{good}", "--known", "k0=0"], ["known", "k0", "> 0"]),
    "infer known e0 nan": ([*INFER, "{good}", "--known", "e0=nan"], ["known", "e0", "finite"]),
    "infer known couple index": ([*INFER, "{good}", "--known", "e0[5]=0.1"], ["couple", "[0, 2)"]),
    "infer known alpha 5": ([*INFER, "{good}", "--known", "alpha=5"], ["alpha[0]", "[0.3, 0.7]"]),
    "infer known concentrations 0": ([*INFER, "{good}", "--known", "c_ox=0", "--known", "c_red=0"],
                                     ["known_p_core", "no active couple"]),
    "infer model missing": (["infer", "--model", "{missing_dir}", "--measurement", "{good}", "--out", "{out}"],
                            ["model", "not a model folder"]),
    "infer model empty": (["infer", "--model", "{model_empty}", "--measurement", "{good}", "--out", "{out}"],
                          ["model", "model_meta.json"]),
    "infer csv empty": ([*INFER, "{empty}"], ["empty.csv", "no numeric data"]),
    "infer csv too short": ([*INFER, "{short_100mV}", "--waveform", "model"], ["only 5 data rows"]),
    "infer csv unit": ([*INFER, "{cv_100mV}", "--units", "furlong"], ["current-unit", "A, mA, uA"]),
    "infer csv task": ([*INFER, "{cv_100mV}", "--task", "xyz", "--waveform", "model"], ["task", "'cv'"]),
    "infer csv off protocol": ([*INFER, "{cv_100mV}", "--waveform", "model"], ["departs from the model's cv protocol"]),
    "infer out is a file": (["infer", "--measurement", "{good}", "--out", "{out_file}"], ["--out", "is a file"]),
    # infer, several files (joint fit)
    "joint no concentration": (["infer", "--out", "{out}", "--area", "0.07", "--measurement", "{cv_100mV}",
                                "--measurement", "{cv_100mV}"], ["known", "c_ox=<mM>"]),
    "joint c_ox 0": ([*JOINT, "--known", "c_ox=0"], ["c_ox", "> 0"]),
    "infer no area": (["infer", "--out", "{out}", "--known", "c_ox=1", "--measurement", "{cv_100mV}"],
                      ["--area", "--radius", "no default"]),
    "infer radius 0": (["infer", "--out", "{out}", "--radius", "0mm", "--known", "c_ox=1", "--measurement", "{cv_100mV}"],
                       ["--radius", "> 0"]),
    "infer radius no unit": (["infer", "--out", "{out}", "--radius", "0.15", "--known", "c_ox=1", "--measurement",
                              "{cv_100mV}"], ["--radius", "unit", "1.5mm"]),
    "infer geometry unknown": ([*JOINT, "--geometry", "cube"], ["--geometry", "sphere"]),
    "infer rde without rpm": ([*JOINT, "--geometry", "rotating-disc"], ["--rpm", "rotation"]),
    "infer thin layer without thickness": ([*JOINT, "--geometry", "thin-layer"], ["--thickness", "needs"]),
    "infer thickness planar": ([*JOINT, "--thickness", "20um"], ["--thickness", "thin layer"]),
    "infer area and radius": ([*JOINT, "--radius", "1.5mm"], ["--radius", "not allowed with", "--area"]),
    "infer format": ([*INFER, "{cv_100mV}", "--format", "xyz"], ["--format", "invalid choice", "autolab"]),
    "joint prior format": ([*JOINT, "--prior", "alpha=0.1"], ["--prior", "NAME=LOW:HIGH"]),
    "joint prior name": ([*JOINT, "--prior", "zeta=1:2"], ["--prior", "'zeta'", "alpha"]),
    "joint prior order": ([*JOINT, "--prior", "ru=50:1"], ["--prior", "LOW < HIGH"]),
    "joint prior not positive": ([*JOINT, "--prior", "k0=0:1"], ["--prior", "k0", "> 0"]),
    "joint prior alpha": ([*JOINT, "--prior", "alpha=0:1.2"], ["--prior", "alpha", "(0, 1)"]),
    "infer prior on the model grid": ([*INFER, "{good}", "--prior", "alpha=0.1:0.9"], ["--prior", "--waveform measured"]),
    "joint c_ox in M": ([*JOINT, "--known", "c_ox=0.0001"], ["larger than", "c_ox given in M", "--force"]),
    "joint c_ox in uM": ([*JOINT, "--known", "c_ox=1000"], ["smaller than", "c_ox given in uM", "--force"]),
    "joint area in mm2": ([*JOINT, "--area", "7.07"], ["smaller than", "area given in mm^2", "--force"]),
    "joint c_ox nan": ([*JOINT, "--known", "c_ox=nan"], ["c_ox", "> 0"]),
    "joint c_red < 0": ([*JOINT, "--known", "c_red=-1"], ["c_red", ">= 0"]),
    "joint area 0": ([*JOINT, "--area", "0"], ["area", "> 0"]),
    "joint per-trace label": ([*JOINT, "--per-trace", "offset,zeta"], ["--per-trace", "zeta", "'offset', 'cdl', 'ru'"]),
    "joint discrepancy length text": ([*JOINT, "--discrepancy-length", "long"], ["discrepancy-length", "'long'"]),
    "joint discrepancy length range": ([*JOINT, "--discrepancy-length", "5"], ["--discrepancy-length", "[0.001, 2]"]),
    "joint cycle 5": ([*JOINT, "--cycle", "5"], ["cycle", "[0, 0]"]),
    "joint scan rate 0": ([*JOINT, "--scan-rate", "0"], ["scan-rate", "> 0"]),
    "joint scan rates count": ([*JOINT, "--scan-rate", "0.1", "--scan-rate", "0.2", "--scan-rate", "0.3"],
                               ["scan-rate", "one per measurement"]),
    "joint noise 0": ([*JOINT, "--noise", "0"], ["noise", "> 0"]),
    "joint particles 1": ([*JOINT, "--particles", "1"], ["n_particles", "[64, 65536]"]),
    "joint known name": ([*JOINT, "--known", "zeta=1"], ["known", "zeta", "e0"]),
    "joint known k0 0": ([*JOINT, "--known", "k0=0"], ["known", "k0", "> 0"]),
    "joint known alpha 3": ([*JOINT, "--known", "alpha=3"], ["known", "alpha", "(0, 1)"]),
    "joint flat potential": ([*JOINT[:-1], "{flat_100mV}"], ["flat_100mV.csv", "repeats the row before"]),
    "joint missing file": ([*JOINT[:-1], "{missing}"], ["measurement", "does not exist"]),
    "joint empty file": ([*JOINT[:-1], "{empty}"], ["empty.csv", "no numeric data"]),
    "joint a folder": ([*JOINT[:-1], "{folder}"], ["is a directory"]),
    "joint waveform model": ([*JOINT, "--waveform", "model"], ["departs from the model's cv protocol"]),
    # study calibration / sweep / engines / sbc
    "calibration data missing": (["study", "calibration", "--data", "{missing}", *STUDY], ["chunk", "does not exist"]),
    "calibration data not npz": (["study", "calibration", "--data", "{text}", *STUDY], ["text.npz", "not a readable npz"]),
    "calibration data keys": (["study", "calibration", "--data", "{nokeys}", *STUDY], ["missing key 'i'"]),
    "calibration data folder": (["study", "calibration", "--data", "{folder}", *STUDY], ["not a readable npz"]),
    "calibration model missing": (["study", "calibration", "--model", "{missing_dir}", *STUDY], ["model", "does not exist"]),
    "calibration regime": (["study", "calibration", "--regimes", "xyz", *STUDY], ["regimes", "dense_clean"]),
    "calibration particles": (["study", "calibration", "--particles", "1", *STUDY], ["n_particles >= 2", "got 1"]),
    "calibration cases 0": (["study", "calibration", "--cases", "0", *STUDY], ["cases", "[1, 100000]"]),
    "calibration engine": (["study", "calibration", "--engine", "xyz", *STUDY], ["--engine", "surrogate"]),
    "calibration out is a file": (["study", "calibration", "--out", "{out_file}"], ["--out", "is a file"]),
    "sweep keep not numbers": (["study", "sweep", "--keep", "a,b", *STUDY], ["keep", "comma list of numbers"]),
    "sweep keep 0": (["study", "sweep", "--keep", "0", *STUDY], ["keep", "(0, 1]"]),
    "sweep keep empty": (["study", "sweep", "--keep", "", *STUDY], ["keep", "(0, 1]"]),
    "sweep noise < 0": (["study", "sweep", "--noise", "-1", *STUDY], ["noise", "> 0"]),
    "sweep noise nan": (["study", "sweep", "--noise", "nan", *STUDY], ["noise", "> 0"]),
    "engines regime": (["study", "engines", "--regime", "xyz", *STUDY], ["regime", "dense_clean"]),
    "engines cases 0": (["study", "engines", "--cases", "0", *STUDY], ["cases", "[1, 1000]"]),
    "engines data missing": (["study", "engines", "--data", "{missing}", *STUDY], ["chunk", "does not exist"]),
    "engines data keys": (["study", "engines", "--data", "{nokeys}", *STUDY], ["missing key 'i'"]),
    "engines model missing": (["study", "engines", "--model", "{missing_dir}", *STUDY], ["model", "does not exist"]),
    "sbc n 0": (["study", "sbc", "--n", "0", *STUDY], ["n", "[10, 1000000]"]),
    "sbc compare missing": (["study", "sbc", "--compare", "{missing}", "{missing}", "--out", "{out}"],
                            ["compare", "does not exist"]),
    "sbc compare empty": (["study", "sbc", "--compare", "{empty}", "{empty}", "--out", "{out}"],
                          ["compare", "empty.csv", "not valid JSON"]),
    "sbc compare not JSON": (["study", "sbc", "--compare", "{not_json}", "{not_json}", "--out", "{out}"],
                             ["compare", "not valid JSON"]),
    "sbc compare a list": (["study", "sbc", "--compare", "{list}", "{list}", "--out", "{out}"], ["compare", "JSON object"]),
    "sbc compare a folder": (["study", "sbc", "--compare", "{folder}", "{folder}", "--out", "{out}"],
                             ["compare", "is a folder"]),
    "unknown command": (["xyz"], ["invalid choice", "simulate"]),
}


@pytest.mark.parametrize("argv,fragments", list(CLI_CASES.values()), ids=list(CLI_CASES))
def test_command_refuses_bad_input_in_one_line_and_touches_nothing(files, capsys, argv, fragments):
    before = _snapshot(files["root"])
    argv = [a.format(**{k: v for k, v in files.items() if isinstance(v, str)}) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as stop:  # argparse's own refusals (unknown choice, not a number)
        rc = stop.code
    out = capsys.readouterr()
    assert rc == 2, (rc, out.err)
    assert out.err.count("\n") == 1 and ": error: " in out.err.splitlines()[0], out.err
    assert "Traceback" not in out.err
    for fragment in fragments:
        assert fragment in out.err, (fragment, out.err)
    assert _snapshot(files["root"]) == before  # no file created, changed or touched


def _posterior(api, **change):
    kw = dict(model=None, normalizers=None, geometry=api["geometry"], meta=api["meta"],
              observed_current=api["i_obs"], applied_signal=api["e"], known_p_core=api["known_p_core"],
              known_p_mask=np.arange(api["known_p_core"].size) >= api["geometry"]["phys_dim_base"],
              config=PosteriorInferenceConfig(obs_noise_std=0.02, engine="simulator"))
    return infer_parameter_posterior(**{**kw, **change})


def _measurement(**change):
    t = np.arange(_E.size) * 1e-2
    kw = dict(time=t, potential=_E, current=1e-6 * np.tanh(10 * _E), scan_rate=0.1, cycle=np.zeros(_E.size, int),
              metadata={})
    return io.Measurement(**{**kw, **change})


def _couple(**change):
    return sim.Couple(**{**dict(e0=0.0, k0=0.01, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0, c_red=0.0), **change})


_NAN = np.where(np.arange(_E.size) == 9, np.nan, 1.0)
API_CASES = {
    "io.read missing": (lambda f: io.read(f["missing"]), "no such file"),
    "io.read folder": (lambda f: io.read(f["folder"]), "is a directory"),
    "io.read empty": (lambda f: io.read(f["empty"]), "no numeric data"),
    "io.read NaN": (lambda f: io.read(f["nan_100mV"]), "NaN or Inf"),
    "io.read backwards": (lambda f: io.read(f["backwards_100mV"]), "time is not increasing"),
    "io.read delimiter": (lambda f: io.read(f["pipes_100mV"]), "no numeric data"),
    "io.read format": (lambda f: io.read(f["cv_100mV"], fmt="xyz"), "format"),
    "io.read sign convention": (lambda f: io.read(f["cv_100mV"], sign_convention="xyz"), "sign"),
    "io.load_npz not ours": (lambda f: io.load_npz(f["nokeys"]), "nokeys.npz"),
    "Measurement lengths": (lambda f: _measurement(current=np.zeros(5)), "current: has 5 points"),
    "Measurement NaN": (lambda f: _measurement(potential=_E * _NAN), "potential: contains NaN"),
    "Measurement time backwards": (lambda f: _measurement(time=-0.01 * np.arange(_E.size)), "strictly increasing"),
    "Measurement time offset": (lambda f: _measurement(time=1.0 + np.arange(_E.size)), "time: must start at 0"),
    "Measurement time repeats": (lambda f: _measurement(time=np.r_[0.0, np.arange(_E.size - 1)]), "strictly increasing"),
    "Measurement scan rate 0": (lambda f: _measurement(scan_rate=0.0), "scan_rate: must be > 0"),
    "posterior NaN current": (lambda f: _posterior(f["api"], observed_current=f["api"]["i_obs"] * np.nan),
                              "observed_current"),
    "posterior length": (lambda f: _posterior(f["api"], observed_current=f["api"]["i_obs"][:10]), "observed_current"),
    "posterior NaN potential": (lambda f: _posterior(f["api"], applied_signal=f["api"]["e"] * np.nan), "applied_signal"),
    "posterior empty mask": (lambda f: _posterior(f["api"], obs_mask=np.zeros(f["api"]["e"].size)), "obs_mask"),
    "posterior core length": (lambda f: _posterior(f["api"], known_p_core=f["api"]["known_p_core"][:4]), "known_p_core"),
    "posterior noise 0": (lambda f: PosteriorInferenceConfig(obs_noise_std=0.0), "obs_noise_std"),
    "posterior engine": (lambda f: PosteriorInferenceConfig(obs_noise_std=0.1, engine="xyz"), "engine"),
    "posterior method": (lambda f: PosteriorInferenceConfig(obs_noise_std=0.1, method="xyz"), "method"),
    "fit_joint no traces": (lambda f: fit_joint([], area=1.0, c_ox=1.0), "traces"),
    "fit_joint area 0": (lambda f: fit_joint([trace_from_measurement(_measurement())], area=0.0, c_ox=1.0), "area"),
    "fit_joint c_ox < 0": (lambda f: fit_joint([trace_from_measurement(_measurement())], area=1.0, c_ox=-1.0), "c_ox"),
    "JointConfig per_trace": (lambda f: JointConfig(per_trace=("zeta",)), "per_trace"),
    "JointConfig known alpha": (lambda f: JointConfig(known={"alpha": 3.0}), "alpha"),
    "JointConfig area_rsd < 0": (lambda f: JointConfig(area_rsd=-0.1), "area_rsd"),
    "JointConfig conc_rsd nan": (lambda f: JointConfig(conc_rsd=float("nan")), "conc_rsd"),
    "trace cycle": (lambda f: trace_from_measurement(_measurement(), cycle=3), "cycle"),
    "trace no scan rate": (lambda f: trace_from_measurement(_measurement(scan_rate=None)), "scan_rate"),
    "sim Couple c_ox < 0": (lambda f: _couple(c_ox=-1.0), "c_ox"),
    "sim Couple c_red nan": (lambda f: _couple(c_red=float("nan")), "c_red"),
    "sim Couple e0 nan": (lambda f: _couple(e0=float("nan")), "e0"),
    "sim Couple d_red 0": (lambda f: _couple(d_red=0.0), "d_red"),
    "sim Cell area 0": (lambda f: sim.Cell(area=0.0), "area"),
    "sim waveform scan rate 0": (lambda f: sim.cyclic_voltammetry(0.3, -0.3, 0.0), "scan_rate"),
    "sim simulate no couples": (lambda f: sim.simulate(sim.cyclic_voltammetry(0.3, -0.3, 0.1, step=0.01), [],
                                                       sim.Cell()), "couple"),
    "data read_manifest": (lambda f: data.read_manifest(f["ds_no_keys"]), "manifest"),
}


@pytest.mark.parametrize("call,field", list(API_CASES.values()), ids=list(API_CASES))
def test_public_function_raises_one_line_value_error(files, call, field):
    with pytest.raises(ValueError) as err:
        call(files)
    message = str(err.value)
    assert "\n" not in message and field in message, message


@pytest.mark.parametrize("name", ["latin1_100mV", "utf16_100mV"])
def test_other_encodings_and_delimiters_read_the_same_values(files, name):
    """A Latin-1 export with a semicolon and a µA column, and a UTF-16 tab-separated one, are not
    errors: they read to the same current as the UTF-8 CSV (to the 4 digits the µA file keeps)."""
    ref = io.read(files["cv_100mV"])
    m = io.read(files[name])
    np.testing.assert_allclose(m.potential, ref.potential, rtol=0, atol=0)
    np.testing.assert_allclose(m.current, ref.current, rtol=0, atol=1e-10)
