"""ecsfm.sim: a fast, differentiable simulator of voltammetry.

Semi-infinite diffusion to a planar electrode, a disc (edge included), a sphere or hemisphere, or
finite diffusion in a thin layer or to a rotating disc (``Cell(geometry=)``),
of independent redox couples with Butler-Volmer kinetics, uncompensated resistance and
double-layer charging, under any applied-potential waveform. Coupled first-order chemistry
(``EC``, ``ECcat``, ``CE``, ``ECE``) and surface-confined couples (``Surface``) go in the same list
as couples (planar diffusion). Any other mechanism is data: a ``Scheme`` of ``Species``, electron
``Transfer`` s and first- or second-order ``Reaction`` s (``EC2`` and ``DISP1`` are schemes), solved
by a general implicit solver.

>>> from ecsfm import sim
>>> wf = sim.cyclic_voltammetry(e_start=0.3, e_vertex=-0.3, scan_rate=0.1)
>>> couple = sim.Couple(e0=0.0, k0=1e-2, alpha=0.5, d_ox=1e-5, d_red=1e-5, c_ox=1.0, c_red=0.0)
>>> res = sim.simulate(wf, [couple], sim.Cell(area=0.0707))
"""

from . import analytic
from ._analysis import find_peak
from ._export import plot_impedance, plot_result, result_table, table_csv, write_csv, write_impedance_csv
from ._grid import SolverConfig
from ._impedance import impedance
from ._physics import (GEOMETRIES, Cell, Couple, Disc, Geometry, Hemisphere, Planar, RotatingDisc, Sphere, ThinLayer,
                       stack_couples)
from ._mechanisms import CE, CHANNEL_MECHANISMS, EC, ECE, Convection, ECcat, Mechanism, Surface
from ._result import SimulationResult
from ._scheme import DISP1, EC2, Reaction, Scheme, Species, Transfer, as_scheme
from ._solver import simulate
from ._units import DEFAULT_TEMPERATURE, FARADAY, GAS_CONSTANT, thermal_voltage
from ._pulse import differential_pulse_voltammetry, sampled_currents, square_wave_voltammetry
from ._waveforms import (
    TimeGrid,
    Waveform,
    cyclic_voltammetry,
    double_potential_step,
    linear_sweep,
    piecewise_sweep,
    potential_step,
    step_sequence,
    sinusoid,
    stack,
    staircase_voltammetry,
)

#: every named mechanism, by the name the command line uses
MECHANISMS = CHANNEL_MECHANISMS | {"EC2": EC2, "DISP1": DISP1}

__all__ = [
    "CE",
    "Convection",
    "DISP1",
    "EC2",
    "Reaction",
    "Scheme",
    "Species",
    "Transfer",
    "EC",
    "ECE",
    "ECcat",
    "CHANNEL_MECHANISMS",
    "MECHANISMS",
    "Mechanism",
    "Surface",
    "Cell",
    "Couple",
    "Disc",
    "GEOMETRIES",
    "Geometry",
    "Hemisphere",
    "Planar",
    "Sphere",
    "DEFAULT_TEMPERATURE",
    "FARADAY",
    "GAS_CONSTANT",
    "RotatingDisc",
    "SimulationResult",
    "SolverConfig",
    "ThinLayer",
    "TimeGrid",
    "Waveform",
    "analytic",
    "as_scheme",
    "cyclic_voltammetry",
    "differential_pulse_voltammetry",
    "double_potential_step",
    "find_peak",
    "impedance",
    "linear_sweep",
    "piecewise_sweep",
    "plot_impedance",
    "plot_result",
    "result_table",
    "table_csv",
    "write_csv",
    "write_impedance_csv",
    "potential_step",
    "step_sequence",
    "sampled_currents",
    "simulate",
    "sinusoid",
    "square_wave_voltammetry",
    "stack",
    "stack_couples",
    "staircase_voltammetry",
    "thermal_voltage",
]
