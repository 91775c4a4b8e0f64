"""SIGKILL at random points, then rerun: nothing lost, nothing duplicated, nothing half-written,
and the result equals an uninterrupted run of the same seed.

Each command is run once uninterrupted (the reference), then killed again and again in one output
folder, each time resuming from what the previous kill left: twice at the first write of a run (a
fresh one, then the resumed one) and then just after randomly chosen work items land on disk (a
chunk file or its sidecar, a training checkpoint, a study journal line, the final artifacts).
Every kill is placed by progress on disk, never by time, so no test depends on the machine's
speed: a kill at a point with at least two work items still to come is sent within the 2 ms
polling interval of its marker (no process writes two chunks, checkpoints or journal lines in
that time), so it must land, and those are required; kills near the end (a random jitter of up to
30 ms after the last items) may find the process finished, and are not counted. After every kill, every
non-temporary file in the folder must load; a last run then completes the work and is compared
with the reference:
dataset chunks byte for byte, the trained model byte for byte (bitwise equal weights), study
records field for field (all but the wall-clock ``elapsed_s``).

The subprocesses share a persistent JAX compilation cache so that each restart costs seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

RNG_SEED = 20260107
GEN = ["--n-samples", "200", "--chunk-size", "20", "--max-species", "1", "--target-len", "32", "--nx", "4",
       "--seed", "5", "--no-progress"]
N_CHUNKS = 10
TRAIN = ["--steps", "80", "--eval-every", "10", "--batch-size", "16", "--hidden-size", "8", "--depth", "1",
         "--cond-dim", "8", "--seed", "0", "--no-progress"]
STUDY = ["--cases", "2", "--regimes", "dense_clean", "--no-progress"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax_cache")
    return {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(cache), "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}


# Subprocess timeouts only stop a hung run: the longest command here (train, 80 steps) takes ~20 s
# on 2 busy cores, so 300 s is over 10x that on this machine and far from any machine's run time.
TIMEOUT_S = 300


def _ecsfm(args, env, timeout=TIMEOUT_S):
    res = subprocess.run([sys.executable, "-m", "ecsfm", *args], env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]


def _kill_when(args, env, trigger, jitter_s, timeout=TIMEOUT_S) -> bool:
    """Start ``ecsfm args``; once ``trigger()`` holds, wait ``jitter_s`` and SIGKILL the process
    group. True if it was killed while still running (False: it finished first). ``trigger`` may
    take ``start()`` (called just before the process starts, to snapshot the disk)."""
    getattr(trigger, "start", lambda: None)()
    proc = subprocess.Popen([sys.executable, "-m", "ecsfm", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not trigger():
            if proc.poll() is not None:
                return False
            if time.monotonic() > deadline:
                pytest.fail(f"trigger never held: ecsfm {' '.join(args)}")
            time.sleep(0.002)
        time.sleep(jitter_s)
        if proc.poll() is not None:
            return False
        os.killpg(proc.pid, signal.SIGKILL)
        return True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class _FirstWrite:
    """Holds once this run has written anything into ``folder`` (a new entry, temporary or not,
    or a changed size of an existing one) since ``start()``: the run's first progress on disk."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _listing(self):
        if not self.folder.exists():
            return {}
        out = {}
        for p in self.folder.iterdir():
            try:
                out[p.name] = p.stat().st_size
            except FileNotFoundError:  # renamed away between listing and stat
                pass
        return out

    def start(self):
        self.before = self._listing()

    def __call__(self):
        now = self._listing()
        return any(self.before.get(name) != size for name, size in now.items())


def _complete_chunks(out: Path) -> dict:
    """{chunk file name: inode} of the chunks whose file matches its sidecar's checksum."""
    from ecsfm.data._generate import chunk_is_complete, chunk_path

    return {chunk_path(out, k).name: chunk_path(out, k).stat().st_ino for k in range(N_CHUNKS)
            if chunk_is_complete(out, k) is not None}


def _checkpoint_step(out: Path) -> dict:
    """{"step": the step of the training state a resume would start from (0: none)}."""
    meta = out / "train_state.json"
    return {"step": json.loads(meta.read_text())["step"] if meta.exists() else 0}


def _journaled(out: Path) -> set:
    """The whole case lines of a study's journal (not its header, not a last line cut by a kill)."""
    path = out / "records.jsonl"
    if not path.exists():
        return set()
    lines = path.read_text().split("\n")[1:-1]  # the part after the last newline may be cut
    return {line for line in lines if line}


def _exists(path: Path):
    return path.exists


def _journal_lines(path: Path, n: int):
    return lambda: path.exists() and path.read_bytes().count(b"\n") >= n


def _is_temporary(path: Path) -> bool:
    return path.name.startswith(".") or ".tmp" in path.name


def _assert_nothing_half_written(folder: Path) -> list[str]:
    """Every file a reader would take as data loads completely; returns the temporary leftovers."""
    temps = []
    for path in sorted(folder.iterdir()):
        if _is_temporary(path):
            temps.append(path.name)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".jsonl":
            lines = path.read_text().splitlines()
            for line in lines[:-1]:  # only the last line may be cut (it is dropped on resume)
                json.loads(line)
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                for k in z.files:
                    z[k]
        elif path.suffix == ".eqx":
            assert path.stat().st_size > 0, path
        elif path.suffix == ".png":
            raw = path.read_bytes()
            assert raw.startswith(b"\x89PNG") and raw.endswith(b"IEND\xaeB`\x82"), path
        elif path.suffix == ".md":
            path.read_text()
    return temps


def _kill_and_resume(args, out: Path, env, rng, work_triggers, done=None) -> tuple[list[str], list[str], dict]:
    """Kill at the first write of a fresh run and of the resumed one, then once after each
    (trigger, label, required); check the folder after every kill. A required point has at least
    two work items still to come: it is killed the moment its marker is seen, and must land. The
    others sit close to the end of the run: killed after a random jitter of up to 30 ms, they may
    find the process finished (it then interrupted nothing, and is not counted). Returns the labels
    of the kills that landed and of the required ones, and ``done(out)`` (the work finished before
    the final run; {} without ``done``) taken just before the final run."""
    points = [(_FirstWrite(out), "first write of a fresh run", True),
              (_FirstWrite(out), "first write of the resumed run", True)] + work_triggers
    hit = []
    for trigger, label, required in points:
        jitter = 0.0 if required else float(rng.uniform(0.0, 0.03))
        if _kill_when(args, env, trigger, jitter):
            hit.append(label)
        if out.exists():
            _assert_nothing_half_written(out)
    finished = done(out) if done else {}
    _ecsfm(args, env)
    return hit, [label for _, label, required in points if required], finished


# -------------------------------------------------------------------------------------------------
# The uninterrupted references (module fixtures: train uses the dataset, the study the model)


@pytest.fixture(scope="module")
def ref_data(tmp_path_factory, env):
    out = tmp_path_factory.mktemp("ref") / "data"
    _ecsfm(["generate", *GEN, "--out", str(out)], env)
    return out


@pytest.fixture(scope="module")
def ref_model(tmp_path_factory, env, ref_data):
    out = tmp_path_factory.mktemp("ref") / "model"
    _ecsfm(["train", "--data", str(ref_data), *TRAIN, "--out", str(out)], env)
    return out


def _study_args(ref_data, ref_model, out):
    return ["study", "calibration", "--model", str(ref_model), "--data", str(ref_data / "chunk_9.npz"), *STUDY,
            "--out", str(out)]


# -------------------------------------------------------------------------------------------------


def test_generate_killed_at_random_points_resumes_to_identical_chunks(tmp_path, env, ref_data):
    rng = np.random.default_rng(RNG_SEED)
    out = tmp_path / "data"
    picks = sorted(rng.choice(N_CHUNKS - 1, size=4, replace=False))
    # Required: at least two more chunks to write after chunk k (k <= N_CHUNKS - 3).
    triggers = [(_exists(out / f"chunk_{k}.{ext}"), f"chunk_{k}.{ext} written", k <= N_CHUNKS - 3)
                for k, ext in zip(picks, ("npz", "json", "npz", "json"))]
    hit, required, finished = _kill_and_resume(["generate", *GEN, "--out", str(out)], out, env, rng, triggers,
                                               done=_complete_chunks)
    assert set(required) <= set(hit) and len(required) >= 4, (required, hit)
    # A resume, not a rerun: every chunk complete before the final run was skipped by it (its file
    # is the same file: an atomic rewrite would give it a new inode).
    assert len(finished) > 0, finished
    assert {name: (out / name).stat().st_ino for name in finished} == finished

    ref_manifest = json.loads((ref_data / "manifest.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chunks"] == ref_manifest["chunks"]  # names, row counts, sha256
    assert manifest["n_rows"] == ref_manifest["n_rows"]
    for c in manifest["chunks"]:
        assert (out / c["file"]).read_bytes() == (ref_data / c["file"]).read_bytes(), c["file"]
    # No row lost or duplicated: every base sample once, every (base, augmentation) pair once.
    base, pairs = [], []
    for c in manifest["chunks"]:
        with np.load(out / c["file"], allow_pickle=False) as z:
            base.append(z["base_id"][z["aug_id"] == 0])
            pairs += list(zip(z["base_id"].tolist(), z["aug_id"].tolist()))
    np.testing.assert_array_equal(np.sort(np.concatenate(base)), np.arange(200))
    assert len(pairs) == len(set(pairs)) == manifest["n_rows"]
    # Leftover temporaries (a kill inside an atomic write) are never taken as data.
    data_files = {p.name for p in out.iterdir() if not _is_temporary(p)}
    assert data_files == {p.name for p in ref_data.iterdir()}
    assert not {c["file"] for c in manifest["chunks"]} & set(_assert_nothing_half_written(out))


def test_train_killed_at_random_points_resumes_bitwise(tmp_path, env, ref_data, ref_model):
    rng = np.random.default_rng(RNG_SEED + 1)
    out = tmp_path / "model"
    steps = sorted(rng.choice(np.arange(10, 80, 10), size=4, replace=False))
    # Required: at least two more checkpoints (of 10 steps each) after step s (s <= 60).
    triggers = [(_exists(out / f"train_state_{s}.eqx"), f"checkpoint at step {s} written", s <= 60) for s in steps]
    triggers.append((_exists(out / "normalizers.npz"), "final artifacts being written", False))
    hit, required, saved = _kill_and_resume(["train", "--data", str(ref_data), *TRAIN, "--out", str(out)], out, env,
                                            rng, triggers, done=_checkpoint_step)
    assert set(required) <= set(hit) and len(required) >= 4, (required, hit)
    # A resume, not a rerun: the final run started from the checkpoint the kills left (step > 0).
    starts = json.loads((out / "model_meta.json").read_text())["training"]["run_start_steps"]
    assert starts[0] == 0 and starts[-1] == saved["step"] > 0, (starts, saved)

    # Bitwise: the saved EMA weights (the whole serialised model) are the reference's bytes.
    assert (out / "surrogate_model.eqx").read_bytes() == (ref_model / "surrogate_model.eqx").read_bytes()
    assert (out / "train_state_80.eqx").read_bytes() == (ref_model / "train_state_80.eqx").read_bytes()
    h, ref_h = (json.loads((d / "training_history.json").read_text()) for d in (out, ref_model))
    for key in ("step", "train_loss", "val_loss", "lr"):
        assert h[key] == ref_h[key], key  # every evaluation once, none replayed, identical values
    with np.load(out / "normalizers.npz", allow_pickle=False) as a, \
            np.load(ref_model / "normalizers.npz", allow_pickle=False) as b:
        for k in b.files:
            np.testing.assert_array_equal(a[k], b[k])
    meta = json.loads((out / "model_meta.json").read_text())
    assert meta["training"]["finished"] and meta["training"]["steps_done"] == 80
    # One checkpoint file, the one the state metadata names.
    assert sorted(p.name for p in out.glob("train_state_*.eqx")) == ["train_state_80.eqx"]
    assert json.loads((out / "train_state.json").read_text())["state_file"] == "train_state_80.eqx"
    _assert_nothing_half_written(out)


def test_train_resumes_correctly_from_a_kill_between_checkpoint_and_its_metadata(tmp_path, env, ref_data, ref_model):
    # The window a random kill rarely hits: the checkpoint of step 30 is on disk, the metadata still
    # describes step 20. Before the state file carried its step, the state was overwritten in place
    # and a resume replayed steps 21-30 on weights that had already taken them. The on-disk state of
    # that window is rebuilt from a run stopped at 20 and one stopped at 30 (in a subprocess, to use
    # the warm compilation cache).
    cut = tmp_path / "cut"
    script = f"""
from pathlib import Path
from ecsfm.fm.train import TrainConfig, train
data, cut = Path({str(ref_data)!r}), Path({str(cut)!r})
# The configuration `ecsfm train` builds from TRAIN.
cfg = TrainConfig(steps=80, eval_every=10, steps_per_call=10, batch_size=16, hidden_size=8, depth=1, cond_dim=8)
train(data, cut, cfg, progress=False, stop_at_step=20)
meta20, state20 = (cut / "train_state.json").read_text(), (cut / "train_state_20.eqx").read_bytes()
train(data, cut, cfg, progress=False, stop_at_step=30)
assert (cut / "train_state_30.eqx").exists()
(cut / "train_state.json").write_text(meta20)
(cut / "train_state_20.eqx").write_bytes(state20)
train(data, cut, cfg, progress=False)
"""
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert res.returncode == 0, res.stderr[-3000:]
    assert (cut / "surrogate_model.eqx").read_bytes() == (ref_model / "surrogate_model.eqx").read_bytes()
    assert sorted(p.name for p in cut.glob("train_state_*.eqx")) == ["train_state_80.eqx"]


def test_study_killed_at_random_points_resumes_to_identical_records(tmp_path, env, ref_data, ref_model):
    rng = np.random.default_rng(RNG_SEED + 2)
    ref = tmp_path / "ref"
    _ecsfm(_study_args(ref_data, ref_model, ref), env)
    out = tmp_path / "study"
    journal = out / "records.jsonl"
    # (The journal's header is the fresh run's first write, killed there already.) Required: the
    # first case journaled (the second case's inference and the results still to come).
    triggers = [(_journal_lines(journal, 2), "first case journaled", True),
                (_journal_lines(journal, 3), "second case journaled", False),
                (_exists(out / "posterior_identifiability_calibration.json"), "results and plots being written", False)]
    hit, required, before = _kill_and_resume(_study_args(ref_data, ref_model, out), out, env, rng, triggers,
                                             done=_journaled)
    assert set(required) <= set(hit) and len(required) == 3, (required, hit)
    # A resume, not a rerun: the cases journaled before the last run are in the final journal as
    # they were, their timings included (a recomputed case would carry a new elapsed_s).
    assert before and before <= set(journal.read_text().splitlines()[1:]), before

    name = "posterior_identifiability_calibration.json"
    got, want = (json.loads((d / name).read_text()) for d in (out, ref))
    assert len(got["records"]) == len(want["records"]) == 2
    for a, b in zip(got["records"], want["records"]):
        a.pop("elapsed_s"), b.pop("elapsed_s")
        assert a == b  # same numbers bit for bit (JSON round-trips floats exactly)
    lines = journal.read_text().splitlines()
    items = [json.loads(line) for line in lines[1:]]  # every line whole
    keys = [(it["record"]["regime"], it["record"]["case_index"]) for it in items]
    assert len(keys) == len(set(keys)) == 2  # no case lost, none journaled twice
    assert {p.name for p in out.iterdir() if not _is_temporary(p)} == {p.name for p in ref.iterdir()}
    _assert_nothing_half_written(out)


def test_a_journal_line_cut_by_a_kill_does_not_swallow_the_next_item(tmp_path):
    from ecsfm.studies._journal import Journal

    path = tmp_path / "j.jsonl"
    j = Journal(path, {"c": 1}, key=lambda it: it["k"])
    j.add({"k": 1, "v": "a" * 100})
    j.add({"k": 2, "v": "b" * 100})
    text = path.read_text()
    path.write_text(text[: text.rindex("\n", 0, len(text) - 1) + 40])  # item 2 cut mid-line
    j = Journal(path, {"c": 1}, key=lambda it: it["k"])
    assert set(j.done) == {1}
    j.add({"k": 2, "v": "b" * 100})
    j.add({"k": 3, "v": "c"})
    again = Journal(path, {"c": 1}, key=lambda it: it["k"])
    assert set(again.done) == {1, 2, 3}
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_zip_members_of_a_chunk_are_stored_with_fixed_metadata(ref_data):
    # What makes chunks byte-identical across runs (and so comparable above): fixed timestamps.
    with zipfile.ZipFile(ref_data / "chunk_0.npz") as zf:
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
