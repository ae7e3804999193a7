"""Starting the desktop app: QApplication set-up, the exception hook, ``run``.

``run(model_path=None, argv=None)`` is what ``digitpad`` (and ``digitpad gui``) calls.
The exception hook logs every uncaught exception to the user log folder and shows it in
a non-blocking dialog, so nothing the user does ends the app silently. When Qt finds no
platform plugin it can start (no display, or system libraries missing on a bare Linux),
digitpad says what to do and exits with status 1 instead of letting Qt abort.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path

_T0 = time.perf_counter()
log = logging.getLogger("digitpad")
ICON_PATH = Path(__file__).with_name("icon.png")


def log_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_log_dir("digitpad", appauthor=False))


def setup_logging() -> Path | None:
    """Log warnings and errors to ``digitpad.log`` in the user log folder; return its path."""
    if any(getattr(h, "_digitpad", False) for h in log.handlers):
        return Path(next(h.baseFilename for h in log.handlers if getattr(h, "_digitpad", False)))
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(folder / "digitpad.log", encoding="utf-8", delay=True)
    except OSError:
        return None
    handler._digitpad = True
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return Path(handler.baseFilename)


class ExceptionHook:
    """``sys.excepthook`` that logs the traceback and shows it in a dialog that does not block."""

    MAX_DIALOGS = 3  # an error in a paint loop must not bury the screen in dialogs

    def __init__(self, dialogs: bool = True):
        self.dialogs = dialogs
        self.previous = sys.excepthook
        self.open_boxes: list = []
        self.count = 0

    def install(self) -> "ExceptionHook":
        sys.excepthook = self
        return self

    def uninstall(self) -> None:
        if sys.excepthook is self:
            sys.excepthook = self.previous

    def __call__(self, exc_type, exc, tb) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            self.previous(exc_type, exc, tb)
            return
        self.count += 1
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        log.error("uncaught exception:\n%s", text)
        sys.stderr.write(text)
        if self.dialogs:
            try:
                self._show(exc_type, exc, text)
            except Exception:  # the hook itself must never raise
                log.exception("could not show the error dialog")

    def _show(self, exc_type, exc, text: str) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QApplication, QMessageBox

        app = QApplication.instance()
        if app is None:
            return
        self.open_boxes = [b for b in self.open_boxes if _alive(b)]
        if len(self.open_boxes) >= self.MAX_DIALOGS:
            return
        parent = app.activeWindow()
        box = QMessageBox(QMessageBox.Critical, "digitpad: something went wrong",
                          f"{exc_type.__name__}: {exc}\n\nThe app keeps running. "
                          f"Details are in {log_dir() / 'digitpad.log'}.", QMessageBox.Ok, parent)
        box.setObjectName("error_dialog")
        box.setDetailedText(text)
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.setWindowModality(Qt.NonModal)
        box.show()
        self.open_boxes.append(box)


def _alive(widget) -> bool:
    try:
        import shiboken6

        return shiboken6.isValid(widget) and widget.isVisible()
    except ImportError:  # pragma: no cover
        return True


def make_icon():
    from PySide6.QtGui import QIcon

    return QIcon(str(ICON_PATH)) if ICON_PATH.is_file() else QIcon()


# What Qt's xcb platform plugin (the window on X11) needs beyond Python on Debian/Ubuntu;
# the rest comes with these as dependencies. README lists the same.
QT_XCB_PACKAGES = ("libegl1 libgl1 libfontconfig1 libglib2.0-0 libdbus-1-3 libxkbcommon-x11-0 "
                   "libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0")


def platform_plugin_hint(messages: list[str]) -> str:
    """What to do when Qt found no platform plugin it could start, from Qt's messages."""
    text = "\n".join(messages)
    match = re.search(r'platform plugin "([^"]+)"', text)
    name = match.group(1) if match else os.environ.get("QT_QPA_PLATFORM", "xcb")
    if not sys.platform.startswith("linux"):
        return f'digitpad: Qt cannot start its "{name}" platform plugin (see Qt\'s messages above).'
    if "could not connect to display" in text:
        return (f"digitpad: no display to open the window on (DISPLAY={os.environ.get('DISPLAY', '')!r}): "
                "start digitpad from a desktop session, or under Xvfb.")
    problem = _plugin_load_error(name)
    if problem is None:
        return f'digitpad: this Qt has no "{name}" platform plugin (QT_QPA_PLATFORM): see the list above.'
    lines = [f'digitpad: Qt cannot start its "{name}" platform plugin, which draws the window.']
    if problem:
        lines.append(f"  {problem}")
    lines.append("On Debian or Ubuntu, install the system libraries Qt needs:")
    lines.append(f"  sudo apt-get install {QT_XCB_PACKAGES}")
    return "\n".join(lines)


def _plugin_load_error(name: str) -> str | None:
    """The dynamic loader's complaint about platform plugin ``name`` (the missing library, say):
    "" when it loads, None when there is no such plugin."""
    import ctypes

    from PySide6.QtCore import QLibraryInfo

    plugin = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / f"libq{name}.so"
    if not plugin.is_file():
        return None
    try:
        ctypes.CDLL(str(plugin))
    except OSError as e:
        return str(e)
    return ""


class _PlatformPluginCheck:
    """Qt message handler while QApplication starts: Qt's fatal "no Qt platform plugin could be
    initialized" would abort the process; print what to install instead and exit with status 1."""

    def __init__(self):
        self.messages: list[str] = []

    def __call__(self, mode, context, message) -> None:
        from PySide6.QtCore import QtMsgType, qFormatLogMessage

        self.messages.append(message)
        sys.stderr.write(qFormatLogMessage(mode, context, message) + "\n")
        if mode == QtMsgType.QtFatalMsg and "platform plugin" in message:
            hint = platform_plugin_hint(self.messages)
            log.error("%s", hint)
            sys.stderr.write(hint + "\n")
            sys.stderr.flush()
            os._exit(1)  # Qt cannot go on, and returning would abort with a core dump


def create_application(argv: list[str] | None = None):
    """The QApplication, created once, named and styled."""
    from PySide6.QtCore import QCoreApplication, Qt, qInstallMessageHandler
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        previous = qInstallMessageHandler(_PlatformPluginCheck())
        try:
            app = QApplication(list(sys.argv if argv is None else argv) or ["digitpad"])
        finally:
            qInstallMessageHandler(previous)
    # every mouse position matters when drawing: no merging of queued moves while the app is busy
    # (set after construction: QGuiApplication turns it on while starting up)
    QCoreApplication.setAttribute(Qt.AA_CompressHighFrequencyEvents, False)
    app.setApplicationName("digitpad")
    app.setOrganizationName("digitpad")
    app.setApplicationDisplayName("digitpad")
    app.setDesktopFileName("digitpad")
    app.setStyle("Fusion")
    app.setWindowIcon(make_icon())
    return app


def run(model_path: str | None = None, argv: list[str] | None = None) -> int:
    """Open the digitpad window and run until it is closed; return the exit code.

    Parameters
    ----------
    model_path : str, optional
        A model file to read with; default the last one used, else the shipped model.
    argv : list of str, optional
        Arguments for QApplication (default ``sys.argv``).
    """
    setup_logging()
    app = create_application(argv)
    hook = ExceptionHook(dialogs=os.environ.get("DIGITPAD_ERROR_DIALOGS", "1") != "0").install()
    from digitpad.qt.main_window import MainWindow

    window = MainWindow(model_path=model_path)
    window.show()
    if os.environ.get("DIGITPAD_EXIT_WHEN_SHOWN"):
        # for benchmarks/startup.py: report once the window is on screen and painted, then quit
        from PySide6.QtCore import QTimer

        def shown():
            handle = window.windowHandle()
            if handle is None or not handle.isExposed():
                QTimer.singleShot(5, shown)
                return
            window.repaint()
            print(f"shown {time.perf_counter() - _T0:.3f}", flush=True)
            window.close()
            app.quit()

        QTimer.singleShot(0, shown)
    try:
        return app.exec()
    finally:
        hook.uninstall()


def main() -> int:
    args = sys.argv[1:]
    return run(model_path=args[0] if args and not args[0].startswith("-") else None, argv=sys.argv)


if __name__ == "__main__":
    raise SystemExit(main())
