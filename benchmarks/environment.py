"""Where results go and what they were measured on: device name, driver, library versions, date."""

from __future__ import annotations

import datetime
import platform
import re
import subprocess
from pathlib import Path

import torch

#: The committed results: a folder per device (``slug`` of its name), ``cpu/`` for CPU-only runs.
RESULTS_ROOT = Path(__file__).resolve().parent / "results"


def _nvidia_driver() -> str:
    """The NVIDIA driver version from nvidia-smi, else the CUDA driver API version torch sees."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20, check=True).stdout.split()
        if out:
            return out[0]
    except (OSError, subprocess.SubprocessError):
        pass
    version = getattr(torch._C, "_cuda_getDriverVersion", lambda: 0)()
    return f"CUDA driver API {version // 1000}.{version % 1000 // 10}" if version else "unknown"


def _triton_version() -> str:
    try:
        import triton
    except ImportError:
        return "not installed"
    return triton.__version__


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}"


def slug(name: str) -> str:
    """A folder name for a device: ``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unknown-device"


def describe(device: torch.device) -> dict:
    """The environment columns of every result row."""
    return {
        "device": device_name(device),
        "driver": _nvidia_driver() if device.type == "cuda" else "",
        "cuda": torch.version.cuda or "",
        "torch": torch.__version__,
        "triton": _triton_version(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def save_results(folder: Path, stem: str, results: dict, markdown: str) -> Path:
    """``folder/stem.json`` (the results) and ``folder/stem.md`` (the report); returns the report's path."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{stem}.json").write_text(json.dumps(results, indent=1) + "\n")
    (folder / f"{stem}.md").write_text(markdown)
    return folder / f"{stem}.md"
