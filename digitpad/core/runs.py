"""Run history: every training run, recorded on disk as it goes, read back to compare.

A run is a folder ``<runs>/<id>/`` in the user's data folder holding

- ``run.json``: what the run was and how it ended (settings, start and end, status,
  test accuracy, the model file if kept). It is replaced atomically, so it is always
  a whole JSON object;
- ``curves.jsonl``: one JSON object per line, appended while the run goes: ``step``
  lines (loss, batch accuracy, learning rate), ``stats`` lines (per layer: gradient
  norm, dead or saturated fraction, activation mean and spread, update ratio),
  ``epoch`` lines (train and validation figures) and ``event`` lines (a setting changed
  during the run). A crash can only tear the last line, which reading skips.
- ``.lock``: held (an OS file lock) by the process recording the run. A run whose
  ``run.json`` still says ``running`` but whose lock is free was cut short: it reads as
  ``interrupted``.

``RunRecorder`` writes a run from the records of a ``Trainer``; ``list_runs``,
``load_run``, ``rename_run`` and ``delete_run`` read and manage them. Nothing here
knows about Qt.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from digitpad.core.files import app_data_dir, atomic_path

RUN_FORMAT = 1
RUN_FILE = "run.json"
CURVES_FILE = "curves.jsonl"
LOCK_FILE = ".lock"
STATUSES = ("running", "finished", "stopped", "diverged", "failed", "interrupted")
MAX_RUN_FILE_BYTES = 1024 * 1024  # run.json is a few KB; anything this large is not ours
MAX_NAME = 80


class RunFileError(ValueError):
    """A run folder that cannot be read; the message names the file and what is wrong."""


def runs_dir() -> Path:
    """Where runs are kept: ``runs`` in the user's data folder (it may not exist yet)."""
    return app_data_dir() / "runs"


def _now() -> str:
    return datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds")


def _num(x) -> float | None:
    """A float rounded to 6 significant digits for the curves file; None where not finite."""
    x = float(x)
    return float(f"{x:.6g}") if math.isfinite(x) else None


def _write_json(path: Path, obj: dict) -> None:
    """Replace ``path`` with ``obj`` as JSON: a temporary file beside it, then a rename."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=1, sort_keys=True, allow_nan=False))


class _Lock:
    """An exclusive, non-blocking OS lock on a file, released when the process ends in any way."""

    def __init__(self, path: Path):
        self.path = path
        self._f = None

    def acquire(self) -> bool:
        f = open(self.path, "a+b")
        try:
            if os.name == "nt":
                import msvcrt

                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            return False
        self._f = f
        return True

    def release(self) -> None:
        if self._f is not None:
            self._f.close()  # closing the file releases the lock
            self._f = None


def _is_live(folder: Path) -> bool:
    """Whether some process still holds the run's lock (so it is really running)."""
    lock_path = folder / LOCK_FILE
    if not lock_path.exists():
        return False
    probe = _Lock(lock_path)
    if probe.acquire():
        probe.release()
        return False
    return True


def _new_id(root: Path, config) -> str:
    """``20261203-015530-relu-256x128``, with ``-2``, ``-3`` … when taken."""
    hidden = "x".join(str(h) for h in config.hidden) or "linear"
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.activation}-{hidden}"
    candidate, k = stem, 2
    while (root / candidate).exists():
        candidate = f"{stem}-{k}"
        k += 1
    return candidate


def default_name(config) -> str:
    """A run's name until the user gives it one: what sets it apart, e.g. ``relu 512-128 · adam 0.005``."""
    hidden = "-".join(str(h) for h in config.hidden) or "no hidden layer"
    return f"{config.activation} {hidden} · {config.optimizer} {config.lr:g}"


class RunRecorder:
    """Writes one run to disk as its records arrive.

    Parameters
    ----------
    config : TrainConfig
        The run's settings.
    source : str
        Where the run came from: ``"app"``, ``"cli"``, ``"experiment"``, ``"finetune"``.
    name : str, optional
        The name shown in the run list (default: the folder's id).
    root : path, optional
        The runs folder (default: :func:`runs_dir`).
    extra : dict, optional
        More JSON fields for ``run.json`` (e.g. the experiment and arm).
    """

    def __init__(self, config, source: str = "cli", name: str | None = None, root=None,
                 extra: dict | None = None):
        self.root = Path(root) if root is not None else runs_dir()
        self.root.mkdir(parents=True, exist_ok=True)
        self.id = _new_id(self.root, config)
        self.folder = self.root / self.id
        self.folder.mkdir()
        self._lock = _Lock(self.folder / LOCK_FILE)
        self._lock.acquire()
        self.info = {
            "format": RUN_FORMAT,
            "id": self.id,
            "name": _clean_name(name) or default_name(config),
            "source": source,
            "started": _now(),
            "started_at": time.time(),  # for ordering runs that start within the same second
            "ended": None,
            "status": "running",
            "config": config.to_dict(),
            "layer_sizes": [784, *config.hidden, 10],
            "test_accuracy": None,
            "test_loss": None,
            "val_accuracy": None,
            "seconds": None,
            "steps": 0,
            "epochs_done": 0,
            "model": None,
            "kept": False,
            "message": "",
            **(extra or {}),
        }
        _write_json(self.folder / RUN_FILE, self.info)
        self._curves = open(self.folder / CURVES_FILE, "a", encoding="utf-8")
        self._last_flush = time.monotonic()
        self.seconds = 0.0

    # ---- while the run goes ------------------------------------------------------------

    def add(self, record) -> None:
        """Append a ``StepRecord`` or ``EpochRecord`` (anything else is ignored)."""
        from digitpad.core.train import EpochRecord, StepRecord

        if isinstance(record, StepRecord):
            if record.message is not None:
                self.event(record.step, record.elapsed, record.message)
                return
            if record.change is not None:  # a setting changed during the run: this step is the first to use it
                self.event(record.step, record.elapsed, record.change)
            self.seconds = record.elapsed
            self._line({"k": "step", "step": record.step, "t": _num(record.elapsed), "loss": _num(record.loss),
                        "acc": _num(record.accuracy), "lr": _num(record.lr)})
            if record.layers is not None:
                ls = record.layers
                self._line({
                    "k": "stats", "step": record.step, "t": _num(record.elapsed),
                    "grad_norm": [_num(s.grad_norm) for s in ls],
                    "dead": [_num(s.dead_fraction) for s in ls[:-1]],
                    "act_mean": [_num(s.act_mean) for s in ls],
                    "act_std": [_num(s.act_std) for s in ls],
                    "update_ratio": [_num(s.update_ratio) for s in ls],
                })
        elif isinstance(record, EpochRecord):
            self.seconds = record.seconds
            self._line({"k": "epoch", "epoch": record.epoch, "step": record.step, "t": _num(record.seconds),
                        "train_loss": _num(record.train_loss), "train_acc": _num(record.train_accuracy),
                        "val_loss": _num(record.val_loss), "val_acc": _num(record.val_accuracy)})
            self._flush()

    def event(self, step: int, t: float, text: str) -> None:
        """Mark something that happened during the run (a setting changed, divergence)."""
        self._line({"k": "event", "step": int(step), "t": _num(t), "text": str(text)})
        self._flush()

    def _line(self, obj: dict) -> None:
        if self._curves is None:
            return
        self._curves.write(json.dumps(obj, separators=(",", ":")) + "\n")
        if time.monotonic() - self._last_flush > 1.0:
            self._flush()

    def _flush(self) -> None:
        if self._curves is not None:
            self._curves.flush()
            self._last_flush = time.monotonic()

    # ---- the end -----------------------------------------------------------------------

    def finish(self, result=None, *, status: str | None = None, test_accuracy=None, test_loss=None,
               model_path=None, message: str | None = None) -> None:
        """Record how the run ended; ``status`` defaults to what ``result`` (a TrainResult) says."""
        if status is None:
            if result is None:
                status = "failed"
            elif result.diverged:
                status = "diverged"
            elif result.stopped:
                status = "stopped"
            else:
                status = "finished"
        if status not in STATUSES:
            raise ValueError(f"status: unknown {status!r}; choose one of {', '.join(STATUSES)}")
        info = self.info
        if result is not None:
            info.update(seconds=_num(result.seconds), steps=int(result.steps),
                        epochs_done=int(result.epochs_done), val_accuracy=_num(result.best_val_accuracy),
                        best_epoch=int(result.best_epoch))
            if message is None:
                message = result.message
        else:
            info["seconds"] = _num(self.seconds)
        info.update(status=status, ended=_now(), message=message or "",
                    test_accuracy=None if test_accuracy is None else _num(test_accuracy),
                    test_loss=None if test_loss is None else _num(test_loss))
        if model_path is not None:
            info.update(model=str(Path(model_path).resolve()), kept=True)
        self.close()

    def set_model(self, model_path) -> None:
        """The run's model was kept as ``model_path`` (after the run ended, e.g. on Keep)."""
        set_kept(self.folder, model_path)
        self.info.update(model=str(Path(model_path).resolve()), kept=True)

    def close(self) -> None:
        """Write ``run.json`` and let go of the files; a run not finished reads as interrupted."""
        if self._curves is None:
            return
        self._flush()
        self._curves.close()
        self._curves = None
        if self.info["status"] == "running":
            self.info.update(status="interrupted", ended=_now(), seconds=_num(self.seconds))
        _write_json(self.folder / RUN_FILE, self.info)
        self._lock.release()

    def __enter__(self) -> "RunRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.info["status"] == "running":
            self.info["status"] = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed"
            self.info["message"] = self.info["message"] or (str(exc) or exc_type.__name__)
        self.close()


class NullRecorder:
    """Stands in for a ``RunRecorder`` when a run is not to be (or cannot be) recorded."""

    id = None
    folder = None

    def __enter__(self) -> "NullRecorder":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add(self, record) -> None:
        pass

    def event(self, step: int, t: float, text: str) -> None:
        pass

    def finish(self, *args, **kwargs) -> None:
        pass

    def set_model(self, model_path) -> None:
        pass

    def close(self) -> None:
        pass


def open_recorder(config, source: str, name: str | None = None, root=None, extra: dict | None = None):
    """A ``RunRecorder`` for a new run, or a ``NullRecorder`` and a note saying why the run
    history cannot take it (a full or read-only data folder must not stop the training)."""
    try:
        return RunRecorder(config, source=source, name=name, root=root, extra=extra), None
    except OSError as e:
        where = root if root is not None else runs_dir()
        return NullRecorder(), f"this run is not kept in the run history: cannot write in {where} ({e.strerror or e})"


# ---- reading -------------------------------------------------------------------------------


@dataclass
class Run:
    """One run as listed: its ``run.json`` fields and where it lives."""

    folder: Path
    info: dict

    @property
    def id(self) -> str:
        return self.folder.name

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.id)

    @property
    def status(self) -> str:
        return str(self.info.get("status"))

    @property
    def config(self) -> dict:
        return self.info.get("config") or {}

    def summary(self) -> dict:
        """The JSON object ``digitpad runs --json`` prints for this run."""
        keys = ("name", "id", "source", "started", "ended", "status", "config", "layer_sizes", "test_accuracy",
                "val_accuracy", "seconds", "steps", "epochs_done", "model", "kept", "message", "experiment", "arm")
        out = {k: self.info.get(k) for k in keys}
        out["id"] = self.id
        out["name"] = self.name
        return out


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _clean_name(name) -> str:
    if name is None:
        return ""
    name = re.sub(r"\s+", " ", str(name)).strip()
    return name[:MAX_NAME]


def _read_info(folder: Path) -> dict:
    path = folder / RUN_FILE
    try:
        if path.stat().st_size > MAX_RUN_FILE_BYTES:
            raise RunFileError(f"{path}: too large for a run file")
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunFileError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFileError(f"{path}: damaged ({e})") from None
    if not isinstance(info, dict) or info.get("format") != RUN_FORMAT:
        raise RunFileError(f"{path}: not a digitpad run file (format {info.get('format') if isinstance(info, dict) else None!r})")
    if info.get("status") not in STATUSES:
        raise RunFileError(f"{path}: unknown status {info.get('status')!r}")
    if not isinstance(info.get("config"), dict):
        raise RunFileError(f"{path}: has no settings")
    if info["status"] == "running" and not _is_live(folder):
        info["status"] = "interrupted"  # its process ended without saying how
    return info


def list_runs(root=None) -> tuple[list[Run], list[str]]:
    """Every readable run, oldest first, and one line per run folder that could not be read."""
    root = Path(root) if root is not None else runs_dir()
    if not root.is_dir():
        return [], []
    runs, problems = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            runs.append(Run(folder, _read_info(folder)))
        except RunFileError as e:
            problems.append(str(e))
    runs.sort(key=lambda r: (str(r.info.get("started") or "")[:19], _number(r.info.get("started_at")), r.id))
    return runs, problems


def find_run(name_or_id: str, root=None) -> Run:
    """The run with this id, or else the one with this name; ``KeyError`` naming it when none or several."""
    runs, _ = list_runs(root)
    for run in runs:
        if run.id == name_or_id:
            return run
    named = [r for r in runs if r.name == name_or_id]
    if len(named) == 1:
        return named[0]
    if named:
        raise KeyError(f"{name_or_id}: {len(named)} runs have this name; use an id ({', '.join(r.id for r in named)})")
    raise KeyError(f"{name_or_id}: no such run")


def rename_run(run: Run, name: str) -> Run:
    """Give ``run`` a new display name (its folder keeps its id)."""
    name = _clean_name(name)
    if not name:
        raise ValueError("name: must not be empty")
    info = _read_info(run.folder)
    if info["status"] == "running":
        raise ValueError(f"{run.name}: cannot rename a run that is still going")
    info["name"] = name
    _write_json(run.folder / RUN_FILE, info)
    return Run(run.folder, info)


def set_kept(folder, model_path) -> None:
    """Record that the run in ``folder`` was kept as ``model_path``."""
    folder = Path(folder)
    info = _read_info(folder)
    info.update(model=str(Path(model_path).resolve()), kept=True)
    _write_json(folder / RUN_FILE, info)


def delete_run(run: Run) -> None:
    """Remove a run's folder (only a folder that holds a run file, inside the runs folder)."""
    folder = run.folder
    if not (folder / RUN_FILE).is_file():
        raise RunFileError(f"{folder}: not a run folder")
    if _is_live(folder):
        raise ValueError(f"{run.name}: cannot delete a run that is still going")
    shutil.rmtree(folder)


# ---- curves ---------------------------------------------------------------------------------


@dataclass
class Curves:
    """A run's curves as arrays (NaN where a value was not finite).

    ``steps``: step, t, loss, acc, lr, each (N,). ``stats``: step, t (M,), and per layer
    grad_norm, act_mean, act_std, update_ratio (M, L) and dead (M, L - 1). ``epochs``:
    epoch, step, t, train_loss, train_acc, val_loss, val_acc, each (E,).
    """

    steps: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    epochs: dict = field(default_factory=dict)
    events: list = field(default_factory=list)  # (step, t, text)

    def grad_ratio_first_last(self, max_step: int = 200) -> float:
        """Median over the first ``max_step`` steps of the first layer's gradient norm over the last's."""
        g = self.stats.get("grad_norm")
        if g is None or not len(g):
            return float("nan")
        rows = self.stats["step"] <= max_step
        if not rows.any():
            rows = slice(None)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = g[rows, 0] / g[rows, -1]
        ratio = ratio[np.isfinite(ratio)]
        return float(np.median(ratio)) if len(ratio) else float("nan")

    def final_dead(self) -> list[float]:
        """Each hidden layer's dead (or saturated) fraction at the last statistics step."""
        d = self.stats.get("dead")
        if d is None or not len(d):
            return []
        return [float(x) for x in d[-1]]


_STEP_KEYS = ("step", "t", "loss", "acc", "lr")
_STATS_KEYS = ("grad_norm", "act_mean", "act_std", "update_ratio", "dead")
_EPOCH_KEYS = ("epoch", "step", "t", "train_loss", "train_acc", "val_loss", "val_acc")


def _floats(values) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def load_curves(run: Run) -> Curves:
    """Read ``curves.jsonl``; lines that do not parse (a torn last line) are skipped."""
    steps = {k: [] for k in _STEP_KEYS}
    stats = {k: [] for k in ("step", "t", *_STATS_KEYS)}
    epochs = {k: [] for k in _EPOCH_KEYS}
    events = []
    try:
        f = open(run.folder / CURVES_FILE, encoding="utf-8", errors="replace")
    except FileNotFoundError:
        f = None
    if f is not None:
        with f:
            for line in f:
                try:
                    obj = json.loads(line)
                    kind = obj["k"]
                    if kind == "step":
                        row = [obj[k] for k in _STEP_KEYS]
                        for k, v in zip(_STEP_KEYS, row):
                            steps[k].append(v)
                    elif kind == "stats":
                        row = {k: _floats(obj[k]) for k in _STATS_KEYS}
                        if stats["grad_norm"] and len(row["grad_norm"]) != len(stats["grad_norm"][0]):
                            continue
                        stats["step"].append(obj["step"])
                        stats["t"].append(obj["t"])
                        for k in _STATS_KEYS:
                            stats[k].append(row[k])
                    elif kind == "epoch":
                        row = [obj[k] for k in _EPOCH_KEYS]
                        for k, v in zip(_EPOCH_KEYS, row):
                            epochs[k].append(v)
                    elif kind == "event":
                        events.append((int(obj["step"]), obj["t"], str(obj["text"])))
                except (ValueError, KeyError, TypeError):
                    continue
    n_layers = len(stats["grad_norm"][0]) if stats["grad_norm"] else 0

    def arr(values, cols=None):
        a = np.array(_floats(values) if cols is None else values, dtype=np.float64)
        return a.reshape(-1, cols) if cols is not None else a

    return Curves(
        steps={k: arr(v) for k, v in steps.items()},
        stats={"step": arr(stats["step"]), "t": arr(stats["t"]),
               **{k: arr(stats[k], n_layers - (k == "dead")) for k in _STATS_KEYS}} if n_layers else {},
        epochs={k: arr(v) for k, v in epochs.items()},
        events=events,
    )


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard's smoothing: an exponential moving average, debiased at the start; NaN stays NaN.

    ``weight`` 0 returns the values as they are; 0.99 follows only the slow trend.
    """
    values = np.asarray(values, dtype=np.float64)
    if weight <= 0 or not len(values):
        return values.copy()
    out = np.full_like(values, np.nan)
    last, n = 0.0, 0
    for i, v in enumerate(values):  # a few thousand points at most; a Python loop keeps NaN handling plain
        if not math.isfinite(v):
            continue
        last = last * weight + (1.0 - weight) * v
        n += 1
        out[i] = last / (1.0 - weight ** n)
    return out
