"""Tests for digitpad.imageio: reading pictures through QImage, atomic PNG writing, clear errors."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digitpad.imageio import ImageReadError, ImageWriteError, load_image, save_png
from tests.conftest import run_unprivileged
from tests.child import refusal_in_child


def qimage_file(path: Path, array: np.ndarray, fmt: str, quality: int = -1) -> Path:
    """Write an (H, W) or (H, W, 4) uint8 array with QImage in any format, for reading back."""
    from PySide6.QtGui import QImage

    a = np.ascontiguousarray(array)
    h, w = a.shape[:2]
    if a.ndim == 2 and a.dtype == np.uint16:
        image = QImage(a.data, w, h, 2 * w, QImage.Format.Format_Grayscale16)
    elif a.ndim == 2:
        image = QImage(a.data, w, h, w, QImage.Format.Format_Grayscale8)
    else:
        image = QImage(a.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    assert image.save(str(path), fmt, quality)
    return path


def digit_picture(h=120, w=100) -> np.ndarray:
    img = np.full((h, w), 255, np.uint8)
    img[20:100, 45:55] = 0                        # a dark "1" on white
    img[20:30, 30:55] = 0
    return img


# ---------------------------------------------------------------- reading


def test_png_grey_round_trip(tmp_path):
    img = np.random.default_rng(0).integers(0, 256, (37, 53), dtype=np.uint8)
    path = save_png(tmp_path / "grey.png", img)
    rgba = load_image(path)
    assert rgba.shape == (37, 53, 4) and rgba.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgba[..., c], img)
    assert (rgba[..., 3] == 255).all()


def test_png_rgba_round_trip_keeps_alpha_unpremultiplied(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (20, 31, 4), dtype=np.uint8)
    rgba[..., 3] = np.linspace(0, 255, 31).astype(np.uint8)[None, :]
    rgba[rgba[..., 3] == 0, :3] = 0               # colour under alpha 0 is not kept by PNG writers
    back = load_image(save_png(tmp_path / "rgba.png", rgba))
    visible = rgba[..., 3] > 0
    np.testing.assert_array_equal(back[..., 3], rgba[..., 3])
    np.testing.assert_array_equal(back[visible], rgba[visible])


def test_float_and_rgb_arrays_are_saved(tmp_path):
    f = np.linspace(0, 1, 60, dtype=np.float32).reshape(6, 10)
    back = load_image(save_png(tmp_path / "f.png", f))
    np.testing.assert_array_equal(back[..., 0], np.round(f * 255).astype(np.uint8))
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 1] = 200
    back = load_image(save_png(tmp_path / "rgb.png", rgb))
    assert (back[..., 1] == 200).all() and (back[..., 0] == 0).all() and (back[..., 3] == 255).all()


@pytest.mark.parametrize("fmt, suffix, tol", [("BMP", ".bmp", 0), ("JPEG", ".jpg", 12), ("PNG", ".png", 0)])
def test_common_formats_load(tmp_path, fmt, suffix, tol):
    img = digit_picture()
    path = qimage_file(tmp_path / f"d{suffix}", img, fmt, 95)
    rgba = load_image(path)
    assert rgba.shape == (120, 100, 4)
    assert np.abs(rgba[..., 0].astype(int) - img).max() <= tol * 10      # JPEG rings at edges
    assert np.abs(rgba[..., 0].astype(int) - img).mean() <= tol


def test_sixteen_bit_png_loads(tmp_path):
    img16 = (digit_picture().astype(np.uint16) * 257)
    rgba = load_image(qimage_file(tmp_path / "deep.png", img16, "PNG"))
    np.testing.assert_array_equal(rgba[..., 0], digit_picture())


def test_wrong_extension_is_read_by_content(tmp_path):
    path = qimage_file(tmp_path / "really_a_png.jpg", digit_picture(), "PNG")
    assert load_image(path).shape == (120, 100, 4)


def test_loading_needs_no_application_object(tmp_path):
    png = save_png(tmp_path / "a.png", digit_picture())
    jpg = qimage_file(tmp_path / "a.jpg", digit_picture(), "JPEG", 90)
    bmp = qimage_file(tmp_path / "a.bmp", digit_picture(), "BMP")
    code = (
        "import sys\n"
        "from digitpad.imageio import load_image\n"
        "from PySide6.QtGui import QGuiApplication\n"
        "shapes = [load_image(p).shape for p in sys.argv[1:]]\n"
        "assert QGuiApplication.instance() is None\n"
        "print(shapes)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    proc = subprocess.run([sys.executable, "-c", code, str(png), str(jpg), str(bmp)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[(120, 100, 4), (120, 100, 4), (120, 100, 4)]"


def test_loaded_picture_goes_through_preprocess(tmp_path):
    from digitpad.core.preprocess import preprocess

    res = preprocess(load_image(save_png(tmp_path / "one.png", digit_picture())))
    assert not res.blank and res.inverted
    assert res.bbox == (20, 100, 30, 55)


# ---------------------------------------------------------------- read errors


def test_missing_file(tmp_path):
    path = tmp_path / "nope.png"
    with pytest.raises(ImageReadError, match="no such file") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_folder(tmp_path):
    with pytest.raises(ImageReadError, match="folder") as info:
        load_image(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty") as info:
        load_image(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name, data", [
    ("notes.txt", b"just some words, not a picture\n" * 10),
    ("fake.png", bytes(range(256)) * 4),
])
def test_not_a_picture(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match="not a picture") as info:
        load_image(path)
    assert str(path) in str(info.value) and "png" in str(info.value).lower()


def test_truncated_png_is_reported_as_undecodable(tmp_path):
    good = save_png(tmp_path / "good.png", np.random.default_rng(2).integers(0, 256, (64, 64), dtype=np.uint8))
    path = tmp_path / "cut.png"
    path.write_bytes(good.read_bytes()[:60])
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    assert str(path) in str(info.value) and "PNG" in str(info.value)


def test_read_error_is_a_value_error():
    assert issubclass(ImageReadError, ValueError)


@pytest.mark.skipif(os.name != "posix", reason="POSIX file permissions")
def test_unreadable_file(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    folder.chmod(0o755)
    path = save_png(folder / "locked.png", digit_picture())
    path.chmod(0)
    imports = ("import sys\nfrom digitpad.imageio import ImageReadError, load_image\n"
               "from PySide6.QtGui import QImageReader\n")
    body = ("try:\n    load_image(sys.argv[1])\nexcept ImageReadError as e:\n    print(e)\n"
            "else:\n    print('read')\n")
    proc = run_unprivileged(imports, body, "locked.png", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    assert "locked.png" in proc.stdout and "cannot be read" in proc.stdout


# ---------------------------------------------------------------- writing


def test_save_replaces_atomically_and_leaves_no_temporary_files(tmp_path):
    path = tmp_path / "out.png"
    save_png(path, np.zeros((5, 5), np.uint8))
    save_png(path, np.full((7, 3), 255, np.uint8))
    assert load_image(path).shape == (7, 3, 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    from PySide6.QtGui import QImage

    path = save_png(tmp_path / "keep.png", np.zeros((5, 5), np.uint8))
    before = path.read_bytes()
    monkeypatch.setattr(QImage, "save", lambda self, *a, **k: False)
    with pytest.raises(ImageWriteError, match="keep.png"):
        save_png(path, np.full((9, 9), 255, np.uint8))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.png"]


def test_saved_file_has_ordinary_permissions(tmp_path):
    reference = tmp_path / "reference"
    os.close(os.open(reference, os.O_WRONLY | os.O_CREAT, 0o666))      # what the umask allows
    path = save_png(tmp_path / "perm.png", np.zeros((2, 2), np.uint8))
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)
    assert stat.S_IMODE(path.stat().st_mode) & 0o044                      # not private (0600)


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(ImageWriteError, match="does not exist"):
        save_png(tmp_path / "no" / "such.png", np.zeros((2, 2), np.uint8))


@pytest.mark.parametrize("bad, words", [
    (np.zeros((3, 3, 2), np.uint8), "shape"),
    (np.zeros(5, np.uint8), "shape"),
    (np.zeros((0, 4), np.uint8), "empty"),
    (np.full((2, 2), np.nan), "NaN"),
    (np.zeros((2, 2), np.int32), "dtype"),
])
def test_save_rejects_bad_arrays(tmp_path, bad, words):
    with pytest.raises(ValueError, match=words):
        save_png(tmp_path / "bad.png", bad)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------- files that are not plain pictures


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_named_pipe_is_refused_without_blocking(tmp_path):
    """A FIFO with no writer used to block open() forever; it is refused at once."""
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    message = refusal_in_child("digitpad.imageio", "load_image", "ImageReadError", fifo)
    assert message == f"{fifo}: is a named pipe (FIFO), not a regular file"


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_device_is_refused():
    with pytest.raises(ImageReadError, match="character device"):
        load_image("/dev/null")


def test_truncated_jpeg_is_an_error_not_a_grey_picture(tmp_path):
    """Qt decodes a JPEG cut in half into a picture padded with grey and only warns."""
    good = qimage_file(tmp_path / "good.jpg", digit_picture(), "JPEG", 90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ImageReadError, match="damaged or truncated") as info:
        load_image(path)
    assert str(path) in str(info.value) and "JPEG" in str(info.value)
    assert load_image(good).shape == (120, 100, 4)   # the whole file still reads


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="file names there are always Unicode")
def test_file_name_that_is_not_utf8(tmp_path):
    """Such a name is opened, read and written, and named readably in a message."""
    folder = os.fsencode(tmp_path)
    name = folder + b"/d\xe9j\xe0.png"                   # Latin-1 bytes: not valid UTF-8
    save_png(name, digit_picture())
    assert os.path.exists(name)
    rgba = load_image(name)
    assert rgba.shape == (120, 100, 4)
    assert load_image(os.fsdecode(name)).shape == (120, 100, 4)  # as sys.argv gives it
    with pytest.raises(ImageReadError) as info:
        load_image(folder + b"/missing-\xff.png")
    assert "missing-\\xff.png: no such file" in str(info.value)
    str(info.value).encode("utf-8")                     # printable as it is


def test_stale_temporary_file_of_a_killed_save_is_removed(tmp_path):
    """A save killed with SIGKILL leaves its temporary file; the next save of that file removes it."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    pid = int(dead.stdout)
    path = tmp_path / "d.png"
    stale = tmp_path / f".d.png.{pid}.0123abcd.tmp"
    stale.write_bytes(b"half a png")
    unrelated = tmp_path / ".d.png.notes.tmp"             # not of our naming: left alone
    unrelated.write_bytes(b"")
    save_png(path, digit_picture())
    assert sorted(p.name for p in tmp_path.iterdir()) == [".d.png.notes.tmp", "d.png"]
