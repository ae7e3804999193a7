"""Shared fixtures: the real MNIST when DIGITPAD_DATA_DIR points at it, else a skip with the reason."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


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
