"""`digitpad finetune` in a subprocess: its JSON, the model it saves, and its one-line errors."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from digitpad.core.mlp import MLP, MLPConfig
from digitpad.core.model_io import load_model, save_model
from tests.test_cli import digitpad

DATA = Path(__file__).resolve().parent / "data" / "handwriting"


@pytest.fixture
def small_model(tmp_path) -> Path:
    return save_model(tmp_path / "small.npz", MLP(MLPConfig(hidden=(16,)), np.random.default_rng(0)))


@pytest.fixture
def samples(tmp_path) -> Path:
    """The European test drawings plus a text file named .png, an empty and a truncated picture, bad folders."""
    folder = tmp_path / "my-digits"
    shutil.copytree(DATA / "european", folder)
    good = (folder / "7" / "anna-0.png").read_bytes()
    (folder / "3" / "notes.png").write_text("not a picture")
    (folder / "5" / "empty.png").write_bytes(b"")
    (folder / "8" / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "x").mkdir()
    (folder / "12").mkdir()
    return folder


def one_line_error(proc, *words):
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("digitpad: ")
    for word in words:
        assert word in last, (word, proc.stderr)


@pytest.mark.mnist
def test_json_gives_the_figures_and_saves_the_model(mnist_dir, small_model, samples, tmp_path):
    out = tmp_path / "tuned.npz"
    proc = digitpad("finetune", "--samples", str(samples), "--model", str(small_model), "--out", str(out),
                    "--data-dir", str(mnist_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for key in ("mnist_accuracy_before", "mnist_accuracy_after", "samples_accuracy_before",
                "samples_accuracy_after"):
        assert 0.0 <= summary[key] <= 1.0, key
    assert summary["samples"] == 30 and summary["seconds"] > 0 and summary["model"] == str(out)
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("digitpad: skipped")]
    assert len(skipped) == 5
    for name in ("notes.png", "empty.png", "truncated.png", f"{samples / 'x'}:", f"{samples / '12'}:"):
        assert sum(name in line for line in skipped) == 1, name
    model, meta = load_model(out)
    assert model.config.hidden == (16,)
    assert meta["fine_tuned_from"] == str(small_model) and meta["samples"] == 30


@pytest.mark.mnist
def test_an_existing_out_file_is_never_overwritten(mnist_dir, small_model, tmp_path):
    out = tmp_path / "taken.npz"
    out.write_bytes(b"the previous model")
    proc = digitpad("finetune", "--samples", str(DATA / "european"), "--model", str(small_model), "--out", str(out),
                    "--data-dir", str(mnist_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == b"the previous model"
    saved = Path(json.loads(proc.stdout)["model"])
    assert saved == tmp_path / "taken-2.npz" and saved.is_file()
    assert f"{out} exists; saving as {saved}" in proc.stderr


def test_a_missing_folder_is_one_line(tmp_path, small_model):
    one_line_error(digitpad("finetune", "--samples", str(tmp_path / "nowhere"), "--model", str(small_model)),
                   "nowhere", "no such folder")


def test_an_empty_folder_is_one_line(tmp_path, small_model):
    (tmp_path / "empty").mkdir()
    one_line_error(digitpad("finetune", "--samples", str(tmp_path / "empty"), "--model", str(small_model)),
                   "empty", "no readable pictures")


def test_a_folder_of_only_bad_files_lists_them_then_stops(tmp_path, small_model):
    (tmp_path / "s" / "4").mkdir(parents=True)
    (tmp_path / "s" / "4" / "a.png").write_text("text")
    proc = digitpad("finetune", "--samples", str(tmp_path / "s"), "--model", str(small_model))
    one_line_error(proc, "no readable pictures")
    assert "a.png: not a picture" in proc.stderr


def test_too_few_samples_say_how_many_more_before_mnist_is_needed(tmp_path, small_model):
    (tmp_path / "s" / "1").mkdir(parents=True)
    shutil.copy(DATA / "european" / "1" / "anna-0.png", tmp_path / "s" / "1")
    proc = digitpad("finetune", "--samples", str(tmp_path / "s"), "--model", str(small_model),
                    "--data-dir", str(tmp_path / "no-mnist"), "--out", str(tmp_path / "m.npz"),
                    env={"DIGITPAD_DATA_DIR": str(tmp_path / "no-mnist"), "XDG_DATA_HOME": str(tmp_path / "xdg")})
    one_line_error(proc, "add 1 more 1")
    assert not (tmp_path / "m.npz").exists()


def test_a_broken_model_is_one_line(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 broken")
    one_line_error(digitpad("finetune", "--samples", str(DATA / "plain"), "--model", str(bad)), "bad.npz")


def test_without_mnist_it_says_where_it_looked(tmp_path, small_model):
    proc = digitpad("finetune", "--samples", str(DATA / "european"), "--model", str(small_model),
                    "--data-dir", str(tmp_path), env={"DIGITPAD_DATA_DIR": str(tmp_path),
                                                      "XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "MNIST not found" in proc.stderr
