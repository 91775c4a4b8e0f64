"""BioLogic EC-Lab text export (``.mpt``).

``EC-Lab ASCII FILE``, ``Nb header lines : N``, a settings block, then (line N) tab-separated
column names such as ``mode``, ``ox/red``, ``time/s``, ``control/V``, ``Ewe/V``, ``<I>/mA`` or
``I/mA``, ``cycle number``, and the rows (a decimal comma where Windows uses one). The measured
``Ewe/V`` is used for the potential: EC-Lab's ``control/V`` can be relative to the open-circuit
potential. Settings read: ``dE/dt`` and ``dE/dt unit`` (scan rate), ``Electrode surface area``,
``Reference electrode``, ``Device``. EC-Lab writes oxidation current positive (IUPAC).
"""

from __future__ import annotations

import re
from pathlib import Path

from ._text import Parsed, fail, lines_of, parse_float, parsed_from_block, read_block, unit_scale


def parse_biologic(path: Path, text: str) -> Parsed:
    lines = lines_of(text)
    header_index = None
    if lines and lines[0].strip().startswith("EC-Lab ASCII FILE"):
        m = re.match(r"^\s*Nb header lines\s*:\s*(\d+)\s*$", lines[1]) if len(lines) > 1 else None
        if not m:
            raise fail(path, "expected 'Nb header lines : N' after 'EC-Lab ASCII FILE'", 2)
        n = int(m.group(1))
        if not 3 <= n <= len(lines):
            raise fail(path, f"'Nb header lines : {n}' does not fit a file of {len(lines)} lines", 2)
        header_index = n - 1
    block = read_block(path, lines, start=header_index + 1 if header_index is not None else 0,
                       header_index=header_index)
    if block.header is None or (header_index is None and not any(
            c.startswith(("Ewe/", "<Ewe>/", "control/", "<I>/", "I/m", "I/µ")) for c in block.header)):
        raise fail(path, "not an EC-Lab export: no 'EC-Lab ASCII FILE' line and no Ewe/V or <I>/mA column")
    parsed = parsed_from_block(path, block, "biologic")
    meta: dict = {"instrument": "BioLogic (EC-Lab export)"}
    rate = unit = None
    pre = block.preamble
    nonblank = [s.strip() for s in pre[2:] if s.strip()]
    if nonblank:
        meta["technique"] = nonblank[0]
    for s in (line.strip() for line in pre):
        key, _, value = s.partition(" : ")
        key, value = key.strip().lower(), value.strip()
        if key == "electrode surface area" and parse_float(value) is not None:
            meta["area_cm2"] = parse_float(value)
        elif key == "reference electrode" and value:
            meta["reference_electrode"] = value
        elif key == "device" and value:
            meta["instrument"] = f"BioLogic {value}"
        elif key == "acquisition started on" and value:
            meta["date"] = value
        m = re.match(r"^dE/dt unit\s+(\S+)\s*$", s)
        if m and unit is None:
            unit = m.group(1)
        m = re.match(r"^dE/dt\s+([-+\d.,eE]+)\s*$", s)
        if m and rate is None:
            rate = parse_float(m.group(1))
    scale = unit_scale("scan_rate", unit or "")
    if parsed.scan_rate is None and rate and rate > 0 and scale is not None:
        parsed.scan_rate, parsed.scan_rate_source = rate * scale, "header 'dE/dt'"
    parsed.metadata.update(meta)
    parsed.default_note = "EC-Lab writes oxidation current positive (IUPAC)"
    return parsed
