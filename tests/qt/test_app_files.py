"""Files: opening good and bad images, drag and drop, saving the drawing, missing and corrupt models."""

import contextlib
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from digitpad.imageio import load_image, save_png
from tests.qt.conftest import draw_digit


def _dark_on_light_seven(tmp_path) -> Path:
    """A 7 as a scanner would see it: dark ink on a light page, not square, larger than the canvas."""
    img = np.full((300, 240), 235, np.uint8)
    img[60:78, 40:200] = 20  # the bar
    for y in range(78, 260):  # the slanted leg
        x = int(200 - (y - 78) * 0.55)
        img[y, max(x - 9, 0):x + 9] = 20
    return save_png(tmp_path / "seven.png", img)


def _drop(window, path: Path):
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    pos = QPointF(window.canvas.geometry().center())
    enter = QDragEnterEvent(pos.toPoint(), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, enter)
    accepted = enter.isAccepted()
    drop = QDropEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(window, drop)
    return accepted


def test_open_a_good_image(make_window, trained_model_path, tmp_path, qtbot):
    w = make_window(trained_model_path)
    path = _dark_on_light_seven(tmp_path)
    with qtbot.waitSignal(w.reading_changed, timeout=2000) as blocker:
        assert w.open_image(path)
    assert blocker.args[0].digit == 7
    assert w.canvas.picture is not None and w.canvas.picture.shape == (300, 240, 4)
    assert w.last_message is None
    # drawing on top starts a fresh drawing; undo brings the picture back
    draw_digit(w.canvas, "1")
    assert w.canvas.picture is None and w.reading.digit == 1
    w.canvas.undo()
    w.canvas.undo()
    assert w.canvas.picture is not None and w.reading.digit == 7


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n this is not really a png", b"hello"])
def test_open_a_bad_image_names_it_and_keeps_running(make_window, untrained_model_path, tmp_path, qtbot, content):
    w = make_window(untrained_model_path)
    draw_digit(w.canvas, "1")
    before = w.canvas.bitmap()
    bad = tmp_path / "broken picture.png"
    bad.write_bytes(content)
    assert not w.open_image(bad)
    assert w.last_message is not None and w.last_message.isVisible()
    assert "broken picture.png" in w.last_message.text()
    assert not w.last_message.isModal() or w.last_message.windowModality() == Qt.WindowModal
    assert np.array_equal(w.canvas.bitmap(), before)  # the drawing is untouched
    w.last_message.close()
    qtbot.waitUntil(lambda: w.last_message is None, timeout=2000)
    assert not w.open_image(tmp_path / "missing.png")
    assert "missing.png" in w.last_message.text()


def test_drag_and_drop_an_image_and_a_model(make_window, trained_model_path, untrained_model_path, tmp_path, qtbot):
    w = make_window(trained_model_path)
    path = _dark_on_light_seven(tmp_path)
    with qtbot.waitSignal(w.reading_changed, timeout=2000):
        assert _drop(w, path)
    assert w.canvas.picture is not None and w.reading.digit == 7
    assert _drop(w, untrained_model_path)  # a dropped .npz becomes the model
    assert w.current_model_path == Path(untrained_model_path)
    assert "untrained.npz" in w.status_model.text()
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    _drop(w, bad)
    assert "notes.txt" in w.last_message.text()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_open_or_drop_a_named_pipe_names_it_and_never_freezes(make_window, untrained_model_path, tmp_path, qtbot):
    """Opening a FIFO used to block the GUI thread in open() until something wrote to it."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    done = threading.Event()

    def release_a_blocked_reader():  # a safety net only: a regression fails the test instead of hanging it
        if not done.wait(30):
            with contextlib.suppress(OSError):  # ENXIO when no reader waits: the expected case
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))

    safety = threading.Thread(target=release_a_blocked_reader, daemon=True)
    safety.start()
    try:
        w = make_window(untrained_model_path)
        assert not w.open_image(fifo)
        assert "pipe.png: is a named pipe (FIFO), not a regular file" in w.last_message.text()
        w.last_message.close()
        qtbot.waitUntil(lambda: w.last_message is None, timeout=2000)
        _drop(w, fifo)
        assert "pipe.png: is a named pipe (FIFO)" in w.last_message.text()
    finally:
        done.set()
        safety.join()


def test_drag_without_files_is_refused(make_window, untrained_model_path):
    w = make_window(untrained_model_path)
    mime = QMimeData()
    mime.setText("seven")
    enter = QDragEnterEvent(QPoint(10, 10), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(w, enter)
    assert not enter.isAccepted()


def test_save_drawing_as_png(make_window, untrained_model_path, tmp_path):
    w = make_window(untrained_model_path)
    draw_digit(w.canvas, "0")
    saved = w.save_drawing(tmp_path / "zero")
    assert saved == tmp_path / "zero.png"
    back = load_image(saved)
    assert back.shape == (280, 280, 4)
    assert np.array_equal(back[..., 0], w.canvas.bitmap())
    assert w.save_drawing(tmp_path / "no such folder" / "x.png") is None
    assert "x.png" in w.last_message.text()


def test_corrupt_model_at_startup_still_opens_and_offers_a_way_out(make_window, untrained_model_path, tmp_path,
                                                                   qtbot):
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    w = make_window(bad)
    assert w.isVisible()
    assert w.current_model is None and w.reading_model is None
    assert w.banner.isVisible() and "corrupt.npz" in w.banner.text.text()
    assert w.banner.load_button.isVisible()
    assert "No model" in w.reading_label.text() and w.status_model.text() == "No model"
    draw_digit(w.canvas, "1")  # drawing without a model is harmless
    assert w.reading.digit is None
    assert w.load_model(untrained_model_path)
    assert not w.banner.isVisible() and w.reading.digit is not None


def test_missing_model_at_startup(make_window, tmp_path):
    w = make_window(tmp_path / "nowhere.npz")
    assert w.current_model is None
    assert "nowhere.npz" in w.banner.text.text() and "no such model file" in w.banner.text.text()


def test_loading_a_bad_model_keeps_the_current_one(make_window, untrained_model_path, tmp_path):
    w = make_window(untrained_model_path)
    model = w.current_model
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nonsense")
    assert not w.load_model(bad)
    assert w.current_model is model
    assert "bad.npz" in w.banner.text.text() and "Still reading" in w.banner.text.text()


def test_save_model_as_and_load_it_back(make_window, untrained_model_path, tmp_path):
    w = make_window(untrained_model_path)
    saved = w.save_model(tmp_path / "copy.npz")
    assert saved == tmp_path / "copy.npz" and saved.is_file()
    assert w.current_model_path == saved
    draw_digit(w.canvas, "7")
    probs = w.reading.probabilities.copy()
    assert w.load_model(saved)
    assert np.allclose(w.reading.probabilities, probs)
