"""My digits: saving the drawing from the Draw page (a bar's click, Shift+digit, Undo), the page
(list, delete, import, export, files that cannot be read) and a fine-tune run to Keep.

The fine-tune runs a small model on the tiny synthetic MNIST-like set of the training tests
with a few steps, so it takes seconds; every sample folder is the test's own.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from digitpad.core.finetune import FineTuneConfig
from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.samples import SampleStore
from digitpad.imageio import save_png
from digitpad.qt.main_window import MainWindow
from tests.qt.conftest import draw_digit
from tests.qt.test_retrain import data, models_dir  # noqa: F401 (fixtures)

QUICK = FineTuneConfig(steps=6, batch_size=16, folds=2)


@pytest.fixture
def window(qtbot, settings, models_dir, tmp_path):
    w = MainWindow(settings=settings)
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitExposed(w)
    w.my_digits.store = SampleStore(tmp_path / "samples")
    w.my_digits.refresh()
    yield w
    w.retrain.shutdown()


def bar_point(pane, digit: int) -> QPoint:
    """Where digit's bar column is on the probabilities pane, in viewport pixels."""
    from PySide6.QtCore import QPointF

    vb = pane.getPlotItem().getViewBox()
    scene = vb.mapViewToScene(QPointF(digit, 0.5))
    return pane.mapFromScene(scene)


def digit_picture(digit: int, shift: int = 0) -> np.ndarray:
    """A white-on-black picture of a crude digit (a bar, a ring, a hook), 200x200 grey."""
    img = np.zeros((200, 200), np.uint8)
    yy, xx = np.mgrid[:200, :200]
    if digit == 1:
        img[40:160, 95 + shift:110 + shift] = 255
    elif digit == 0:
        r = np.hypot((yy - 100) / 60, (xx - 100 - shift) / 40)
        img[(r > 0.8) & (r < 1.05)] = 255
    else:
        img[40:55, 60 + shift:140 + shift] = 255
        for k in range(110):
            img[55 + k, max(0, 135 - k // 2 + shift - 8):135 - k // 2 + shift + 8] = 255
    return img


def test_clicking_a_bar_saves_the_drawing_and_undo_removes_it(qtbot, window):
    w, c = window, window.my_digits
    draw_digit(w.canvas, "1")
    pane = w.probabilities
    with qtbot.waitSignal(c.saved) as saved:
        qtbot.mouseClick(pane.viewport(), Qt.LeftButton, pos=bar_point(pane, 7))
    sample_id = saved.args[0]
    assert sample_id.startswith("7/")
    assert c.store.counts()[7] == 1
    assert w.statusBar().currentMessage() == "Saved as a 7 · 1 of your digits"
    strokes = c.store.strokes(sample_id)
    assert strokes is not None and len(strokes) == len(w.canvas.strokes)  # the strokes came along
    assert c.store.picture(sample_id).shape[:2] == w.canvas.bitmap().shape  # the canvas bitmap, not 28x28
    assert c.undo_button.isVisible()
    qtbot.mouseClick(c.undo_button, Qt.LeftButton)
    assert c.store.counts()[7] == 0 and not c.undo_button.isVisible()
    assert w.canvas.strokes  # Undo took the sample back, not the stroke


def test_shift_digit_saves_and_a_blank_canvas_says_there_is_nothing(qtbot, window):
    w, c = window, window.my_digits
    w.activateWindow()
    QTest.keyClick(w, Qt.Key_3, Qt.ShiftModifier)
    assert c.store.counts()[3] == 0
    assert "Nothing to save" in w.statusBar().currentMessage()
    draw_digit(w.canvas, "0")
    QTest.keyClick(w, Qt.Key_3, Qt.ShiftModifier)
    QTest.keyClick(w, Qt.Key_0, Qt.ShiftModifier)
    assert c.store.counts()[3] == 1 and c.store.counts()[0] == 1
    assert w.statusBar().currentMessage() == "Saved as a 0 · 2 of your digits"
    assert w.action_undo.isEnabled()  # the canvas's Ctrl+Z still undoes strokes


def test_an_opened_picture_is_saved_as_itself(qtbot, window, tmp_path):
    w, c = window, window.my_digits
    picture = digit_picture(1)
    save_png(tmp_path / "one.png", picture)
    assert w.open_image(tmp_path / "one.png")
    sample_id = c.save_sample(1)
    assert c.store.strokes(sample_id) is None
    assert np.array_equal(c.store.picture(sample_id)[..., 0], picture)


def test_the_page_lists_deletes_with_undo_and_shows_a_sample(qtbot, window):
    w, c = window, window.my_digits
    ids = [c.store.add(d, digit_picture(d, s)) for d in (1, 7) for s in (0, 10)] + [c.store.add(0, digit_picture(0))]
    w.show_page(w.samples_page)
    page = w.samples_page
    assert [page.rows[d].list.count() for d in (0, 1, 7)] == [1, 2, 2]
    assert "5 of your digits" in page.summary.text()
    assert "1 more 0" in page.note.text() and page.note.isVisible()  # a lone 0 is too few
    assert not page.finetune_button.isEnabled()
    page.rows[7].list.item(0).setSelected(True)
    page.rows[1].list.setFocus()
    QTest.keyClick(page.rows[1].list, Qt.Key_Delete)
    assert c.store.counts()[7] == 1 and page.rows[7].list.count() == 1
    c.undo()
    assert c.store.counts()[7] == 2 and page.rows[7].list.count() == 2
    item = page.rows[1].list.item(0)
    page.rows[1].list.itemActivated.emit(item)
    assert w.current_page() is w.draw_page and w.canvas.picture is not None
    assert w.reading.digit is not None  # read as the network reads it
    assert ids[0] in {page.rows[1].list.item(i).data(Qt.UserRole) for i in range(2)}


def test_import_lists_bad_files_and_export_writes_the_layout(qtbot, window, tmp_path):
    w, c = window, window.my_digits
    src = tmp_path / "in"
    for d in (2, 5):
        (src / str(d)).mkdir(parents=True)
        save_png(src / str(d) / "a.png", digit_picture(d))
    (src / "5" / "broken.png").write_bytes(b"not a picture")
    job = c.import_folder(src)
    qtbot.waitUntil(lambda: job.finished and c.job is None, timeout=10000)
    assert c.store.counts()[2] == 1 and c.store.counts()[5] == 1
    box = w.last_message
    assert box is not None and "broken.png" in box.text() and "Imported 2 digits" in box.text()
    box.close()
    assert w.samples_page.rows[5].list.count() == 1

    out = tmp_path / "out"
    job = c.export_folder(out)
    qtbot.waitUntil(lambda: job.finished and c.job is None, timeout=10000)
    assert sorted(p.relative_to(out).parts[0] for p in out.rglob("*.png")) == ["2", "5"]
    assert "Exported 2 digits" in w.statusBar().currentMessage()


def test_a_missing_import_folder_is_one_message(qtbot, window, tmp_path):
    job = window.my_digits.import_folder(tmp_path / "nowhere")
    qtbot.waitUntil(lambda: job.finished, timeout=10000)
    assert window.last_message is not None and "nowhere" in window.last_message.text()


def test_a_fine_tune_runs_to_keep_and_the_kept_model_is_current_and_recorded(qtbot, window, data, models_dir):
    from digitpad.core.runs import find_run

    w, c = window, window.my_digits
    w.set_model(MLP(MLPConfig(hidden=(32, 16)), rng=3), {}, None)
    for d in (1, 7):
        for s in (-10, 0, 10):
            c.store.add(d, digit_picture(d, s))
    c.refresh()
    assert w.samples_page.finetune_button.isEnabled()
    outcomes = []
    w.retrain.run_finished.connect(outcomes.append)
    with qtbot.waitSignals([w.retrain.run_started, w.retrain.run_finished], order="strict", timeout=30000):
        assert c.finetune(mnist=data, config=QUICK)
    outcome = outcomes[-1]
    r = outcome.details
    assert r.samples == 6 and r.folds == 2 and 0.0 <= r.samples_accuracy_after <= 1.0
    assert w.current_page() is w.samples_page and w.samples_page.result_box.isVisible()
    text = w.samples_page.result.text()
    assert "before" in text and "after" in text and "MNIST test set" in text
    with qtbot.waitSignal(w.retrain.kept) as kept:
        qtbot.mouseClick(w.samples_page.keep_button, Qt.LeftButton)
    path = kept.args[0]
    assert str(w.current_model_path) == path and path.startswith(str(models_dir))
    assert w.current_model is outcome.model
    run = find_run(outcome.run_folder.name)
    assert run.info["source"] == "finetune" and run.info["kept"] is True and run.info["model"] == path
    assert not w.samples_page.result_box.isVisible()


def test_fine_tune_without_mnist_offers_download_or_a_folder(qtbot, window, monkeypatch):
    w, c = window, window.my_digits
    monkeypatch.setattr(w.retrain, "locate_data", lambda: None)
    for d in (1, 7):
        for s in (0, 10):
            c.store.add(d, digit_picture(d, s))
    assert c.action_finetune in w.menu_train.actions()
    c.action_finetune.trigger()  # Train ▸ Fine-tune on my digits
    QApplication.processEvents()
    assert w.current_page() is w.train_page and w.train_page.data_panel.isVisible()
    config, hooks = w.retrain._waiting_config
    assert hooks["source"] == "finetune" and hooks["make_trainer"] is not None
