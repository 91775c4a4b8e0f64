"""``read``: any supported export in, one :class:`Measurement` out (SI units, IUPAC sign)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np

from ._autolab import parse_autolab
from ._biologic import parse_biologic
from ._chi import COLUMN_LINE, SIGNATURE, parse_chi
from ._csv import parse_csv
from ._derive import (
    estimate_scan_rate,
    loop_orientation,
    rebuild_time,
    scan_rate_from_filename,
    split_cycles,
)
from ._measurement import Measurement
from ._npz import load_npz
from ._palmsens import parse_palmsens
from ._text import (
    CURRENT_UNITS_TEXT,
    UNIT_SCALES,
    Parsed,
    fail,
    lines_of,
    norm_unit,
    read_text,
    split_cells,
)

__all__ = ["FORMATS", "SIGN_CONVENTIONS", "detect_format", "read", "read_autolab", "read_biologic", "read_chi",
           "read_csv", "read_palmsens"]

FORMATS = ("csv", "palmsens", "autolab", "chi", "biologic")
SIGN_CONVENTIONS = ("auto", "iupac", "us")
_PARSERS = {"csv": parse_csv, "palmsens": parse_palmsens, "autolab": parse_autolab, "chi": parse_chi,
            "biologic": parse_biologic}
#: |loop orientation| below this is not read as a sign convention. Charging alone gives
#: 2 Cdl v / (I range) of the order 0.05-1 and a diffusive CV ~0.1-0.5; a value under 0.02 is a
#: loop too thin (or too noisy) to judge.
LOOP_MIN = 0.02


def detect_format(text: str) -> str:
    """The format of a decoded export, from its content: one of :data:`FORMATS`."""
    head = lines_of(text[:20000])[:120]
    first = next((line.strip() for line in head if line.strip()), "")
    if first.startswith("EC-Lab ASCII FILE"):
        return "biologic"
    if "\t" in first and re.search(r"(^|\t)(Ewe/V|<?I>?/mA)(\t|$)", first):
        return "biologic"
    if any(SIGNATURE.match(line) for line in head) and any(COLUMN_LINE.match(line) for line in text.splitlines()):
        return "chi"
    if any("WE(1)." in line or "Potential applied (" in line for line in head):
        return "autolab"
    if first.lower().startswith("date and time"):
        return "palmsens"
    for line in head:
        cells = [c for c in split_cells(line, ",") if c]
        units = [norm_unit(c) for c in cells]
        if (len(cells) >= 2 and units[0] in UNIT_SCALES["potential"]
                and all(u in UNIT_SCALES["potential"] or u in UNIT_SCALES["current"] or u == "s" for u in units)):
            return "palmsens"
    return "csv"


def read(path, *, fmt: str = "auto", current_unit: str | None = None, scan_rate: float | None = None,
         sign_convention: str = "auto") -> Measurement:
    """Read one measured voltammogram.

    Args:
        path: the exported file, or an ``.npz`` measurement ``save_npz`` (``ecsfm import``)
            wrote.
        fmt: ``"auto"`` (detected from the content) or one of ``csv, palmsens, autolab, chi,
            biologic``.
        current_unit: the current's unit (A, mA, uA/µA, nA, pA) where the file does not state
            it; a file that states another unit is refused. Unstated and not given: A is
            assumed and ``metadata["current_unit_source"]`` says so.
        scan_rate: V/s; overrides what the file states. Needed only when the file has no time
            column and neither its header nor its name gives a scan rate.
        sign_convention: the convention the file's current is written in: ``"iupac"``
            (oxidation positive), ``"us"`` (reduction positive; negated on reading), or
            ``"auto"``: what the file states, else the format's own (IUPAC for PalmSens,
            Autolab, BioLogic and plain tables; for CH Instruments see ``read_chi``).

    Returns:
        a :class:`Measurement`: time (s, from 0), applied potential (V), current (A, IUPAC),
        scan rate (V/s), 0-based cycle index, metadata saying where each came from.

    Scan rate, first that applies: the ``scan_rate`` argument; a scan-rate column or header
    line; the time column (potential travelled / time taken); the file name (see
    ``scan_rate_from_filename``). Without a time column, time is rebuilt as
    ``cumsum(|dE|) / scan_rate``. Cycles come from a cycle/scan column, else from the sweep's
    vertices (see ``split_cycles``).

    Raises:
        ValueError: one line naming the file, the line where it applies, and the problem.
    """
    path = Path(path)
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"format: must be 'auto' or one of {', '.join(FORMATS)}, got {fmt!r}")
    if sign_convention not in SIGN_CONVENTIONS:
        raise ValueError(f"sign-convention: must be one of {', '.join(SIGN_CONVENTIONS)}, got {sign_convention!r}")
    if scan_rate is not None:
        scan_rate = float(scan_rate)
        if not (math.isfinite(scan_rate) and scan_rate > 0):
            raise ValueError(f"scan-rate: must be > 0 V/s, got {scan_rate}")
    if current_unit is not None and norm_unit(current_unit) not in UNIT_SCALES["current"]:
        raise ValueError(f"current-unit: unknown current unit {current_unit!r} (allowed: {CURRENT_UNITS_TEXT})")
    if path.suffix.lower() == ".npz":
        return _read_saved(path, current_unit=current_unit, scan_rate=scan_rate, sign_convention=sign_convention)
    text, encoding = read_text(path)
    detected = detect_format(text) if fmt == "auto" else fmt
    parsed = _PARSERS[detected](path, text)
    parsed.metadata["encoding"] = encoding
    return _assemble(path, parsed, current_unit=current_unit, scan_rate=scan_rate, sign_convention=sign_convention)


def _read_saved(path: Path, *, current_unit, scan_rate, sign_convention) -> Measurement:
    """A measurement ``ecsfm import`` (``save_npz``) wrote: already in A, IUPAC; ``scan_rate``
    overrides the saved one. A unit or convention that contradicts the file is refused."""
    m = load_npz(path)
    if current_unit is not None and norm_unit(current_unit) != "a":
        raise ValueError(f"{path}: an ecsfm measurement stores current in A; current-unit {current_unit!r} "
                         "contradicts it (leave it out)")
    if sign_convention == "us":
        raise ValueError(f"{path}: an ecsfm measurement stores current in the IUPAC convention; sign-convention "
                         "'us' contradicts it (leave it out)")
    if scan_rate is not None:
        m = dataclasses.replace(m, scan_rate=scan_rate,
                                metadata={**m.metadata, "scan_rate_source": "argument (overrides the file's)"})
    return m


def _assemble(path: Path, p: Parsed, *, current_unit, scan_rate, sign_convention) -> Measurement:
    """A ``Measurement`` from parsed columns: units, scan rate, time, cycles and sign settled, each
    with where it came from in ``metadata``. Raises ValueError naming the file (and line)."""
    n = p.potential.size
    if n < 2:
        raise fail(path, f"only {n} data row{'s' if n != 1 else ''}; a voltammogram needs at least 2")
    meta: dict = {"format": p.fmt, "source_file": path.name}
    meta.update(p.metadata or {})
    meta["potential_column"] = p.potential_column
    meta["current_column"] = p.current_column
    current = _current_in_amperes(path, p, current_unit, meta)
    v = _scan_rate(path, p, scan_rate, meta)
    time = _time(path, p, v, meta)
    cycle = _cycles(path, p, meta)
    current = _to_iupac(p, current, sign_convention, meta)
    return Measurement(time=time, potential=p.potential, current=current, scan_rate=v, cycle=cycle, metadata=meta)


def _current_in_amperes(path: Path, p: Parsed, current_unit, meta: dict) -> np.ndarray:
    """The current column in A: the unit given, else the file's, else A (said in ``meta``)."""
    stated = p.current_unit
    if stated is not None and norm_unit(stated) not in UNIT_SCALES["current"]:
        raise fail(path, f"column {p.current_column!r}: unknown current unit {stated!r} (allowed: "
                         f"{CURRENT_UNITS_TEXT})")
    if current_unit is not None and stated is not None and norm_unit(current_unit) != norm_unit(stated):
        raise fail(path, f"the file states current in {stated} (column {p.current_column!r}) but --current-unit "
                         f"{current_unit!r}")
    if current_unit is not None:
        unit, unit_source = current_unit, "argument"
    elif stated is not None:
        unit, unit_source = stated, "file"
    else:
        unit, unit_source = "A", "assumed A (the file does not state it; give --current-unit)"
    current = p.current * UNIT_SCALES["current"][norm_unit(unit)]
    meta["current_unit"], meta["current_unit_source"] = unit, unit_source
    return current


def _scan_rate(path: Path, p: Parsed, scan_rate, meta: dict) -> float | None:
    """The scan rate (V/s): given, else stated in the file, else estimated from time, else from the name."""
    v, v_source = None, None
    if scan_rate is not None:
        v, v_source = scan_rate, "argument"
    elif p.scan_rate is not None:
        v, v_source = p.scan_rate, p.scan_rate_source
    elif p.time is not None:
        v = estimate_scan_rate(p.time, p.potential)
        v_source = "estimated from the time column" if v is not None else None
    if v is None:
        from_name = scan_rate_from_filename(path.name)
        if from_name is not None:
            v, v_source = from_name
    if v is not None:
        meta["scan_rate_source"] = v_source
    return v


def _time(path: Path, p: Parsed, v, meta: dict) -> np.ndarray:
    """Time (s) from 0: the file's column, else rebuilt from the potential and the scan rate."""
    if p.time is not None:
        bad = np.flatnonzero(np.diff(p.time) <= 0)
        if bad.size:
            k = int(bad[0]) + 1
            raise fail(path, f"time is not increasing ({p.time[k - 1]:.6g} s, then {p.time[k]:.6g} s)",
                       int(p.lines[k]))
        time = p.time - p.time[0]
        meta["time_source"] = f"column {p.time_column!r}"
        meta["time_offset_s"] = float(p.time[0])
    else:
        if v is None:
            raise fail(path, "no time column and no scan rate: the header states none and the file name gives "
                             "none (e.g. '..._100mV...' or '..._1.00E-01...'); pass scan_rate (V/s) / --scan-rate")
        time, k = rebuild_time(p.potential, v)
        if k is not None:
            raise fail(path, f"potential {p.potential[k]:.6g} V repeats the row before: time cannot be rebuilt as "
                             "|dE| / scan rate for a file without a time column", int(p.lines[k]))
        meta["time_source"] = "rebuilt as cumsum(|dE|) / scan rate"
        meta["time_offset_s"] = 0.0
    return time


def _cycles(path: Path, p: Parsed, meta: dict) -> np.ndarray:
    """Cycle index (0-based) of every row: the file's column, else split at the potential's vertices."""
    if p.cycle is not None:
        down = np.flatnonzero(np.diff(p.cycle) < 0)
        if down.size:
            k = int(down[0]) + 1
            raise fail(path, f"cycle number decreases ({p.cycle[k - 1]:g}, then {p.cycle[k]:g}) in column "
                             f"{p.cycle_column!r}", int(p.lines[k]))
        if np.any(p.cycle != np.round(p.cycle)):
            raise fail(path, f"column {p.cycle_column!r} holds non-integer cycle numbers")
        cycle = np.searchsorted(np.unique(p.cycle), p.cycle).astype(np.int64)
        meta["cycle_source"] = f"column {p.cycle_column!r}"
    else:
        cycle = split_cycles(p.potential)
        meta["cycle_source"] = "potential vertices"
    return cycle


def _to_iupac(p: Parsed, current: np.ndarray, sign_convention, meta: dict) -> np.ndarray:
    """The current in the IUPAC convention (oxidation positive): the convention given, stated or
    detected from the loop's orientation; a warning in ``meta`` when the result looks inverted."""
    if sign_convention != "auto":
        convention, c_source = sign_convention, "argument"
    elif p.convention is not None:
        convention, c_source = p.convention, "stated in the file"
    else:
        convention, c_source = p.default_convention, p.default_note
        if p.fmt == "chi":
            r = loop_orientation(p.potential, current)
            if r is not None and abs(r) >= LOOP_MIN:
                convention = "iupac" if r > 0 else "us"
                c_source = f"detected from the loop orientation ({r:+.3f}; positive-going sweep above = IUPAC)"
    if convention == "us":
        current = -current
    meta["sign_convention_in_file"], meta["sign_convention_source"] = convention, c_source
    r = loop_orientation(p.potential, current)
    if r is not None:
        meta["loop_orientation"] = r
        if r <= -LOOP_MIN:
            meta["warning"] = ("after conversion the positive-going sweep's current lies below the negative-going "
                               "one's, as in the US convention: check the sign convention")
    return current


def read_csv(path, *, current_unit=None, scan_rate=None, sign_convention="auto") -> Measurement:
    """A plain CSV/TSV/semicolon/whitespace table (see ``ecsfm.io._csv``); arguments as :func:`read`."""
    return read(path, fmt="csv", current_unit=current_unit, scan_rate=scan_rate, sign_convention=sign_convention)


def read_palmsens(path, *, current_unit=None, scan_rate=None, sign_convention="auto") -> Measurement:
    """A PalmSens PSTrace CSV export (UTF-16, units line ``V,µA``); arguments as :func:`read`."""
    return read(path, fmt="palmsens", current_unit=current_unit, scan_rate=scan_rate,
                sign_convention=sign_convention)


def read_autolab(path, *, current_unit=None, scan_rate=None, sign_convention="auto") -> Measurement:
    """A Metrohm Autolab NOVA text export; arguments as :func:`read`."""
    return read(path, fmt="autolab", current_unit=current_unit, scan_rate=scan_rate, sign_convention=sign_convention)


def read_chi(path, *, current_unit=None, scan_rate=None, sign_convention="auto") -> Measurement:
    """A CH Instruments text export; arguments as :func:`read`.

    With ``sign_convention="auto"`` the convention is read from the loop orientation where the
    trace has a vertex and a loop wide enough to judge, else US (cathodic positive) is assumed,
    as many CHI software versions write it; ``metadata["sign_convention_source"]`` says which.
    """
    return read(path, fmt="chi", current_unit=current_unit, scan_rate=scan_rate, sign_convention=sign_convention)


def read_biologic(path, *, current_unit=None, scan_rate=None, sign_convention="auto") -> Measurement:
    """A BioLogic EC-Lab ``.mpt`` text export; arguments as :func:`read`."""
    return read(path, fmt="biologic", current_unit=current_unit, scan_rate=scan_rate,
                sign_convention=sign_convention)
