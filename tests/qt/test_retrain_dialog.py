"""The Train page's settings (presets, every field, refusal by field name, last used) and the MNIST panel.

The download tests serve files from a real HTTP server on 127.0.0.1 started by the test.
"""

from __future__ import annotations

import gzip
import http.server
import os
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import QLineEdit, QPushButton

from digitpad.core import data as data_mod
from digitpad.core.train import PRESETS, TrainConfig
from digitpad.qt.train_dialog import DataPanel, TrainSettings, load_last_config, missing_files, parse_hidden
from tests.conftest import mnist_mirror


@pytest.fixture
def settings(tmp_path):
    return QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat)


@pytest.fixture
def dialog(qtbot, settings):
    d = TrainSettings(None, settings)
    qtbot.addWidget(d)
    d.show()
    return d


def test_opens_on_quick_so_start_is_one_click(dialog):
    assert dialog.objectName() == "train_settings"
    assert dialog.preset.currentData() == "quick"
    assert dialog.try_config() == PRESETS["quick"]


def test_every_setting_reaches_the_config(dialog):
    dialog.hidden.setText("64 x 32, 16")
    dialog.activation.setCurrentIndex(dialog.activation.findData("sigmoid"))
    dialog.optimizer.setCurrentIndex(dialog.optimizer.findData("sgd"))
    dialog.lr.setText("0.05")
    dialog.schedule.setCurrentIndex(dialog.schedule.findData("cosine"))
    dialog.momentum.setValue(0.8)
    dialog.batch_size.setValue(32)
    dialog.epochs.setValue(3)
    dialog.weight_decay.setText("1e-4")
    dialog.dropout.setValue(0.25)
    dialog.augment.setChecked(True)
    dialog.limit.setValue(5000)
    dialog.val_size.setValue(1000)
    dialog.seed.setValue(7)
    cfg = dialog.try_config()
    assert (cfg.hidden, cfg.activation, cfg.optimizer, cfg.lr, cfg.schedule) == ((64, 32, 16), "sigmoid", "sgd",
                                                                                  0.05, "cosine")
    assert (cfg.momentum, cfg.batch_size, cfg.epochs, cfg.weight_decay, cfg.dropout) == (0.8, 32, 3, 1e-4, 0.25)
    assert (cfg.augment, cfg.limit, cfg.val_size, cfg.seed) == (True, 5000, 1000, 7)
    assert dialog.preset.currentData() == "custom"


@pytest.mark.parametrize("field, text, label", [
    ("lr", "fast", "Learning rate"),
    ("lr", "-1", "Learning rate"),
    ("hidden", "256, many", "Hidden layers"),
    ("hidden", "", "Hidden layers"),
    ("hidden", "0, 10", "Hidden layers"),
    ("weight_decay", "-0.1", "L2 weight decay"),
])
def test_bad_values_are_refused_naming_the_field(dialog, field, text, label):
    widget: QLineEdit = dialog.fields[field]
    widget.setText(text)
    assert dialog.error.text().startswith(label + ":")  # named as it is typed
    assert dialog.try_config() is None
    assert dialog.error.text().startswith(label + ":")
    assert widget.selectedText() == text  # the cursor is put in the field, its text selected
    widget.setText("0.001" if field != "hidden" else "32")
    assert dialog.error.text() == ""  # an edit that mends it clears the complaint


def test_presets_fill_the_fields_and_last_used_comes_back(qtbot, settings):
    d = TrainSettings(None, settings)
    qtbot.addWidget(d)
    assert d.preset.findData("last") == -1
    d.preset.setCurrentIndex(d.preset.findData("best"))
    assert d.augment.isChecked() and d.hidden.text() == ", ".join(map(str, PRESETS["best"].hidden))
    assert "minutes" in d.preset_note.text()
    d.preset.setCurrentIndex(d.preset.findData("standard"))
    d.seed.setValue(11)
    assert d.preset.currentData() == "custom"
    chosen = d.try_config()
    d.remember(chosen)  # started
    assert load_last_config(settings) == chosen
    assert d.preset.findData("last") != -1
    again = TrainSettings(None, settings)
    qtbot.addWidget(again)
    assert again.preset.currentData() == "quick"  # always opens on Quick
    again.preset.setCurrentIndex(again.preset.findData("last"))
    assert again.config() == chosen


def test_summary_counts_steps(dialog):
    dialog.limit.setValue(1000)
    dialog.batch_size.setValue(100)
    dialog.epochs.setValue(3)
    assert "1,000 training digits" in dialog.summary.text() and "30 steps" in dialog.summary.text()


def test_parse_hidden():
    assert parse_hidden("256,128") == (256, 128)
    assert parse_hidden(" 4 x 4 ") == (4, 4)
    with pytest.raises(ValueError):
        parse_hidden("1.5")


def test_editing_a_field_moves_no_row(qtbot, dialog):
    """A shorter preset note or an error line appearing used to make every row below jump."""
    dialog.resize(360, 640)
    qtbot.waitUntil(lambda: dialog.seed.y() > 0, timeout=1000)
    rows = lambda: [w.mapTo(dialog, w.rect().topLeft()).y() for w in dialog.fields.values()]  # noqa: E731
    before = rows()
    dialog.seed.setValue(3)  # Quick -> Custom: a one-line note instead of two
    dialog.layout().activate()  # lay out now: rows that were going to move have moved
    assert rows() == before
    dialog.lr.setText("fast")  # an error line
    dialog.layout().activate()
    assert dialog.error.text() and rows() == before


# ---- MNIST missing ----------------------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    code = {np.dtype(np.uint8): 0x08}[array.dtype]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def tiny_mnist_folder(folder: Path, n_train: int = 700, n_test: int = 100) -> Path:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)).astype(np.uint8))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


def test_choose_folder_checks_the_files(qtbot, tmp_path):
    d = DataPanel(None, dest=tmp_path / "dest")
    qtbot.addWidget(d)
    d.show()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not d.use_folder(empty)
    assert "train-images-idx3-ubyte" in d.message.text() and d.isVisible()
    good = tiny_mnist_folder(tmp_path / "mine")
    assert missing_files(good) == []
    with qtbot.waitSignal(d.found) as found:
        assert d.use_folder(good)
    assert found.args == [good.resolve()] and d.folder == good.resolve()


def test_a_long_download_error_is_shown_whole(qtbot, tmp_path):
    """The offline message was cut off in its 480x202 dialog; on the page it wraps and is read whole."""
    d = DataPanel(None, dest=tmp_path / "dest")
    qtbot.addWidget(d)
    d.resize(320, 400)
    d.show()
    text = ("could not download train-images-idx3-ubyte.gz from any mirror: " + "name resolution failed; " * 8)
    d._on_failed(text)
    qtbot.waitUntil(lambda: d.message.height() >= d.message.heightForWidth(d.message.width()), timeout=2000)
    assert d.message.wordWrap() and d.message.width() <= d.width()


def test_missing_mnist_asks_then_remembers_the_folder_and_trains(qtbot, tmp_path, monkeypatch):
    from digitpad.qt.main_window import MainWindow

    monkeypatch.setattr("digitpad.core.model_io.user_models_dir", lambda: tmp_path / "models")
    monkeypatch.delenv(data_mod.ENV_VAR, raising=False)
    monkeypatch.setattr(data_mod, "user_data_dir", lambda: tmp_path / "nowhere")
    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.show()
    w.show_page(w.train_page)
    panel = w.train_page.data_panel
    assert panel.isVisible()  # said before Start is pressed
    folder = tiny_mnist_folder(tmp_path / "copied")
    cfg = TrainConfig(limit=300, val_size=100, epochs=1, batch_size=50, hidden=(8,))
    assert not w.retrain.start(cfg)  # nothing to train on yet
    with qtbot.waitSignals([w.retrain.run_started, w.retrain.run_finished], order="strict", timeout=20000):
        panel.use_folder(folder)  # then the run asked for starts
    assert not panel.isVisible()
    assert Path(settings.value("data/dir")) == folder.resolve()
    assert w.retrain.locate_data() == folder.resolve()  # found again without asking
    w.retrain.shutdown()


class _Handler(http.server.SimpleHTTPRequestHandler):
    slow = False

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.slow:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", str(64 * 1024 * 500))  # within what train-images can be
        self.end_headers()
        try:
            for _ in range(500):
                self.wfile.write(b"\0" * 64 * 1024)
                self.wfile.flush()
                time.sleep(0.02)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server():
    servers = []

    def start(directory: Path, slow: bool = False):
        handler = type("H", (_Handler,), {"slow": slow})
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(directory), **k))
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}/"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.mnist
def test_download_shows_progress_and_fills_the_folder(qtbot, tmp_path, server, mnist_dir):
    url = server(mnist_mirror(mnist_dir, tmp_path / "mirror"))
    dest = tmp_path / "mnist"
    d = DataPanel(None, dest=dest, mirrors=(url,))
    qtbot.addWidget(d)
    d.show()
    progress = []
    with qtbot.waitSignal(d.found, timeout=60000):
        qtbot.mouseClick(d.findChild(QPushButton, "data_download"), Qt.LeftButton)
        qtbot.waitUntil(lambda: d.progress.isVisible(), timeout=5000)
        progress.append(d.progress.format())
    assert d.folder == dest.resolve()
    assert missing_files(dest) == []
    assert data_mod.find_data_dir(dest) == dest.resolve()


def test_cancel_stops_the_download_and_leaves_nothing(qtbot, tmp_path, server):
    url = server(tmp_path, slow=True)
    dest = tmp_path / "dest"
    d = DataPanel(None, dest=dest, mirrors=(url,))
    qtbot.addWidget(d)
    d.show()
    qtbot.mouseClick(d.findChild(QPushButton, "data_download"), Qt.LeftButton)
    qtbot.waitUntil(lambda: "Downloading" in d.message.text(), timeout=10000)
    assert not d.findChild(QPushButton, "data_download").isEnabled()
    qtbot.mouseClick(d.findChild(QPushButton, "data_cancel"), Qt.LeftButton)
    qtbot.waitUntil(lambda: "cancelled" in d.message.text(), timeout=5000)
    assert d.isVisible() and not d.downloading  # still there: the user may choose a folder instead
    assert d.findChild(QPushButton, "data_choose").isEnabled()
    assert [p for p in os.listdir(dest)] == []
