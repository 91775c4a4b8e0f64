"""Metrohm Autolab NOVA text export.

Tab- (or comma/semicolon-) separated, one header line of ``name (unit)`` columns:
``Potential applied (V)``, ``Time (s)``, ``WE(1).Current (A)``, ``WE(1).Potential (V)``,
``Scan``, ``Index``, and procedure signals such as ``Column 5 (V/s)`` (the scan rate) whose value
is written in the first row only. Rows whose leading cells are empty are normal, and NOVA pads
the end with rows that hold only a scan number: those are skipped. The applied potential is used
(the measured ``WE(1).Potential`` is kept out); the time column's clock offset is moved to the
metadata. NOVA writes oxidation current positive (IUPAC).
"""

from __future__ import annotations

import re
from pathlib import Path

from ._text import Parsed, fail, lines_of, parsed_from_block, read_block, split_name_unit, to_number


def parse_autolab(path: Path, text: str) -> Parsed:
    lines = lines_of(text)
    block = read_block(path, lines, allow_short_rows=True)
    if block.header is None:
        raise fail(path, "no header line of column names above the data: not a NOVA export")
    parsed = parsed_from_block(path, block, "autolab", skip_empty_rows=True)
    meta = {"instrument": "Metrohm Autolab (NOVA export)"}
    for j, cell in enumerate(block.header):
        name, _ = split_name_unit(cell)
        if re.match(r"^column \d+$", name):
            first = next((row[j] for row in block.rows if row[j]), None)
            if first is not None:
                meta[cell.strip()] = to_number(first, block.decimal_comma)
    parsed.metadata.update(meta)
    parsed.default_note = "NOVA writes oxidation current positive (IUPAC)"
    return parsed
