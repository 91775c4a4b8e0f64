"""An append-only journal of finished work items, so an interrupted study loses nothing.

Line 1 is the study's configuration; each further line is one finished item, written with flush
+ fsync. A line cut by a kill is dropped on opening (so the next item starts on a line of its own),
and its item is simply redone. A rerun with the same configuration resumes (``n_reused`` items
are read back); one with another configuration is refused unless ``fresh`` (then the old journal
is discarded), so a study's results are never silently replaced by a different study's.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .._atomic import remove_stale_temporaries, write_text

__all__ = ["Journal", "run_items"]


class Journal:
    """``config``: the study's settings (JSON); ``key(item)`` an item's identity; ``fresh``: discard
    a journal of other settings instead of refusing it. Raises ValueError naming the settings that
    differ (and the ``--fresh`` flag) when the folder holds another study."""

    def __init__(self, path: str | os.PathLike, config: dict, key, fresh: bool = False):
        self.path = Path(path)
        self.key = key
        remove_stale_temporaries(self.path.parent)  # a kill mid-write of the study's files leaves one
        self.done: dict = {}
        stamp = json.dumps(config, sort_keys=True)
        if self.path.exists():
            text = self.path.read_text()
            lines = text.splitlines()
            if lines and lines[0] == stamp:
                if not text.endswith("\n"):
                    # A kill cut the last line: drop it, or the next item would be appended to it
                    # and both lost on the next reading.
                    lines = lines[:-1]
                    write_text(self.path, "".join(line + "\n" for line in lines))
                for line in lines[1:]:
                    try:
                        item = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    self.done[key(item)] = item
            elif fresh or not lines:
                self.path.unlink()
            else:
                raise ValueError(f"out: {self.path.parent} holds a study with other settings ({_differences(lines[0], config)}); "
                                 "choose another --out, or pass --fresh to discard it and start afresh")
        self.n_reused = len(self.done)
        if not self.path.exists():
            write_text(self.path, stamp + "\n")

    def add(self, item: dict) -> None:
        self.done[self.key(item)] = item
        with open(self.path, "a") as f:
            f.write(json.dumps(item) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _differences(stamp: str, config: dict) -> str:
    """The settings that differ between a journal's first line and ``config``, as ``name: old -> new``."""
    try:
        old = json.loads(stamp)
    except json.JSONDecodeError:
        return "its first line is not a study's settings"
    if not isinstance(old, dict):
        return "its first line is not a study's settings"
    names = sorted(k for k in set(old) | set(config) if old.get(k) != config.get(k))

    def short(v) -> str:
        text = json.dumps(v, sort_keys=True)
        return text if len(text) <= 40 else text[:37] + "..."

    return "; ".join(f"{k}: {short(old.get(k))} -> {short(config.get(k))}" for k in names) or "same keys, other text"


def run_items(todo: list, fn, fn_args: tuple, keep, scheduler=None) -> None:
    """Run ``fn(*fn_args, item)`` for every item, locally or over a Dask scheduler (an address, a
    ``distributed.Client``), calling ``keep(result)`` as each finishes."""
    if todo and scheduler is not None:
        from distributed import Client, as_completed

        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        try:
            futures = [client.submit(fn, *fn_args, item, pure=False) for item in todo]
            for fut in as_completed(futures):
                keep(fut.result())
        finally:
            if client is not scheduler:
                client.close()
    else:
        for item in todo:
            keep(fn(*fn_args, item))
