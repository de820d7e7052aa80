"""Metrics to ``metrics.jsonl`` and ``metrics.csv``, TensorBoard and wandb when available.

Each record is one step's named values, e.g. ``{"step": 100, "train/ce_final": 1.2}``.
The CSV is long-format (``step,name,value``), so validation rows and training
rows share one file. TensorBoard needs the ``tensorboard`` package and wandb
the ``wandb`` package; without them the run goes on and says so once in the log.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

JSONL = "metrics.jsonl"
CSV = "metrics.csv"


def read_records(out_dir: str | Path) -> list[dict]:
    """The records in ``out_dir/metrics.jsonl`` (empty if none)."""
    path = Path(out_dir) / JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


class Recorder:
    """Writes records to every available sink; keeps them for the plots.

    Args:
        out_dir: the run folder.
        resume_step: on resume, the checkpoint's step: records after it (from
            the run that was interrupted) are dropped so the files hold one
            history; None starts new files.
        tensorboard: write TensorBoard events if the package is importable.
        wandb: ``None`` or ``{"project": ..., "mode": "online" | "offline", "config": {...}}``.
    """

    def __init__(self, out_dir: str | Path, *, resume_step: int | None = None, tensorboard: bool = True,
                 wandb: dict | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        kept = [r for r in read_records(self.out_dir) if r["step"] <= resume_step] if resume_step is not None else []
        self.records: list[dict] = []
        self._jsonl = open(self.out_dir / JSONL, "w", encoding="utf-8")
        self._csv_file = open(self.out_dir / CSV, "w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["step", "name", "value"])
        for record in kept:
            self._write_files(record)
        self._tensorboard = self._open_tensorboard() if tensorboard else None
        self._wandb = self._open_wandb(wandb) if wandb else None

    def _open_tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.info("TensorBoard logging off: the 'tensorboard' package is not installed (pip install tensorboard)")
            return None
        return SummaryWriter(str(self.out_dir / "tensorboard"))

    def _open_wandb(self, settings: dict):
        try:
            import wandb
        except ImportError:
            log.info("wandb logging off: the 'wandb' package is not installed")
            return None
        return wandb.init(project=settings["project"], mode=settings["mode"], config=settings.get("config"),
                          dir=str(self.out_dir), resume="allow")

    def _write_files(self, record: dict) -> None:
        self.records.append(record)
        self._jsonl.write(json.dumps(record) + "\n")
        for name, value in record.items():
            if name != "step":
                self._csv.writerow([record["step"], name, value])

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record ``values`` at ``step`` in every sink."""
        record = {"step": int(step), **{k: float(v) for k, v in values.items()}}
        self._write_files(record)
        self._jsonl.flush()
        self._csv_file.flush()
        if self._tensorboard is not None:
            for name, value in values.items():
                self._tensorboard.add_scalar(name, value, step)
        if self._wandb is not None:
            self._wandb.log(dict(values), step=step)

    def close(self) -> None:
        self._jsonl.close()
        self._csv_file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
        if self._wandb is not None:
            self._wandb.finish()
