"""The trainer's settings: typed dataclasses filled from an editable JSON (or TOML) file.

``default_config.json`` beside this module is the single source of defaults.
A user file (``--config``) may hold any subset of it; its values replace the
defaults key by key, and an unknown key or a value of the wrong kind is a
``ValueError`` naming its dotted path (``losses.spectrum.distance_scale``).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from ..checks import BACKENDS

DEFAULT_CONFIG = Path(__file__).with_name("default_config.json")
#: Named partial configs shipped with the package (``--preset NAME``), applied over the defaults.
PRESETS = Path(__file__).with_name("presets")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS.glob("*.json"))


def preset_path(name: str) -> Path:
    """The file of preset ``name``; ValueError listing the presets if there is none."""
    path = PRESETS / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown preset {name!r} (known: {', '.join(preset_names())})")
    return path


INTENSITY_MODELS = ("shape", "ms2pip")
#: ``model.kind`` names (their classes: :data:`peptide_losses.train.models.MODELS`).
MODEL_KINDS = ("transformer", "recursive")
PEPTIDE_SOURCES = ("synthetic", "human")
PRECISIONS = ("fp32", "bf16")
WEIGHTINGS = ("value", "gradient")


@dataclass
class ModelConfig:
    """Which model and its sizes.

    ``kind`` "transformer": :class:`~peptide_losses.train.transformer.PeptideTransformer`
    (autoregressive, Casanovo-style; ``encoder_layers`` + ``decoder_layers``).
    ``kind`` "recursive": :class:`~peptide_losses.train.model.TinyRecursiveModel`
    (non-autoregressive; ``encoder_layers``, one block applied ``cycles`` x
    (``inner_steps`` + 1) times). Sizes a kind does not use are ignored.
    """

    kind: str
    dim: int
    heads: int
    ff_dim: int
    encoder_layers: int
    decoder_layers: int
    cycles: int
    inner_steps: int
    dropout: float


@dataclass
class OptimizerConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_fraction * lr``."""

    lr: float
    weight_decay: float
    warmup_steps: int
    min_lr_fraction: float
    grad_clip: float


@dataclass
class SpectrumLossConfig:
    """Options of :class:`peptide_losses.SpectrumMatchingLoss` (Da or ppm)."""

    ion_types: list[str]
    charges: list[int]
    direction: str
    distance: str
    distance_scale: float | None
    intensity_power: float


@dataclass
class PrecursorLossConfig:
    """Options of :class:`peptide_losses.PrecursorMassLoss` (ppm)."""

    scale: float
    isotope_errors: list[int]


@dataclass
class LossesConfig:
    """The mass losses, the positions they judge ("target" or "all") and how their
    weights act ("value" or "gradient"): see objective.py."""

    positions: str
    weighting: str
    spectrum: SpectrumLossConfig
    precursor: PrecursorLossConfig


@dataclass
class ScheduleConfig:
    """Staged weights: stage k of n covers the k-th n-th of the run."""

    ce_weight: float
    spectrum_weights: list[float]
    precursor_weights: list[float]


@dataclass
class BalancingConfig:
    """Adaptive balancing: nudge the mass-loss weights so each share stays in its band."""

    enabled: bool
    ce_band: list[float]
    spectrum_band: list[float]
    precursor_band: list[float]
    rate: float
    smoothing: float
    max_factor: float


@dataclass
class SimulationSettings:
    """How one split of simulated spectra is drawn (see simulate.py).

    Peptides of ``min_length..max_length`` residues; precursor charge k+1 with
    probability ``charge_weights[k]``; ``noise_peaks`` [low, high] uniform noise
    peaks; each fragment missing with a probability drawn from ``missing_rate``
    [low, high] per spectrum; fragment m/z jitter and precursor m/z jitter (ppm,
    standard deviation); the rate of a +1 isotope precursor, of oxidised
    methionines, of a-ion / water-or-ammonia-loss companions per fragment, of each
    internal fragment (2-4 residues, neither terminus) and of each residue's immonium ion.
    ``intensities``: the b/y intensity model, ``"shape"`` (position-dependent,
    y twice b) or ``"ms2pip"`` (predicted, cached: :mod:`.intensities`);
    with ``"ms2pip"``, ``predicted_fraction`` of the spectra (drawn per spectrum)
    take the predicted intensities and the others the shape model's.
    """

    min_length: int
    max_length: int
    charge_weights: list[float]
    noise_peaks: list[int]
    missing_rate: list[float]
    mz_jitter_ppm: float
    precursor_jitter_ppm: float
    isotope_error_rate: float
    oxidation_rate: float
    a_ion_rate: float
    neutral_loss_rate: float
    internal_rate: float
    immonium_rate: float
    intensities: str
    predicted_fraction: float


@dataclass
class SimulationConfig:
    """The splits' settings; ``peptides`` names the pool they are drawn from (see simulate.py):
    ``"synthetic"``, a synthetic proteome of ``proteins`` sequences, or ``"human"``, real human
    tryptic peptides (``proteins`` unused)."""

    peptides: str
    proteins: int
    train: SimulationSettings
    easy: SimulationSettings
    hard: SimulationSettings
    validation_peptide_fraction: float


@dataclass
class DecodingConfig:
    """Validation decodes greedily and by beam search (``beam_size`` candidates), the beam's
    choice made twice (:func:`peptide_losses.decoding.rerank`): ``precursor_beam`` demotes
    candidates farther than ``precursor_tolerance_ppm`` from the observed precursor at every
    isotope error of ``losses.precursor.isotope_errors``; ``spectrum_rerank`` also subtracts
    ``spectrum_weight`` times each candidate's :func:`peptide_losses.spectrum_scores` with the
    options ``spectrum``. ``guide_weight`` (None: off) guides the beam by
    :func:`peptide_losses.decoding.spectrum_guide`. ``precursor_tolerance_ppm`` also defines
    the precursor-match rate."""

    beam_size: int
    precursor_tolerance_ppm: float
    guide_weight: float | None
    spectrum_weight: float
    spectrum: SpectrumLossConfig


@dataclass
class WandbConfig:
    enabled: bool
    project: str
    mode: str


@dataclass
class LoggingConfig:
    """Metrics every ``every`` steps (means over them); validation every
    ``validate_every`` steps on ``validation_size`` spectra per simulated split."""

    every: int
    validate_every: int
    validation_size: int
    progress: bool
    tensorboard: bool
    wandb: WandbConfig


@dataclass
class TrainConfig:
    """Everything a run needs; saved in every checkpoint.

    ``max_length`` is L, the model's output positions (annotations of up to L
    tokens); ``data`` an annotated MGF to train on (None: simulated spectra).
    ``precision`` "bf16" runs the model under bf16 autocast (CUDA); ``compile``
    wraps the training forward in ``torch.compile``. ``time_limit_minutes``
    (None: none) ends the run early, validated and checkpointed, at the first
    logging step past that wall-clock time; the schedule still spans ``steps``.
    """

    seed: int
    steps: int
    batch_size: int
    device: str
    # torch intra-op threads while training on the CPU (None: torch's choice). One is the
    # default because this model's small matrices gain little from more, and on a shared
    # machine OpenMP threads that wait for each other make a step many times slower.
    cpu_threads: int | None
    backend: str
    precision: str
    compile: bool
    max_length: int
    model: ModelConfig
    optimizer: OptimizerConfig
    losses: LossesConfig
    schedule: ScheduleConfig
    balancing: BalancingConfig
    simulation: SimulationConfig
    decoding: DecodingConfig
    logging: LoggingConfig
    checkpoint_every: int
    time_limit_minutes: float | None
    data: str | None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "TrainConfig":
        """Range checks that the types cannot express; returns self."""
        positive = {"steps": self.steps, "batch_size": self.batch_size, "max_length": self.max_length,
                    "model.dim": self.model.dim, "model.heads": self.model.heads, "model.cycles": self.model.cycles,
                    "model.inner_steps": self.model.inner_steps, "model.decoder_layers": self.model.decoder_layers,
                    "logging.every": self.logging.every, "checkpoint_every": self.checkpoint_every,
                    "simulation.proteins": self.simulation.proteins, "decoding.beam_size": self.decoding.beam_size}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.model.dim % self.model.heads or self.model.dim % 2:
            raise ValueError(f"model.dim ({self.model.dim}) must be even and a multiple of model.heads ({self.model.heads})")
        stages = self.schedule
        if not stages.spectrum_weights or len(stages.spectrum_weights) != len(stages.precursor_weights):
            raise ValueError("schedule.spectrum_weights and schedule.precursor_weights must be non-empty and equally long")
        if min([stages.ce_weight, *stages.spectrum_weights, *stages.precursor_weights]) < 0:
            raise ValueError("schedule weights must be >= 0")
        for name in ("ce_band", "spectrum_band", "precursor_band"):
            low, high = getattr(self.balancing, name)
            if not 0 <= low < high <= 1:
                raise ValueError(f"balancing.{name} must be [low, high] with 0 <= low < high <= 1, got {[low, high]}")
        if self.losses.weighting not in WEIGHTINGS:
            raise ValueError(f"losses.weighting must be one of {WEIGHTINGS}, got {self.losses.weighting!r}")
        if self.losses.weighting == "gradient" and self.balancing.enabled:
            raise ValueError("balancing.enabled balances loss values; with losses.weighting 'gradient' the "
                             "weights already fix each mass loss's gradient relative to CE's: disable balancing")
        if self.simulation.peptides not in PEPTIDE_SOURCES:
            raise ValueError(f"simulation.peptides must be one of {PEPTIDE_SOURCES}, got {self.simulation.peptides!r}")
        for split in ("train", "easy", "hard"):
            sim = getattr(self.simulation, split)
            if sim.intensities not in INTENSITY_MODELS:
                raise ValueError(f"simulation.{split}.intensities must be one of {INTENSITY_MODELS}, "
                                 f"got {sim.intensities!r}")
            for name in ("predicted_fraction", "isotope_error_rate", "oxidation_rate", "a_ion_rate", "neutral_loss_rate",
                         "internal_rate", "immonium_rate"):
                if not 0 <= getattr(sim, name) <= 1:
                    raise ValueError(f"simulation.{split}.{name} must be in [0, 1], got {getattr(sim, name)}")
            if not 2 <= sim.min_length <= sim.max_length <= self.max_length:
                raise ValueError(
                    f"simulation.{split}: need 2 <= min_length <= max_length <= max_length of the run ({self.max_length})"
                )
        if self.model.kind not in MODEL_KINDS:
            raise ValueError(f"model.kind must be one of {MODEL_KINDS}, got {self.model.kind!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        return self


def _convert(value, kind, path: str):
    """``value`` as type ``kind`` (a dataclass, list[...], X | None, or a scalar)."""
    origin = typing.get_origin(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ValueError(f"{path} must be a table of settings, got {value!r}")
        return _build(kind, value, f"{path}.")
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        return None if value is None else _convert(value, options[0], path)
    if origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{path} must be a list, got {value!r}")
        (item,) = typing.get_args(kind)
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind in (int, str, bool) and type(value) is kind:
        return value
    raise ValueError(f"{path} must be of type {kind.__name__}, got {value!r}")


def _build(cls, data: dict, prefix: str = ""):
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"unknown setting {prefix}{unknown[0]} (known: {', '.join(sorted(fields))})")
    missing = [name for name in fields if name not in data]
    if missing:
        raise ValueError(f"missing setting {prefix}{missing[0]}")
    return cls(**{name: _convert(data[name], hints[name], f"{prefix}{name}") for name in fields})


def merge_settings(base: dict, override: dict) -> dict:
    """``override`` replaces ``base`` key by key, recursing into tables."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge_settings(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def read_settings(path: str | Path) -> dict:
    """The settings in a ``.json`` or ``.toml`` file, as a nested dict."""
    path = Path(path)
    if path.suffix == ".toml":
        import tomllib

        return tomllib.loads(path.read_text(encoding="utf-8"))
    if path.suffix == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    raise ValueError(f"config file must end in .json or .toml, got {path}")


def with_defaults(settings: dict) -> dict:
    """``settings`` (e.g. a checkpoint's) over the defaults, so that settings added since it was
    written take their default values."""
    return merge_settings(read_settings(DEFAULT_CONFIG), settings)


def load_config(path: str | Path | None = None, overrides: dict | None = None, preset: str | None = None) -> TrainConfig:
    """The default settings, updated from preset ``preset``, then from ``path``, then from ``overrides``."""
    settings = read_settings(DEFAULT_CONFIG)
    if preset is not None:
        settings = merge_settings(settings, read_settings(preset_path(preset)))
    if path is not None:
        settings = merge_settings(settings, read_settings(path))
    if overrides:
        settings = merge_settings(settings, overrides)
    return config_from_dict(settings)


def config_from_dict(settings: dict) -> TrainConfig:
    """A validated :class:`TrainConfig` from complete nested settings (e.g. a checkpoint's)."""
    return _build(TrainConfig, settings).validate()
