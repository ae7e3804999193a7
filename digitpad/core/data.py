"""MNIST on disk: the IDX reader, where the four files are looked for, loading them
(with a per-process cache) and checking them against their SHA-256. Fetching them is
``digitpad.core.download``'s job.

The four canonical files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``; each may sit in a folder as
itself or gzip-compressed as ``<name>.gz``. Hashes are of the decompressed bytes, which
do not depend on the mirror or the gzip level that produced a file.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from digitpad.core.files import app_data_dir, display, open_regular

__all__ = [
    "FILES",
    "SIZES",
    "DataError",
    "DataNotFoundError",
    "read_idx",
    "user_data_dir",
    "find_data_dir",
    "MNIST",
    "load_mnist",
    "verify_dir",
]

# canonical base name -> SHA-256 of the decompressed bytes
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# canonical base name -> size in bytes of the decompressed file (a cap when reading and downloading)
SIZES: dict[str, int] = {
    "train-images-idx3-ubyte": 16 + 60_000 * 28 * 28,
    "train-labels-idx1-ubyte": 8 + 60_000,
    "t10k-images-idx3-ubyte": 16 + 10_000 * 28 * 28,
    "t10k-labels-idx1-ubyte": 8 + 10_000,
}

ENV_VAR = "DIGITPAD_DATA_DIR"
MAX_IDX_BYTES = 1 << 30  # any IDX file read_idx accepts when no tighter cap is given

_CHUNK = 1 << 20
_EXCESS_COUNTED = 16 << 20  # bytes past the declared data counted for the message, no more

_GZIP_MAGIC = b"\x1f\x8b"
# IDX type code -> big-endian dtype
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IMAGE_SIZE = (28, 28)


class DataError(ValueError):
    """A data file is missing, unreadable or not what it should be; the message names it."""


class DataNotFoundError(DataError):
    """MNIST is not in any of the places looked at; the message lists them and the fixes."""


# ----------------------------------------------------------------------------- reading


@contextlib.contextmanager
def _open_idx(path: Path) -> Iterator[BinaryIO]:
    """The file's bytes as a stream, decompressed as they are read when it is gzip (detected
    by content, not name); a folder, named pipe or device is refused without blocking."""
    try:
        raw = open_regular(path)
    except FileNotFoundError:
        raise DataError(f"{display(path)}: file not found") from None
    except OSError as exc:
        raise DataError(f"{display(path)}: cannot read ({exc.strerror or exc})") from None
    with raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else raw
        try:
            yield stream
        except EOFError:
            raise DataError(f"{display(path)}: gzip stream is truncated (incomplete download?)") from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(f"{display(path)}: corrupt gzip data ({exc})") from None
        except OSError as exc:
            raise DataError(f"{display(path)}: cannot read ({exc.strerror or exc})") from None


def _read_into(stream: BinaryIO, buffer: np.ndarray) -> int:
    """Fill the uint8 ``buffer`` from ``stream``; return how many bytes came (fewer at end of file)."""
    view, done = memoryview(buffer).cast("B"), 0
    while done < len(view):
        n = stream.readinto(view[done:])
        if not n:
            break
        done += n
    return done


def _bytes_left(stream: BinaryIO, limit: int = _EXCESS_COUNTED) -> int:
    """How many bytes remain, counted in chunks and at most ``limit`` (a bomb is never inflated whole)."""
    left = 0
    while left < limit and (block := stream.read(min(_CHUNK, limit - left))):
        left += len(block)
    return left


def _shape_text(shape) -> str:
    return "x".join(map(str, shape))


def read_idx(path, kind: str | None = None, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into an array.

    The file is read as a stream: a gzip file is inflated chunk by chunk, never past what
    its header declares nor past ``max_bytes``, so a small file that would inflate to
    gigabytes (a gzip bomb) is refused before it takes memory.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is recognised by its content, whatever the name.
    kind : {None, "images", "labels"}, optional
        What the file must hold. ``"images"``: a uint8 array (N, 28, 28).
        ``"labels"``: a uint8 array (N,) with values 0 to 9. ``None``: any valid IDX file.
    max_bytes : int, optional
        Largest decompressed size accepted, header included (1 GiB by default;
        :func:`load_mnist` passes each MNIST file's real size).

    Returns
    -------
    numpy.ndarray
        Shape from the header, native byte order. The array is read-only; copy it to
        modify it.

    Raises
    ------
    DataError
        The file is missing, not a regular file, truncated, has a wrong magic number,
        dimensions larger than ``max_bytes`` allows, a payload whose length does not match
        its dimensions, or does not hold what ``kind`` asks for. The message names the
        file and the problem.
    """
    if kind not in (None, "images", "labels"):
        raise ValueError(f"kind must be None, 'images' or 'labels', not {kind!r}")
    path = Path(os.fsdecode(path))
    name = display(path)
    with _open_idx(path) as stream:
        magic = stream.read(4)
        if len(magic) < 4:
            raise DataError(f"{name}: truncated: {len(magic)} bytes, an IDX header needs at least 4")
        zero, type_code, ndim = int.from_bytes(magic[:2], "big"), magic[2], magic[3]
        if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
            raise DataError(
                f"{name}: not an IDX file: magic number 0x{magic.hex()} "
                "(expected 0x0000 followed by a type code and a number of dimensions)"
            )
        header = 4 + 4 * ndim
        dims = stream.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise DataError(
                f"{name}: truncated: header of {ndim} dimensions needs {header} bytes, "
                f"file has {4 + len(dims)}"
            )
        shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
        dtype = _IDX_DTYPES[type_code]
        expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow to 0 as np.prod had
        if header + expected > max_bytes:
            raise DataError(
                f"{name}: dimensions {_shape_text(shape)} describe {expected:,} bytes of data, "
                f"more than the {max_bytes - header:,} this file may hold"
            )
        payload = np.empty(expected, np.uint8)
        got = _read_into(stream, payload)
        if got < expected:
            raise DataError(
                f"{name}: truncated: dimensions {_shape_text(shape)} need {expected} bytes "
                f"of data, file has {got}"
            )
        excess = _bytes_left(stream)
    if excess:
        more = "at least " if excess >= _EXCESS_COUNTED else ""
        raise DataError(
            f"{name}: {more}{excess} bytes of data beyond what dimensions "
            f"{_shape_text(shape)} describe ({expected} bytes)"
        )

    array = payload.view(dtype).reshape(shape)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    array.flags.writeable = False

    if kind == "images":
        if dtype != np.uint8 or ndim != 3 or shape[1:] != _IMAGE_SIZE:
            raise DataError(
                f"{name}: expected uint8 images of shape (N, 28, 28), "
                f"found {dtype.name} of shape {shape}"
            )
    elif kind == "labels":
        if dtype != np.uint8 or ndim != 1:
            raise DataError(
                f"{name}: expected uint8 labels of shape (N,), found {dtype.name} of shape {shape}"
            )
        if array.size and array.max() > 9:
            bad = np.flatnonzero(array > 9)
            raise DataError(
                f"{name}: {bad.size} labels outside 0-9 "
                f"(first at index {bad[0]}: {array[bad[0]]})"
            )
    return array


# ---------------------------------------------------------------------------- locating


def user_data_dir() -> Path:
    """The per-user folder where digitpad keeps MNIST (it may not exist yet).

    Returns
    -------
    pathlib.Path
        ``files.app_data_dir() / "mnist"``.
    """
    return app_data_dir() / "mnist"


def _file_in(folder: Path, name: str) -> Path | None:
    """``<name>.gz`` or ``<name>`` in folder (the .gz first: it is what downloads write)."""
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.is_file():
            return candidate
    return None


def _candidates(data_dir) -> list[tuple[str, Path]]:
    """The folders to look in, in order, each with where it came from."""
    places = []
    if data_dir is not None:
        places.append(("--data-dir", Path(data_dir).expanduser()))
    env = os.environ.get(ENV_VAR)
    if env:
        places.append((f"${ENV_VAR}", Path(env).expanduser()))
    places.append(("user data folder", user_data_dir()))
    return places


def _missing(folder: Path, names) -> list[str]:
    return [name for name in names if _file_in(folder, name) is None]


def find_data_dir(data_dir=None) -> Path | None:
    """The first folder that holds all four MNIST files.

    Looks in ``data_dir`` (the ``--data-dir`` option), then ``$DIGITPAD_DATA_DIR``, then
    :func:`user_data_dir`. A folder counts when each file is there as ``<name>`` or
    ``<name>.gz``; a folder that lacks one is passed over.

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        A folder given explicitly; looked at first.

    Returns
    -------
    pathlib.Path or None
        The folder, resolved, or None when none of them holds all four files.
    """
    for _, folder in _candidates(data_dir):
        if folder.is_dir() and not _missing(folder, FILES):
            return folder.resolve()
    return None


def _not_found_message(data_dir) -> str:
    lines = ["MNIST not found. Looked in:"]
    for origin, folder in _candidates(data_dir):
        if not folder.is_dir():
            why = "no such folder"
        else:
            missing = _missing(folder, FILES)
            why = "missing " + ", ".join(missing) if missing else "complete"
        lines.append(f"  {origin}: {folder} ({why})")
    lines.append(
        "Run `digitpad download` to fetch it, or point digitpad at a folder that has the "
        "four files (plain or .gz) with --data-dir PATH or the environment variable "
        f"{ENV_VAR}=PATH."
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class MNIST:
    """The four MNIST arrays, uint8 and read-only: images (N, 28, 28), labels (N,) in 0..9."""

    train_images: np.ndarray  # (60000, 28, 28) uint8
    train_labels: np.ndarray  # (60000,) uint8
    test_images: np.ndarray  # (10000, 28, 28) uint8
    test_labels: np.ndarray  # (10000,) uint8

    def __post_init__(self):
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.ndim != 3 or images.shape[1:] != _IMAGE_SIZE or images.dtype != np.uint8:
                raise DataError(
                    f"{split} images: expected uint8 (N, 28, 28), "
                    f"found {images.dtype} {images.shape}"
                )
            if labels.ndim != 1 or labels.dtype != np.uint8:
                raise DataError(
                    f"{split} labels: expected uint8 (N,), found {labels.dtype} {labels.shape}"
                )
            if len(images) != len(labels):
                raise DataError(
                    f"{split}: {len(images)} images but {len(labels)} labels"
                )
            if labels.size and labels.max() > 9:
                raise DataError(f"{split} labels: values outside 0-9 (max {labels.max()})")


_cache: dict[tuple, MNIST] = {}
_cache_lock = threading.Lock()


def _size_cap(path: Path) -> int:
    """The real size of the MNIST file ``path`` is a copy of (a subset is smaller)."""
    return SIZES.get(path.name.removesuffix(".gz"), MAX_IDX_BYTES)


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, kind="images", max_bytes=_size_cap(images_path))
    labels = read_idx(labels_path, kind="labels", max_bytes=_size_cap(labels_path))
    if len(images) != len(labels):
        raise DataError(
            f"{labels_path}: {len(labels)} labels do not match the {len(images)} images "
            f"of {images_path}"
        )
    return images, labels


def load_mnist(data_dir=None) -> MNIST:
    """Load MNIST from the first folder :func:`find_data_dir` finds.

    Repeated calls in one process return the same object while the files are unchanged
    (the cache key is the resolved paths with their sizes and modification times).

    Parameters
    ----------
    data_dir : str or os.PathLike, optional
        Folder to look in first (the ``--data-dir`` option).

    Returns
    -------
    MNIST
        Read-only uint8 arrays.

    Raises
    ------
    DataNotFoundError
        No folder holds the four files; the message says where it looked and how to fix it.
    DataError
        A file is corrupt or the files do not match each other; the message names the file.
    """
    folder = find_data_dir(data_dir)
    if folder is None:
        raise DataNotFoundError(_not_found_message(data_dir))
    paths = {name: _file_in(folder, name) for name in FILES}
    key = []
    for path in paths.values():
        stat = path.stat()
        key.append((str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    key = tuple(key)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        train = _read_split(paths["train-images-idx3-ubyte"], paths["train-labels-idx1-ubyte"])
        test = _read_split(paths["t10k-images-idx3-ubyte"], paths["t10k-labels-idx1-ubyte"])
        mnist = MNIST(*train, *test)
        _cache.clear()  # keep one data set in memory, not one per version of the files
        _cache[key] = mnist
        return mnist


# ---------------------------------------------------------------------------- verifying


def _sha256_decompressed(path: Path, max_bytes: int | None = None, chunk: int = _CHUNK) -> str | None:
    """SHA-256 of the file's decompressed bytes (streamed; plain files hashed as they are).

    None when there are more than ``max_bytes`` of them: a gzip bomb is not inflated whole.
    """
    digest, done = hashlib.sha256(), 0
    with open_regular(path) as raw:
        is_gzip = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        stream = gzip.GzipFile(fileobj=raw, mode="rb") if is_gzip else raw
        while block := stream.read(chunk):
            done += len(block)
            if max_bytes is not None and done > max_bytes:
                return None
            digest.update(block)
    return digest.hexdigest()


def _verifies(path: Path | None, sha256: str, max_bytes: int | None = None) -> bool:
    if path is None:
        return False
    try:
        return _sha256_decompressed(path, max_bytes) == sha256
    except (OSError, EOFError, zlib.error):  # gzip.BadGzipFile is an OSError
        return False


def verify_dir(data_dir, expected: dict[str, str] = FILES,
               sizes: dict[str, int] | None = None) -> dict[str, bool]:
    """Check each file in a folder against its SHA-256 (of the decompressed bytes).

    Parameters
    ----------
    data_dir : str or os.PathLike
        The folder; each file may be ``<name>`` or ``<name>.gz`` (the .gz is checked
        when both exist, as it is the one loaded).
    expected : dict of str to str, optional
        Base name -> SHA-256 hex digest; the MNIST files by default.
    sizes : dict of str to int, optional
        Base name -> decompressed size; a file that inflates past it fails without being
        inflated whole. By default the :data:`SIZES` of the files expected with their real
        MNIST hash; no cap for others.

    Returns
    -------
    dict of str to bool
        Base name -> whether the file is present, readable and matches its hash.
    """
    folder = Path(data_dir).expanduser()
    sizes = expected_sizes(expected, sizes)
    return {name: _verifies(_file_in(folder, name), sha, sizes.get(name)) for name, sha in expected.items()}


def expected_sizes(expected: dict[str, str], sizes: dict[str, int] | None) -> dict[str, int]:
    """``sizes``, or the real size of each file whose expected hash is the real MNIST file's."""
    if sizes is not None:
        return sizes
    return {name: SIZES[name] for name, sha in expected.items() if FILES.get(name) == sha}
