"""Atomic writes: a kill mid-write leaves a temporary file, which the next run removes, and
nothing else."""

import os
import tempfile

from ecsfm._atomic import atomic_path, remove_stale_temporaries


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    # What a process killed inside atomic_path leaves behind: the names mkstemp gave it.
    stale = []
    for name in ("chunk_2.json", "chunk_2.npz", "records.jsonl", "noext"):
        target = tmp_path / name
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp" + target.suffix, dir=tmp_path)
        os.close(fd)
        stale.append(tmp)
    keep = [".hidden", "data.tmp", "notes.tmp.txt", ".chunk_2.json.tmp", "chunk_0.npz", ".a.b.tmp.json"]
    for name in keep:
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    fd, deeper = tempfile.mkstemp(prefix=".x.json.", suffix=".tmp.json", dir=tmp_path / "sub")
    os.close(fd)
    gone = remove_stale_temporaries(tmp_path)
    assert sorted(str(p) for p in gone) == sorted(stale)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep + ["sub"])
    assert os.path.exists(deeper)  # only the folder itself


def test_a_finished_write_leaves_no_temporary(tmp_path):
    with atomic_path(tmp_path / "out.json") as tmp:
        tmp.write_text("{}")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    assert remove_stale_temporaries(tmp_path) == []
