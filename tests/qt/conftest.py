"""Fixtures for the Qt tests: isolated settings and user folders, models, a window, real mouse strokes.

Nothing here touches the user's settings or folders: QSettings' default scope and the
platformdirs folders (XDG_*) point into a temporary directory for the whole session,
and every window gets its own QSettings file.
"""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session", autouse=True)
def isolated_qsettings(isolated_user_dirs):
    """QSettings' default scope in the same temporary directory as the user folders."""
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.IniFormat)
    for scope in (QSettings.UserScope, QSettings.SystemScope):
        QSettings.setPath(QSettings.IniFormat, scope, str(isolated_user_dirs / "qsettings"))
    return isolated_user_dirs


@pytest.fixture
def settings(tmp_path):
    from PySide6.QtCore import QSettings

    return QSettings(str(tmp_path / "digitpad.ini"), QSettings.IniFormat)


def _save(path, model, accuracy):
    from digitpad.core import model_io

    meta = model_io.build_metadata(model, metrics={"test_accuracy": float(accuracy)})
    return model_io.save_model(path, model, meta)


@pytest.fixture(scope="session")
def untrained_model_path(tmp_path_factory) -> Path:
    """A small randomly initialised model: enough for everything that does not need right answers."""
    from digitpad.core.mlp import MLP, MLPConfig

    return _save(tmp_path_factory.mktemp("models") / "untrained.npz", MLP(MLPConfig(hidden=(32, 16)), rng=1), 0.1)


@pytest.fixture(scope="session")
def trained_model_path(tmp_path_factory) -> Path:
    """The shipped model when it exists, else one trained here on part of MNIST, else a skip."""
    from digitpad.core import model_io

    shipped = model_io.shipped_model_path()
    if shipped.is_file():
        return shipped
    from digitpad.core.data import DataError, find_data_dir, load_mnist

    folder = find_data_dir(os.environ.get("DIGITPAD_DATA_DIR"))
    if folder is None:
        pytest.skip("no trained model: models/default.npz is missing and MNIST is not available "
                    "(set DIGITPAD_DATA_DIR) to train one")
    try:
        mnist = load_mnist(folder)
    except DataError as e:
        pytest.skip(f"no trained model: models/default.npz is missing and MNIST could not be read ({e})")
    from digitpad.core.train import PRESETS, evaluate, train, with_overrides

    config = with_overrides(PRESETS["quick"], limit=10000, epochs=2, stats_every=0, snapshot_every=0)
    result = train(config, mnist)
    _, acc = evaluate(result.model, mnist.test_images, mnist.test_labels)
    return _save(tmp_path_factory.mktemp("models") / "trained.npz", result.model, acc)


@pytest.fixture
def make_window(qtbot, settings):
    """Build MainWindow(model_path, settings) shown and registered with qtbot; closes them at the end."""
    from PySide6.QtWidgets import QApplication

    from digitpad.qt.main_window import MainWindow

    windows = []

    def make(model_path=None, settings_=None, size=(1100, 760)):
        w = MainWindow(model_path=model_path, settings=settings_ if settings_ is not None else settings)
        qtbot.addWidget(w)
        w.resize(*size)
        w.show()
        qtbot.waitExposed(w)
        QApplication.processEvents()  # the deferred default layout of the first show
        windows.append(w)
        return w

    yield make
    for w in windows:
        if w.isVisible():
            w.close()


# ---- drawing with real mouse events ---------------------------------------------------------------

DIGIT_STROKES = {
    # polylines in canvas units (0..1, y down)
    "1": [[(0.52, 0.15), (0.50, 0.50), (0.48, 0.85)]],
    "0": [[(0.5 + 0.24 * np.sin(t), 0.5 - 0.34 * np.cos(t)) for t in np.linspace(0, 2 * np.pi, 37)]],
    "7": [[(0.25, 0.18), (0.75, 0.18), (0.60, 0.45), (0.45, 0.85)]],
}


def _widget_point(canvas, u, v):
    from PySide6.QtCore import QPointF

    r = canvas.drawing_rect()
    return QPointF(r.left() + u * r.width(), r.top() + v * r.height())


def _send_mouse(canvas, kind, pos, button, buttons):
    from PySide6.QtCore import QEvent, Qt
    from PySide6.QtGui import QMouseEvent
    from PySide6.QtWidgets import QApplication

    kinds = {"press": QEvent.MouseButtonPress, "move": QEvent.MouseMove, "release": QEvent.MouseButtonRelease}
    event = QMouseEvent(kinds[kind], pos, canvas.mapToGlobal(pos), button, buttons, Qt.NoModifier)
    QApplication.sendEvent(canvas, event)


def press_and_move(canvas, polyline, steps_per_segment=8):
    """Press the left button at the polyline's start and move along it (no release)."""
    from PySide6.QtCore import Qt

    pts = np.asarray(polyline, float)
    _send_mouse(canvas, "press", _widget_point(canvas, *pts[0]), Qt.LeftButton, Qt.LeftButton)
    for a, b in zip(pts[:-1], pts[1:]):
        for t in np.linspace(0, 1, steps_per_segment + 1)[1:]:
            _send_mouse(canvas, "move", _widget_point(canvas, *(a + (b - a) * t)), Qt.NoButton, Qt.LeftButton)
    return pts[-1]


def release(canvas, point):
    from PySide6.QtCore import Qt

    _send_mouse(canvas, "release", _widget_point(canvas, *point), Qt.LeftButton, Qt.NoButton)


def draw_polyline(canvas, polyline, steps_per_segment=8):
    """Draw one stroke with mouse press, moves and release along ``polyline`` (canvas units)."""
    release(canvas, press_and_move(canvas, polyline, steps_per_segment))


def draw_digit(canvas, digit: str):
    for stroke in DIGIT_STROKES[digit]:
        draw_polyline(canvas, stroke)
