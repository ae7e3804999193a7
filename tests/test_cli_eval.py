"""`digitpad eval`: JSON with confusion, per-class accuracy and calibration; misread digits written as PNGs."""

import json
import re

import numpy as np
import pytest

from digitpad.cli import main, mistake_file_name
from digitpad.core.model_io import build_metadata, save_model
from digitpad.core.train import TrainConfig, Trainer
from digitpad.imageio import load_image
from tests.conftest import assert_same_answers, near_ties


@pytest.fixture(scope="module")
def small_model(mnist, tmp_path_factory):
    cfg = TrainConfig(hidden=(64,), epochs=1, limit=5000, lr=3e-3, stats_every=0, snapshot_every=0)
    trainer = Trainer(cfg, mnist)
    for _ in trainer:
        pass
    model = trainer.result.model
    path = tmp_path_factory.mktemp("models") / "small.npz"
    save_model(path, model, build_metadata(model, train_config=cfg.to_dict(), seed=cfg.seed))
    return path, model


def test_eval_json_has_confusion_per_class_and_calibration(small_model, mnist, mnist_dir, capsys, tmp_path):
    path, model = small_model
    out_dir = tmp_path / "wrong"
    assert main(["eval", "--model", str(path), "--data-dir", str(mnist_dir), "--json",
                 "--mistakes", str(out_dir), "--fit-temperature"]) == 0
    out = json.loads(capsys.readouterr().out)
    confusion = np.array(out["confusion"])
    assert out["n"] == 10000 and confusion.sum() == 10000
    assert np.trace(confusion) / 10000 == pytest.approx(out["accuracy"])
    assert 0.85 < out["accuracy"] < 0.99
    lo, hi = out["accuracy_ci95"]
    assert lo < out["accuracy"] < hi and hi - lo < 0.02
    np.testing.assert_allclose(out["per_class"], np.diag(confusion) / confusion.sum(axis=1))
    assert 0 < out["ece"] < 0.2 and out["temperature"] == 1.0
    assert 0.2 < out["fitted_temperature"] < 5
    assert out["mistakes"] == out["mistakes_written"] == 10000 - np.trace(confusion)

    files = sorted(out_dir.glob("*.png"))
    assert len(files) == out["mistakes"]
    pattern = re.compile(r"(\d{5})_label(\d)_read(\d)_(\d+)pct\.png")
    index = []
    for f in files[:40]:
        i, label, answer, pct = map(int, pattern.fullmatch(f.name).groups())
        assert label == mnist.test_labels[i] and label != answer
        one = mnist.test_images[i]  # alone, not in the batch eval read it in: equal up to rounding
        assert_same_answers([answer], model.logits(one))
        assert abs(pct - model.predict_proba(one)[0].max() * 100) <= 0.5 + 1e-3
        index.append(i)
    np.testing.assert_array_equal(load_image(files[0])[:, :, 0], mnist.test_images[index[0]])
    # the whole set in one product: the same mistakes, except perhaps near ties
    logits = model.logits(mnist.test_images)
    written = np.zeros(len(logits), bool)
    written[[int(pattern.fullmatch(f.name).group(1)) for f in files]] = True
    wrong = logits.argmax(1) != mnist.test_labels
    assert not np.any((written != wrong) & ~near_ties(logits))


def test_eval_text_uses_the_model_temperature(small_model, mnist_dir, capsys, tmp_path):
    path, model = small_model
    hot = tmp_path / "hot.npz"
    save_model(hot, model, build_metadata(model, temperature=2.0))
    assert main(["eval", "--model", str(hot), "--data-dir", str(mnist_dir), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["temperature"] == 2.0 and out["ece_uncalibrated"] != out["ece"]
    assert main(["eval", "--model", str(hot), "--data-dir", str(mnist_dir)]) == 0
    text = capsys.readouterr().out
    assert "95% interval" in text and "at temperature 2" in text


def test_eval_refuses_a_bad_temperature(small_model, mnist_dir, capsys):
    assert main(["eval", "--model", str(small_model[0]), "--data-dir", str(mnist_dir), "--temperature", "0"]) == 2
    assert "--temperature" in capsys.readouterr().err


def test_mistake_file_name():
    assert mistake_file_name(42, 7, 1, 0.934) == "00042_label7_read1_93pct.png"


def _strict_json(text):
    def refuse(name):
        raise AssertionError(f"{name} in JSON output")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("where", ["file", "option"])
def test_a_tiny_temperature_is_clamped_with_a_note_and_keeps_the_answers(small_model, mnist_dir, capsys, tmp_path,
                                                                          where):
    path, model = small_model
    args = ["eval", "--model", str(path), "--data-dir", str(mnist_dir), "--json"]
    assert main(args) == 0
    plain = _strict_json(capsys.readouterr().out)
    if where == "file":
        cold = tmp_path / "cold.npz"
        save_model(cold, model, build_metadata(model, temperature=1e-300))
        args[2] = str(cold)
    else:
        args += ["--temperature", "1e-300"]
    assert main(args) == 0
    captured = capsys.readouterr()
    out = _strict_json(captured.out)
    assert out["temperature"] == 0.05 and "below 0.05; using 0.05" in captured.err
    assert out["accuracy"] == plain["accuracy"] and out["confusion"] == plain["confusion"]
    assert np.isfinite(out["nll"]) and 0 <= out["ece"] <= 1


@pytest.mark.parametrize("train_config", [5, [1, 2], "quick"])
def test_fit_temperature_with_an_odd_train_config_uses_the_default_split(small_model, mnist_dir, capsys, tmp_path,
                                                                         train_config):
    path, model = small_model
    odd = tmp_path / "odd.npz"
    save_model(odd, model, build_metadata(model) | {"train_config": train_config, "metrics": [1, 2]})
    assert main(["eval", "--model", str(odd), "--data-dir", str(mnist_dir), "--json", "--fit-temperature"]) == 0
    captured = capsys.readouterr()
    out = _strict_json(captured.out)
    assert 0.05 <= out["fitted_temperature"] <= 20
    assert "'train_config' is " in captured.err and "'metrics' is an array" in captured.err


def test_eval_json_of_an_empty_test_set_is_strict_json(small_model, capsys, monkeypatch):
    from types import SimpleNamespace

    from digitpad.core import data

    empty = SimpleNamespace(test_images=np.zeros((0, 28, 28), np.uint8), test_labels=np.zeros(0, np.uint8))
    monkeypatch.setattr(data, "load_mnist", lambda data_dir=None: empty)
    assert main(["eval", "--model", str(small_model[0]), "--json"]) == 0
    out = _strict_json(capsys.readouterr().out)
    assert out["n"] == 0 and out["accuracy"] is None and out["nll"] is None


def test_eval_json_into_a_closed_pipe_gives_no_traceback(small_model, mnist_dir):
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run([sys.executable, "-m", "digitpad", "eval", "--model", str(small_model[0]),
                               "--data-dir", str(mnist_dir), "--json"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode == 141
