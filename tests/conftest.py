import os

import torch

# Without a GPU the Triton kernels run under the interpreter on CPU tensors; this
# must be set before anything imports triton.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import importlib  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from peptide_losses.datasets import CASANOVO_SAMPLE  # noqa: E402

# Hypothesis profiles (tests/README.md). Each test states its example count for "ci"
# through helpers.examples(); "thorough" multiplies it by THOROUGH_FACTOR.
THOROUGH_FACTOR = 10
_COMMON = dict(deadline=None, print_blob=True,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
# ci: the same examples on every run (derandomized from each test's source), so CI time is
# bounded and a failure reproduces by running the test again.
settings.register_profile("ci", max_examples=100, derandomize=True, database=None, **_COMMON)
# thorough: fresh random examples each run, failures kept in .hypothesis/ and replayed first.
settings.register_profile("thorough", max_examples=100 * THOROUGH_FACTOR, **_COMMON)
settings.load_profile("ci")  # --hypothesis-profile=thorough overrides this after conftest import


def pytest_addoption(parser):
    parser.addoption("--shard", default=None, metavar="I/N",
                     help="run only shard I (0-based) of N, balanced by hypothesis examples "
                          "(benchmarks/kernels/gpu_suite.py)")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: realistic sizes, runs only on CUDA (skipped elsewhere)")


def _cost(item) -> int:
    """Rough run time of a test in kernel compilations: its hypothesis examples, 5 for realistic sizes
    (a few compilations and a chunked reference), else 1."""
    used = getattr(getattr(item, "function", None), "_hypothesis_internal_use_settings", None)
    if used is not None:
        return used.max_examples
    return 5 if item.get_closest_marker("gpu") else 1


def pytest_collection_modifyitems(config, items):
    shard = config.getoption("--shard")
    if shard is None:
        return
    index, count = (int(part) for part in shard.split("/"))
    if not 0 <= index < count:
        raise pytest.UsageError(f"--shard must be I/N with 0 <= I < N, got {shard}")
    # Longest first onto the least loaded shard: the same assignment in every shard's process.
    loads = [0] * count
    owner = {}
    for item in sorted(items, key=lambda it: (-_cost(it), it.nodeid)):
        owner[item.nodeid] = loads.index(min(loads))
        loads[owner[item.nodeid]] += _cost(item)
    keep = [item for item in items if owner[item.nodeid] == index]
    config.hook.pytest_deselected(items=[item for item in items if owner[item.nodeid] != index])
    items[:] = keep

#: The tools the integration tests drive, each in an environment of its own in CI (casanovo 5.2.1
#: pins numpy < 2, instanovo 1.2.2 needs numpy >= 2, ms2pip 4.1.2 pyteomics < 5), and the extra
#: that installs each.
INTEGRATIONS = ("casanovo", "instanovo", "ms2pip", "wandb")
EXTRAS = {"casanovo": "casanovo", "instanovo": "instanovo", "ms2pip": "simulate", "wandb": "wandb"}
#: Comma-separated tools that must be installed (a missing one fails its tests);
#: unset, CI requires all of INTEGRATIONS and a developer none.
REQUIRE_ENV = "PEPTIDE_LOSSES_REQUIRE"


def optional_package(name: str):
    """Import ``name``; if absent, skip, or fail where it is required (CI)."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        listed = os.environ.get(REQUIRE_ENV)
        required = INTEGRATIONS if listed is None and os.environ.get("CI") else (listed or "").split(",")
        if name in required:
            pytest.fail(f"{name} is required here ({REQUIRE_ENV}={listed!r}, CI={os.environ.get('CI')!r}): {error}")
        pytest.skip(f"{name} is not installed (pip install -e '.[{EXTRAS[name]}]')")


@pytest.fixture(scope="session")
def casanovo():
    return optional_package("casanovo")


@pytest.fixture(scope="session")
def ms2pip():
    return optional_package("ms2pip")


@pytest.fixture(scope="session")
def instanovo():
    return optional_package("instanovo")


@pytest.fixture(scope="session")
def wandb():
    return optional_package("wandb")


@pytest.fixture(scope="session")
def real_mgf():
    """Path of the 128 real annotated spectra that ship inside the package."""
    return CASANOVO_SAMPLE
