"""Text decoding, delimited-table parsing and column names with units, shared by every reader.

Line numbers in messages are 1-based lines of the file as a text editor shows them.
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: unit (lower case, micro written "u") -> factor to the SI unit of the quantity
UNIT_SCALES: dict[str, dict[str, float]] = {
    "potential": {"v": 1.0, "mv": 1e-3},
    "time": {"s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "h": 3600.0},
    "current": {"a": 1.0, "ma": 1e-3, "ua": 1e-6, "na": 1e-9, "pa": 1e-12},
    "scan_rate": {"v/s": 1.0, "mv/s": 1e-3},
}
CURRENT_UNITS_TEXT = "A, mA, uA (µA), nA, pA"
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
_NONFINITE = re.compile(r"^[-+]?(nan|inf|infinity)$", re.IGNORECASE)


def fail(path: Path, problem: str, line: int | None = None) -> ValueError:
    """The one-line error every reader raises: ``FILE[: line N]: problem``."""
    where = f"{path}: line {line}: " if line is not None else f"{path}: "
    return ValueError(where + " ".join(problem.split()))


def norm_unit(unit: str) -> str:
    """Lower case, micro sign / Greek mu written as ``u``, spaces removed: ``"µA"`` -> ``"ua"``."""
    return unit.replace("\u00b5", "u").replace("\u03bc", "u").replace(" ", "").lower()


def unit_scale(quantity: str, unit: str) -> float | None:
    return UNIT_SCALES[quantity].get(norm_unit(unit))


# --------------------------------------------------------------------------------------------
# decoding


def decode(path: Path, data: bytes) -> tuple[str, str]:
    """``(text, encoding)`` of a file's bytes: UTF-16/UTF-8 by byte-order mark, else UTF-8, else
    Windows-1252 (the encoding of many Windows instrument exports) when that gives printable
    text. Binary or undecodable bytes raise ValueError naming the line and byte."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as err:
            raise fail(path, f"not valid UTF-16 text despite its byte-order mark ({err.reason} at byte "
                             f"{err.start})") from None
    if data.startswith(b"\xef\xbb\xbf"):
        data, bom = data[3:], True
    else:
        bom = False
    if b"\x00" in data:
        # UTF-16 without a byte-order mark puts a NUL beside every ASCII character.
        even, odd = data[0::2].count(0), data[1::2].count(0)
        if not bom and len(data) % 2 == 0 and max(even, odd) > 0.4 * len(data) / 2 and min(even, odd) == 0:
            enc = "utf-16-le" if odd else "utf-16-be"
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError:
                pass
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise fail(path, "binary data (NUL byte), not a text export; export the data as text/CSV", line)
    try:
        return data.decode("utf-8"), "utf-8-sig" if bom else "utf-8"
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        bad = data[err.start]
        utf8_problem = f"not UTF-8 or UTF-16 text (byte 0x{bad:02x})"
    if not bom:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            text = None
        if text is not None and not any(unicodedata.category(c) == "Cc" and c not in "\t\r\n" for c in text):
            return text, "cp1252"
    raise fail(path, utf8_problem, line)


def read_text(path: Path) -> tuple[str, str]:
    """Read and decode a file; a missing or unreadable file raises ValueError."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise fail(path, "no such file") from None
    except IsADirectoryError:
        raise fail(path, "is a directory, not a file") from None
    except OSError as err:
        raise fail(path, f"cannot read ({err.strerror})") from None
    return decode(path, data)


def lines_of(text: str) -> list[str]:
    """The text's lines with byte-order marks removed (PSTrace puts a stray one on the last line)."""
    return [line.replace("\ufeff", "") for line in text.splitlines()]


# --------------------------------------------------------------------------------------------
# cells and numbers


def split_cells(line: str, delim: str | None) -> list[str]:
    """Cells of one line, stripped; ``delim=None`` splits on runs of whitespace."""
    if delim is None:
        return line.split()
    return [c.strip() for c in next(csv.reader([line], delimiter=delim, skipinitialspace=True), [])]


def is_number(cell: str, decimal_comma: bool) -> bool:
    cell = cell.strip()
    if decimal_comma:
        cell = cell.replace(",", ".")
    return bool(_NUMBER.match(cell) or _NONFINITE.match(cell))


def to_number(cell: str, decimal_comma: bool) -> float:
    """A cell as float (NaN/Inf spelled out are returned as such; the caller rejects them)."""
    c = cell.strip()
    if decimal_comma:
        c = c.replace(",", ".")
    if _NUMBER.match(c) or _NONFINITE.match(c):
        return float(c)
    raise ValueError(cell)


def numeric_cells(line: str, delim: str | None, decimal_comma: bool) -> list[str] | None:
    """The cells if every non-empty cell is a number and at least two cells are non-empty, else None."""
    cells = split_cells(line, delim)
    filled = [c for c in cells if c]
    if len(filled) < 2 or not all(is_number(c, decimal_comma) for c in filled):
        return None
    return cells


def sniff_delimiter(line: str) -> tuple[str | None, bool] | None:
    """``(delimiter, decimal_comma)`` under which ``line`` is a row of at least two numbers."""
    for delim, comma in (("\t", False), (";", False), (",", False), (None, False), ("\t", True), (";", True),
                         (None, True)):
        if numeric_cells(line, delim, comma) is not None:
            return delim, comma
    return None


def trim_trailing(cells: list[str]) -> list[str]:
    """Drop empty cells after the last filled one (a trailing delimiter on every line is common)."""
    end = len(cells)
    while end and not cells[end - 1]:
        end -= 1
    return cells[:end]


# --------------------------------------------------------------------------------------------
# the data block


@dataclass
class Block:
    """A rectangular block of cells: ``header`` names (or None), ``rows`` of str cells, the
    1-based file ``lines`` of the rows, and how the numbers are written."""

    header: list[str] | None
    header_line: int | None
    rows: list[list[str]]
    lines: list[int]
    delim: str | None
    decimal_comma: bool
    preamble: list[str]


def first_numeric_line(lines: list[str], start: int = 0, skip=None) -> tuple[int, str | None, bool] | None:
    for k in range(start, len(lines)):
        line = lines[k]
        if not line.strip() or (skip is not None and skip(line)):
            continue
        sniff = sniff_delimiter(line)
        if sniff is not None:
            return k, sniff[0], sniff[1]
    return None


def read_block(path: Path, lines: list[str], *, start: int = 0, header_index: int | None = None,
               skip=None, allow_short_rows: bool = False) -> Block:
    """The numeric table of a text file: the first line (from ``start``) that is a row of numbers
    begins it; the nearest non-empty line above it with as many cells is its header (when
    ``header_index`` is not given). Every later non-blank line (except those ``skip(line)``
    accepts) must be a row of the same width; ragged or non-numeric rows raise ValueError.
    ``allow_short_rows`` accepts rows with fewer cells than the header (missing cells empty)."""
    found = first_numeric_line(lines, start, skip)
    if found is None:
        if not any(line.strip() for line in lines):
            raise fail(path, "empty file: no numeric data rows")
        raise fail(path, "no numeric data rows found (expected columns of numbers separated by comma, "
                         "tab, semicolon or spaces)")
    first, delim, comma = found
    width = len(trim_trailing(split_cells(lines[first], delim)))
    header, header_line = None, None
    if header_index is None:
        for k in range(first - 1, start - 1, -1):
            if lines[k].strip() and not (skip is not None and skip(lines[k])):
                cells = trim_trailing(split_cells(lines[k], delim))
                if len(cells) == width or (allow_short_rows and len(cells) >= width):
                    header_index = k
                break
    if header_index is not None:
        header = trim_trailing(split_cells(lines[header_index], delim))
        header_line = header_index + 1
        if len(header) < width:
            raise fail(path, f"{width} data columns but the header names {len(header)}: "
                             f"{header!r}", first + 1)
        width = len(header)
    preamble = lines[: header_index if header_index is not None else first]
    rows, numbers = [], []
    for k in range(first, len(lines)):
        line = lines[k]
        if not line.strip() or (skip is not None and skip(line)):
            continue
        cells = trim_trailing(split_cells(line, delim))
        if len(cells) > width or (len(cells) < width and not allow_short_rows):
            raise fail(path, f"ragged row: {len(cells)} columns, expected {width}", k + 1)
        for c in cells:
            if c and not is_number(c, comma):
                raise fail(path, f"not a number: {c[:40]!r}", k + 1)
        rows.append(cells + [""] * (width - len(cells)))
        numbers.append(k + 1)
    return Block(header, header_line, rows, numbers, delim, comma, preamble)


def column(path: Path, block: Block, j: int, name: str, *, keep: np.ndarray | None = None) -> np.ndarray:
    """Column ``j`` of the block as float64; an empty cell, NaN or Inf raises ValueError naming
    the line. ``keep`` (bool per row) limits the rows read."""
    out = []
    for r, (cells, line) in enumerate(zip(block.rows, block.lines)):
        if keep is not None and not keep[r]:
            continue
        cell = cells[j]
        if not cell:
            raise fail(path, f"empty value in column {name!r}", line)
        v = to_number(cell, block.decimal_comma)
        if not math.isfinite(v):
            raise fail(path, f"NaN or Inf in column {name!r} ({cell})", line)
        out.append(v)
    return np.asarray(out, np.float64)


def filled(block: Block, cols: list[int]) -> np.ndarray:
    """Per row: is any of the columns ``cols`` non-empty?"""
    return np.array([any(cells[j] for j in cols) for cells in block.rows], bool)


# --------------------------------------------------------------------------------------------
# column names


def split_name_unit(cell: str) -> tuple[str, str | None]:
    """``"Time (s)"``, ``"time/s"``, ``"Potential, V"``, ``"I [mA]"``, ``"current_uA"`` ->
    ``(name, unit)`` with the name lower-cased; unit None when the cell states none."""
    text = cell.strip().strip('"').strip("'").strip()
    m = re.match(r"^(.*?)\s*[(\[]\s*([^()\[\]]+?)\s*[)\]]\s*$", text)
    if m and m.group(1):
        return m.group(1).strip().lower(), m.group(2).strip()
    m = re.match(r"^(.*?[^\s/])\s*/\s*([^/\s][^/]*(?:/[^/]+)?)$", text)
    if m:
        return m.group(1).strip().lower(), m.group(2).strip()
    m = re.match(r"^(.*?[^\s,]),\s*(\S+)$", text)
    if m:
        return m.group(1).strip().lower(), m.group(2).strip()
    m = re.match(r"^(.*?)[_ ]([A-Za-z\u00b5\u03bc]+(?:/s)?)$", text)
    if m and m.group(1) and any(unit_scale(q, m.group(2)) is not None for q in UNIT_SCALES):
        return m.group(1).strip().lower(), m.group(2)
    return text.lower(), None


_POTENTIAL_EXACT = {"e", "ewe", "<ewe>", "e_we", "e we", "potential", "voltage", "v", "u", "e applied", "potential applied",
                    "applied potential", "e_applied", "set potential", "e set", "we potential", "working potential"}
_CURRENT_EXACT = {"i", "<i>", "current", "cur", "i_we", "iwe", "i we", "we current"}
_TIME_EXACT = {"t", "time", "elapsed time", "time elapsed", "corrected time", "elapsed_time"}


def classify(name: str, unit: str | None) -> tuple[str, int] | None:
    """``(role, rank)`` of a column from its name and unit; roles ``time, potential, current,
    cycle, scan_rate``; a lower rank is preferred where several columns could fill a role."""
    u = norm_unit(unit) if unit else None
    words = name.replace("_", " ")
    if "rate" in words and any(w in words for w in ("scan", "sweep")) or u in ("v/s", "mv/s"):
        return "scan_rate", 0
    if "half" not in words and ("cycle" in words or name in ("scan", "scan number", "sweep", "sweep number")):
        return "cycle", 0 if "cycle" in words else 1
    if name in _TIME_EXACT or words.startswith("time"):
        return "time", 0
    if "density" in words:
        return None
    if name in _CURRENT_EXACT:
        return "current", 0
    if "current" in words:
        return "current", 1
    if "ece" in words.split("-") or words.startswith("ece") or "counter" in words:
        return None
    if "applied" in words or words.startswith("set "):
        return "potential", 0
    if name in _POTENTIAL_EXACT:
        return "potential", 1
    if "potential" in words or "voltage" in words:
        return "potential", 2
    if name in ("control", "control voltage"):
        return "potential", 3
    return None


@dataclass
class Columns:
    """Chosen column index and its (name as written, unit) for each role found in a header."""

    found: dict[str, tuple[int, str, str | None]]

    def get(self, role):
        return self.found.get(role)


def map_columns(header: list[str]) -> Columns:
    best: dict[str, tuple[int, int, str, str | None]] = {}
    for j, cell in enumerate(header):
        name, unit = split_name_unit(cell)
        hit = classify(name, unit)
        if hit is None:
            continue
        role, rank = hit
        if role not in best or rank < best[role][0]:
            best[role] = (rank, j, cell.strip().strip('"'), unit)
    return Columns({role: (j, cell, unit) for role, (_, j, cell, unit) in best.items()})


def parse_float(text: str) -> float | None:
    """A number written in a header value (decimal comma allowed), or None."""
    m = re.search(r"[-+]?(\d+[.,]?\d*|[.,]\d+)([eE][-+]?\d+)?", text)
    if not m:
        return None
    try:
        v = float(m.group(0).replace(",", "."))
    except ValueError:
        return None
    return v if math.isfinite(v) else None


# --------------------------------------------------------------------------------------------
# what a format parser hands to the common assembly


@dataclass
class Parsed:
    """Columns as a file writes them, before units, time, cycles and sign are settled.

    ``potential`` is in V; ``current`` in ``current_unit`` (None: the file does not say);
    ``time`` in s or None; ``cycle`` the file's cycle/scan numbers or None; ``lines`` the
    1-based file line of each row. ``scan_rate``/``scan_rate_source``: what the file states,
    V/s. ``convention``: the current sign convention the file states ("iupac"/"us") or None;
    ``default_convention`` and ``default_note``: what the format writes when it says nothing.
    """

    fmt: str
    potential: np.ndarray
    current: np.ndarray
    current_unit: str | None
    lines: np.ndarray
    potential_column: str
    current_column: str
    time: np.ndarray | None = None
    time_column: str | None = None
    cycle: np.ndarray | None = None
    cycle_column: str | None = None
    scan_rate: float | None = None
    scan_rate_source: str | None = None
    convention: str | None = None
    default_convention: str = "iupac"
    default_note: str = ""
    metadata: dict | None = None


def parsed_from_block(path: Path, block: Block, fmt: str, *, skip_empty_rows: bool = False,
                      potential_unit_default: str = "V") -> Parsed:
    """Pick the time, potential, current, cycle and scan-rate columns of a block by their header
    names (or by position in a headerless block: ``E, I`` or ``t, E, I``) and read them.

    ``skip_empty_rows``: rows where all chosen columns are empty are dropped (NOVA writes such
    placeholder rows); otherwise an empty cell in a chosen column is an error.
    """
    width = len(block.rows[0])
    if block.header is None:
        if width == 2:
            found = {"potential": (0, "column 1", None), "current": (1, "column 2", None)}
        elif width == 3:
            found = {"time": (0, "column 1", None), "potential": (1, "column 2", None),
                     "current": (2, "column 3", None)}
        else:
            raise fail(path, f"no header line and {width} columns: a headerless file must have 2 (potential, "
                             "current) or 3 (time, potential, current); add a header naming the columns",
                       block.lines[0])
    else:
        found = map_columns(block.header).found
        missing = [r for r in ("potential", "current") if r not in found]
        if missing:
            raise fail(path, f"the header {block.header!r} names no {' and no '.join(missing)} column "
                             "(e.g. 'E (V)', 'current/uA')", block.header_line)
    used = [found[r][0] for r in ("time", "potential", "current") if r in found]
    keep = filled(block, used) if skip_empty_rows else None
    if keep is not None and not keep.any():
        raise fail(path, "no numeric data rows in the potential and current columns")

    def col(role):
        j, name, _ = found[role]
        return column(path, block, j, name, keep=keep)

    lines = np.asarray(block.lines, np.int64)[keep] if keep is not None else np.asarray(block.lines, np.int64)
    out = Parsed(fmt=fmt, potential=col("potential"), current=col("current"), current_unit=found["current"][2],
                 lines=lines, potential_column=found["potential"][1], current_column=found["current"][1],
                 metadata={})
    punit = found["potential"][2] or potential_unit_default
    scale = unit_scale("potential", punit)
    if scale is None:
        raise fail(path, f"column {found['potential'][1]!r}: unknown potential unit {punit!r} (allowed: V, mV)",
                   block.header_line)
    out.potential = out.potential * scale
    if "time" in found:
        tunit = found["time"][2] or "s"
        tscale = unit_scale("time", tunit)
        if tscale is None:
            raise fail(path, f"column {found['time'][1]!r}: unknown time unit {tunit!r} (allowed: s, ms, min, h)",
                       block.header_line)
        out.time, out.time_column = col("time") * tscale, found["time"][1]
    if "cycle" in found:
        # A cycle column counts only where every kept row has a value in it.
        j, name, _ = found["cycle"]
        kept = keep if keep is not None else np.ones(len(block.rows), bool)
        if all(cells[j] for cells, k in zip(block.rows, kept) if k):
            out.cycle, out.cycle_column = col("cycle"), name
    if "scan_rate" in found:
        j, name, unit = found["scan_rate"]
        vals = [to_number(cells[j], block.decimal_comma) for cells in block.rows if cells[j]]
        vals = [v for v in vals if math.isfinite(v) and v > 0]
        sscale = unit_scale("scan_rate", unit or "V/s")
        if vals and sscale is not None:
            out.scan_rate, out.scan_rate_source = vals[0] * sscale, f"column {name!r}"
    return out
