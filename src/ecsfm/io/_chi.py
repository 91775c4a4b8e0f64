"""CH Instruments text export.

A header block (date, technique, ``Instrument Model: CHI660E``, then ``Init E (V) = ...``,
``High E (V)``, ``Low E (V)``, ``Init P/N``, ``Scan Rate (V/s) = ...``, ``Segment``,
``Sample Interval (V)``, ``Quiet Time (sec)``, ``Sensitivity (A/V)``, sometimes ``Results:`` with
peak tables), then ``Potential/V, Current/A`` (maybe ``, Charge/C``), a blank line and the rows,
possibly split by ``Segment N:`` lines. No time column: time is rebuilt from the scan rate.

Sign convention: the export does not state it, and many CHI software versions write cathodic
current as positive (the US convention). With ``sign_convention="auto"`` the reader looks at the
loop: the positive-going sweep's current lies above the negative-going one's in the IUPAC
convention (see ``loop_orientation``); where the trace has no closed loop to judge (a single
sweep), US is assumed and the metadata says so. Pass ``sign_convention="iupac"`` or ``"us"`` to
declare it.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._text import Parsed, fail, lines_of, parse_float, parsed_from_block, read_block

COLUMN_LINE = re.compile(r"^\s*(potential|time)\s*/\s*\w+\s*,.*\bcurrent\s*/\s*\w+", re.IGNORECASE)
SIGNATURE = re.compile(r"^\s*(init e \(v\)|scan rate \(v/s\)\s*=|sample interval \(v\)|quiet time \(sec\)|"
                       r"instrument model\s*:\s*chi)", re.IGNORECASE)
_SEGMENT = re.compile(r"^\s*segment\s*\d+\s*:?\s*$", re.IGNORECASE)
_KEYS = {"init e (v)": "init_e_V", "high e (v)": "high_e_V", "low e (v)": "low_e_V", "final e (v)": "final_e_V",
         "init p/n": "init_p_n", "scan rate (v/s)": "scan_rate_V_per_s", "segment": "segments",
         "sample interval (v)": "sample_interval_V", "quiet time (sec)": "quiet_time_s",
         "sensitivity (a/v)": "sensitivity_A_per_V"}


def parse_chi(path: Path, text: str) -> Parsed:
    lines = lines_of(text)
    h = next((k for k, line in enumerate(lines) if COLUMN_LINE.match(line)), None)
    if h is None:
        raise fail(path, "no 'Potential/V, Current/A' column line: not a CH Instruments text export")
    block = read_block(path, lines, start=h + 1, header_index=h, skip=_SEGMENT.match)
    parsed = parsed_from_block(path, block, "chi")
    meta: dict = {"instrument": "CH Instruments"}
    nonblank = [line.strip() for line in lines[:h] if line.strip()]
    if nonblank:
        meta["date"] = nonblank[0]
    if len(nonblank) > 1 and "=" not in nonblank[1] and ":" not in nonblank[1]:
        meta["technique"] = nonblank[1]
    for line in lines[:h]:
        s = line.strip()
        if s.lower().startswith("results"):
            break
        m = re.match(r"^instrument model\s*:\s*(.+)$", s, re.IGNORECASE)
        if m:
            meta["instrument"] = f"CH Instruments {m.group(1).strip()}"
        m = re.match(r"^tech(?:nique)?\s*:\s*(.+)$", s, re.IGNORECASE)
        if m:
            meta["technique"] = m.group(1).strip()
        m = re.match(r"^([^=]+?)\s*=\s*(.+?)\s*$", s)
        if m and m.group(1).lower() in _KEYS:
            key, raw = _KEYS[m.group(1).lower()], m.group(2)
            v = parse_float(raw)
            meta[key] = v if (v is not None and key != "init_p_n") else raw
    v = meta.get("scan_rate_V_per_s")
    if isinstance(v, float) and v > 0:
        parsed.scan_rate, parsed.scan_rate_source = v, "header 'Scan Rate (V/s)'"
    parsed.metadata.update(meta)
    parsed.default_convention = "us"
    parsed.default_note = ("assumed US (cathodic current positive, as many CHI software versions write it; "
                           "the file does not say and has no loop to judge)")
    return parsed
