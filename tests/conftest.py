"""Shared fixtures: the real MNIST when DIGITPAD_DATA_DIR points at it, else a skip with the reason.

A test needs MNIST when it is marked ``mnist`` or uses the ``mnist`` / ``mnist_dir``
fixtures (those are marked here). Such a test is skipped, with the reason in the summary,
when DIGITPAD_DATA_DIR is not set; when it is set, the data was meant to be found, so a
skip of such a test is reported as a failure instead (CI sets it: nothing is lost quietly).
"""

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


MNIST_FIXTURES = {"mnist", "mnist_dir"}
XDG_FOLDERS = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME")


@pytest.fixture(scope="session", autouse=True)
def isolated_user_dirs(tmp_path_factory):
    """The user folders (models, runs, samples, MNIST: platformdirs reads XDG_*) in a temporary
    directory, for the tests and the commands they start, so no test touches the user's own."""
    root = tmp_path_factory.mktemp("user")
    saved = {k: os.environ.get(k) for k in XDG_FOLDERS}
    for key in XDG_FOLDERS:
        os.environ[key] = str(root / key.lower())
    yield root
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_collection_modifyitems(items):
    for item in items:
        if MNIST_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.mnist)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    value = os.environ.get("DIGITPAD_DATA_DIR")
    if value and report.skipped and not hasattr(report, "wasxfail") and item.get_closest_marker("mnist"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"needs MNIST but was skipped although DIGITPAD_DATA_DIR={value} is set: {reason}"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    value = os.environ.get("DIGITPAD_DATA_DIR")
    if not value:
        pytest.skip("real MNIST not available: set DIGITPAD_DATA_DIR to a folder with the four MNIST files")
    path = Path(value)
    if not path.is_dir():
        pytest.skip(f"real MNIST not available: DIGITPAD_DATA_DIR={value} is not a folder")
    return path


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from digitpad.core.data import load_mnist

    return load_mnist(mnist_dir)


def near_ties(logits: np.ndarray, margin: float = 1e-3) -> np.ndarray:
    """(N,) True where the two best scores of a row are within ``margin`` of each other.

    Logits computed in batches of another size (or with another BLAS thread count) differ
    in the last bits, so such a digit may be read either way; every other answer is the same.
    """
    top = np.sort(np.asarray(logits, np.float64), axis=1)[:, -2:]  # (N, 2)
    return top[:, 1] - top[:, 0] < margin


def assert_same_answers(answers, logits, margin: float = 1e-3) -> None:
    """``answers`` are ``logits.argmax(1)`` except, at most, on near ties (see :func:`near_ties`)."""
    answers, logits = np.asarray(answers), np.asarray(logits)
    differ = answers != logits.argmax(1)
    tied = near_ties(logits, margin)
    assert not np.any(differ & ~tied), f"answers differ on digits {np.flatnonzero(differ & ~tied)[:10]}"


def mnist_mirror(source: Path, folder: Path) -> Path:
    """``folder`` made to serve the four MNIST files as a mirror does (``<name>.gz``), copied
    from ``source``, which holds them plain or gzip-compressed."""
    from digitpad.core.data import FILES

    folder.mkdir(parents=True)
    for name in FILES:
        packed = Path(source) / f"{name}.gz"
        if packed.is_file():
            shutil.copyfile(packed, folder / packed.name)
        else:
            with open(Path(source) / name, "rb") as src, gzip.open(folder / packed.name, "wb", compresslevel=1) as dst:
                shutil.copyfileobj(src, dst)
    return folder


_DROP_ROOT = """
import os
if os.geteuid() == 0:  # root ignores file modes: run the rest as 'nobody', for whom they hold
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
"""


def run_unprivileged(imports: str, body: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``imports``, then ``body`` as an unprivileged user, in a child Python in ``cwd``.

    Tests of permission errors run as root in CI, and root ignores file modes: as root the
    child drops to uid/gid 65534 after its imports (the checkout may be unreadable to it).
    Give paths relative to ``cwd`` (a folder made 0755): pytest's temporary parents are 0700.
    """
    script = imports + _DROP_ROOT + body
    return subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
