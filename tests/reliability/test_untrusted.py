"""Untrusted files: no pickle is ever loaded, a manifest cannot point outside its dataset folder,
and a chunk whose bytes differ from the manifest's sha256 is reported by name.

Every refusal through the command line is one line ``ecsfm: error: ...``, exit status 2, no
traceback.
"""

import ast
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import ecsfm
from ecsfm import data
from ecsfm.cli import main

SRC = Path(ecsfm.__file__).resolve().parent
TINY = dict(recipe="curriculum_multitask", n_samples=40, chunk_size=20, max_species=1, target_len=32, nx=4, seed=11)


class _Payload:
    """Unpickling this creates ``marker``: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _pickled(marker) -> np.ndarray:
    return np.asarray([_Payload(marker)], dtype=object)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    data.generate(data.Plan(**TINY), out, progress=False)
    return out


@pytest.fixture
def copy(dataset, tmp_path):
    dst = tmp_path / "ds"
    shutil.copytree(dataset, dst)
    return dst


def _one_line_error(capsys, *fragments) -> str:
    err = capsys.readouterr().err
    assert err.startswith("ecsfm: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for f in fragments:
        assert f in err, err
    return err


def _np_load_calls(tree):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "numpy")):
            yield node


def test_every_np_load_in_the_source_refuses_pickles():
    calls, bad = 0, []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in _np_load_calls(tree):
            calls += 1
            kw = {k.arg: k.value for k in node.keywords}
            if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                bad.append(f"{path.relative_to(SRC)}:{node.lineno}")
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(n in ("pickle", "cloudpickle", "dill", "joblib") for n in names if n):
                    bad.append(f"{path.relative_to(SRC)}:{node.lineno} imports a pickle library")
    assert calls >= 3  # the walk found the readers (a broken walk would pass vacuously)
    assert not bad, bad


def test_the_ast_check_catches_a_bad_call():
    # The checker itself: a call without allow_pickle=False (or with True) is found.
    src = "import numpy as np\nnp.load('a')\nnp.load('b', allow_pickle=True)\nnp.load('c', allow_pickle=False)\n"
    found = [n for n in _np_load_calls(ast.parse(src))
             if not any(k.arg == "allow_pickle" and getattr(k.value, "value", None) is False for k in n.keywords)]
    assert [n.lineno for n in found] == [2, 3]


def _replace_chunk(folder: Path, k: int, arrays: dict, *, fix_sha=True):
    """Overwrite chunk ``k`` with ``arrays`` (np.savez: pickles object arrays) and, if ``fix_sha``,
    record its sha256 in the manifest, as a forger who controls the whole folder would."""
    path = folder / f"chunk_{k}.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    manifest = json.loads((folder / "manifest.json").read_text())
    if fix_sha:
        manifest["chunks"][k]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_chunk_with_an_object_array_is_refused_by_train_and_inspect(copy, tmp_path, capsys):
    marker = tmp_path / "pwned"
    z = data.read_npz(copy / "chunk_1.npz")
    _replace_chunk(copy, 1, {**z, "p": _pickled(marker)})
    assert main(["train", "--data", str(copy), "--out", str(tmp_path / "m"), "--steps", "2", "--no-progress"]) == 2
    _one_line_error(capsys, "chunk_1.npz", "pickled (object) data")
    assert main(["data", "inspect", str(copy), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "chunk_1.npz")
    assert not marker.exists()
    assert not (tmp_path / "r" / "report.json").exists()


def test_chunk_that_is_a_raw_pickle_is_refused(copy, tmp_path, capsys):
    import pickle

    marker = tmp_path / "pwned"
    (copy / "chunk_0.npz").write_bytes(pickle.dumps(_Payload(marker)))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["chunks"][0]["sha256"] = hashlib.sha256((copy / "chunk_0.npz").read_bytes()).hexdigest()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["train", "--data", str(copy), "--out", str(tmp_path / "m"), "--steps", "2", "--no-progress"]) == 2
    _one_line_error(capsys, "chunk_0.npz", "pickled (object) data")
    assert not marker.exists()


def test_normalizers_with_an_object_array_are_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    model = tmp_path / "model"
    shutil.copytree(SRC / "assets" / "default", model)
    good = dict(np.load(model / "normalizers.npz", allow_pickle=False))
    with open(model / "normalizers.npz", "wb") as f:
        np.savez(f, **{**good, "x_std": _pickled(marker)})
    assert main(["study", "calibration", "--model", str(model), "--cases", "1", "--regimes", "dense_clean",
                 "--out", str(tmp_path / "study"), "--no-progress"]) == 2
    _one_line_error(capsys, "normalizers.npz", "pickled (object) data")
    assert not marker.exists()


def test_measurement_and_study_chunk_with_an_object_array_are_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    with open(tmp_path / "m.npz", "wb") as f:
        np.savez(f, e=np.zeros(8), i_obs=_pickled(marker))
    assert main(["infer", "--measurement", str(tmp_path / "m.npz"), "--engine", "surrogate",
                 "--out", str(tmp_path / "post")]) == 2
    _one_line_error(capsys, "m.npz", "pickled (object) data")
    chunk = dict(np.load(SRC / "assets" / "default" / "chunk_0.npz", allow_pickle=False))
    with open(tmp_path / "chunk.npz", "wb") as f:
        np.savez(f, **{**chunk, "i": _pickled(marker)})
    assert main(["study", "calibration", "--data", str(tmp_path / "chunk.npz"), "--cases", "1",
                 "--regimes", "dense_clean", "--out", str(tmp_path / "study"), "--no-progress"]) == 2
    _one_line_error(capsys, "chunk.npz", "pickled (object) data")
    assert not marker.exists()


@pytest.mark.parametrize("name", ["../outside.npz", "ABSOLUTE", "sub/chunk_0.npz", "..", ""])
def test_manifest_naming_a_path_outside_the_dataset_is_refused(copy, tmp_path, capsys, name):
    # A valid chunk placed outside the folder, with the right sha256: still refused.
    outside = copy.parent / "outside.npz"
    shutil.copy(copy / "chunk_0.npz", outside)
    if name == "ABSOLUTE":
        name = str(outside.resolve())
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["chunks"][0]["file"] = name
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["train", "--data", str(copy), "--out", str(tmp_path / "m"), "--steps", "2", "--no-progress"]) == 2
    _one_line_error(capsys, "manifest: chunk file", repr(name))
    assert main(["data", "inspect", str(copy), "--out", str(tmp_path / "r")]) == 2
    _one_line_error(capsys, "manifest: chunk file", repr(name))
    with pytest.raises(ValueError, match="manifest: chunk file"):
        data.read_chunk(copy, manifest["chunks"][0])


def test_a_link_leading_out_of_the_dataset_is_refused(copy):
    outside = copy.parent / "elsewhere.npz"
    shutil.copy(copy / "chunk_0.npz", outside)
    (copy / "chunk_0.npz").unlink()
    (copy / "chunk_0.npz").symlink_to(outside)
    entry = json.loads((copy / "manifest.json").read_text())["chunks"][0]
    with pytest.raises(ValueError, match="leads outside the dataset folder"):
        data.read_chunk(copy, entry)


def test_checksum_mismatch_is_detected_and_names_the_chunk(copy, tmp_path, capsys):
    path = copy / "chunk_1.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit in the middle of the stored array data
    path.write_bytes(bytes(raw))
    assert main(["train", "--data", str(copy), "--out", str(tmp_path / "m"), "--steps", "2", "--no-progress"]) == 2
    _one_line_error(capsys, "chunk_1.npz: sha256 does not match the manifest")
    # The QC report names it among its problems (and still reports the healthy chunks).
    assert main(["data", "inspect", str(copy), "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "problem: checksum mismatch or missing: chunk_1.npz" in out
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["n_rows"] == data.read_npz(copy / "chunk_0.npz")["i"].shape[0]
    # A missing chunk is named as well.
    path.unlink()
    assert main(["train", "--data", str(copy), "--out", str(tmp_path / "m"), "--steps", "2", "--no-progress"]) == 2
    _one_line_error(capsys, "chunk_1.npz: chunk file is missing")


def test_a_truncated_npz_is_a_one_line_error(tmp_path):
    good = tmp_path / "good.npz"
    data.write_npz(good, {"a": np.arange(100.0)})
    (tmp_path / "cut.npz").write_bytes(good.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"cut\.npz: not a readable npz") as err:
        data.read_npz(tmp_path / "cut.npz")
    assert "\n" not in str(err.value)
