"""Plain delimited tables: CSV, TSV, semicolon or whitespace separated, with or without a header.

A header names the columns with units (``time/s``, ``E (V)``, ``current/uA``, ``Potential, V``,
``current_A``...); without one, 2 columns are read as ``E (V), I`` and 3 as ``t (s), E (V), I``.
Lines starting with ``#`` are comments wherever they stand (``ecsfm simulate`` writes its
settings between the column names and the data). Comment lines above the table may state the scan rate (``scan rate (V/s) = 0.1``,
``# scan rate: 100 mV/s``) and the sign convention (a line mentioning ``IUPAC``, or
``cathodic positive`` / ``US convention``); nothing stated means IUPAC.
"""

from __future__ import annotations

import re
from pathlib import Path

from ._text import Parsed, lines_of, parse_float, parsed_from_block, read_block, unit_scale

_SCAN_RATE = re.compile(r"^(?:scan|sweep)[ _]?rate\s*(?:[(\[]\s*([^)\]]+?)\s*[)\]])?\s*[:=,]\s*(\S+)\s*([mM]?V/s)?",
                        re.IGNORECASE)


def scan_rate_in_lines(lines: list[str]) -> tuple[float, str] | None:
    """A ``scan rate [(unit)] = value [unit]`` line (V/s unless mV/s is written), as
    ``(V/s, source)``."""
    for k, raw in enumerate(lines):
        line = raw.strip().lstrip("#%/;! ").strip()
        m = _SCAN_RATE.match(line)
        if not m:
            continue
        v = parse_float(m.group(2))
        scale = unit_scale("scan_rate", m.group(1) or m.group(3) or "V/s")
        if v is not None and v > 0 and scale is not None:
            return v * scale, f"header line {k + 1}"
    return None


def convention_in_lines(lines: list[str]) -> str | None:
    """The sign convention a comment line states, or None."""
    for raw in lines:
        low = raw.lower()
        if re.search(r"\biupac\b", low) or re.search(r"\b(anodic|oxidation) (current )?positive", low):
            return "iupac"
        if re.search(r"\bus convention\b|\bamerican convention\b|\b(cathodic|reduction) (current )?positive", low):
            return "us"
    return None


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse_csv(path: Path, text: str) -> Parsed:
    lines = lines_of(text)
    # Rows shorter than the header are read with empty cells (a column some exporters fill in the
    # first row only, such as a procedure's scan rate, then end each row with a bare delimiter);
    # an empty cell in the time, potential or current column is still an error naming its line.
    block = read_block(path, lines, allow_short_rows=True, skip=_is_comment)
    parsed = parsed_from_block(path, block, "csv")
    if parsed.scan_rate is None:
        found = scan_rate_in_lines(block.preamble)
        if found:
            parsed.scan_rate, parsed.scan_rate_source = found
    parsed.convention = convention_in_lines(block.preamble)
    parsed.default_note = "assumed IUPAC (a plain table that does not state its convention)"
    parsed.metadata["instrument"] = "unknown (plain table)"
    return parsed
