"""ecsfm.io: measured voltammograms from instrument exports, in SI units and the IUPAC sign.

>>> from ecsfm import io
>>> m = io.read("RuHex_GCE_1.00E-01.csv")          # format, units, scan rate detected
>>> m.time, m.potential, m.current, m.scan_rate     # s (from 0), V, A (oxidation +), V/s
>>> io.save_npz(m.select_cycle(0), "measurement.npz")

Formats: plain CSV/TSV tables, PalmSens PSTrace CSV, Metrohm Autolab NOVA text, CH Instruments
text, BioLogic EC-Lab ``.mpt``. See :func:`read` for how units, time, scan rate, cycles and the
sign convention are settled, and ``metadata`` of the result for where each came from.
"""

from ._derive import loop_orientation, scan_rate_from_filename, split_cycles, turning_points
from ._measurement import Measurement
from ._npz import NPZ_SCHEMA_VERSION, load_npz, save_npz
from ._read import (
    FORMATS,
    SIGN_CONVENTIONS,
    detect_format,
    read,
    read_autolab,
    read_biologic,
    read_chi,
    read_csv,
    read_palmsens,
)

__all__ = [
    "FORMATS",
    "NPZ_SCHEMA_VERSION",
    "SIGN_CONVENTIONS",
    "Measurement",
    "detect_format",
    "load_npz",
    "loop_orientation",
    "read",
    "read_autolab",
    "read_biologic",
    "read_chi",
    "read_csv",
    "read_palmsens",
    "save_npz",
    "scan_rate_from_filename",
    "split_cycles",
    "turning_points",
]
