"""Physical constants used by every loss, the kernels, the vocabulary and the data code.

Defined here, on the kernels' side, because the kernels compile them in and import nothing
from the package; the package reads them as :mod:`peptide_losses.constants`. No Triton
needed to import this module.

All masses are monoisotopic, in Dalton (Da), float64. The values are those of
pyteomics' ``nist_mass`` table; ``tests/test_vocabulary.py`` checks each one
against pyteomics so a typo here cannot survive.
"""

#: Mass of a proton (H+), Da.
PROTON = 1.00727646677
#: Mass of a hydrogen atom (1H), Da.
HYDROGEN = 1.00782503207
#: Mass of water, H2O, Da: the termini added to the residue sum of a peptide.
H2O = 18.0105646837
#: Mass of ammonia, NH3, Da.
NH3 = 17.02654910101
#: Mass of carbon monoxide, CO, Da.
CO = 27.99491461956
#: Mass difference between 13C and 12C, Da: spacing of isotope peaks times charge.
C13_C12 = 1.0033548378

#: Neutral mass added to a prefix (a, b, c) or suffix (x, y, z) residue sum to
#: give the neutral fragment, Da. Same conventions as pyteomics'
#: ``mass.fast_mass(seq, ion_type=...)``.
ION_OFFSETS = {
    "a": -CO,
    "b": 0.0,
    "c": NH3,
    "x": H2O + CO - 2 * HYDROGEN,
    "y": H2O,
    "z": H2O - NH3,
}
#: The ion types, in the order of their codes in the spectrum kernel.
ION_TYPES = tuple(ION_OFFSETS)
#: Ion series built from prefix sums (N-terminal fragments); x, y, z are built from suffix sums.
PREFIX_IONS = frozenset("abc")
