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
