"""Model files: weights in an ``.npz`` with a JSON metadata entry, never pickled.

A model file holds ``w0, b0, w1, b1, …`` as float32 arrays and ``metadata``, a uint8
array of UTF-8 JSON (format version, layer sizes, activation, preprocessing version,
training config and seed, metrics, creation time, digitpad version). Loading uses
``allow_pickle=False`` and checks every shape, dtype and value before building a model;
anything else is refused with a ``ModelFileError`` that names the file. Saving writes a
temporary file beside the target and renames it (``files.atomic_path``), so a crash
mid-save never leaves a half-written model where the previous one was.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import numpy as np

from digitpad import __version__
from digitpad.core.files import atomic_path, display, open_regular
from digitpad.core.mlp import MLP, MLPConfig

FORMAT_VERSION = 1
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_PARAMS = 64 * 1024 * 1024  # 256 MB of float32: far above any MLP digitpad trains
MAX_METADATA_BYTES = 1024 * 1024
SHIPPED_NAME = "default.npz"


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


def load_model(path) -> tuple[MLP, dict]:
    """Read a model file written by ``save_model``; return the network and its metadata.

    Raises
    ------
    ModelFileError
        Missing, not an npz, pickled content, missing or malformed metadata, wrong shapes
        or dtypes, non-finite values. The message names the file and the problem.
    """
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or device is refused here instead of blocking np.load
            size = os.fstat(f.fileno()).st_size
            head = f.read(6)
    except FileNotFoundError:
        raise ModelFileError(f"{display(path)}: no such model file") from None
    except OSError as e:
        raise ModelFileError(f"{display(path)}: cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise ModelFileError(f"{path}: the file is empty")
    if size > MAX_FILE_BYTES:
        raise ModelFileError(f"{path}: {size / 1e6:.0f} MB is too large for a digitpad model")
    if not head.startswith(b"PK"):
        # np.load treats anything that is neither a zip nor an .npy as a pickle
        if head.startswith(b"\x80"):
            raise ModelFileError(f"{path}: contains a pickled Python object, which digitpad never loads "
                                 "(it could run code)")
        if head.startswith(b"\x93NUMPY"):
            raise ModelFileError(f"{path}: a single .npy array, not an .npz model archive")
        raise ModelFileError(f"{path}: not an .npz archive")
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
                raise ModelFileError(f"{path}: metadata does not describe a network ({e})") from None
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
                raise ModelFileError(f"{path}: unexpected entries {', '.join(extra)}")
    except ModelFileError:
        raise
    except ValueError as e:
        # numpy raises ValueError for object arrays when allow_pickle=False, and for bad headers
        if "pickle" in str(e).lower():  # NumPy's text suggests allow_pickle: not advice to pass on
            raise ModelFileError(f"{path}: contains a pickled Python object, which digitpad never loads "
                                 "(it could run code)") from None
        raise ModelFileError(f"{path}: cannot be read safely ({e})") from None
    except Exception as e:  # zipfile, zlib and the .npy header parser raise many kinds on a damaged file
        raise ModelFileError(f"{path}: not a readable .npz model file ({type(e).__name__}: {e})") from None
    return MLP.from_arrays(config, weights, biases), meta


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
    import platformdirs

    path = Path(platformdirs.user_data_dir("digitpad", appauthor=False)) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
