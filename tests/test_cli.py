"""The `digitpad` command in a subprocess: predict, train, download, help, and exit codes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from digitpad.core.model_io import load_model, shipped_model_path
from tests.conftest import near_ties


def digitpad(*args, env=None, timeout=300):
    full_env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "digitpad", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    """A drawn 1 (black on white, large, off-centre), a blank page, a text file, an empty file."""
    from digitpad.imageio import save_png

    folder = tmp_path_factory.mktemp("pictures")
    one = np.full((400, 300), 255, np.uint8)
    one[60:300, 40:52] = 0  # a thick vertical stroke in the upper-left part
    save_png(folder / "one.png", one)
    save_png(folder / "blank.png", np.full((50, 50), 255, np.uint8))
    (folder / "notes.png").write_text("not a picture")
    (folder / "empty.png").write_bytes(b"")
    return folder


@pytest.mark.skipif(not shipped_model_path().is_file(), reason="no shipped model in this checkout")
def test_predict_json_reads_good_images_and_names_the_bad_ones(pictures):
    paths = [pictures / n for n in ("one.png", "notes.png", "empty.png", "missing.png", "blank.png")]
    proc = digitpad("predict", "--json", *map(str, paths))
    assert proc.returncode == 1  # some files failed, after all were tried
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["path"] for line in lines] == list(map(str, paths))
    one, notes, empty, missing, blank = lines
    assert one["digit"] == 1 and one["confidence"] > 0.5
    assert len(one["probabilities"]) == 10 and abs(sum(one["probabilities"]) - 1) < 1e-3
    for bad, words in ((notes, "not a picture"), (empty, "empty"), (missing, "no such file")):
        assert words in bad["error"] and bad["path"] in bad["error"]
    assert blank["digit"] is None and blank["blank"] is True


@pytest.mark.skipif(not shipped_model_path().is_file(), reason="no shipped model in this checkout")
def test_predict_all_good_exits_zero_with_plain_output(pictures):
    proc = digitpad("predict", str(pictures / "one.png"))
    assert proc.returncode == 0
    assert proc.stdout.strip().startswith(f"{pictures / 'one.png'}: 1 (")


@pytest.mark.skipif(not shipped_model_path().is_file(), reason="no shipped model in this checkout")
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX feature")
def test_predict_refuses_a_named_pipe_and_goes_on_to_the_next_file(pictures, tmp_path):
    """`predict fifo.png one.png` used to block on the FIFO forever and never read one.png."""
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    proc = digitpad("predict", str(fifo), str(pictures / "one.png"), timeout=60)
    assert proc.returncode == 1
    assert f"{fifo}: is a named pipe (FIFO), not a regular file" in proc.stderr
    assert proc.stdout.strip().startswith(f"{pictures / 'one.png'}: 1 (")
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(not shipped_model_path().is_file(), reason="no shipped model in this checkout")
@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="file names there are always Unicode")
def test_predict_reads_a_picture_whose_name_is_not_utf8(pictures, tmp_path):
    """Such a name used to get a wrong 'format not recognised'."""
    name = os.fsencode(tmp_path) + b"/un-\xe9.png"     # Latin-1 e-acute: not valid UTF-8
    with open(name, "wb") as f:
        f.write((pictures / "one.png").read_bytes())
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "digitpad", "predict", name], capture_output=True, timeout=300,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().strip().startswith(f"{tmp_path}/un-\\xe9.png: 1 (")


def test_download_where_nothing_can_be_written_is_one_line(tmp_path):
    """Into a folder that cannot be created (its parent is a file): no traceback, exit code 1.

    The folder is checked before any mirror is contacted, so this makes no network access.
    """
    (tmp_path / "a-file").write_text("")
    dest = tmp_path / "a-file" / "mnist"
    proc = digitpad("download", "--data-dir", str(dest), timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == \
        f"digitpad: {dest}: cannot save the download there (Not a directory)"
    assert "Traceback" not in proc.stderr


def test_predict_with_a_corrupt_model_says_so(pictures, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 broken")
    proc = digitpad("predict", "--model", str(bad), str(pictures / "one.png"))
    assert proc.returncode == 1
    assert "bad.npz" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.mnist
def test_train_json_saves_a_model_that_eval_reads(mnist, mnist_dir, tmp_path):
    out = tmp_path / "small.npz"
    proc = digitpad("train", "--data-dir", str(mnist_dir), "--hidden", "32", "--epochs", "1", "--limit", "3000",
                    "--seed", "3", "--out", str(out), "--json", "--quiet")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["model"] == str(out) and out.is_file()
    assert 0.5 < summary["test_accuracy"] <= 1 and summary["config"]["hidden"] == [32]
    evaluated = json.loads(digitpad("eval", "--model", str(out), "--data-dir", str(mnist_dir), "--json").stdout)
    # train and eval read the test set in batches of different sizes: near ties may go either way
    model, _ = load_model(out)
    ties = int(near_ties(model.logits(mnist.test_images)).sum())
    assert abs(evaluated["accuracy"] - summary["test_accuracy"]) * evaluated["n"] <= ties + 1e-9


def test_train_refuses_bad_settings_naming_them(tmp_path):
    proc = digitpad("train", "--dropout", "1.5", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m.npz"))
    assert proc.returncode == 2 and "dropout" in proc.stderr and "Traceback" not in proc.stderr
    proc = digitpad("train", "--hidden", "12,x")
    assert proc.returncode == 2 and "--hidden" in proc.stderr


def test_train_without_data_says_how_to_get_it(tmp_path):
    env = {"DIGITPAD_DATA_DIR": str(tmp_path / "nowhere"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    proc = digitpad("train", "--out", str(tmp_path / "m.npz"), env=env)
    assert proc.returncode == 1
    assert "digitpad download" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "m.npz").exists()


def test_help_lists_every_subcommand():
    proc = digitpad("--help")
    assert proc.returncode == 0
    for name in ("gui", "download", "train", "eval", "predict"):
        assert name in proc.stdout


@pytest.mark.mnist
def test_train_ctrl_c_stops_the_run_and_keeps_its_best_weights(mnist_dir, tmp_path, monkeypatch, capsys):
    import signal

    from digitpad import cli
    from digitpad.core import train as train_mod

    real = train_mod.learning_rate

    def interrupting(schedule, lr, step, total):
        if step == 45:  # in the middle of the third epoch (20 steps each)
            signal.raise_signal(signal.SIGINT)
        return real(schedule, lr, step, total)

    monkeypatch.setattr(train_mod, "learning_rate", interrupting)
    out = tmp_path / "stopped.npz"
    code = cli.main(["train", "--data-dir", str(mnist_dir), "--hidden", "16", "--epochs", "5", "--limit", "2000",
                     "--batch-size", "100", "--out", str(out), "--json", "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["stopped"] and not summary["diverged"]
    assert summary["epochs"] == 2 and 45 <= summary["steps"] <= 46
    assert out.is_file()


@pytest.mark.parametrize("temperature", ["warm", None, 0, -2.0])
def test_predict_ignores_an_unusable_temperature_in_the_model_file(pictures, tmp_path, capsys, temperature):
    from digitpad import cli
    from digitpad.core.mlp import MLP, MLPConfig
    from digitpad.core.model_io import build_metadata, save_model

    model = MLP(MLPConfig(hidden=(8,)), 0)
    path = save_model(tmp_path / "odd.npz", model, build_metadata(model, temperature=temperature))
    code = cli.main(["predict", "--model", str(path), "--json", str(pictures / "one.png")])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["probabilities"]) == 10
    assert out["confidence"] == pytest.approx(max(out["probabilities"]), abs=1e-5)


def test_eval_and_predict_refuse_a_model_that_cannot_read_digits(pictures, tmp_path, capsys):
    from digitpad import cli
    from digitpad.core.mlp import MLP, MLPConfig
    from digitpad.core.model_io import save_model

    path = save_model(tmp_path / "five.npz", MLP(MLPConfig(n_in=5, hidden=(3,), n_out=2)))
    assert cli.main(["predict", "--model", str(path), str(pictures / "one.png")]) == 1
    assert cli.main(["eval", "--model", str(path), "--data-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.count("five.npz: a 5-3-2 relu network cannot read 28x28 digits") == 2


def _strict_json(text):
    """Parse one line of JSON, failing on NaN or Infinity (which JSON does not have)."""
    def refuse(name):
        raise AssertionError(f"{name} in JSON output: {text[:200]}")

    return json.loads(text, parse_constant=refuse)


def test_predict_with_huge_finite_weights_gives_a_finite_confidence(pictures, tmp_path, capsys):
    from digitpad import cli
    from digitpad.core.mlp import MLP, MLPConfig
    from digitpad.core.model_io import save_model

    model = MLP(MLPConfig(hidden=(8,)), 0)
    for w in model.weights:
        w /= np.abs(w).max()
        w *= np.float32(3e38)
    path = save_model(tmp_path / "huge.npz", model)
    assert cli.main(["predict", "--model", str(path), "--json", str(pictures / "one.png")]) == 0
    out = _strict_json(capsys.readouterr().out)
    assert 0.0 < out["confidence"] <= 1.0 and out["digit"] in range(10)
    assert abs(sum(out["probabilities"]) - 1) < 1e-4


def test_strict_json_has_null_where_a_number_is_not_finite():
    from digitpad.cli import _json

    out = _strict_json(_json({"a": float("nan"), "b": [np.float32("inf"), np.float64(0.5), np.int64(3)],
                               "c": {"d": -float("inf"), "e": True, "f": None}}))
    assert out == {"a": None, "b": [None, 0.5, 3], "c": {"d": None, "e": True, "f": None}}


def test_a_reader_that_stops_early_gets_no_traceback(pictures):
    """`digitpad predict --json … | head -c 1`: the pipe closes; the command ends quietly."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: every write fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "digitpad", "predict", "--json", str(pictures / "one.png")],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300,
                              env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141


def test_the_cli_refuses_a_model_with_the_sentence_of_open_model(tmp_path, capsys):
    from digitpad import cli
    from digitpad.core import model_io
    from digitpad.core.mlp import MLP, MLPConfig

    path = model_io.save_model(tmp_path / "three.npz", MLP(MLPConfig(n_in=100, hidden=(8,), n_out=3)))
    with pytest.raises(model_io.ModelFileError) as e:
        model_io.open_model(path)
    assert cli.main(["predict", "--model", str(path), str(tmp_path / "x.png")]) == 1
    assert capsys.readouterr().err.strip() == f"digitpad: {e.value}"
