"""Adapters for de novo sequencing tools: each tool's module imports it, so import only the one you use.

- :mod:`peptide_losses.integrations.casanovo`: Casanovo's ``Spec2Pep`` with the
  mass losses in its training step, and ``casanovo train`` with them.
- InstaNovo: ``Vocabulary.from_instanovo(model.residue_set)`` and
  :class:`peptide_losses.teacher_forcing.TeacherForcedMassLosses` (README).
- :mod:`peptide_losses.integrations.candidates` (imports no tool): Casanovo's and
  InstaNovo's beam candidates as token rows, to rerank them by the spectrum.
"""
