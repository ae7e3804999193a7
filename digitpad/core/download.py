"""Fetching MNIST: each file from the first mirror that delivers it, checked against its
SHA-256 before it is moved into the data folder.

The files, their hashes and where they are looked for are ``digitpad.core.data``'s; this
module only adds what a network brings: mirrors, time-outs, partial files, cancelling.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from digitpad.core import data
from digitpad.core.data import (_GZIP_MAGIC, ENV_VAR, FILES, DataError, _file_in, _sha256_decompressed,
                                _verifies, expected_sizes)
from digitpad.core.files import commit, display, remove_stale_temps, temp_path

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
_PART = ".part"  # ending of the temporary file a transfer writes: .<name>.<pid>.<hex>.part


class _MirrorFailure(Exception):
    """One mirror could not deliver one file; ``unreachable`` when no connection was made."""

    def __init__(self, reason: str, unreachable: bool = False):
        super().__init__(reason)
        self.unreachable = unreachable


def _user_agent() -> str:
    from digitpad import __version__

    return f"digitpad/{__version__} (+urllib)"


@dataclass(frozen=True)
class _Limits:
    """What one file's transfer may take: time, rate and size."""

    timeout: float  # seconds for a connection, a response, or the next bytes
    min_rate: float  # bytes/s on average, enforced once ``timeout`` seconds have passed
    size: int | None  # decompressed size of the file, when known

    @property
    def max_wire_bytes(self) -> int | None:
        """Most bytes a copy of the file can take on the wire: gzip of incompressible data
        grows by a few bytes per 64 KiB block, and a plain copy is the size itself."""
        return None if self.size is None else self.size + self.size // 100 + 4096


def _open(url: str, timeout: float):
    request = urllib.request.Request(url, headers={"User-Agent": _user_agent()})
    try:
        return urllib.request.urlopen(request, timeout=timeout)
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


def _check_pace(done: int, start: float, limits: _Limits) -> None:
    """Fail a transfer that is too slow on average or larger than the file can be."""
    cap = limits.max_wire_bytes
    if cap is not None and done > cap:
        raise _MirrorFailure(f"sent more than {cap} bytes, more than this file can take")
    elapsed = time.monotonic() - start
    if elapsed > limits.timeout and done < limits.min_rate * elapsed:
        raise _MirrorFailure(
            f"too slow: {done} bytes in {elapsed:.1f} s (less than {limits.min_rate:g} bytes/s)"
        )


def _fetch(url: str, partial: Path, name: str, limits: _Limits, progress, cancel) -> None:
    """Stream url into the temp file ``partial``; fail unless all announced bytes came in time.

    Each read returns what has arrived (``read1``), so a server that trickles a byte at a
    time is caught by the average rate instead of holding a 64 KiB read open for days.
    """
    start = time.monotonic()
    response = _open(url, limits.timeout)
    with response, open(partial, "wb") as out:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        cap = limits.max_wire_bytes
        if total is not None and cap is not None and total > cap:
            raise _MirrorFailure(f"announces {total} bytes, more than this file can take ({cap})")
        done = 0
        if progress is not None:
            progress(name, done, total)
        while True:
            if cancel is not None and cancel():
                raise DownloadCancelled(f"download of {name} cancelled")
            try:
                block = response.read1(_CHUNK)
            except TimeoutError:
                raise _MirrorFailure(
                    f"timed out after {done} bytes (timeout {limits.timeout:g} s)"
                ) from None
            except (http.client.HTTPException, OSError) as exc:
                raise _MirrorFailure(f"connection lost after {done} bytes ({exc!r})") from None
            if not block:
                break
            out.write(block)
            done += len(block)
            if progress is not None:
                progress(name, done, total)
            _check_pace(done, start, limits)
        if total is not None and done != total:
            raise _MirrorFailure(f"connection closed after {done} of {total} bytes")


def _fetch_verified(url: str, dest: Path, name: str, sha256: str, limits: _Limits,
                    progress, cancel) -> None:
    """Download url to a temp file in dest, check the hash, then move it into place."""
    partial = temp_path(dest / name, _PART)
    try:
        _fetch(url, partial, name, limits, progress, cancel)
        try:
            actual = _sha256_decompressed(partial, limits.size)
        except (OSError, EOFError, zlib.error) as exc:
            raise _MirrorFailure(f"corrupt gzip data ({exc})") from None
        if actual is None:
            raise _MirrorFailure(f"wrong data: decompresses to more than {limits.size} bytes")
        if actual != sha256:
            raise _MirrorFailure(
                f"wrong data: SHA-256 of the decompressed bytes is {actual}, expected {sha256}"
            )
        with open(partial, "rb") as fh:
            is_gzip = fh.read(2) == _GZIP_MAGIC
        target = dest / (f"{name}.gz" if is_gzip else name)
        stale = _file_in(dest, name)  # present only when it failed verification
        commit(partial, target)
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
    min_rate: float = 1024.0,
    progress: Callable[[str, int, int | None], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    expected: dict[str, str] = FILES,
    sizes: dict[str, int] | None = None,
) -> Path:
    """Download and verify the MNIST files into a folder.

    Each file is fetched as ``<mirror><name>.gz`` into a temporary file in ``dest``,
    its decompressed bytes are checked against their SHA-256, and only then is it moved
    into place as ``<name>.gz`` (with the permissions the umask gives any new file); a
    download that fails or is cancelled leaves nothing behind, and the temporary files of
    one that was killed are removed by the next. Files already in ``dest`` that verify are
    skipped; one that does not is replaced once a good copy has arrived. When a mirror
    fails (no connection, timeout, too slow, too large, connection cut, wrong bytes) the
    next one is tried; a mirror that worked is tried first for the files after it.

    Parameters
    ----------
    dest : str or os.PathLike, optional
        Folder to fill, created if needed; :func:`digitpad.core.data.user_data_dir` by default.
    mirrors : tuple of str
        Base URLs, tried in order.
    timeout : float
        Seconds to wait for a connection or for the next bytes of a response.
    min_rate : float
        Bytes per second a transfer must average once ``timeout`` seconds have passed;
        a mirror that trickles is given up on.
    progress : callable, optional
        ``progress(name, done_bytes, total_bytes_or_None)``, called with 0 when a
        transfer starts and after each chunk; ``name`` is the base name. Called again
        from 0 when a file is retried on the next mirror. Not called for skipped files.
    cancel : callable, optional
        ``cancel() -> bool``, checked between chunks; True stops the download.
    expected : dict of str to str
        Base name -> SHA-256 of the decompressed bytes; the MNIST files by default.
    sizes : dict of str to int, optional
        Base name -> decompressed size: a transfer or a file larger than a copy of it can
        be is stopped. By default :data:`digitpad.core.data.SIZES` for each file expected
        with its real MNIST hash.

    Returns
    -------
    pathlib.Path
        The folder, which now holds every file of ``expected``.

    Raises
    ------
    DownloadError
        Every mirror failed for a file. The message gives each mirror's failure, says
        whether the computer seems offline, and how to use a folder that has the files.
        Files fetched before the failure are kept (they verified). Also, in one line,
        when ``dest`` cannot be created or written (read-only, full, under a file).
    DownloadCancelled
        ``cancel()`` returned True; the partial file is removed.
    """
    if not mirrors:
        raise ValueError("at least one mirror is needed")
    dest = Path(dest).expanduser() if dest is not None else data.user_data_dir()
    sizes = expected_sizes(expected, sizes)
    try:
        dest.mkdir(parents=True, exist_ok=True)
        order = list(mirrors)
        for name, sha256 in expected.items():
            remove_stale_temps(dest / name, _PART)
            if _verifies(_file_in(dest, name), sha256, sizes.get(name)):
                continue
            if cancel is not None and cancel():
                raise DownloadCancelled(f"download of {name} cancelled")
            limits = _Limits(timeout, min_rate, sizes.get(name))
            _download_one(name, sha256, dest, order, limits, progress, cancel)
    except OSError as exc:  # the network's errors are the mirrors' failures: this is the folder
        _remove_own_partials(dest, expected)
        raise DownloadError(f"{display(dest)}: cannot save the download there ({exc.strerror or exc})") from None
    except BaseException:
        # a signal turned into an exception (Ctrl-C, SIGTERM in the CLI) can land between a
        # partial file's creation and the block that removes it: sweep this process's own
        _remove_own_partials(dest, expected)
        raise
    return dest.resolve()


def _remove_own_partials(dest: Path, expected) -> None:
    for name in expected:
        remove_stale_temps(dest / name, _PART, this_process=True)


def _download_one(name: str, sha256: str, dest: Path, order: list[str], limits: _Limits,
                  progress, cancel) -> None:
    """Fetch one file from the first mirror in ``order`` that delivers it; move that mirror first."""
    failures = []
    for mirror in order:
        url = mirror.rstrip("/") + f"/{name}.gz"
        try:
            _fetch_verified(url, dest, name, sha256, limits, progress, cancel)
        except _MirrorFailure as failure:
            failures.append((url, failure))
        except ValueError as exc:  # a malformed mirror URL
            failures.append((url, _MirrorFailure(str(exc))))
        else:
            order.remove(mirror)
            order.insert(0, mirror)
            return
    raise DownloadError(_download_failed_message(name, dest, failures))
