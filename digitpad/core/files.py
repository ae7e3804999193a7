"""Files on disk, safely: reading only regular files, and writing atomically.

``open_regular`` opens a file for reading without blocking and refuses anything that is not
a regular file: a named pipe would block ``open()`` forever, and a device or a folder is
never a picture, a model or MNIST. ``atomic_path`` is the one way digitpad writes a file:
a temporary file beside the target (``.<name>.<pid>.<hex><suffix>``, created with the
permissions the umask gives any new file), fsynced, renamed over the target, and the folder
fsynced, so a crash leaves either the old file or the new one. Temporary files of that
naming whose process is gone (``kill -9``, a power cut) are removed the next time the same
target is written; nothing else in the folder is touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
import time
from pathlib import Path
from typing import BinaryIO, Iterator

__all__ = ["NotRegularFileError", "display", "open_regular", "atomic_path", "temp_path", "commit",
           "remove_stale_temps"]

# temporary files of an older naming (tempfile.mkstemp's 8 characters) carry no process id:
# they are taken as abandoned only when older than this
_LEGACY_TEMP_AGE = 3600.0

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


class NotRegularFileError(OSError):
    """A path that exists but is not a regular file (a folder, a FIFO, a device, a socket)."""


def app_data_dir() -> Path:
    """digitpad's folder in the user's data folder (``~/.local/share/digitpad`` on Linux); it may not exist yet.

    MNIST, models, runs and the user's own digits each have a folder in it.
    """
    import platformdirs

    return platformdirs.user_data_path("digitpad", appauthor=False)


def display(path) -> str:
    """The path as text for a message, also when its name is not valid UTF-8 (shown as ``\\xff``)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path) -> BinaryIO:
    """Open a regular file for reading in binary mode, never blocking on what is not one.

    Parameters
    ----------
    path : str, bytes or os.PathLike
        Any file name, also one that is not valid UTF-8.

    Returns
    -------
    file object
        Opened ``"rb"``; the caller closes it.

    Raises
    ------
    NotRegularFileError
        The path is a folder, a named pipe, a device or a socket; ``strerror`` says which.
    OSError
        It cannot be opened (missing, no permission, ...).
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)  # O_NONBLOCK: a FIFO with no writer opens at once instead of hanging
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = _kind(mode)
            raise NotRegularFileError(0, f"is {kind}, not a regular file", display(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill would terminate it there; keep it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(target, suffix: str = ".tmp", this_process: bool = False) -> list[Path]:
    """Remove our own temporary files for ``target`` that a process which is gone left behind.

    Only names of the form ``.<target name>.<pid>.<8 hex><suffix>`` whose process no longer
    runs (or, with ``this_process``, that this process made: it is giving up), and
    ``.<target name>.<8 characters><suffix>`` (an older naming) more than an hour old, are
    removed. Errors are ignored: cleaning never stops a save.

    Returns
    -------
    list of Path
        What was removed.
    """
    target = Path(target)
    name = re.escape(target.name)
    ours = re.compile(rf"\.{name}\.(\d+)\.[0-9a-f]{{8}}{re.escape(suffix)}")
    legacy = re.compile(rf"\.{name}\.[a-z0-9_]{{8}}{re.escape(suffix)}")
    removed = []
    try:
        entries = list(os.scandir(target.parent if str(target.parent) else "."))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = ours.fullmatch(entry.name)
        try:
            if match:
                pid = int(match.group(1))
                stale = (this_process and pid == os.getpid()) or not _alive(pid)
            elif legacy.fullmatch(entry.name):
                stale = now - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_TEMP_AGE
            else:
                continue
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except (OSError, ValueError):
            continue
    return removed


def temp_path(target, suffix: str = ".tmp") -> Path:
    """Create an empty temporary file beside ``target`` and return its path.

    It is created exclusively with mode 0666 less the umask, the permissions any new file
    gets (unlike ``tempfile.mkstemp``'s 0600), so renaming it over the target gives an
    ordinary file.
    """
    target = Path(target)
    folder = target.parent if str(target.parent) else Path(".")
    while True:
        tmp = folder / f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666))
            return tmp
        except FileExistsError:
            continue


def _fsync_folder(folder: Path) -> None:
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename itself is done
        pass
    finally:
        os.close(fd)


def commit(tmp, target) -> None:
    """Make ``tmp``'s bytes durable, rename it over ``target`` and make the rename durable."""
    tmp, target = Path(tmp), Path(target)
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, target)
    _fsync_folder(target.parent if str(target.parent) else Path("."))


@contextlib.contextmanager
def atomic_path(target, suffix: str = ".tmp") -> Iterator[Path]:
    """Write ``target`` atomically: yield a temporary path beside it to fill, then commit.

    Stale temporary files of earlier writes of ``target`` are removed first. When the body
    raises (or is interrupted) the temporary file is removed and ``target`` is untouched.

    Parameters
    ----------
    target : str or os.PathLike
        The file to write; its folder must exist.
    suffix : str
        Ending of the temporary file's name.

    Yields
    ------
    pathlib.Path
        An empty file to write the new contents into (by name; close it before leaving).
    """
    remove_stale_temps(target, suffix)
    tmp = temp_path(target, suffix)
    try:
        yield tmp
        commit(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
