"""MNIST on disk: the IDX reader, where the four files are looked for, loading them
(with a per-process cache), checking them against their SHA-256, and downloading them.

The four canonical files are ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``; each may sit in a folder as
itself or gzip-compressed as ``<name>.gz``. Hashes are of the decompressed bytes, which
do not depend on the mirror or the gzip level that produced a file.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import platformdirs

__all__ = [
    "FILES",
    "MIRRORS",
    "DataError",
    "DataNotFoundError",
    "DownloadError",
    "DownloadCancelled",
    "read_idx",
    "user_data_dir",
    "find_data_dir",
    "MNIST",
    "load_mnist",
    "verify_dir",
    "download_mnist",
    "tqdm_progress",
]

# canonical base name -> SHA-256 of the decompressed bytes
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# base URLs serving "<name>.gz", tried in order
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

ENV_VAR = "DIGITPAD_DATA_DIR"

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


class DownloadError(DataError):
    """Every mirror failed for a file; the message gives each failure and the way out."""


class DownloadCancelled(Exception):
    """The caller's ``cancel()`` asked the download to stop."""


# ----------------------------------------------------------------------------- reading


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (detected by content, not name)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise DataError(f"{path}: gzip stream is truncated (incomplete download?)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from exc


def read_idx(path, kind: str | None = None) -> np.ndarray:
    """Read an IDX file (plain or gzip-compressed) into an array.

    Parameters
    ----------
    path : str or os.PathLike
        The file. Gzip compression is recognised by its content, whatever the name.
    kind : {None, "images", "labels"}, optional
        What the file must hold. ``"images"``: a uint8 array (N, 28, 28).
        ``"labels"``: a uint8 array (N,) with values 0 to 9. ``None``: any valid IDX file.

    Returns
    -------
    numpy.ndarray
        Shape from the header, native byte order. The array is read-only; copy it to
        modify it.

    Raises
    ------
    DataError
        The file is missing, truncated, has a wrong magic number, a payload whose length
        does not match its dimensions, or does not hold what ``kind`` asks for. The
        message names the file and the problem.
    """
    if kind not in (None, "images", "labels"):
        raise ValueError(f"kind must be None, 'images' or 'labels', not {kind!r}")
    path = Path(path)
    data = _read_bytes(path)

    if len(data) < 4:
        raise DataError(f"{path}: truncated: {len(data)} bytes, an IDX header needs at least 4")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: not an IDX file: magic number 0x{data[:4].hex()} "
            "(expected 0x0000 followed by a type code and a number of dimensions)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(
            f"{path}: truncated: header of {ndim} dimensions needs {header} bytes, "
            f"file has {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header
    if payload < expected:
        raise DataError(
            f"{path}: truncated: dimensions {'x'.join(map(str, shape))} need {expected} bytes "
            f"of data, file has {payload}"
        )
    if payload > expected:
        raise DataError(
            f"{path}: {payload - expected} bytes of data beyond what dimensions "
            f"{'x'.join(map(str, shape))} describe ({expected} bytes)"
        )

    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    if dtype.byteorder == ">":
        array = array.astype(dtype.newbyteorder("="))
    array.flags.writeable = False

    if kind == "images":
        if dtype != np.uint8 or ndim != 3 or shape[1:] != _IMAGE_SIZE:
            raise DataError(
                f"{path}: expected uint8 images of shape (N, 28, 28), "
                f"found {dtype.name} of shape {shape}"
            )
    elif kind == "labels":
        if dtype != np.uint8 or ndim != 1:
            raise DataError(
                f"{path}: expected uint8 labels of shape (N,), found {dtype.name} of shape {shape}"
            )
        if array.size and array.max() > 9:
            bad = np.flatnonzero(array > 9)
            raise DataError(
                f"{path}: {bad.size} labels outside 0-9 "
                f"(first at index {bad[0]}: {array[bad[0]]})"
            )
    return array


# ---------------------------------------------------------------------------- locating


def user_data_dir() -> Path:
    """The per-user folder where digitpad keeps MNIST (it may not exist yet).

    Returns
    -------
    pathlib.Path
        ``platformdirs.user_data_path("digitpad") / "mnist"``.
    """
    return platformdirs.user_data_path("digitpad", appauthor=False) / "mnist"


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


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = read_idx(images_path, kind="images")
    labels = read_idx(labels_path, kind="labels")
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


def _sha256_decompressed(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of the file's decompressed bytes (streamed; plain files hashed as they are)."""
    with open(path, "rb") as fh:
        is_gzip = fh.read(2) == _GZIP_MAGIC
    digest = hashlib.sha256()
    opener = gzip.open if is_gzip else open
    with opener(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _verifies(path: Path | None, sha256: str) -> bool:
    if path is None:
        return False
    try:
        return _sha256_decompressed(path) == sha256
    except (OSError, EOFError, zlib.error):  # gzip.BadGzipFile is an OSError
        return False


def verify_dir(data_dir, expected: dict[str, str] = FILES) -> dict[str, bool]:
    """Check each file in a folder against its SHA-256 (of the decompressed bytes).

    Parameters
    ----------
    data_dir : str or os.PathLike
        The folder; each file may be ``<name>`` or ``<name>.gz`` (the .gz is checked
        when both exist, as it is the one loaded).
    expected : dict of str to str, optional
        Base name -> SHA-256 hex digest; the MNIST files by default.

    Returns
    -------
    dict of str to bool
        Base name -> whether the file is present, readable and matches its hash.
    """
    folder = Path(data_dir).expanduser()
    return {name: _verifies(_file_in(folder, name), sha) for name, sha in expected.items()}


# --------------------------------------------------------------------------- downloading

_CHUNK = 64 * 1024


class _MirrorFailure(Exception):
    """One mirror could not deliver one file; ``unreachable`` when no connection was made."""

    def __init__(self, reason: str, unreachable: bool = False):
        super().__init__(reason)
        self.unreachable = unreachable


def _user_agent() -> str:
    from digitpad import __version__

    return f"digitpad/{__version__} (+urllib)"


def _fetch(url: str, partial: Path, name: str, timeout: float, progress, cancel) -> None:
    """Stream url into the open temp file ``partial``; fail unless all announced bytes came."""
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        raise _MirrorFailure(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        text = getattr(reason, "strerror", None) or str(reason)
        raise _MirrorFailure(f"cannot connect ({text})", unreachable=True) from None
    except TimeoutError:  # connected, but no response in time
        raise _MirrorFailure(f"no response within {timeout:g} s") from None
    except (http.client.HTTPException, OSError) as exc:
        raise _MirrorFailure(f"bad response ({exc!r})") from None
    with response, open(partial, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        done = 0
        if progress is not None:
            progress(name, done, total)
        while True:
            if cancel is not None and cancel():
                raise DownloadCancelled(f"download of {name} cancelled")
            try:
                block = response.read(_CHUNK)
            except TimeoutError:
                raise _MirrorFailure(f"timed out after {done} bytes (timeout {timeout:g} s)") from None
            except (http.client.HTTPException, OSError) as exc:
                raise _MirrorFailure(f"connection lost after {done} bytes ({exc!r})") from None
            if not block:
                break
            out.write(block)
            done += len(block)
            if progress is not None:
                progress(name, done, total)
        if total is not None and done != total:
            raise _MirrorFailure(f"connection closed after {done} of {total} bytes")
        out.flush()
        os.fsync(out.fileno())


def _fetch_verified(url: str, dest: Path, name: str, sha256: str, timeout: float,
                    progress, cancel) -> None:
    """Download url to a temp file in dest, check the hash, then move it into place."""
    fd, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=dest)
    os.close(fd)
    partial = Path(partial)
    try:
        _fetch(url, partial, name, timeout, progress, cancel)
        try:
            actual = _sha256_decompressed(partial)
        except (OSError, EOFError, zlib.error) as exc:
            raise _MirrorFailure(f"corrupt gzip data ({exc})") from None
        if actual != sha256:
            raise _MirrorFailure(
                f"wrong data: SHA-256 of the decompressed bytes is {actual}, expected {sha256}"
            )
        with open(partial, "rb") as fh:
            is_gzip = fh.read(2) == _GZIP_MAGIC
        target = dest / (f"{name}.gz" if is_gzip else name)
        stale = _file_in(dest, name)  # present only when it failed verification
        os.replace(partial, target)
        if stale is not None and stale != target:
            stale.unlink(missing_ok=True)
    finally:
        partial.unlink(missing_ok=True)


def _download_failed_message(name: str, dest: Path, failures: list[tuple[str, _MirrorFailure]]
                             ) -> str:
    lines = [f"Could not download {name} into {dest}:"]
    lines += [f"  {url}: {failure}" for url, failure in failures]
    if all(failure.unreachable for _, failure in failures):
        lines.append(
            "No mirror could be reached: this computer seems to be offline, "
            "or a firewall or proxy blocks them."
        )
    else:
        lines.append("No mirror delivered a file with the expected SHA-256; try again later.")
    lines.append(
        "If you have the four MNIST files (plain or .gz) in a folder, for instance copied "
        "from another computer, point digitpad at it with --data-dir PATH or the "
        f"environment variable {ENV_VAR}=PATH."
    )
    return "\n".join(lines)


def download_mnist(
    dest=None,
    *,
    mirrors: tuple[str, ...] = MIRRORS,
    timeout: float = 30.0,
    progress: Callable[[str, int, int | None], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    expected: dict[str, str] = FILES,
) -> Path:
    """Download and verify the MNIST files into a folder.

    Each file is fetched as ``<mirror><name>.gz`` into a temporary file in ``dest``,
    its decompressed bytes are checked against their SHA-256, and only then is it moved
    into place as ``<name>.gz``; a download that fails or is cancelled leaves nothing
    behind. Files already in ``dest`` that verify are skipped; one that does not is
    replaced once a good copy has arrived. When a mirror fails (no
    connection, timeout, connection cut, wrong bytes) the next one is tried; a mirror
    that worked is tried first for the files after it.

    Parameters
    ----------
    dest : str or os.PathLike, optional
        Folder to fill, created if needed; :func:`user_data_dir` by default.
    mirrors : tuple of str
        Base URLs, tried in order.
    timeout : float
        Seconds to wait for a connection or for the next bytes of a response.
    progress : callable, optional
        ``progress(name, done_bytes, total_bytes_or_None)``, called with 0 when a
        transfer starts and after each chunk; ``name`` is the base name. Called again
        from 0 when a file is retried on the next mirror. Not called for skipped files.
    cancel : callable, optional
        ``cancel() -> bool``, checked between chunks; True stops the download.
    expected : dict of str to str
        Base name -> SHA-256 of the decompressed bytes; the MNIST files by default.

    Returns
    -------
    pathlib.Path
        The folder, which now holds every file of ``expected``.

    Raises
    ------
    DownloadError
        Every mirror failed for a file. The message gives each mirror's failure, says
        whether the computer seems offline, and how to use a folder that has the files.
        Files fetched before the failure are kept (they verified).
    DownloadCancelled
        ``cancel()`` returned True; the partial file is removed.
    """
    if not mirrors:
        raise ValueError("at least one mirror is needed")
    dest = Path(dest).expanduser() if dest is not None else user_data_dir()
    dest.mkdir(parents=True, exist_ok=True)
    order = list(mirrors)
    for name, sha256 in expected.items():
        if _verifies(_file_in(dest, name), sha256):
            continue
        if cancel is not None and cancel():
            raise DownloadCancelled(f"download of {name} cancelled")
        failures = []
        for mirror in order:
            url = mirror.rstrip("/") + f"/{name}.gz"
            try:
                _fetch_verified(url, dest, name, sha256, timeout, progress, cancel)
            except _MirrorFailure as failure:
                failures.append((url, failure))
            except ValueError as exc:  # a malformed mirror URL
                failures.append((url, _MirrorFailure(str(exc))))
            else:
                order.remove(mirror)
                order.insert(0, mirror)
                break
        else:
            raise DownloadError(_download_failed_message(name, dest, failures))
    return dest.resolve()


class _TqdmProgress:
    """A ``progress`` callable for :func:`download_mnist` drawing one tqdm bar per file."""

    def __init__(self, **tqdm_kwargs):
        self._kwargs = tqdm_kwargs
        self._bar = None
        self._name = None

    def __call__(self, name: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        if name != self._name or self._bar is None:
            self.close()
            self._name = name
            options = dict(unit="B", unit_scale=True, unit_divisor=1024, desc=f"{name}.gz")
            options.update(self._kwargs)
            self._bar = tqdm(total=total, **options)
        elif done < self._bar.n:  # retried on the next mirror
            self._bar.reset(total=total)
        self._bar.update(done - self._bar.n)
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        """Close the current bar, if any."""
        if self._bar is not None:
            self._bar.close()
        self._bar = None


def tqdm_progress(**tqdm_kwargs) -> _TqdmProgress:
    """A progress callable for :func:`download_mnist` that draws tqdm bars.

    Parameters
    ----------
    **tqdm_kwargs
        Passed to each ``tqdm`` bar (for instance ``file=sys.stderr`` or ``disable=True``).

    Returns
    -------
    callable
        ``progress(name, done, total)``, with a ``close()`` method to call when the
        download ends early (a bar closes by itself when its file is complete).
    """
    return _TqdmProgress(**tqdm_kwargs)
