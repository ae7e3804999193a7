"""Model files: round trip, atomic save, and refusal of anything unsafe or malformed."""

import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest

from digitpad.core import model_io
from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.model_io import ModelFileError, build_metadata, load_model, save_model
from tests.child import refusal_in_child


@pytest.fixture
def model():
    return MLP(MLPConfig(hidden=(16, 8)), 3)


def test_round_trip_gives_identical_predictions(tmp_path, model):
    path = save_model(tmp_path / "m.npz", model, build_metadata(model, seed=3, metrics={"test_accuracy": 0.5}))
    loaded, meta = load_model(path)
    x = np.random.default_rng(0).random((5, 784), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert meta["layer_sizes"] == [784, 16, 8, 10] and meta["seed"] == 3
    assert meta["metrics"]["test_accuracy"] == 0.5
    assert {"format_version", "created", "digitpad_version", "preprocess_version", "activation"} <= set(meta)
    assert path.stat().st_mode & 0o044 == 0o044  # readable like any file, not 0600 from mkstemp


def test_save_is_atomic_previous_file_survives_a_failed_save(tmp_path, model, monkeypatch):
    path = save_model(tmp_path / "m.npz", model)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", boom)
    with pytest.raises(OSError):
        save_model(path, MLP(MLPConfig(hidden=(4,)), 0))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temporary left behind


def test_non_finite_model_is_not_saved(tmp_path, model):
    model.weights[0][0, 0] = np.nan
    with pytest.raises(ModelFileError, match="finite"):
        save_model(tmp_path / "m.npz", model)
    assert not (tmp_path / "m.npz").exists()


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _meta(**over):
    m = {"format_version": 1, "layer_sizes": [784, 4, 10], "activation": "relu"}
    m.update(over)
    return np.frombuffer(json.dumps(m).encode(), np.uint8)


def _good_arrays():
    return dict(w0=np.zeros((784, 4), np.float32), b0=np.zeros(4, np.float32),
                w1=np.zeros((4, 10), np.float32), b1=np.zeros(10, np.float32))


class Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickled_object_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.save(buf, np.array([Boom()], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.npy", _npy(_meta()))
        z.writestr("w0.npy", buf.getvalue())
    with pytest.raises(ModelFileError, match="evil.npz") as info:
        load_model(path)
    assert not (tmp_path / "PWNED").exists()
    _assert_short_pickle_message(str(info.value))


def _npy(arr):
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def test_raw_pickle_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model.npz"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ModelFileError, match="model.npz") as info:
        load_model(path)
    assert not (tmp_path / "PWNED").exists()
    _assert_short_pickle_message(str(info.value))


def _assert_short_pickle_message(text):
    """The error says what the file holds and why it is refused, without NumPy's allow_pickle advice."""
    assert text.endswith("contains a pickled Python object, which digitpad never loads (it could run code)")
    assert "allow_pickle" not in text and "trust" not in text


@pytest.mark.parametrize("case, match", [
    ("empty", "empty"),
    ("missing", "no such"),
    ("text", "npz|readable|safely"),
    ("no_meta", "metadata"),
    ("bad_json", "JSON"),
    ("version", "format version"),
    ("shape", "shape"),
    ("dtype", "float32"),
    ("nan", "NaN"),
    ("missing_array", "missing"),
    ("extra", "unexpected"),
    ("activation", "activation"),
])
def test_malformed_files_are_refused_with_the_file_named(tmp_path, case, match):
    path = tmp_path / f"{case}.npz"
    arrays = _good_arrays()
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("hello")
    elif case == "missing":
        pass
    else:
        meta = _meta()
        if case == "no_meta":
            meta = None
        elif case == "bad_json":
            meta = np.frombuffer(b"{not json", np.uint8)
        elif case == "version":
            meta = _meta(format_version=99)
        elif case == "activation":
            meta = _meta(activation="softsign")
        elif case == "shape":
            arrays["w0"] = np.zeros((784, 5), np.float32)
        elif case == "dtype":
            arrays["w1"] = np.zeros((4, 10), np.float64)
        elif case == "nan":
            arrays["b1"] = np.full(10, np.nan, np.float32)
        elif case == "missing_array":
            del arrays["b0"]
        elif case == "extra":
            arrays["junk"] = np.zeros(3, np.float32)
        if meta is not None:
            arrays["metadata"] = meta
        _write_npz(path, **arrays)
    with pytest.raises(ModelFileError, match=match) as err:
        load_model(path)
    assert path.name in str(err.value)


def test_shipped_model_is_found_and_loads():
    path = model_io.shipped_model_path()
    if not path.is_file():
        pytest.skip(f"no shipped model at {path}")
    model, meta = load_model(path)
    assert model.config.layer_sizes[0] == 784 and model.config.layer_sizes[-1] == 10
    assert meta["metrics"]["test_accuracy"] >= 0.98


def test_free_path_never_names_an_existing_file(tmp_path, model):
    first = model_io.free_path(tmp_path, "m")
    assert first == tmp_path / "m.npz"
    save_model(first, model)
    second = model_io.free_path(tmp_path, "m")
    assert second == tmp_path / "m-2.npz"
    save_model(second, model)
    assert model_io.free_path(tmp_path, "m") == tmp_path / "m-3.npz"


def test_npy_text_and_one_size_files_are_refused_with_a_fitting_message(tmp_path):
    npy = tmp_path / "array.npz"
    npy.write_bytes(_npy(np.zeros(3, np.float32)))
    with pytest.raises(ModelFileError, match="array.npz: a single .npy array"):
        load_model(npy)
    text = tmp_path / "notes.npz"
    text.write_text("hello world")
    with pytest.raises(ModelFileError, match="notes.npz: not an .npz archive"):
        load_model(text)
    one = tmp_path / "one.npz"
    _write_npz(one, metadata=_meta(layer_sizes=[784]))
    with pytest.raises(ModelFileError, match="one.npz: metadata does not describe a network"):
        load_model(one)


def test_damaged_archives_only_ever_raise_model_file_error(tmp_path, model):
    import random

    good = save_model(tmp_path / "good.npz", model).read_bytes()
    rnd = random.Random(0)
    path = tmp_path / "damaged.npz"
    for _ in range(1500):
        data = bytearray(good)
        for _ in range(rnd.randint(1, 4)):
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        path.write_bytes(bytes(data))
        try:
            load_model(path)
        except ModelFileError:
            pass


def test_a_compressed_bomb_is_refused_before_it_is_decompressed(tmp_path, monkeypatch):
    """Declared sizes far beyond a digitpad model, or an array bigger than declared, are refused from headers."""
    big = tmp_path / "big.npz"
    with open(big, "wb") as f:
        np.savez_compressed(f, metadata=_meta(layer_sizes=[784, 16000, 16000, 10]),
                            w0=np.zeros((1, 1), np.float32))
    with pytest.raises(ModelFileError, match="parameters"):
        load_model(big)
    liar = tmp_path / "liar.npz"
    arrays = _good_arrays()
    arrays["w0"] = np.zeros((784, 4000), np.float32)  # 12 MB of zeros, a few KB compressed
    with open(liar, "wb") as f:
        np.savez_compressed(f, metadata=_meta(), **arrays)
    real_getitem = np.lib.npyio.NpzFile.__getitem__
    opened = []
    monkeypatch.setattr(np.lib.npyio.NpzFile, "__getitem__",
                        lambda self, key: opened.append(key) or real_getitem(self, key))
    with pytest.raises(ModelFileError, match="shape"):
        load_model(liar)
    assert "w0" not in opened  # refused from its header


# ------------------------------------------------------------------ files that are not model files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_named_pipe_is_refused_without_blocking(tmp_path):
    """A FIFO is refused as what it is, and never opened in a way that could block."""
    fifo = tmp_path / "model.npz"
    os.mkfifo(fifo)
    message = refusal_in_child("digitpad.core.model_io", "load_model", "ModelFileError", fifo)
    assert str(fifo) in message and "named pipe" in message


def test_folder_and_device_are_refused(tmp_path):
    with pytest.raises(ModelFileError, match="folder"):
        load_model(tmp_path)
    if os.path.exists("/dev/zero"):
        with pytest.raises(ModelFileError, match="character device"):
            load_model("/dev/zero")


def test_save_removes_the_temporary_file_a_killed_save_left(tmp_path, model):
    """kill -9 during a save leaves .m.npz.<pid>.<hex>.tmp (or mkstemp's .m.npz.XXXXXXXX.tmp)."""
    import subprocess
    import sys

    pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                             text=True, check=True).stdout)
    ours = tmp_path / f".m.npz.{pid}.00ff00ff.tmp"
    legacy = tmp_path / ".m.npz.k3j_x9az.tmp"
    for leftover in (ours, legacy):
        leftover.write_bytes(b"PK half a model")
    os.utime(legacy, (0, 0))                        # an old one: its writer is long gone
    other = tmp_path / ".other.npz.00ff00ff.tmp"    # another file's: not ours to judge
    other.write_bytes(b"")
    save_model(tmp_path / "m.npz", model)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.npz.00ff00ff.tmp", "m.npz"]


def test_save_keeps_a_temporary_file_whose_writer_is_alive(tmp_path, model):
    busy = tmp_path / f".m.npz.{os.getppid()}.00ff00ff.tmp"   # a save in progress elsewhere
    busy.write_bytes(b"")
    save_model(tmp_path / "m.npz", model)
    assert busy.exists()


def test_save_syncs_the_folder_after_the_rename(tmp_path, model, monkeypatch):
    """Without an fsync of the folder, a power cut can undo the rename."""
    import stat

    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append("folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    save_model(tmp_path / "m.npz", model)
    assert synced == ["file", "folder"]
