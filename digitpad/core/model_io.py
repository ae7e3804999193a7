"""Model files: weights in an ``.npz`` with a JSON metadata entry, never pickled.

A model file holds ``w0, b0, w1, b1, …`` as float32 arrays and ``metadata``, a uint8
array of UTF-8 JSON (format version, layer sizes, activation, preprocessing version,
training config and seed, metrics, creation time, digitpad version). Loading uses
``allow_pickle=False`` and checks the archive's entry count, then every shape, dtype and
value before building a model; anything else is refused with a short ``ModelFileError``
that names the file. Metadata fields of the wrong JSON type are dropped (and a calibration
temperature is kept within ``TEMPERATURE_RANGE``) with a note, so no caller meets them.
Saving writes a temporary file beside the target and renames it (``files.atomic_path``),
so a crash mid-save never leaves a half-written model where the previous one was.

This module also owns what makes a model usable for reading digits: ``check_usable``
(784 inputs to 10 classes, finite weights), ``open_model`` (load, then that check: what
the CLI and the app both use) and ``model_temperature``, the one parser of the
temperature a model asks for.
"""

from __future__ import annotations

import json
import math
import os
import struct
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from digitpad import __version__
from digitpad.core.files import app_data_dir, atomic_path, display, open_regular
from digitpad.core.mlp import MAX_PARAMS, MLP, N_CLASSES, N_PIXELS, MLPConfig

FORMAT_VERSION = 1
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_METADATA_BYTES = 1024 * 1024
MAX_LAYERS = 64
MAX_ENTRIES = 1 + 2 * MAX_LAYERS  # the metadata, and weights and biases per layer
MAX_DIRECTORY_BYTES = 1024 * MAX_ENTRIES  # the archive's list of entries, read before any entry
MAX_MESSAGE_NAMES = 5  # entry names quoted in one message at most
SHIPPED_NAME = "default.npz"
TEMPERATURE_RANGE = (0.05, 20.0)  # softmax temperatures a model may ask for; others are clamped
DICT_FIELDS = ("metrics", "train_config", "calibration")  # metadata fields that must be JSON objects

_EOCD = struct.Struct("<4s4H2LH")  # zip end of central directory record
_ZIP64_EOCD = struct.Struct("<4sQ2H2L4Q")  # its zip64 form, just before a 20-byte locator
_ZIP64_LOCATOR_SIZE = 20
_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
               type(None): "null"}


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


def _metadata_array(metadata: dict) -> np.ndarray:
    return np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def build_metadata(model: MLP, **extra) -> dict:
    """The metadata every model file carries, plus ``extra`` (train_config, seed, metrics, …)."""
    from digitpad.core.preprocess import PREPROCESS_VERSION

    meta = {
        "format_version": FORMAT_VERSION,
        "layer_sizes": list(model.config.layer_sizes),
        "activation": model.config.activation,
        "preprocess_version": PREPROCESS_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "digitpad_version": __version__,
        "metrics": {},
    }
    meta.update(extra)
    return meta


def save_model(path, model: MLP, metadata: dict | None = None) -> Path:
    """Write ``model`` and ``metadata`` to ``path`` atomically; return the path.

    Parameters
    ----------
    path : str or Path
        Target file; ``.npz`` is appended when missing. Its folder is created.
    model : MLP
        Must have finite weights: a diverged network is never saved.
    metadata : dict, optional
        JSON-serialisable; layer sizes and activation are always taken from ``model``.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if not model.is_finite():
        raise ModelFileError(f"{path}: refusing to save a model whose weights are not all finite")
    meta = build_metadata(model) if metadata is None else dict(metadata)
    meta["format_version"] = FORMAT_VERSION
    meta["layer_sizes"] = list(model.config.layer_sizes)
    meta["activation"] = model.config.activation
    arrays = {"metadata": _metadata_array(meta)}
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        arrays[f"w{i}"] = np.ascontiguousarray(w, dtype=np.float32)
        arrays[f"b{i}"] = np.ascontiguousarray(b, dtype=np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    return path


def _short(text: str, limit: int = 200) -> str:
    """``text`` cut to ``limit`` characters: an error message stays one readable line."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _names(names: list[str]) -> str:
    """At most ``MAX_MESSAGE_NAMES`` entry names, each cut short, and how many more there are."""
    shown = ", ".join(_short(n, 40) for n in names[:MAX_MESSAGE_NAMES])
    more = len(names) - MAX_MESSAGE_NAMES
    return shown + (f" and {more:,} more" if more > 0 else "")


def _check_directory(path: Path, f, size: int) -> None:
    """Refuse an archive with more entries than a model has, from its end record alone.

    ``zipfile`` reads the whole list of entries when it opens an archive (two million
    empty entries take over a gigabyte and many seconds), so the count and the list's
    size are read from the end of central directory record (and its zip64 form, which
    ``zipfile`` prefers when present) before anything else.
    """
    tail_len = min(size, _EOCD.size + 0xFFFF)  # the record plus the longest comment
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        raise ModelFileError(f"{path}: not a readable .npz archive (its end record is missing)")
    _, _, _, _, count, directory_bytes, _, _ = _EOCD.unpack_from(tail, at)
    locator = at - _ZIP64_LOCATOR_SIZE
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        record = locator - _ZIP64_EOCD.size
        if record < 0 or tail[record:record + 4] != b"PK\x06\x06":
            raise ModelFileError(f"{path}: not a readable .npz archive (a damaged zip64 end record)")
        fields = _ZIP64_EOCD.unpack_from(tail, record)
        count, directory_bytes = fields[7], fields[8]
    if count > MAX_ENTRIES:
        raise ModelFileError(f"{path}: the archive has {count:,} entries; a digitpad model has at most "
                             f"{MAX_ENTRIES}")
    if directory_bytes > MAX_DIRECTORY_BYTES:
        raise ModelFileError(f"{path}: the archive's list of entries takes {directory_bytes:,} bytes; "
                             f"a digitpad model's takes under {MAX_DIRECTORY_BYTES:,}")


def parse_temperature(value) -> tuple[float | None, str]:
    """A softmax temperature within ``TEMPERATURE_RANGE``, and a note when ``value`` had to change.

    Parameters
    ----------
    value : object
        The temperature as given (a number from a model's metadata or the command line).

    Returns
    -------
    temperature : float or None
        ``value`` clamped to the range; None when it is not a positive number.
    note : str
        What was wrong with ``value`` and what is used instead; '' when it is used as it is.
    """
    lo, hi = TEMPERATURE_RANGE
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return None, f"temperature {_short(repr(value), 40)} is not a positive number; using 1"
    if value < lo:
        return lo, f"temperature {value:g} is below {lo:g}; using {lo:g}"
    if value > hi:
        return hi, f"temperature {value:g} is above {hi:g}; using {hi:g}"
    return float(value), ""


def model_temperature(metadata: dict | None) -> float:
    """The softmax temperature a model's metadata asks for (within ``TEMPERATURE_RANGE``), or 1."""
    if not isinstance(metadata, dict) or "temperature" not in metadata:
        return 1.0
    temperature, _ = parse_temperature(metadata["temperature"])
    return 1.0 if temperature is None else temperature


def normalise_metadata(meta: dict) -> tuple[dict, list[str]]:
    """``meta`` with fields of the wrong JSON type dropped and its temperature in range; the notes why.

    Object fields (``DICT_FIELDS``: metrics, train_config, calibration) that are not JSON
    objects are dropped; a temperature that is not a positive number is dropped, one
    outside ``TEMPERATURE_RANGE`` is clamped. Returns a new dict and one note per change.
    """
    meta, notes = dict(meta), []
    for key in DICT_FIELDS:
        if key in meta and not isinstance(meta[key], dict):
            kind = _JSON_KINDS.get(type(meta.pop(key)), "not an object")
            notes.append(f"metadata field {key!r} is {kind}, not an object; ignored")
    if "temperature" in meta:
        temperature, note = parse_temperature(meta["temperature"])
        if temperature is None:
            del meta["temperature"]
        else:
            meta["temperature"] = temperature
        if note:
            notes.append(note)
    return meta, notes


def _header(path: Path, data, name: str) -> tuple[tuple, np.dtype]:
    """Shape and dtype of entry ``name``, read from its .npy header without decompressing the array."""
    with data.zip.open(f"{name}.npy") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelFileError(f"{path}: array {name} has an unsupported .npy version {version}")
    return shape, dtype


def _read_metadata(path: Path, data) -> dict:
    if "metadata" not in data.files:
        raise ModelFileError(f"{path}: not a digitpad model (no metadata entry)")
    shape, dtype = _header(path, data, "metadata")
    if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_METADATA_BYTES:
        raise ModelFileError(f"{path}: metadata entry has the wrong type or size ({dtype}, shape {shape})")
    raw = data["metadata"]
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ModelFileError(f"{path}: metadata entry has the wrong type ({raw.dtype}, {raw.ndim}-D)")
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"{path}: metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ModelFileError(f"{path}: metadata must be a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model format version {version!r} is not supported (this digitpad reads {FORMAT_VERSION})"
        )
    return meta


def load_model(path, notes: list | None = None) -> tuple[MLP, dict]:
    """Read a model file written by ``save_model``; return the network and its metadata.

    Parameters
    ----------
    path : str or Path
    notes : list, optional
        Receives one line (naming the file) per metadata field that was dropped or
        clamped (see ``normalise_metadata``).

    Raises
    ------
    ModelFileError
        Missing, not an npz, too many entries, pickled content, missing or malformed
        metadata, wrong shapes or dtypes, non-finite values. The message names the file
        and the problem, in one short line.
    """
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or device is refused here instead of blocking np.load
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ModelFileError(f"{path}: the file is empty")
            if size > MAX_FILE_BYTES:
                raise ModelFileError(f"{path}: {size / 1e6:.0f} MB is too large for a digitpad model")
            head = f.read(6)
            if not head.startswith(b"PK"):
                # np.load treats anything that is neither a zip nor an .npy as a pickle
                if head.startswith(b"\x80"):
                    raise ModelFileError(f"{path}: contains a pickled Python object, which digitpad never loads "
                                         "(it could run code)")
                if head.startswith(b"\x93NUMPY"):
                    raise ModelFileError(f"{path}: a single .npy array, not an .npz model archive")
                raise ModelFileError(f"{path}: not an .npz archive")
            _check_directory(path, f, size)
    except FileNotFoundError:
        raise ModelFileError(f"{display(path)}: no such model file") from None
    except OSError as e:
        raise ModelFileError(f"{display(path)}: cannot be read ({e.strerror or _short(e)})") from None
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ModelFileError(f"{path}: not an .npz archive")
            meta = _read_metadata(path, data)
            try:
                sizes = [int(s) for s in meta["layer_sizes"]]
                if len(sizes) < 2:
                    raise ValueError(f"layer_sizes needs at least an input and an output size, got {sizes}")
                config = MLPConfig(n_in=sizes[0], hidden=tuple(sizes[1:-1]), n_out=sizes[-1],
                                   activation=str(meta["activation"]))
            except (KeyError, TypeError, ValueError, IndexError) as e:
                raise ModelFileError(f"{path}: metadata does not describe a network ({_short(e)})") from None
            n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
            if n_params > MAX_PARAMS:
                raise ModelFileError(f"{path}: {n_params:,} parameters is more than a digitpad model may have "
                                     f"({MAX_PARAMS:,})")
            weights, biases = [], []
            for i in range(len(sizes) - 1):
                for name, store, shape in ((f"w{i}", weights, (sizes[i], sizes[i + 1])),
                                           (f"b{i}", biases, (sizes[i + 1],))):
                    if name not in data.files:
                        raise ModelFileError(f"{path}: array {name} is missing")
                    stored_shape, stored_dtype = _header(path, data, name)  # checked before decompressing
                    if stored_dtype.hasobject:
                        raise ModelFileError(f"{path}: contains a pickled Python object, which digitpad never "
                                             "loads (it could run code)")
                    if stored_dtype != np.float32:
                        raise ModelFileError(f"{path}: array {name} has dtype {stored_dtype}, expected float32")
                    if tuple(stored_shape) != shape:
                        raise ModelFileError(f"{path}: array {name} has shape {tuple(stored_shape)}, "
                                             f"expected {shape}")
                    arr = data[name]  # allow_pickle=False: an object array raises here
                    if arr.dtype != np.float32:
                        raise ModelFileError(f"{path}: array {name} has dtype {arr.dtype}, expected float32")
                    if arr.shape != shape:
                        raise ModelFileError(f"{path}: array {name} has shape {arr.shape}, expected {shape}")
                    if not np.isfinite(arr).all():
                        raise ModelFileError(f"{path}: array {name} contains NaN or infinite values")
                    store.append(arr)
            expected = {"metadata"} | {f"{k}{i}" for i in range(len(sizes) - 1) for k in "wb"}
            extra = sorted(set(data.files) - expected)
            if extra:
                raise ModelFileError(f"{path}: unexpected entries {_names(extra)}")
    except ModelFileError:
        raise
    except ValueError as e:
        # numpy raises ValueError for object arrays when allow_pickle=False, and for bad headers
        if "pickle" in str(e).lower():  # NumPy's text suggests allow_pickle: not advice to pass on
            raise ModelFileError(f"{path}: contains a pickled Python object, which digitpad never loads "
                                 "(it could run code)") from None
        raise ModelFileError(f"{path}: cannot be read safely ({_short(e)})") from None
    except Exception as e:  # zipfile, zlib and the .npy header parser raise many kinds on a damaged file
        raise ModelFileError(f"{path}: not a readable .npz model file ({type(e).__name__}: {_short(e)})") from None
    meta, found = normalise_metadata(meta)
    if notes is not None:
        notes.extend(f"{path}: {note}" for note in found)
    return MLP.from_arrays(config, weights, biases), meta


def check_usable(model: MLP, path=None) -> None:
    """Refuse a network that cannot read digits: it must take 784 pixels to 10 classes, with finite weights.

    Raises
    ------
    ModelFileError
        Naming ``path`` (when given), the network and what it lacks.
    """
    where = f"{path}: " if path is not None else ""
    if (model.config.n_in, model.config.n_out) != (N_PIXELS, N_CLASSES):
        raise ModelFileError(f"{where}a {model.describe()} network cannot read 28x28 digits "
                             f"(it needs {N_PIXELS} inputs and {N_CLASSES} outputs)")
    if not model.is_finite():
        raise ModelFileError(f"{where}the network's weights are not all finite")


def open_model(path=None, notes: list | None = None) -> tuple[MLP, dict]:
    """A model to read digits with: ``load_model`` then ``check_usable``; the shipped one when ``path`` is None.

    The CLI and the app open every model through here, so they refuse the same files
    with the same sentence.
    """
    path = shipped_model_path() if path is None else path
    model, meta = load_model(path, notes)
    check_usable(model, path)
    return model, meta


def shipped_model_path() -> Path:
    """The model that ships with digitpad: inside the installed package, or ``models/`` of a checkout."""
    try:
        candidate = Path(str(resources.files("digitpad.models").joinpath(SHIPPED_NAME)))
        if candidate.is_file():
            return candidate
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parents[2] / "models" / SHIPPED_NAME


def free_path(folder, stem: str) -> Path:
    """``folder/stem.npz``, or ``stem-2.npz``, ``stem-3.npz``… whichever does not exist yet."""
    folder = Path(folder)
    target = folder / f"{stem}.npz"
    k = 2
    while target.exists():
        target = folder / f"{stem}-{k}.npz"
        k += 1
    return target


def user_models_dir() -> Path:
    """Where models trained in the app are kept (the user's data folder), created on demand."""
    path = app_data_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
