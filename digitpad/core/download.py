"""Fetching MNIST: each file from the first mirror that delivers it, checked against its
SHA-256 before it is moved into the data folder.

The files, their hashes and where they are looked for are ``digitpad.core.data``'s; this
module only adds what a network brings: mirrors, time-outs, partial files, cancelling.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Callable

from digitpad.core import data
from digitpad.core.data import _GZIP_MAGIC, ENV_VAR, FILES, DataError, _file_in, _sha256_decompressed, _verifies

__all__ = ["MIRRORS", "DownloadError", "DownloadCancelled", "download_mnist"]

# base URLs serving "<name>.gz", tried in order
MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


class DownloadError(DataError):
    """Every mirror failed for a file; the message gives each failure and the way out."""


class DownloadCancelled(Exception):
    """The caller's ``cancel()`` asked the download to stop."""


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
        Folder to fill, created if needed; :func:`digitpad.core.data.user_data_dir` by default.
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
    dest = Path(dest).expanduser() if dest is not None else data.user_data_dir()
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
