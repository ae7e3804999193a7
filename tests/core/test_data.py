"""Tests for digitpad.core.data: IDX reading, locating, loading, verifying, downloading."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import os
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

from digitpad.core import data
from digitpad.core.data import (
    FILES,
    MNIST,
    DataError,
    DataNotFoundError,
    DownloadCancelled,
    DownloadError,
    download_mnist,
    find_data_dir,
    load_mnist,
    read_idx,
    tqdm_progress,
    verify_dir,
)
from tests.conftest import mnist_mirror

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


# --------------------------------------------------------------------------- downloading


def make_payloads(seed: int = 0) -> tuple[dict[str, bytes], dict[str, str]]:
    """Four fake files (several download chunks each) and their expected hashes."""
    rng = np.random.default_rng(seed)
    plain = {name: rng.integers(0, 256, 150_000 + i, dtype=np.uint8).tobytes()
             for i, name in enumerate(FILES)}
    return plain, {name: hashlib.sha256(b).hexdigest() for name, b in plain.items()}


PLAIN, EXPECTED = make_payloads()
GZ = {name: gzip.compress(b, compresslevel=1) for name, b in PLAIN.items()}


class MirrorHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``/mnist/<name>.gz``; the server's ``mode`` says how (well) it does so."""

    def do_GET(self):
        server = self.server
        server.requests.append(self.path)
        name = self.path.rsplit("/", 1)[-1].removesuffix(".gz")
        if not self.path.startswith("/mnist/") or name not in GZ:
            self.send_error(404)
            return
        body = GZ[name]
        if server.mode == "stall":
            server.release.wait()
            return
        if server.mode == "wrong":
            body = gzip.compress(PLAIN[name][::-1])
        elif server.mode == "garbage":
            body = bytes(range(256)) * 10
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.mode == "cut":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    """``mirror(mode)`` starts an HTTP server on 127.0.0.1 and returns its base URL and log.

    Modes: good, cut (announces the full length, sends half, closes), wrong (valid gzip of
    the wrong bytes), garbage (not gzip), stall (never answers), down (nothing listens).
    """
    servers, threads, sockets = [], [], []

    def start(mode: str):
        if mode == "down":
            # bound but not listening: connections are refused, and no one else gets the port
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
            return f"http://127.0.0.1:{sock.getsockname()[1]}/mnist/", []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), MirrorHandler)
        server.daemon_threads = True
        server.mode, server.requests, server.release = mode, [], threading.Event()
        thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        thread.start()
        servers.append(server)
        threads.append(thread)
        return f"http://127.0.0.1:{server.server_address[1]}/mnist/", server.requests

    yield start
    for server in servers:
        server.release.set()
        server.shutdown()
        server.server_close()
    for thread in threads:
        thread.join(timeout=10)
    for sock in sockets:
        sock.close()


class Recorder:
    """A progress callable that keeps every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, name, done, total):
        self.calls.append((name, done, total))


def assert_complete(dest: Path):
    assert sorted(os.listdir(dest)) == sorted(f"{name}.gz" for name in FILES)
    assert verify_dir(dest, EXPECTED) == dict.fromkeys(FILES, True)
    for name in FILES:
        assert gzip.decompress((dest / f"{name}.gz").read_bytes()) == PLAIN[name]


def test_download_from_good_mirror(tmp_path, mirror):
    url, requests = mirror("good")
    progress = Recorder()
    dest = tmp_path / "new" / "mnist"

    result = download_mnist(dest, mirrors=(url,), expected=EXPECTED, timeout=5,
                            progress=progress)

    assert result == dest.resolve()
    assert_complete(dest)
    assert sorted(requests) == sorted(f"/mnist/{name}.gz" for name in FILES)
    for name in FILES:
        calls = [c for c in progress.calls if c[0] == name]
        total = len(GZ[name])
        assert calls[0] == (name, 0, total)
        assert calls[-1] == (name, total, total)
        assert len(calls) > 2  # several chunks
        assert [c[1] for c in calls] == sorted(c[1] for c in calls)


def test_download_result_loads_with_read_idx(tmp_path, mirror, monkeypatch):
    """What download writes is what the loader reads (real IDX content, not just bytes)."""
    url, _ = mirror("good")
    labels = idx_bytes(np.array([3, 1, 4, 1, 5], np.uint8))
    name = "t10k-labels-idx1-ubyte"
    monkeypatch.setitem(GZ, name, gzip.compress(labels))
    download_mnist(tmp_path, mirrors=(url,), timeout=5,
                   expected={name: hashlib.sha256(labels).hexdigest()})
    assert read_idx(tmp_path / f"{name}.gz", kind="labels").tolist() == [3, 1, 4, 1, 5]


def test_download_skips_files_already_verified(tmp_path, mirror):
    url, requests = mirror("good")
    download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, timeout=5)
    assert len(requests) == 4
    progress = Recorder()
    download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, timeout=5, progress=progress)
    assert len(requests) == 4
    assert progress.calls == []


def test_download_replaces_a_corrupt_file(tmp_path, mirror):
    url, requests = mirror("good")
    name = "train-labels-idx1-ubyte"
    (tmp_path / name).write_bytes(PLAIN[name][:-10])  # a bad plain copy
    download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, timeout=5)
    assert_complete(tmp_path)  # the bad copy is gone, the good one is <name>.gz


@pytest.mark.parametrize(
    "mode, fragments",
    [
        ("cut", ["connection closed after", f"of {len(GZ['train-images-idx3-ubyte'])} bytes"]),
        ("wrong", ["SHA-256", EXPECTED["train-images-idx3-ubyte"]]),
        ("garbage", ["SHA-256"]),
        ("down", ["cannot connect", "offline"]),
        ("stall", ["no response within 0.3 s"]),
    ],
)
def test_download_from_one_bad_mirror_fails_and_leaves_nothing(tmp_path, mirror, mode,
                                                               fragments):
    url, _ = mirror(mode)
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, timeout=0.3)
    message = str(info.value)
    assert isinstance(info.value, DataError)
    assert f"{url}train-images-idx3-ubyte.gz" in message
    for fragment in fragments + ["--data-dir", "DIGITPAD_DATA_DIR"]:
        assert fragment in message, message
    if mode != "down":
        assert "offline" not in message
    assert os.listdir(tmp_path) == []
    assert find_data_dir(tmp_path) is None


def test_download_http_error_is_reported(tmp_path, mirror):
    url, requests = mirror("good")
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_mnist(tmp_path, mirrors=(url.replace("/mnist/", "/elsewhere/"),),
                       expected=EXPECTED, timeout=5)
    assert requests == ["/elsewhere/train-images-idx3-ubyte.gz"]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("first", ["cut", "wrong", "garbage", "down", "stall"])
def test_download_falls_back_to_next_mirror(tmp_path, mirror, first):
    bad_url, bad_requests = mirror(first)
    good_url, good_requests = mirror("good")
    progress = Recorder()

    download_mnist(tmp_path, mirrors=(bad_url, good_url), expected=EXPECTED, timeout=0.3,
                   progress=progress)

    assert_complete(tmp_path)
    assert len(good_requests) == 4
    # the mirror that worked is tried first for the remaining files
    assert len(bad_requests) == (0 if first == "down" else 1)
    first_name = next(iter(FILES))
    first_calls = [c for c in progress.calls if c[0] == first_name]
    assert first_calls[-1] == (first_name, len(GZ[first_name]), len(GZ[first_name]))


def test_download_all_mirrors_bad_names_each_and_leaves_nothing(tmp_path, mirror):
    urls = [mirror(mode)[0] for mode in ("cut", "wrong", "down")]
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path, mirrors=tuple(urls), expected=EXPECTED, timeout=5)
    message = str(info.value)
    for url in urls:
        assert f"{url}train-images-idx3-ubyte.gz" in message
    assert "connection closed" in message and "SHA-256" in message
    assert "cannot connect" in message
    assert "offline" not in message  # two of them answered
    assert os.listdir(tmp_path) == []


def test_download_keeps_verified_files_when_a_later_one_fails(tmp_path, mirror):
    url, _ = mirror("good")
    names = list(FILES)
    expected = dict(EXPECTED)
    expected[names[2]] = "0" * 64  # no mirror can match this
    with pytest.raises(DownloadError, match=names[2]):
        download_mnist(tmp_path, mirrors=(url,), expected=expected, timeout=5)
    assert sorted(os.listdir(tmp_path)) == sorted(f"{n}.gz" for n in names[:2])


def test_download_cancel_mid_file_leaves_no_partial_file(tmp_path, mirror):
    url, requests = mirror("good")
    progress = Recorder()

    def cancel():
        return any(done > 0 for _, done, _ in progress.calls)

    with pytest.raises(DownloadCancelled):
        download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, timeout=5,
                       progress=progress, cancel=cancel)
    assert progress.calls[-1][1] < progress.calls[-1][2]  # stopped part-way
    assert len(requests) == 1
    assert os.listdir(tmp_path) == []


def test_download_cancel_before_start_makes_no_request(tmp_path, mirror):
    url, requests = mirror("good")
    with pytest.raises(DownloadCancelled):
        download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, timeout=5,
                       cancel=lambda: True)
    assert requests == []
    assert os.listdir(tmp_path) == []


def test_download_defaults_to_user_data_dir(mirror, isolated_locations):
    url, _ = mirror("good")
    assert download_mnist(mirrors=(url,), expected=EXPECTED, timeout=5) == \
        isolated_locations.resolve()
    assert_complete(isolated_locations)


def test_download_needs_a_mirror(tmp_path):
    with pytest.raises(ValueError, match="mirror"):
        download_mnist(tmp_path, mirrors=(), expected=EXPECTED)


def test_public_mirrors_and_hashes():
    assert len(data.MIRRORS) >= 2
    assert all(m.startswith("https://") and m.endswith("/") for m in data.MIRRORS)
    assert sorted(FILES) == sorted([TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS])
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in FILES.values())


def test_tqdm_progress_draws_one_bar_per_file_and_survives_retries(tmp_path, mirror):
    bad_url, _ = mirror("cut")
    good_url, _ = mirror("good")
    out = io.StringIO()
    progress = tqdm_progress(file=out, mininterval=0)
    download_mnist(tmp_path, mirrors=(bad_url, good_url), expected=EXPECTED, timeout=5,
                   progress=progress)
    progress.close()
    text = out.getvalue()
    for name in FILES:
        assert f"{name}.gz" in text
    assert "100%" in text


@pytest.mark.mnist
def test_download_real_mnist_from_a_local_mirror(tmp_path):
    """The real files, served over HTTP, download and verify against FILES."""
    if not _REAL_DIR:
        pytest.skip("real MNIST not available: DIGITPAD_DATA_DIR is not set")
    mirror = str(mnist_mirror(Path(_REAL_DIR), tmp_path / "mirror"))  # plain files are served as .gz

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = lambda *a, **k: Quiet(*a, directory=mirror, **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        dest = download_mnist(tmp_path / "mnist", mirrors=(url,), timeout=10)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert verify_dir(dest) == dict.fromkeys(FILES, True)
    assert load_mnist(dest).test_labels.shape == (10000,)
