"""PalmSens PSTrace CSV export.

UTF-16 text with a byte-order mark: a header block (``Date and time:,...``, ``Notes:`` and its
text, the curve title, ``Date and time measurement:,...``), then a line of units only
(``V,µA``: potential in V, current in the unit written, often µA), then the rows; no time column.
A file holding several curves side by side (``V,µA,V,µA``) gives the first. PalmSens writes
oxidation current positive (IUPAC). The ``Notes`` text is kept in the metadata but never read
for a scan rate: it is free text, often left over from an earlier measurement.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._text import (
    UNIT_SCALES,
    Parsed,
    fail,
    lines_of,
    norm_unit,
    parsed_from_block,
    read_block,
    split_cells,
)

_KEYS = {"date and time": "date_saved", "date and time measurement": "date_measured"}


def _named(cells: list[str]) -> list[str] | None:
    """A units-only header (``V``, ``µA``, ``s``) rewritten with names; None if it is not one."""
    out, seen = [], set()
    for cell in cells:
        u = norm_unit(cell)
        role = next((q for q in ("potential", "current", "time") if u in UNIT_SCALES[q]), None)
        if role is None:
            return None
        out.append(f"{role if role not in seen else 'other ' + role} ({cell})")
        seen.add(role)
    return out


def parse_palmsens(path: Path, text: str) -> Parsed:
    lines = lines_of(text)
    block = read_block(path, lines, allow_short_rows=True)
    if block.header is None:
        raise fail(path, "no column line (such as 'V,µA') above the data: not a PSTrace export")
    curves = sum(norm_unit(c) in UNIT_SCALES["potential"] for c in block.header)
    named = _named(block.header)
    if named is not None:
        block.header = named
    parsed = parsed_from_block(path, block, "palmsens", skip_empty_rows=True)
    meta = {"instrument": "PalmSens (PSTrace export)"}
    if curves > 1:
        meta["curves_in_file"] = curves
    pre = block.preamble
    for k, line in enumerate(pre):
        cells = split_cells(line, ",")
        key = cells[0].rstrip(":").strip().lower() if cells else ""
        if key in _KEYS and len(cells) > 1:
            meta[_KEYS[key]] = cells[1]
        elif key == "notes" and k + 1 < len(pre) and pre[k + 1].strip() and ":" not in pre[k + 1]:
            meta["notes"] = pre[k + 1].strip()
        elif re.match(r"^[A-Za-z ]+:\s+\S", line.strip()) and "title" not in meta:
            meta["title"] = line.strip()
            meta["technique"] = line.split(":", 1)[0].strip()
    parsed.metadata.update(meta)
    parsed.default_note = "PalmSens writes oxidation current positive (IUPAC)"
    return parsed
