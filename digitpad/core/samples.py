"""The user's own digits: pictures kept per digit in the common ``DIR/<digit>/*.png`` layout.

Owns the sample folder (``platformdirs.user_data_path("digitpad") / "samples"`` unless
another root is given), in the layout torchvision's ``ImageFolder`` reads: one folder per
digit, named ``0`` to ``9``, holding PNG files. Each sample is kept as its *original*
picture (the canvas bitmap, or the imported file's pixels), never only the 28x28 the
network reads, so a better preprocessing later still applies to it; a drawn sample also
keeps its strokes in a JSON sidecar of the same name (``<stem>.json``).

A sample's id is ``"<digit>/<stem>"``: ``add`` returns it and ``remove`` takes it (undo).
Every write goes to a temporary file beside the target and is renamed into place, so a
crash never leaves a half-written sample. Pictures are read and written with
``digitpad.imageio`` (QImage; imported when a picture is read or written, never at import).
"""
from __future__ import annotations

import json
import re
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from digitpad.core.files import app_data_dir, atomic_path

__all__ = ["DIGITS", "SampleError", "Sample", "ImportReport", "samples_dir", "scan_folder", "SampleStore"]

DIGITS = tuple(range(10))
STROKES_VERSION = 1
_ID = re.compile(r"^([0-9])/([A-Za-z0-9][A-Za-z0-9._-]*)$")


class SampleError(ValueError):
    """A sample folder or sample that cannot be used; the message names it and what is wrong."""


def samples_dir() -> Path:
    """Where the user's digits are kept (it may not exist yet)."""
    return app_data_dir() / "samples"


@dataclass(frozen=True)
class Sample:
    """One stored digit: its id, label, picture file and (for drawn ones) strokes file."""

    id: str  # "<digit>/<stem>"
    digit: int
    path: Path  # the picture, PNG
    strokes_path: Path | None = None  # JSON sidecar, when the sample was drawn


@dataclass
class ImportReport:
    """What an import did: the ids added, and one line per file or folder skipped, with the reason."""

    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- folders


def _digit_of(name: str) -> int | None:
    return int(name) if len(name) == 1 and name in "0123456789" else None


def scan_folder(folder) -> tuple[list[tuple[int, Path]], list[str]]:
    """The picture files of a folder in the ``DIR/<digit>/*`` layout.

    Parameters
    ----------
    folder : str or os.PathLike
        Holds sub-folders named ``0`` to ``9``; any program may have made it.

    Returns
    -------
    files : list of (int, Path)
        (digit, file) for every file in a digit folder except JSON sidecars and hidden
        files, sorted by digit then name. Whether each is a readable picture is found out
        when it is read.
    skipped : list of str
        One line per entry that is not in the layout (a folder named ``x`` or ``12``, a file
        beside the digit folders, a folder inside one), naming it and what is wrong.

    Raises
    ------
    SampleError
        The folder is missing or is not a folder.
    """
    root = Path(folder).expanduser()
    if not root.exists():
        raise SampleError(f"{root}: no such folder")
    if not root.is_dir():
        raise SampleError(f"{root}: not a folder")
    files, skipped = [], []
    try:
        entries = sorted(root.iterdir())
    except OSError as e:
        raise SampleError(f"{root}: cannot be read ({e.strerror or e})") from None
    for entry in entries:
        if entry.name.startswith("."):
            continue
        digit = _digit_of(entry.name)
        if not entry.is_dir():
            skipped.append(f"{entry}: not in a digit folder (pictures go in folders named 0 to 9)")
            continue
        if digit is None:
            skipped.append(f"{entry}: not a digit folder (folders are named 0 to 9)")
            continue
        try:
            inner = sorted(entry.iterdir())
        except OSError as e:
            skipped.append(f"{entry}: cannot be read ({e.strerror or e})")
            continue
        for path in inner:
            if path.name.startswith(".") or path.suffix.lower() == ".json":
                continue
            if path.is_dir():
                skipped.append(f"{path}: a folder inside a digit folder")
                continue
            files.append((digit, path))
    return files, skipped


# ---------------------------------------------------------------------------- writing


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path`` through the one atomic writer (temp file beside it, rename)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def _copy_atomic(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _compact(picture: np.ndarray) -> np.ndarray:
    """An RGBA picture as grey (H, W) when it is opaque and colourless; else unchanged."""
    a = np.asarray(picture)
    if a.ndim == 3 and a.shape[2] == 4 and (a[..., 3] == 255).all() \
            and (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all():
        return np.ascontiguousarray(a[..., 0])
    return a


def _strokes_json(strokes) -> list[dict]:
    """Strokes as plain JSON: ``[{"width": w, "points": [[x, y, w_factor], ...]}, ...]``.

    Takes the canvas's strokes (objects with ``points`` (n, 3) and ``width``), dicts of
    that form, or bare (n, 2) / (n, 3) arrays.
    """
    out = []
    for s in strokes:
        if isinstance(s, dict):
            points, width = s.get("points"), s.get("width")
        else:
            points, width = getattr(s, "points", s), getattr(s, "width", None)
        pts = np.asarray(points, dtype=float)
        if pts.ndim != 2 or pts.shape[1] not in (2, 3) or not np.isfinite(pts).all():
            raise SampleError(f"strokes: each stroke needs finite (n, 2) or (n, 3) points, got shape {pts.shape}")
        item = {"points": np.round(pts, 2).tolist()}
        if width is not None:
            item["width"] = float(width)
        out.append(item)
    return out


def _read_strokes(path: Path) -> list[dict] | None:
    """The strokes of a sidecar file, or None when it is missing or not a strokes file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        strokes = data["strokes"]
        _strokes_json(strokes)  # checks each stroke's points
        return strokes
    except (OSError, ValueError, KeyError, TypeError):
        return None


class SampleStore:
    """The user's digits on disk: add, list, count, remove, import and export.

    Parameters
    ----------
    root : str or os.PathLike, optional
        The folder; ``samples_dir()`` by default. Created on the first write.
    """

    def __init__(self, root=None):
        self.root = Path(root).expanduser() if root is not None else samples_dir()

    # ------------------------------------------------------------------ reading

    def samples(self, digit: int | None = None) -> list[Sample]:
        """The stored samples, oldest first within each digit (all digits, or one)."""
        digits = DIGITS if digit is None else (self._check_digit(digit),)
        out = []
        for d in digits:
            folder = self.root / str(d)
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.png")):
                if path.name.startswith("."):
                    continue
                sidecar = path.with_suffix(".json")
                out.append(Sample(f"{d}/{path.stem}", d, path, sidecar if sidecar.is_file() else None))
        return out

    def counts(self) -> dict[int, int]:
        """Samples per digit, all ten digits present (0 for none)."""
        counts = dict.fromkeys(DIGITS, 0)
        for s in self.samples():
            counts[s.digit] += 1
        return counts

    def __len__(self) -> int:
        return len(self.samples())

    def get(self, sample_id: str) -> Sample:
        """The sample with this id; ``SampleError`` when there is none."""
        digit, stem = self._parse_id(sample_id)
        path = self.root / str(digit) / f"{stem}.png"
        if not path.is_file():
            raise SampleError(f"{sample_id}: no such sample in {self.root}")
        sidecar = path.with_suffix(".json")
        return Sample(sample_id, digit, path, sidecar if sidecar.is_file() else None)

    def picture(self, sample_id: str) -> np.ndarray:
        """The sample's original picture, (H, W, 4) uint8 RGBA."""
        from digitpad.imageio import load_image

        return load_image(self.get(sample_id).path)

    def strokes(self, sample_id: str) -> list[dict] | None:
        """The strokes a drawn sample was made of (``[{"width", "points"}, ...]``), else None."""
        sample = self.get(sample_id)
        return _read_strokes(sample.strokes_path) if sample.strokes_path else None

    # ------------------------------------------------------------------ writing

    def add(self, digit: int, picture, strokes=None) -> str:
        """Keep ``picture`` as a sample of ``digit``; return its id (what ``remove`` takes).

        Parameters
        ----------
        digit : int
            0 to 9.
        picture : array_like
            The original picture: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, uint8 or
            float in [0, 1] (a canvas bitmap as it is).
        strokes : sequence, optional
            The strokes it was drawn with (the canvas's strokes, or dicts with ``points``
            (n, 3) and ``width``), kept in a JSON sidecar.
        """
        from digitpad.imageio import save_png

        digit = self._check_digit(digit)
        sidecar = None
        if strokes is not None:
            picture_shape = list(np.shape(picture)[:2])
            sidecar = json.dumps({"version": STROKES_VERSION, "digit": digit, "picture_size": picture_shape,
                                  "strokes": _strokes_json(strokes)}).encode("utf-8")
        folder = self.root / str(digit)
        folder.mkdir(parents=True, exist_ok=True)
        stem = self._new_stem(folder)
        path = folder / f"{stem}.png"
        if sidecar is not None:
            _write_atomic(path.with_suffix(".json"), sidecar)
        try:
            save_png(path, _compact(picture))
        except BaseException:
            path.with_suffix(".json").unlink(missing_ok=True)
            raise
        return f"{digit}/{stem}"

    def remove(self, sample_id: str) -> bool:
        """Delete a sample (picture and strokes); False when there was no such sample."""
        digit, stem = self._parse_id(sample_id)
        path = self.root / str(digit) / f"{stem}.png"
        if not path.is_file():
            return False
        path.unlink()
        path.with_suffix(".json").unlink(missing_ok=True)
        return True

    def import_folder(self, folder) -> ImportReport:
        """Copy every readable picture of a ``DIR/<digit>/*`` folder in as samples.

        Files are read with ``digitpad.imageio.load_image`` (any format Qt reads) and kept
        as PNG; a ``<stem>.json`` strokes sidecar beside a picture comes along. Unreadable
        files and entries outside the layout are skipped, one line each with the reason.

        Raises
        ------
        SampleError
            The folder is missing or not a folder.
        """
        from digitpad.imageio import ImageReadError, load_image

        files, skipped = scan_folder(folder)
        report = ImportReport(skipped=skipped)
        for digit, path in files:
            try:
                picture = load_image(path)
            except ImageReadError as e:
                report.skipped.append(str(e))
                continue
            sidecar = path.with_suffix(".json")
            strokes = _read_strokes(sidecar) if sidecar.is_file() else None
            report.added.append(self.add(digit, picture, strokes))
        return report

    def export_folder(self, folder) -> int:
        """Copy every sample to ``folder/<digit>/<stem>.png`` (and its strokes); return how many.

        Files already there are kept: a sample whose name is taken gets ``<stem>-2.png``.
        """
        target = Path(folder).expanduser()
        if target.exists() and not target.is_dir():
            raise SampleError(f"{target}: not a folder")
        n = 0
        for sample in self.samples():
            out_dir = target / str(sample.digit)
            out_dir.mkdir(parents=True, exist_ok=True)
            stem = sample.path.stem
            k = 2
            while (out_dir / f"{stem}.png").exists() or (out_dir / f"{stem}.json").exists():
                stem = f"{sample.path.stem}-{k}"
                k += 1
            if sample.strokes_path is not None:
                _copy_atomic(sample.strokes_path, out_dir / f"{stem}.json")
            _copy_atomic(sample.path, out_dir / f"{stem}.png")
            n += 1
        return n

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_digit(digit) -> int:
        if isinstance(digit, bool) or not isinstance(digit, (int, np.integer)) or not 0 <= digit <= 9:
            raise SampleError(f"digit: must be a whole number from 0 to 9, got {digit!r}")
        return int(digit)

    @staticmethod
    def _parse_id(sample_id: str) -> tuple[int, str]:
        match = _ID.match(str(sample_id))
        if match is None:
            raise SampleError(f"{sample_id!r}: not a sample id (expected '<digit>/<name>')")
        return int(match.group(1)), match.group(2)

    @staticmethod
    def _new_stem(folder: Path) -> str:
        while True:
            stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
            if not (folder / f"{stem}.png").exists() and not (folder / f"{stem}.json").exists():
                return stem
