"""Reading and writing picture files (PNG, JPEG, BMP, ...) through Qt's QImage.

Owns ``load_image`` (any file Qt can read -> (H, W, 4) uint8 RGBA array) and ``save_png``
(a grey or RGBA array -> a PNG file, written atomically). PySide6 is imported inside the
functions, so importing this module costs nothing; QImage needs no QApplication for these
formats.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np


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
    path : str or os.PathLike
        Any format Qt reads: PNG, JPEG, BMP, GIF (first frame), PPM/PGM, and others.

    Returns
    -------
    np.ndarray
        (H, W, 4) uint8, RGBA, not premultiplied. Grey files come back with R = G = B and
        A = 255.

    Raises
    ------
    ImageReadError
        The file is missing, a folder, empty, unreadable, not a picture, or in a format this
        Qt cannot read; the message names the file.
    """
    from PySide6.QtGui import QImage, QImageReader

    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a folder, not a picture file")
    try:
        size = p.stat().st_size
        with open(p, "rb"):
            pass
    except OSError as e:
        raise ImageReadError(f"{p}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise ImageReadError(f"{p}: the file is empty")
    reader = QImageReader(str(p))
    reader.setAutoTransform(True)                 # honour JPEG orientation tags
    image = reader.read()
    if image.isNull():
        detected = bytes(QImageReader.imageFormat(str(p)).data()).decode("ascii", "replace")
        problem = reader.errorString()
        if not detected:
            raise ImageReadError(f"{p}: not a picture Qt can read (format not recognised; "
                                 f"readable formats: {', '.join(_qt_formats('read'))})")
        raise ImageReadError(f"{p}: cannot decode this {detected.upper()} file ({problem})")
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
    from PySide6.QtGui import QImage

    data = _to_uint8(array)
    p = Path(path)
    h, w = data.shape[:2]
    channels = 1 if data.ndim == 2 else data.shape[2]
    fmt = {1: QImage.Format.Format_Grayscale8, 3: QImage.Format.Format_RGB888,
           4: QImage.Format.Format_RGBA8888}[channels]
    image = QImage(data.data, w, h, w * channels, fmt)                       # borrows ``data``
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise ImageWriteError(f"{p}: folder {folder} does not exist")
    tmp = folder / f".{p.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:        # created with the usual permissions (umask applies), unlike mkstemp's 0600
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    except OSError as e:
        raise ImageWriteError(f"{p}: cannot write in {folder} ({e.strerror or e})") from None
    try:
        if not image.save(str(tmp), "PNG"):
            raise ImageWriteError(f"{p}: Qt could not write the PNG")
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return p
