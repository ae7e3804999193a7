"""Tests for digitpad.core.data: IDX reading, locating, loading, verifying."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from digitpad.core import data
from digitpad.core.data import (
    FILES,
    MNIST,
    DataError,
    DataNotFoundError,
    find_data_dir,
    load_mnist,
    read_idx,
    verify_dir,
)
from tests.child import refusal_in_child

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """Serialise a uint8 array as an IDX file."""
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        struct.pack(">I", n) for n in array.shape
    )
    return header + array.astype(np.uint8).tobytes()


def write(path: Path, payload: bytes, compress: bool = False) -> Path:
    path.write_bytes(gzip.compress(payload) if compress else payload)
    return path


def fake_mnist(folder: Path, n_train: int = 12, n_test: int = 5, compress: bool = True,
               seed: int = 0) -> dict[str, bytes]:
    """Write four small, valid MNIST-shaped files; return name -> decompressed bytes."""
    rng = np.random.default_rng(seed)
    arrays = {
        TRAIN_IMAGES: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, n_train, dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    contents = {}
    for name, array in arrays.items():
        contents[name] = idx_bytes(array)
        write(folder / (name + ".gz" if compress else name), contents[name], compress)
    return contents


@pytest.fixture(autouse=True)
def isolated_locations(tmp_path, monkeypatch):
    """No test sees the real environment variable or the real user data folder."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)
    user_dir = tmp_path / "user-data" / "mnist"
    monkeypatch.setattr(data, "user_data_dir", lambda: user_dir)
    return user_dir


# ------------------------------------------------------------------------------ read_idx


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_read_idx_images_and_labels(tmp_path, compress):
    images = np.arange(3 * 28 * 28, dtype=np.int64).reshape(3, 28, 28).astype(np.uint8)
    labels = np.array([0, 9, 4], dtype=np.uint8)
    ip = write(tmp_path / "imgs", idx_bytes(images), compress)
    lp = write(tmp_path / "lbls", idx_bytes(labels), compress)

    got_images = read_idx(ip, kind="images")
    got_labels = read_idx(lp, kind="labels")

    assert got_images.dtype == np.uint8 and got_images.shape == (3, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    assert got_labels.dtype == np.uint8 and got_labels.shape == (3,)
    np.testing.assert_array_equal(got_labels, labels)
    assert not got_images.flags.writeable


def test_read_idx_gzip_is_recognised_by_content_not_name(tmp_path):
    labels = np.array([1, 2, 3], dtype=np.uint8)
    path = write(tmp_path / "labels-without-gz-suffix", idx_bytes(labels), compress=True)
    np.testing.assert_array_equal(read_idx(path), labels)


def test_read_idx_big_endian_types_come_back_native(tmp_path):
    values = np.array([[1, -2], [300000, 4]], dtype=">i4")
    payload = bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 2) + values.tobytes()
    got = read_idx(write(tmp_path / "ints", payload))
    assert got.dtype == np.dtype("int32") and got.dtype.isnative
    np.testing.assert_array_equal(got, values)


def assert_refused(path: Path, *fragments: str, kind=None):
    with pytest.raises(DataError) as info:
        read_idx(path, kind=kind)
    message = str(info.value)
    assert str(path) in message, message
    for fragment in fragments:
        assert fragment in message, message


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_read_idx_refuses_wrong_magic(tmp_path, compress):
    payload = idx_bytes(np.zeros((2, 28, 28), np.uint8))
    path = write(tmp_path / "bad-magic", b"\x12\x34" + payload[2:], compress)
    assert_refused(path, "magic")


def test_read_idx_refuses_unknown_type_code(tmp_path):
    payload = idx_bytes(np.zeros(4, np.uint8), type_code=0x42)
    assert_refused(write(tmp_path / "bad-type", payload), "magic")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_read_idx_refuses_truncated_payload(tmp_path, compress):
    payload = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    path = write(tmp_path / "short-images", payload[:-100], compress)
    assert_refused(path, "truncated", kind="images")


def test_read_idx_refuses_truncated_header(tmp_path):
    payload = idx_bytes(np.zeros((5, 28, 28), np.uint8))
    assert_refused(write(tmp_path / "short-header", payload[:9]), "truncated")
    assert_refused(write(tmp_path / "tiny", b"\x00\x00"), "truncated")


def test_read_idx_refuses_truncated_gzip_stream(tmp_path):
    compressed = gzip.compress(idx_bytes(np.arange(4000, dtype=np.int64).astype(np.uint8)))
    path = write(tmp_path / "cut.gz", compressed[: len(compressed) // 2])
    assert_refused(path, "truncated")


def test_read_idx_refuses_payload_longer_than_dimensions(tmp_path):
    payload = idx_bytes(np.zeros(10, np.uint8)) + b"\x00" * 3
    assert_refused(write(tmp_path / "long", payload), "3 bytes")


def test_read_idx_refuses_dimensions_that_are_not_images(tmp_path):
    path = write(tmp_path / "wrong-dims", idx_bytes(np.zeros((4, 27, 29), np.uint8)))
    assert_refused(path, "(4, 27, 29)", kind="images")
    labels_as_images = write(tmp_path / "labels", idx_bytes(np.zeros(4, np.uint8)))
    assert_refused(labels_as_images, "(N, 28, 28)", kind="images")


def test_read_idx_refuses_labels_outside_0_to_9(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.array([3, 9, 10, 1, 200], np.uint8)))
    assert_refused(path, "outside 0-9", "index 2", kind="labels")
    # the same bytes are a valid generic IDX file
    assert read_idx(path).tolist() == [3, 9, 10, 1, 200]


def test_read_idx_names_missing_file(tmp_path):
    assert_refused(tmp_path / "nowhere", "not found")


def test_read_idx_refuses_dimensions_whose_product_overflows(tmp_path):
    """4 x 65536: np.prod in int64 wrapped to 0 and the empty payload looked right."""
    header = bytes([0, 0, 0x08, 4]) + struct.pack(">IIII", 65536, 65536, 65536, 65536)
    path = write(tmp_path / "huge-dims", header)
    assert_refused(path, "65536x65536x65536x65536", "18,446,744,073,709,551,616 bytes", "more than")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_read_idx_refuses_a_named_pipe_without_blocking(tmp_path):
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    message = refusal_in_child("digitpad.core.data", "read_idx", "DataError", fifo)
    assert message == f"{fifo}: cannot read (is a named pipe (FIFO), not a regular file)"


def gzip_of_zeros(head: bytes, n_zeros: int) -> bytes:
    """``head`` followed by ``n_zeros`` zero bytes, gzip-compressed as it goes (a small 'bomb')."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=1) as gz:
        gz.write(head)
        block = bytes(1 << 20)
        for _ in range(n_zeros >> 20):
            gz.write(block)
        gz.write(bytes(n_zeros & ((1 << 20) - 1)))
    return out.getvalue()


@pytest.mark.parametrize("bomb", ["declared", "trailing"])
def test_gzip_bomb_in_the_data_folder_is_refused_without_inflating_it(tmp_path, bomb):
    """A small .gz that inflates to far more than MNIST's real size is refused in bounded memory."""
    import tracemalloc

    fake_mnist(tmp_path, n_train=12)
    n = 250_000  # 196 MB of pixels, declared (more than the 60,000 MNIST has) or appended
    if bomb == "declared":
        head = bytes([0, 0, 0x08, 3]) + struct.pack(">III", n, 28, 28)
    else:
        head = idx_bytes(np.zeros((12, 28, 28), np.uint8))
    (tmp_path / f"{TRAIN_IMAGES}.gz").write_bytes(gzip_of_zeros(head, n * 28 * 28))
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as info:
            load_mnist(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert f"{TRAIN_IMAGES}.gz" in message
    assert ("more than the 47,040,000" in message) if bomb == "declared" else ("at least" in message)
    assert peak < 64 * 2**20, f"{peak / 2**20:.0f} MiB"


def test_verify_stops_hashing_a_bomb_at_the_real_size(tmp_path):
    (tmp_path / f"{TEST_LABELS}.gz").write_bytes(gzip_of_zeros(b"", 100 * data.SIZES[TEST_LABELS]))
    assert data._sha256_decompressed(tmp_path / f"{TEST_LABELS}.gz", data.SIZES[TEST_LABELS]) is None
    assert verify_dir(tmp_path)[TEST_LABELS] is False


def test_sizes_are_those_of_real_mnist():
    for name, size in data.SIZES.items():
        n = 60_000 if name.startswith("train") else 10_000
        assert size == (16 + n * 784 if "images" in name else 8 + n)


def test_read_idx_rejects_unknown_kind(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(ValueError, match="kind"):
        read_idx(path, kind="pictures")


# ------------------------------------------------------------------------------ locating


def test_find_data_dir_none_when_nothing_anywhere(tmp_path):
    assert find_data_dir() is None
    assert find_data_dir(tmp_path / "missing") is None


def test_find_order_argument_then_env_then_user_dir(tmp_path, monkeypatch, isolated_locations):
    arg_dir, env_dir = tmp_path / "arg", tmp_path / "env"
    for folder in (arg_dir, env_dir, isolated_locations):
        fake_mnist(folder)

    monkeypatch.setenv(data.ENV_VAR, str(env_dir))
    assert find_data_dir(arg_dir) == arg_dir.resolve()
    assert find_data_dir(str(arg_dir)) == arg_dir.resolve()
    assert find_data_dir() == env_dir.resolve()
    monkeypatch.delenv(data.ENV_VAR)
    assert find_data_dir() == isolated_locations.resolve()


def test_find_skips_folders_missing_a_file(tmp_path, monkeypatch, isolated_locations):
    arg_dir, env_dir = tmp_path / "arg", tmp_path / "env"
    fake_mnist(arg_dir)
    fake_mnist(env_dir)
    fake_mnist(isolated_locations)
    (arg_dir / (TEST_LABELS + ".gz")).unlink()
    monkeypatch.setenv(data.ENV_VAR, str(env_dir))
    assert find_data_dir(arg_dir) == env_dir.resolve()
    (env_dir / (TRAIN_IMAGES + ".gz")).unlink()
    assert find_data_dir(arg_dir) == isolated_locations.resolve()


def test_find_accepts_plain_and_mixed_files(tmp_path):
    folder = tmp_path / "mixed"
    fake_mnist(folder, compress=False)
    (folder / TRAIN_LABELS).rename(folder / "elsewhere")
    assert find_data_dir(folder) is None
    write(folder / (TRAIN_LABELS + ".gz"), (folder / "elsewhere").read_bytes(), compress=True)
    assert find_data_dir(folder) == folder.resolve()


def test_user_data_dir_is_per_user_mnist_folder(monkeypatch):
    monkeypatch.undo()  # the real function, not the fixture's stand-in
    path = data.user_data_dir()
    assert path.name == "mnist"
    assert "digitpad" in path.parts


# ------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gz"])
def test_load_mnist_small_files(tmp_path, compress):
    contents = fake_mnist(tmp_path / "m", n_train=12, n_test=5, compress=compress)
    mnist = load_mnist(tmp_path / "m")
    assert isinstance(mnist, MNIST)
    assert mnist.train_images.shape == (12, 28, 28) and mnist.train_labels.shape == (12,)
    assert mnist.test_images.shape == (5, 28, 28) and mnist.test_labels.shape == (5,)
    for array in (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels):
        assert array.dtype == np.uint8
    assert mnist.train_labels.tobytes() == contents[TRAIN_LABELS][8:]
    assert mnist.test_images.tobytes() == contents[TEST_IMAGES][16:]


def test_load_mnist_is_cached_until_a_file_changes(tmp_path):
    folder = tmp_path / "m"
    fake_mnist(folder, seed=1)
    first = load_mnist(folder)
    assert load_mnist(folder) is first

    labels = folder / (TEST_LABELS + ".gz")
    write(labels, idx_bytes(np.full(5, 7, np.uint8)), compress=True)
    os.utime(labels, ns=(0, 10**9))  # a different mtime even on coarse clocks
    second = load_mnist(folder)
    assert second is not first
    assert second.test_labels.tolist() == [7] * 5


def test_load_mnist_arrays_are_read_only(tmp_path):
    fake_mnist(tmp_path / "m")
    mnist = load_mnist(tmp_path / "m")
    with pytest.raises(ValueError):
        mnist.train_images[0, 0, 0] = 1


def test_load_mnist_refuses_label_count_mismatch_naming_the_file(tmp_path):
    folder = tmp_path / "m"
    fake_mnist(folder, n_train=12)
    labels = folder / (TRAIN_LABELS + ".gz")
    write(labels, idx_bytes(np.zeros(11, np.uint8)), compress=True)
    with pytest.raises(DataError) as info:
        load_mnist(folder)
    message = str(info.value)
    assert str(labels) in message and "11 labels" in message and "12 images" in message


def test_load_mnist_refuses_labels_outside_range_naming_the_file(tmp_path):
    folder = tmp_path / "m"
    fake_mnist(folder, n_test=5)
    labels = folder / (TEST_LABELS + ".gz")
    write(labels, idx_bytes(np.array([1, 2, 3, 4, 12], np.uint8)), compress=True)
    with pytest.raises(DataError, match="outside 0-9") as info:
        load_mnist(folder)
    assert str(labels) in str(info.value)


def test_load_mnist_refuses_truncated_file_naming_it(tmp_path):
    folder = tmp_path / "m"
    contents = fake_mnist(folder, compress=False)
    images = folder / TRAIN_IMAGES
    images.write_bytes(contents[TRAIN_IMAGES][:-1])
    with pytest.raises(DataError, match="truncated") as info:
        load_mnist(folder)
    assert str(images) in str(info.value)


def test_load_mnist_not_found_says_where_and_how(tmp_path, monkeypatch, isolated_locations):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "env"))
    fake_mnist(tmp_path / "env")
    (tmp_path / "env" / (TRAIN_IMAGES + ".gz")).unlink()
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path / "arg")
    message = str(info.value)
    assert isinstance(info.value, DataError)
    for fragment in (str(tmp_path / "arg"), str(tmp_path / "env"), str(isolated_locations),
                     "missing " + TRAIN_IMAGES, "digitpad download", "--data-dir",
                     "DIGITPAD_DATA_DIR"):
        assert fragment in message, message


def test_mnist_dataclass_validates():
    images = np.zeros((3, 28, 28), np.uint8)
    with pytest.raises(DataError, match="3 images but 2 labels"):
        MNIST(images, np.zeros(2, np.uint8), images, np.zeros(3, np.uint8))
    with pytest.raises(DataError, match="outside 0-9"):
        MNIST(images, np.zeros(3, np.uint8), images, np.array([0, 1, 10], np.uint8))


# ----------------------------------------------------------------------------- verifying


def test_verify_dir(tmp_path):
    folder = tmp_path / "m"
    contents = fake_mnist(folder)
    expected = {name: hashlib.sha256(b).hexdigest() for name, b in contents.items()}
    assert verify_dir(folder, expected) == dict.fromkeys(expected, True)

    write(folder / (TRAIN_LABELS + ".gz"), contents[TRAIN_LABELS] + b"\x01", compress=True)
    (folder / (TEST_LABELS + ".gz")).unlink()
    cut = gzip.compress(contents[TEST_IMAGES])
    (folder / (TEST_IMAGES + ".gz")).write_bytes(cut[: len(cut) // 2])
    assert verify_dir(folder, expected) == {
        TRAIN_IMAGES: True, TRAIN_LABELS: False, TEST_IMAGES: False, TEST_LABELS: False,
    }
    # real MNIST hashes do not match fake files
    assert not any(verify_dir(folder).values())


# ---------------------------------------------------------------------------- real MNIST


# read at import, before the autouse fixture hides the variable
_REAL_DIR = os.environ.get("DIGITPAD_DATA_DIR")


@pytest.mark.mnist
def test_real_mnist_loads_and_verifies():
    if not _REAL_DIR:
        pytest.skip("real MNIST not available: DIGITPAD_DATA_DIR is not set")
    folder = Path(_REAL_DIR)
    if not folder.is_dir():
        pytest.skip(f"real MNIST not available: DIGITPAD_DATA_DIR={_REAL_DIR} is not a folder")
    mnist = load_mnist(folder)
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.test_labels.shape == (10000,)
    assert set(np.unique(mnist.train_labels)) == set(range(10))
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
    assert verify_dir(folder) == dict.fromkeys(FILES, True)
