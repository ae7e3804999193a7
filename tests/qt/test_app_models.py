"""Which models the window accepts and remembers: the CLI's check, odd metadata, a remembered model that broke."""

import html
import os
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from digitpad.core import model_io
from digitpad.core.mlp import MLP, MLPConfig
from tests.qt.test_app_files import _drop


def _odd_metadata_model(path: Path) -> Path:
    """A valid model whose metadata has a list, an int and a string where objects belong."""
    model = MLP(MLPConfig(hidden=(16,)), rng=2)
    meta = model_io.build_metadata(model) | {"metrics": [1, 2], "train_config": 5, "calibration": "yes",
                                             "temperature": 1e-300}
    return model_io.save_model(path, model, meta)


@pytest.fixture
def three_class_model(tmp_path) -> Path:
    return model_io.save_model(tmp_path / "three.npz", MLP(MLPConfig(n_in=100, hidden=(8,), n_out=3), rng=0))


def _refusal(path) -> str:
    with pytest.raises(model_io.ModelFileError) as e:
        model_io.open_model(path)
    return str(e.value)


def test_a_model_with_odd_metadata_opens_and_the_app_starts_again(make_window, tmp_path):
    settings_path = str(tmp_path / "s.ini")
    odd = _odd_metadata_model(tmp_path / "odd.npz")
    first = make_window(odd, settings_=QSettings(settings_path, QSettings.IniFormat))
    assert first.current_model_path == odd and "test accuracy unknown" in first.status_model.text()
    assert "Note:" in first.statusBar().currentMessage()
    assert "<h3>digitpad" in first.about_text()  # Help ▸ About with train_config 5
    first.close()
    assert QSettings(settings_path, QSettings.IniFormat).value("model/last") == str(odd)
    second = make_window(None, settings_=QSettings(settings_path, QSettings.IniFormat))
    assert second.current_model_path == odd and not second.banner.isVisible()
    assert second.reading.temperature == 1.0  # nothing drawn yet
    second.show_input(np.zeros((28, 28), np.float32) + 0.5)
    assert second.reading.temperature == 0.05 and np.isfinite(second.reading.probabilities).all()


def test_a_model_is_remembered_only_once_it_is_accepted(make_window, untrained_model_path, tmp_path, monkeypatch):
    w = make_window(untrained_model_path)
    other = model_io.save_model(tmp_path / "other.npz", MLP(MLPConfig(hidden=(8,)), rng=0))

    def broken(*_):
        raise RuntimeError("the status line failed")

    monkeypatch.setattr(w, "_update_status", broken)
    with pytest.raises(RuntimeError):
        w.load_model(other)
    assert w.settings.value("model/last") == str(untrained_model_path)


def test_a_remembered_model_that_broke_is_reported_once_and_forgotten(make_window, untrained_model_path, tmp_path):
    settings_path = str(tmp_path / "s.ini")
    broken = tmp_path / "was-good.npz"
    broken.write_bytes(Path(untrained_model_path).read_bytes()[:100])  # cut short since last time
    settings = QSettings(settings_path, QSettings.IniFormat)
    settings.setValue("model/last", str(broken))
    settings.sync()
    w = make_window(None, settings_=settings)
    shipped = model_io.shipped_model_path()
    if shipped.is_file():
        assert w.current_model_path == shipped
    assert w.banner.isVisible()
    text = w.banner.text.text()
    assert "was-good.npz" in text and "used last" in text and "shipped model instead" in text
    assert w.settings.value("model/last") in (None, str(shipped))
    w.close()
    again = make_window(None, settings_=QSettings(settings_path, QSettings.IniFormat))
    assert not again.banner.isVisible()  # said once; the next start just uses the shipped model


def test_a_network_that_cannot_read_digits_is_refused_as_the_cli_refuses_it(make_window, untrained_model_path,
                                                                           three_class_model, monkeypatch, qtbot):
    from PySide6.QtWidgets import QFileDialog

    sentence = html.escape(_refusal(three_class_model))
    w = make_window(untrained_model_path)
    model = w.current_model
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(three_class_model), ""))
    w.action_load_model.trigger()  # File ▸ Load model
    assert w.current_model is model and sentence in w.banner.text.text()
    w.banner.hide()
    _drop(w, three_class_model)  # drag and drop
    assert w.current_model is model and sentence in w.banner.text.text()
    w.show_input(np.zeros((28, 28), np.float32) + 0.5)  # still reads with the kept model
    assert w.reading.digit is not None


def test_a_network_that_cannot_read_digits_is_refused_at_start(make_window, three_class_model, tmp_path):
    w = make_window(three_class_model)  # gui --model
    assert w.current_model is None and html.escape(_refusal(three_class_model)) in w.banner.text.text()
    settings = QSettings(str(tmp_path / "r.ini"), QSettings.IniFormat)
    settings.setValue("model/last", str(three_class_model))
    remembered = make_window(None, settings_=settings)
    assert remembered.current_model_path != three_class_model
    assert html.escape(_refusal(three_class_model)) in remembered.banner.text.text()


def test_a_relative_model_path_is_remembered_in_full(make_window, untrained_model_path, tmp_path, monkeypatch):
    folder = tmp_path / "here"
    folder.mkdir()
    (folder / "rel.npz").write_bytes(Path(untrained_model_path).read_bytes())
    monkeypatch.chdir(folder)
    w = make_window("rel.npz")
    assert w.current_model_path == folder / "rel.npz"
    monkeypatch.chdir(tmp_path)  # started from elsewhere next time
    w.close()
    assert w.settings.value("model/last") == os.path.join(str(folder), "rel.npz")
