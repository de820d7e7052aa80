"""examples/quickstart.py runs, and README.md quotes its marked part unchanged."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "examples" / "quickstart.py"


def _quoted_region() -> str:
    text = QUICKSTART.read_text(encoding="utf-8")
    return text.split("# --- quickstart: quoted in README.md ---\n")[1].split("# --- end of the quickstart ---\n")[0]


def test_readme_quotes_the_quickstart_file():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```python\n(.*?)```\n", section, re.S).group(1)
    assert block == _quoted_region()


def test_quickstart_runs_and_prints_finite_losses():
    # As a reader runs it: no Triton interpreter (the suite turns it on for its own kernel tests).
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run([sys.executable, str(QUICKSTART)], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    steps = re.findall(r"^step \d+: cross-entropy (\S+), spectrum loss (\S+) Da, precursor loss (\S+)$",
                       result.stdout, re.M)
    assert len(steps) == 5, result.stdout
    assert all(math.isfinite(float(value)) and float(value) > 0 for step in steps for value in step), result.stdout
