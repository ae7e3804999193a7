"""Reading and writing picture files (PNG, JPEG, BMP, ...) through Qt's QImage.

Owns ``load_image`` (any file Qt can read -> (H, W, 4) uint8 RGBA array) and ``save_png``
(a grey or RGBA array -> a PNG file, written atomically with ``core.files.atomic_path``).
Python reads and writes the bytes and Qt only decodes and encodes them in memory, so file
names need not be valid UTF-8 and a named pipe is refused instead of blocking. PySide6 is imported inside the
functions, so importing this module costs nothing; QImage needs no QApplication for these
formats.
"""
from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np

from digitpad.core.files import NotRegularFileError, atomic_path, display, open_regular

MAX_FILE_BYTES = 256 * 1024 * 1024  # far above any photo; QImageReader caps the decoded size itself


class ImageReadError(ValueError):
    """A picture file that cannot be read; the message names the file and what is wrong."""


class ImageWriteError(OSError):
    """A picture that could not be written; the message names the file and what is wrong."""


def _qt_formats(kind: str) -> list[str]:
    from PySide6.QtGui import QImageReader, QImageWriter

    cls = QImageReader if kind == "read" else QImageWriter
    return sorted(bytes(f.data()).decode("ascii", "replace").lower() for f in cls.supportedImageFormats())


def load_image(path) -> np.ndarray:
    """Read a picture file into an RGBA array.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        Any format Qt reads: PNG, JPEG, BMP, GIF (first frame), PPM/PGM, and others. The
        name need not be valid UTF-8.

    Returns
    -------
    np.ndarray
        (H, W, 4) uint8, RGBA, not premultiplied. Grey files come back with R = G = B and
        A = 255.

    Raises
    ------
    ImageReadError
        The file is missing, a folder, a named pipe or device, empty, unreadable, too large,
        not a picture, damaged (a decoder warning such as a truncated JPEG counts), or in a
        format this Qt cannot read; the message names the file.
    """
    p = Path(os.fsdecode(path))
    raw = _read_picture_bytes(p)
    image, warnings = _decode(raw, p.suffix)
    name = display(p)
    if image.isNull():
        detected, problem = warnings
        if not detected:
            raise ImageReadError(f"{name}: not a picture Qt can read (format not recognised; "
                                 f"readable formats: {', '.join(_qt_formats('read'))})")
        raise ImageReadError(f"{name}: cannot decode this {detected.upper()} file ({problem})")
    if warnings:  # Qt hands back a partly grey picture and only warns: never read that as a digit
        raise ImageReadError(f"{name}: damaged or truncated picture ({'; '.join(warnings)})")
    return _rgba_array(image)


def _read_picture_bytes(p: Path) -> bytes:
    """The whole file, read by Python (any file name) from a regular file only (a FIFO never blocks)."""
    name = display(p)
    try:
        with open_regular(p) as f:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise ImageReadError(f"{name}: {size / 1e6:.0f} MB is too large for a picture "
                                     f"(at most {MAX_FILE_BYTES // 2**20} MB)")
            raw = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ImageReadError(f"{name}: no such file") from None
    except NotRegularFileError as e:
        kind = "is a folder, not a picture file" if p.is_dir() else e.strerror
        raise ImageReadError(f"{name}: {kind}") from None
    except OSError as e:
        raise ImageReadError(f"{name}: cannot be read ({e.strerror or e})") from None
    if not raw:
        raise ImageReadError(f"{name}: the file is empty")
    return raw


_decode_lock = threading.Lock()


def _decode(raw: bytes, suffix: str):
    """Decode ``raw`` with QImageReader; return (image, warnings), or (null image, (format, error)).

    Qt's image plugins report damage they work around (a JPEG cut short is padded with grey)
    only as warnings in the ``qt.gui.imageio`` category; they are collected while decoding.
    """
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QtMsgType, qInstallMessageHandler
    from PySide6.QtGui import QImageReader

    # libpng's notes on a harmless quirk (an odd colour profile) come as info, not warnings
    serious = (QtMsgType.QtWarningMsg, QtMsgType.QtCriticalMsg)
    buffer = QBuffer()
    buffer.setData(QByteArray(raw))
    buffer.open(QIODevice.OpenModeFlag.ReadOnly)
    warnings: list[str] = []

    def collect(mode, context, message):
        if mode in serious and (context.category or "").startswith("qt.gui.imageio"):
            warnings.append(message)
        elif previous is not None:
            previous(mode, context, message)
        elif mode in serious:  # what Qt's own handler would have shown
            sys.stderr.write(message + "\n")

    detected = bytes(QImageReader.imageFormat(buffer).data()).decode("ascii", "replace")
    # the content decides; the name's ending is a hint only for formats without a signature (TGA)
    hint = b"" if detected else suffix.lstrip(".").lower().encode("ascii", "ignore")
    buffer.seek(0)
    reader = QImageReader(buffer, hint)
    reader.setAutoTransform(True)                 # honour JPEG orientation tags
    with _decode_lock:
        previous = qInstallMessageHandler(collect)
        try:
            image = reader.read()
        finally:
            qInstallMessageHandler(previous)
    if image.isNull():
        return image, (detected, reader.errorString())
    return image, warnings


def _rgba_array(image) -> np.ndarray:
    from PySide6.QtGui import QImage

    image = image.convertToFormat(QImage.Format.Format_RGBA8888)
    h, w = image.height(), image.width()
    stride = image.bytesPerLine()
    buf = np.frombuffer(image.constBits(), np.uint8, count=stride * h)      # (stride * H,)
    return buf.reshape(h, stride)[:, :w * 4].reshape(h, w, 4).copy()         # (H, W, 4)


def _to_uint8(array) -> np.ndarray:
    """(H, W) or (H, W, 4) uint8 from a uint8 or float ([0, 1]) grey or RGBA array."""
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ValueError(f"save_png needs a (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA array, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"save_png: the array is empty (shape {a.shape})")
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if a.dtype == bool:
        return np.ascontiguousarray(a.astype(np.uint8) * 255)
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ValueError("save_png: the array holds NaN or infinite values")
        return np.ascontiguousarray(np.round(np.clip(a, 0.0, 1.0) * 255.0).astype(np.uint8))
    raise ValueError(f"save_png needs uint8, bool or float ([0, 1]) values, got dtype {a.dtype}")


def save_png(path, array) -> Path:
    """Write an array as a PNG file, atomically (a temporary file beside it, then a rename).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder must exist.
    array : array_like
        (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA; uint8, bool, or float in [0, 1]
        (clipped and rounded to 0..255).

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    ValueError
        The array has the wrong shape, dtype or non-finite values.
    ImageWriteError
        The file could not be written (folder missing, no permission, disk full).
    """
    from PySide6.QtCore import QBuffer, QIODevice
    from PySide6.QtGui import QImage

    data = _to_uint8(array)
    p = Path(os.fsdecode(path))
    h, w = data.shape[:2]
    channels = 1 if data.ndim == 2 else data.shape[2]
    fmt = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888,
           4: QImage.Format.Format_RGBA8888}[channels]
    image = QImage(data.data, w, h, w * channels, fmt)                       # borrows ``data``
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise ImageWriteError(f"{display(p)}: folder {display(folder)} does not exist")
    buffer = QBuffer()                       # encoded in memory, then written by Python: any file name
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise ImageWriteError(f"{display(p)}: Qt could not write the PNG")
    try:
        with atomic_path(p) as tmp, open(tmp, "wb") as f:
            f.write(bytes(buffer.data()))
    except OSError as e:
        raise ImageWriteError(f"{display(p)}: cannot write in {display(folder)} ({e.strerror or e})") from None
    return p
