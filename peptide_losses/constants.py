"""Physical constants (monoisotopic masses in Da) and the ion-type table: those of
:mod:`peptide_losses.kernels.constants`, where they are defined (the kernels compile them in)."""

from .kernels.constants import C13_C12, CO, H2O, HYDROGEN, ION_OFFSETS, ION_TYPES, NH3, PREFIX_IONS, PROTON

__all__ = ["C13_C12", "CO", "H2O", "HYDROGEN", "ION_OFFSETS", "ION_TYPES", "NH3", "PREFIX_IONS", "PROTON"]
