"""Model files: round trip, atomic save, and refusal of anything unsafe or malformed."""

import io
import json
import os
import pickle
import struct
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


# ---- archives with absurd entry counts ---------------------------------------------------------

def _claim_entries(path, count, directory_bytes=None):
    """Rewrite the end of the zip at ``path`` so it claims ``count`` entries in zip64 form."""
    data = path.read_bytes()
    eocd = data.rindex(b"PK\x05\x06")
    _, _, _, _, _, size, offset, _ = struct.unpack_from("<4s4H2LH", data, eocd)
    size = size if directory_bytes is None else directory_bytes
    record = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, eocd, 1)
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    path.write_bytes(data[:eocd] + record + locator + end)


def _no_zip_listing(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the archive's list of entries was read")

    monkeypatch.setattr(zipfile.ZipFile, "__init__", refuse)


def test_two_million_entries_are_refused_from_the_end_record_alone(tmp_path, model, monkeypatch):
    path = save_model(tmp_path / "many.npz", model)
    _claim_entries(path, 2_000_000)
    _no_zip_listing(monkeypatch)
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    assert "2,000,000 entries" in str(e.value) and str(path) in str(e.value) and len(str(e.value)) < 200


def test_an_entry_count_that_understates_a_huge_listing_is_refused(tmp_path, model, monkeypatch):
    path = save_model(tmp_path / "liar.npz", model)
    _claim_entries(path, 7, directory_bytes=160_000_000)  # 2 million names in 160 MB, said to be 7
    _no_zip_listing(monkeypatch)
    with pytest.raises(ModelFileError, match="list of entries takes 160,000,000 bytes"):
        load_model(path)


def test_many_real_entries_are_refused_and_the_message_stays_short(tmp_path):
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(model_io.MAX_ENTRIES + 1):
            z.writestr(f"{'x' * 200}{i}.npy", b"")
    with pytest.raises(ModelFileError, match=f"{model_io.MAX_ENTRIES + 1} entries") as e:
        load_model(path)
    assert len(str(e.value)) < 200


def test_unexpected_entries_are_named_in_a_short_message(tmp_path):
    path = tmp_path / "extra.npz"
    arrays = {f"{'y' * 300}{i}": np.zeros(1, np.float32) for i in range(100)}
    _write_npz(path, metadata=_meta(), **_good_arrays(), **arrays)
    with pytest.raises(ModelFileError, match="unexpected entries .* and 95 more") as e:
        load_model(path)
    assert len(str(e.value)) < 400


# ---- what makes a model usable: metadata types, temperature, 784 -> 10 -------------------------

@pytest.mark.parametrize("field", ["metrics", "train_config", "calibration"])
@pytest.mark.parametrize("value", [[1, 2], "fast", 7, None])
def test_metadata_objects_of_the_wrong_type_are_dropped_with_a_note(tmp_path, model, field, value):
    path = save_model(tmp_path / "odd.npz", model, build_metadata(model) | {field: value})
    notes = []
    _, meta = load_model(path, notes)
    assert field not in meta
    assert len(notes) == 1 and str(path) in notes[0] and repr(field) in notes[0] and "not an object" in notes[0]


@pytest.mark.parametrize("value, expected, note", [
    (1e-300, 0.05, "below 0.05"), (1e308, 20.0, "above 20"), (1.7, 1.7, ""),
    ("hot", None, "not a positive number"), (-2, None, "not a positive number"), (True, None, "not a positive"),
])
def test_the_temperature_is_kept_in_range_with_a_note(tmp_path, model, value, expected, note):
    path = save_model(tmp_path / "t.npz", model, build_metadata(model) | {"temperature": value})
    notes = []
    _, meta = load_model(path, notes)
    assert meta.get("temperature") == expected
    assert model_io.model_temperature(meta) == (1.0 if expected is None else expected)
    assert (note in notes[0]) if note else notes == []
    # the parser itself, for metadata that never went through a file
    assert model_io.model_temperature({"temperature": value}) == (1.0 if expected is None else expected)
    assert model_io.model_temperature(None) == model_io.model_temperature({"metrics": 1}) == 1.0


def test_a_network_that_cannot_read_digits_is_refused_by_open_model(tmp_path):
    small = MLP(MLPConfig(n_in=100, hidden=(8,), n_out=3), 0)
    path = save_model(tmp_path / "small.npz", small)
    load_model(path)  # a valid model file…
    with pytest.raises(ModelFileError) as e:
        model_io.open_model(path)  # …that cannot read 28x28 digits
    assert str(e.value) == (f"{path}: a 100-8-3 relu network cannot read 28x28 digits "
                            "(it needs 784 inputs and 10 outputs)")
    model = MLP(MLPConfig(hidden=(4,)), 0)
    model.weights[1][0, 0] = np.inf
    with pytest.raises(ModelFileError, match="not all finite"):
        model_io.check_usable(model)
    opened, meta = model_io.open_model(None)  # the shipped model
    assert opened.config.n_in == 784 and meta["layer_sizes"][-1] == 10


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
