"""Starting the app where Qt cannot open a window: a hint and exit status 1, not an abort."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the xcb platform plugin is Linux's")


def start_app(tmp_path, **env):
    """``python -m digitpad`` with the xcb platform plugin and ``env``; user folders in tmp_path."""
    full = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    full.update({key: str(tmp_path / key.lower()) for key in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")})
    full.update({"QT_QPA_PLATFORM": "xcb", **env})
    return subprocess.run([sys.executable, "-m", "digitpad"], capture_output=True, text=True, timeout=120, env=full)


def test_a_missing_system_library_names_the_packages_to_install(tmp_path):
    # An unloadable libxcb-cursor.so.0 first on the search path: what a bare Debian without
    # libxcb-cursor0 gives the plugin, without removing anything from this machine.
    broken = tmp_path / "lib"
    broken.mkdir()
    (broken / "libxcb-cursor.so.0").write_bytes(b"")
    proc = start_app(tmp_path, DISPLAY=":0", LD_LIBRARY_PATH=str(broken))
    assert proc.returncode == 1, proc.stderr  # not -6 (SIGABRT) from Qt's fatal message
    assert 'cannot start its "xcb" platform plugin' in proc.stderr
    assert "libxcb-cursor.so.0" in proc.stderr  # the loader's own words name the library
    assert "apt-get install" in proc.stderr and "libxcb-cursor0" in proc.stderr
    assert "Traceback" not in proc.stderr


def xcb_plugin_loads() -> bool:
    """True when the xcb plugin's system libraries are installed (see README)."""
    import ctypes
    from pathlib import Path

    from PySide6.QtCore import QLibraryInfo

    try:
        ctypes.CDLL(str(Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms" / "libqxcb.so"))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not xcb_plugin_loads(), reason="the xcb plugin's system libraries are not installed (README)")
def test_no_display_says_so(tmp_path):
    proc = start_app(tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "no display" in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_platform_plugin_is_named(tmp_path):
    proc = start_app(tmp_path, QT_QPA_PLATFORM="nosuchplatform")
    assert proc.returncode == 1, proc.stderr
    assert 'no "nosuchplatform" platform plugin' in proc.stderr


def test_the_hint_lists_what_readme_lists():
    from pathlib import Path

    from digitpad.qt.app import QT_XCB_PACKAGES

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert QT_XCB_PACKAGES in " ".join(word for word in readme.split() if word != "\\")
