"""Physical constants and unit conventions of the simulator.

Units used throughout ``ecsfm.sim`` (see DESIGN.md):

=================  ==========
quantity           unit
=================  ==========
potential          V
time               s
scan rate          V/s
D                  cm^2/s
k0                 cm/s
concentration      mM (= mol/m^3 = 1e-6 mol/cm^3)
area               cm^2
Ru                 ohm
Cdl                F/cm^2
temperature        K
current            A (IUPAC: oxidation positive)
=================  ==========
"""

from __future__ import annotations

#: Faraday constant, C/mol (exact in the 2019 SI: e * N_A).
FARADAY = 96485.33212
#: Molar gas constant, J/(mol K) (exact in the 2019 SI: k_B * N_A).
GAS_CONSTANT = 8.314462618
#: Default temperature, K.
DEFAULT_TEMPERATURE = 298.15
#: mM * cm -> mol/cm^2: 1 mM = 1e-6 mol/cm^3.
MOL_PER_CM3_PER_MM = 1e-6


def thermal_voltage(temperature: float = DEFAULT_TEMPERATURE) -> float:
    """RT/F in V at ``temperature`` (K); 25.69 mV at 298.15 K."""
    return GAS_CONSTANT * temperature / FARADAY
