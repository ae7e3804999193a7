"""Tests for digitpad.core.download against real HTTP servers on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import re
import socket
import threading
from pathlib import Path

import numpy as np
import pytest

from digitpad.cli import tqdm_progress
from digitpad.core import download
from digitpad.core.data import FILES, DataError, find_data_dir, load_mnist, read_idx, verify_dir
from digitpad.core.download import DownloadCancelled, DownloadError, download_mnist
from tests.core.test_data import (TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, idx_bytes,
                                   isolated_locations)  # noqa: F401  (autouse fixture)
from tests.conftest import mnist_mirror, run_unprivileged

_REAL_DIR = os.environ.get("DIGITPAD_DATA_DIR")


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
        if server.mode in ("trickle", "unbounded", "huge-length"):
            self.send_bad_pace(body)
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

    def send_bad_pace(self, body: bytes) -> None:
        """trickle: one byte every 50 ms (at most 200); unbounded: zeros with no length, 4 MiB
        at most; huge-length: announces 10 GB and sends the file."""
        server = self.server
        self.send_response(200)
        if server.mode != "unbounded":
            self.send_header("Content-Length", str(10**10 if server.mode == "huge-length" else len(body)))
        self.end_headers()
        try:
            if server.mode == "trickle":
                for byte in body[:200]:
                    if server.release.wait(0.05):
                        break
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
            elif server.mode == "unbounded":
                for _ in range(64):
                    self.wfile.write(bytes(64 * 1024))
            else:
                self.wfile.write(body)
        except OSError:  # the client gave up: what these modes are for
            pass
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    """``mirror(mode)`` starts an HTTP server on 127.0.0.1 and returns its base URL and log.

    Modes: good, cut (announces the full length, sends half, closes), wrong (valid gzip of
    the wrong bytes), garbage (not gzip), stall (never answers), down (nothing listens),
    and trickle, unbounded, huge-length (see ``send_bad_pace``).
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


def test_download_gives_up_on_a_mirror_that_trickles(tmp_path, mirror):
    """One byte every 50 ms never trips a per-read timeout; the average rate does."""
    url, _ = mirror("trickle")
    with pytest.raises(DownloadError) as info:
        download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, timeout=0.5, min_rate=1000)
    assert "too slow" in str(info.value) and "bytes/s" in str(info.value)
    assert os.listdir(tmp_path) == []


def test_download_without_length_stops_at_the_files_size(tmp_path, mirror):
    """A response with no Content-Length is cut off once it exceeds what the file can be."""
    url, _ = mirror("unbounded")
    sizes = dict.fromkeys(FILES, 20_000)
    progress = Recorder()
    with pytest.raises(DownloadError, match="sent more than 24296 bytes"):
        download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, sizes=sizes, timeout=5, progress=progress)
    assert progress.calls[-1][1] < 24296 + 64 * 1024    # stopped within one chunk of the cap
    assert os.listdir(tmp_path) == []


def test_download_refuses_an_announced_length_larger_than_the_file(tmp_path, mirror):
    url, requests = mirror("huge-length")
    with pytest.raises(DownloadError, match="announces 10000000000 bytes"):
        download_mnist(tmp_path, mirrors=(url,), expected=EXPECTED, sizes=dict.fromkeys(FILES, 200_000),
                       timeout=5)
    assert os.listdir(tmp_path) == []


def test_download_caps_the_real_files_at_their_mnist_size(tmp_path, mirror):
    """With the real file list, sizes default to MNIST's: our 150 kB labels file is too large."""
    url, _ = mirror("unbounded")
    with pytest.raises(DownloadError, match="sent more than"):
        download_mnist(tmp_path, mirrors=(url,), expected={TEST_LABELS: FILES[TEST_LABELS]}, timeout=5)


def test_downloaded_files_get_the_permissions_of_any_new_file(tmp_path, mirror):
    """They were created 0600 (mkstemp); a file in the data folder is an ordinary file."""
    import stat

    url, _ = mirror("good")
    reference = tmp_path / "reference"
    os.close(os.open(reference, os.O_WRONLY | os.O_CREAT, 0o666))
    dest = tmp_path / "mnist"
    download_mnist(dest, mirrors=(url,), expected=EXPECTED, timeout=5)
    for name in FILES:
        assert stat.S_IMODE((dest / f"{name}.gz").stat().st_mode) == stat.S_IMODE(reference.stat().st_mode)


def test_download_under_a_file_is_one_clear_line(tmp_path, mirror):
    url, requests = mirror("good")
    (tmp_path / "a-file").write_text("")
    dest = tmp_path / "a-file" / "mnist"
    with pytest.raises(DownloadError) as info:
        download_mnist(dest, mirrors=(url,), expected=EXPECTED, timeout=5)
    assert str(info.value) == f"{dest}: cannot save the download there (Not a directory)"
    assert requests == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX file permissions")
def test_download_into_a_read_only_folder_is_one_clear_line(tmp_path, mirror):
    url, _ = mirror("good")
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    (home / "ro").mkdir()
    (home / "ro").chmod(0o555)
    imports = "import json, sys\nfrom digitpad.core.download import DownloadError, download_mnist\n"
    body = ("try:\n    download_mnist(sys.argv[1], mirrors=(sys.argv[2],), expected=json.loads(sys.argv[3]), "
            "timeout=5)\nexcept DownloadError as e:\n    print(e)\n")
    try:
        proc = run_unprivileged(imports, body, "ro", url, json.dumps(EXPECTED), cwd=home)
    finally:
        (home / "ro").chmod(0o755)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert re.fullmatch(r"ro: cannot save the download there .Permission denied.\n", proc.stdout), proc.stdout


CHILD_DOWNLOAD = """
import json, sys
from digitpad.core.download import DownloadError, download_mnist
try:
    download_mnist(sys.argv[1], mirrors=(sys.argv[2],), expected=json.loads(sys.argv[3]), timeout=5)
except DownloadError as e:
    print(e)
    sys.exit(1)
"""


def run_child_download(dest, url, **popen):
    import json
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", CHILD_DOWNLOAD, str(dest), url, json.dumps(EXPECTED)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.skipif(not hasattr(__import__("resource"), "RLIMIT_FSIZE") if os.name == "posix" else True,
                    reason="needs POSIX file size limits")
def test_download_into_a_full_disk_is_one_clear_line(tmp_path, mirror):
    """A write that fails (here: the file size limit, as a full disk would) is reported, not a traceback."""
    import resource
    import signal

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # the write fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))

    url, _ = mirror("good")
    child = run_child_download(tmp_path, url, preexec_fn=small_disk)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 1, err
    assert out.strip() == f"{tmp_path}: cannot save the download there (File too large)"
    assert "Traceback" not in err
    assert os.listdir(tmp_path) == []


def terminate_once_writing(child, folder: Path) -> tuple[str, str]:
    """SIGTERM ``child`` once its partial file is in ``folder`` (waiting 60 s at most); its output."""
    import signal
    import time

    try:
        deadline = time.monotonic() + 60
        while not any(n.endswith(".part") for n in os.listdir(folder)) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGTERM)
    return child.communicate(timeout=30)


@pytest.mark.skipif(os.name != "posix", reason="needs SIGTERM")
def test_partial_file_of_a_terminated_download_is_removed_by_the_next(tmp_path, mirror):
    """SIGTERM kills a download without unwinding and leaves its .part; the next download removes it."""
    stall_url, _ = mirror("stall")
    child = run_child_download(tmp_path, stall_url)
    terminate_once_writing(child, tmp_path)
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".part")]
    assert leftovers and leftovers[0].startswith(f".{next(iter(FILES))}.{child.pid}.")
    good_url, _ = mirror("good")
    download_mnist(tmp_path, mirrors=(good_url,), expected=EXPECTED, timeout=5)
    assert_complete(tmp_path)                     # only the four files: the .part is gone


@pytest.mark.skipif(os.name != "posix", reason="needs SIGTERM")
def test_cli_download_removes_its_partial_file_on_sigterm(tmp_path, mirror):
    """`digitpad download` unwinds on SIGTERM as on Ctrl-C: exit 143, one line, no .part left."""
    import subprocess
    import sys

    url, _ = mirror("stall")
    code = ("import sys\n"
            "from digitpad import cli\n"
            "from digitpad.core import download\n"
            "download.download_mnist.__kwdefaults__['mirrors'] = (sys.argv[2],)  # the test's mirror\n"
            "sys.exit(cli.main(['download', '--data-dir', sys.argv[1]]))\n")
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    _, err = terminate_once_writing(child, tmp_path)
    assert child.returncode == 143, err
    assert err.strip().splitlines()[-1] == "digitpad: download stopped; nothing half-written was kept"
    assert os.listdir(tmp_path) == []


def test_download_needs_a_mirror(tmp_path):
    with pytest.raises(ValueError, match="mirror"):
        download_mnist(tmp_path, mirrors=(), expected=EXPECTED)


def test_public_mirrors_and_hashes():
    assert len(download.MIRRORS) >= 2
    assert all(m.startswith("https://") and m.endswith("/") for m in download.MIRRORS)
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


def test_a_download_that_gives_up_removes_its_own_partial_files_wherever_it_stopped(tmp_path, monkeypatch):
    """A signal can arrive between a partial file's creation and the block that removes it."""
    from digitpad.core import download as download_mod
    from digitpad.core.files import temp_path

    def created_then_interrupted(url, dest, name, sha256, limits, progress, cancel):
        temp_path(dest / name, download_mod._PART)  # the file exists; nothing will remove it here
        raise KeyboardInterrupt

    monkeypatch.setattr(download_mod, "_fetch_verified", created_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_mnist(tmp_path, mirrors=("http://127.0.0.1:9/",), expected=EXPECTED, timeout=1)
    assert os.listdir(tmp_path) == []
