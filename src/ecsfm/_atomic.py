"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A reader (or a rerun after an interruption) sees either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "remove_stale_temporaries", "save_png", "write_text"]

# The temporary names atomic_path makes: ".<name>.<8 random characters>.tmp<suffix>".
_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    # mkstemp creates 0600; give the file the mode a plain open() would (0666 less the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_png(fig, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write a matplotlib figure as PNG, atomically."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files ``atomic_path`` left in ``folder`` (not below it) when a process
    was killed mid-write; returns what it deleted. Call it when a run (re)starts in a folder, before
    it writes anything: a rerun after an interruption then leaves exactly the files of an
    uninterrupted run."""
    folder = Path(folder)
    gone = []
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file() and _TEMPORARY.match(path.name):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    gone.append(path)
    return gone
