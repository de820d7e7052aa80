"""Casanovo with the mass losses: its ``Spec2Pep`` training step plus both losses.

Casanovo's own training entry point, with the losses added::

    python -m peptide_losses.integrations.casanovo [mass-loss options] train SPECTRA.mgf -p VALID.mgf -c config.yaml -d out/

Everything from ``train`` on is ``casanovo train``'s command line, unchanged;
``--mass-loss-help`` lists the mass-loss options (defaults:
:data:`peptide_losses.recommended.RECOMMENDED`). In Python, build
:class:`MassLossSpec2Pep` like a ``Spec2Pep``, or run Casanovo's
``ModelRunner`` inside :func:`mass_losses_in_model_runner`.

What the training step does (Casanovo 5.2, depthcharge 0.4): the decoder's
teacher-forced scores ``(B, L + 1, V)`` without the last position are the
logits, aligned with the targets ``(B, L)`` (C- to N-terminal, the stop token
``$`` after the peptide, padding 0). The vocabulary is built from the model's
own tokenizer (:meth:`Vocabulary.from_casanovo`), the mask leaves out padding
and ``$``, the spectrum loss sees the positions flipped to N- to C-terminal
with any N-terminal modification folded into the first residue, and the loss is
``CE + ramp * (spectrum_weight * spectrum + precursor_weight * precursor)``.
Checkpoints stay plain ``Spec2Pep`` checkpoints: the subclass adds no
``__init__`` argument, so nothing of it is saved in the hyperparameters.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
from typing import Iterator, Sequence

import torch
from casanovo.denovo import model_runner
from casanovo.denovo.model import Spec2Pep

from ..recommended import RECOMMENDED, Recommendation
from ..teacher_forcing import TeacherForcedMassLosses
from ..vocabulary import Vocabulary

#: Casanovo's default ``isotope_error_range``.
ISOTOPE_ERRORS = (0, 1)


@dataclasses.dataclass(frozen=True)
class MassLossSettings:
    """How :class:`MassLossSpec2Pep` weighs the mass losses.

    Attributes:
        weights: the two weights, their ramp over training and the spectrum
            loss's ``distance_scale`` in Da (default :data:`RECOMMENDED`).
        isotope_errors: k values of the precursor loss (Casanovo's default range).
        fold_n_terminal: fold a predicted N-terminal modification into the
            first residue for the spectrum loss.
        total_steps: optimizer steps that the ramp fractions refer to; None
            uses the length of Casanovo's learning-rate schedule,
            ``cosine_schedule_period_iters`` (its data loaders have no length
            for Lightning to count steps from).
    """

    weights: Recommendation = RECOMMENDED
    isotope_errors: tuple[int, ...] = ISOTOPE_ERRORS
    fold_n_terminal: bool = True
    total_steps: int | None = None


class MassLossSpec2Pep(Spec2Pep):
    """Casanovo's ``Spec2Pep`` whose training step adds both mass losses.

    Same constructor as ``Spec2Pep``. The settings are the class attribute
    :attr:`mass_loss_settings`; set it on an instance to change one model.
    Logged per epoch: ``train_CELoss`` (as Casanovo), ``train_spectrum_loss``
    (Da), ``train_precursor_loss`` (log-scaled ppm), ``train_mass_loss_ramp``.
    """

    mass_loss_settings: MassLossSettings = MassLossSettings()

    def mass_losses(self) -> TeacherForcedMassLosses:
        """The losses for the model's current tokenizer (Casanovo replaces it after loading a checkpoint)."""
        cached = self.__dict__.get("_mass_losses_for")
        if cached is None or cached[0] is not self.tokenizer:
            settings = self.mass_loss_settings
            vocabulary = Vocabulary.from_casanovo(self.tokenizer)
            losses = TeacherForcedMassLosses(
                vocabulary,
                order="c_to_n" if self.tokenizer.reverse else "n_to_c",
                fold_n_terminal=settings.fold_n_terminal,
                spectrum=dict(distance_scale=settings.weights.distance_scale),
                precursor=dict(isotope_errors=settings.isotope_errors),
            )
            # A plain attribute, not a submodule: nothing of it enters the state dict.
            self.__dict__["_mass_losses_for"] = cached = (self.tokenizer, losses)
        return cached[1].to(self.device)

    def training_progress(self) -> float:
        """Fraction of training done: global step / total steps."""
        total = self.mass_loss_settings.total_steps or self.cosine_schedule_period_iters
        if total <= 0:
            raise ValueError(f"the mass-loss ramp needs total_steps > 0, got {total}")
        return self.trainer.global_step / total

    def training_step(self, batch: dict, *args) -> torch.Tensor:
        pred, truth = self._forward_step(batch)
        logits = pred[:, :-1, :]
        ce = self.celoss(logits.reshape(-1, self.vocab_size), truth.flatten())
        mz = batch["mz_array"]
        spectrum, precursor = self.mass_losses()(
            logits, truth, mz, batch["intensity_array"],
            batch["precursor_mz"].reshape(-1).double(), batch["precursor_charge"].reshape(-1).long(),
            peak_mask=mz > 0,  # depthcharge pads peaks with m/z 0
        )
        weights = self.mass_loss_settings.weights
        ramp = weights.ramp(self.training_progress())
        loss = ce + ramp * (weights.spectrum_weight * spectrum + weights.precursor_weight * precursor)
        logged = dict(on_step=False, on_epoch=True, sync_dist=True)
        self.log("train_CELoss", ce.detach(), batch_size=truth.numel(), **logged)
        for name, value in (("train_spectrum_loss", spectrum), ("train_precursor_loss", precursor)):
            self.log(name, value.detach(), batch_size=truth.shape[0], **logged)
        self.log("train_mass_loss_ramp", float(ramp), batch_size=truth.shape[0], **logged)
        return loss


@contextlib.contextmanager
def mass_losses_in_model_runner(settings: MassLossSettings | None = None) -> Iterator[type[MassLossSpec2Pep]]:
    """Inside the block Casanovo's ``ModelRunner`` builds :class:`MassLossSpec2Pep` instead of ``Spec2Pep``.

    ``ModelRunner`` names ``Spec2Pep`` itself, for new models and for
    checkpoints it loads; this swaps that name, and sets the class's settings,
    until the block ends.
    """
    previous = model_runner.Spec2Pep, MassLossSpec2Pep.mass_loss_settings
    model_runner.Spec2Pep = MassLossSpec2Pep
    MassLossSpec2Pep.mass_loss_settings = settings or MassLossSettings()
    try:
        yield MassLossSpec2Pep
    finally:
        model_runner.Spec2Pep, MassLossSpec2Pep.mass_loss_settings = previous


def _integers(text: str) -> tuple[int, ...]:
    return tuple(int(k) for k in text.split(","))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m peptide_losses.integrations.casanovo",
        description="Casanovo's command line with the mass losses in Spec2Pep's training step.",
        epilog="The remaining arguments are Casanovo's own command line, e.g. "
        "train SPECTRA.mgf -p VALID.mgf -c config.yaml -d out/",
        add_help=False,  # -h / --help belong to Casanovo's command line
        allow_abbrev=False,
    )
    parser.add_argument("--mass-loss-help", action="help", help="show these options and exit")
    defaults = RECOMMENDED
    parser.add_argument("--spectrum-weight", type=float, default=defaults.spectrum_weight)
    parser.add_argument("--precursor-weight", type=float, default=defaults.precursor_weight)
    parser.add_argument("--ramp-start", type=float, default=defaults.ramp_start, help="fraction of training")
    parser.add_argument("--ramp-end", type=float, default=defaults.ramp_end, help="fraction of training")
    parser.add_argument("--distance-scale", type=float, default=defaults.distance_scale, help="Da")
    parser.add_argument("--isotope-errors", type=_integers, default=ISOTOPE_ERRORS, help="comma-separated, e.g. 0,1")
    parser.add_argument("--no-fold-n-terminal", action="store_true")
    parser.add_argument("--total-steps", type=int, default=None, help="steps the ramp refers to")
    return parser


def settings_from_args(argv: Sequence[str]) -> tuple[MassLossSettings, list[str]]:
    """The mass-loss settings in ``argv`` and the rest of it (Casanovo's arguments)."""
    args, rest = _parser().parse_known_args(list(argv))
    weights = Recommendation(
        spectrum_weight=args.spectrum_weight, precursor_weight=args.precursor_weight,
        ramp_start=args.ramp_start, ramp_end=args.ramp_end, distance_scale=args.distance_scale,
    )
    settings = MassLossSettings(
        weights=weights, isotope_errors=args.isotope_errors,
        fold_n_terminal=not args.no_fold_n_terminal, total_steps=args.total_steps,
    )
    return settings, rest


def main(argv: Sequence[str] | None = None) -> None:
    """Run Casanovo's command line with the mass losses (see the module docstring)."""
    from casanovo import casanovo as cli

    settings, rest = settings_from_args(sys.argv[1:] if argv is None else argv)
    with mass_losses_in_model_runner(settings):
        cli.main(args=rest, prog_name="casanovo", standalone_mode=False)


if __name__ == "__main__":
    main()
