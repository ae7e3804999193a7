"""Settings survive a restart; theme, dialogs, the exception hook, and ``run`` starting the app."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication, QMessageBox

from tests.qt.conftest import draw_digit

REPO = Path(__file__).resolve().parents[2]


def test_settings_survive_a_restart(make_window, untrained_model_path, tmp_path, qtbot):
    path = str(tmp_path / "restart.ini")
    first = make_window(untrained_model_path, settings_=QSettings(path, QSettings.IniFormat), size=(1000, 700))
    first.pen_width_slider.setValue(27)
    first.threshold_box.setValue(85)
    first.set_theme("light")
    first.pane_actions["network_input"].setChecked(False)  # View ▸ What the network sees off
    first.show_page(first.evaluate_page)
    first.resize(1111, 733)
    qtbot.waitUntil(lambda: first.width() == 1111)
    first.close()

    settings = QSettings(path, QSettings.IniFormat)
    assert settings.value("model/last") == str(untrained_model_path)
    second = make_window(None, settings_=settings, size=None or (1111, 733))  # no model given: the last one
    assert second.canvas.pen_width == 27.0 and second.pen_width_slider.value() == 27
    assert second.threshold == pytest.approx(0.85) and second.threshold_box.value() == 85
    assert second.theme.name == "light" and second.theme_actions["light"].isChecked()
    assert second.current_model_path == Path(untrained_model_path)
    assert second.current_page() is second.evaluate_page  # the page shown last comes back
    second.show_page(second.draw_page)
    assert not second.network_input.isVisible() and second.probabilities.isVisible()
    second.reset_layout()
    assert second.network_input.isVisible()


def test_geometry_is_restored(untrained_model_path, tmp_path, qtbot):
    from digitpad.qt.main_window import MainWindow

    path = str(tmp_path / "geometry.ini")
    first = MainWindow(untrained_model_path, QSettings(path, QSettings.IniFormat))
    qtbot.addWidget(first)
    first.resize(first.minimumSizeHint().width() + 5, 560)
    first.show()
    qtbot.waitExposed(first)
    size = (first.width(), first.height())
    assert size != (1280, 800)  # not the default size
    first.close()
    second = MainWindow(None, QSettings(path, QSettings.IniFormat))
    qtbot.addWidget(second)
    assert (second.width(), second.height()) == size


def test_a_missing_last_model_falls_back_to_the_shipped_one(make_window, tmp_path):
    from digitpad.core import model_io

    settings = QSettings(str(tmp_path / "s.ini"), QSettings.IniFormat)
    settings.setValue("model/last", str(tmp_path / "gone.npz"))
    w = make_window(None, settings_=settings)
    if model_io.shipped_model_path().is_file():
        assert w.current_model_path == model_io.shipped_model_path()
        assert "shipped" in w.status_model.text()
    else:
        assert w.current_model is None and w.banner.isVisible()


def test_the_user_settings_are_not_touched(make_window, untrained_model_path, isolated_user_dirs):
    w = make_window(untrained_model_path)
    default = QSettings("digitpad", "digitpad")
    assert str(isolated_user_dirs) in default.fileName()
    assert w.settings.fileName() != default.fileName()


def test_theme_switch_recolours_the_panes(make_window, untrained_model_path):
    from digitpad.qt.panes import THEMES

    w = make_window(untrained_model_path)
    draw_digit(w.canvas, "7")
    caption = w.logits.caption.text
    w.theme_actions["light"].trigger()
    assert w.logits.caption.text == caption  # the reading is still shown, in the new colours
    assert w.theme.name == "light"
    assert w.probabilities.backgroundBrush().color().name() == THEMES["light"].background
    assert QApplication.instance().palette().window().color().name() == THEMES["light"].window
    w.theme_actions["dark"].trigger()
    assert w.logits.backgroundBrush().color().name() == THEMES["dark"].background


def test_about_and_shortcuts(make_window, untrained_model_path):
    w = make_window(untrained_model_path)
    w.action_about.trigger()
    about = w.last_message
    assert about.objectName() == "about_dialog" and about.isVisible()
    text = about.text()
    assert "784-32-16-10 relu" in text and "10.00%" in text and "PySide6" in text and "Trained" in text
    about.close()
    w.action_shortcuts.trigger()
    assert "Ctrl+Shift+Z" in w.last_message.text() and "Esc" in w.last_message.text()


def test_menus_have_the_actions(make_window, untrained_model_path):
    w = make_window(untrained_model_path)
    names = lambda menu: [a.text().replace("&", "") for a in menu.actions() if not a.isSeparator()]  # noqa: E731
    assert names(w.menu_file) == ["Open image…", "Save drawing as PNG…", "Load model…", "Save model as…", "Quit"]
    train = names(w.menu_train)
    assert any(t.startswith("Retrain") for t in train) and any("Stop" in t for t in train)
    view = names(w.menu_view)
    assert "Probabilities" in view and "What the network sees" in view and "Theme" in view
    assert {"Draw", "Train", "Evaluate"} <= set(view)
    assert names(w.menu_theme) == ["Dark theme", "Light theme"]
    assert names(w.menu_help) == ["Keyboard shortcuts", "About digitpad"]


def test_exception_hook_logs_and_shows_a_non_blocking_dialog(qtbot, tmp_path, caplog):
    from digitpad.qt.app import ExceptionHook

    hook = ExceptionHook(dialogs=True)
    try:
        raise RuntimeError("the canvas caught fire")
    except RuntimeError:
        info = sys.exc_info()
    with caplog.at_level(logging.ERROR, logger="digitpad"):
        hook(*info)  # returns: nothing waits for the user
    assert "the canvas caught fire" in caplog.text and "Traceback" in caplog.text
    assert len(hook.open_boxes) == 1
    box = hook.open_boxes[0]
    assert isinstance(box, QMessageBox) and box.isVisible() and not box.isModal()
    assert "RuntimeError: the canvas caught fire" in box.text()
    assert "Traceback" in box.detailedText()
    for _ in range(5):  # a storm of errors opens a bounded number of dialogs
        hook(*info)
    assert len(hook.open_boxes) == ExceptionHook.MAX_DIALOGS
    for b in hook.open_boxes:
        b.close()


def test_exception_hook_install_and_uninstall():
    from digitpad.qt.app import ExceptionHook

    before = sys.excepthook
    hook = ExceptionHook(dialogs=False).install()
    assert sys.excepthook is hook
    hook.uninstall()
    assert sys.excepthook is before


def test_run_opens_the_window_and_returns(tmp_path, untrained_model_path):
    """``run`` in a fresh process (as ``digitpad`` starts it) shows the window, then quits cleanly."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", DIGITPAD_EXIT_WHEN_SHOWN="1", DIGITPAD_ERROR_DIALOGS="0",
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_STATE_HOME=str(tmp_path / "state"),
               XDG_DATA_HOME=str(tmp_path / "data"), PYTHONPATH=str(REPO))
    code = ("import sys; from digitpad.qt.app import run; "
            f"sys.exit(run(model_path={str(untrained_model_path)!r}, argv=['digitpad']))")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("shown ")
    assert "Traceback" not in proc.stderr


def test_the_app_keeps_every_mouse_move(qapp):
    """Busy or not, queued mouse moves are not merged: a fast stroke keeps its corners."""
    from PySide6.QtCore import QCoreApplication, Qt

    from digitpad.qt.app import create_application

    assert create_application() is qapp
    assert not QCoreApplication.testAttribute(Qt.AA_CompressHighFrequencyEvents)
