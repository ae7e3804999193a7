"""`digitpad train` when things go wrong: divergence, unusable outputs and settings, Ctrl-C, full disks.

Every failure is one line on stderr naming the file or setting, an exit code other than 0,
no traceback, and no model replaced by a worse one. Subprocess tests run the real command;
in-process ones (``cli.main``) replace MNIST by small separable data or inject a fault.
"""

import errno
import json
import signal

import numpy as np
import pytest

from digitpad import cli
from digitpad.core import data as data_mod
from digitpad.core import model_io
from digitpad.core import train as train_mod
from digitpad.core.mlp import MLP, MLPConfig
from tests.core.test_train import tiny_mnist
from tests.test_cli import digitpad

SMALL_RUN = ["--hidden", "16", "--epochs", "2", "--batch-size", "100", "--limit", "1000", "--threads", "1",
             "--quiet"]


def strict_json(text: str):
    """``json.loads`` that refuses NaN and Infinity, as a strict JSON reader does."""
    def refuse(name):
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    return lines[0]


def a_model_file(path):
    model = MLP(MLPConfig(hidden=(8,)), 0)
    return model_io.save_model(path, model, model_io.build_metadata(model))


@pytest.fixture
def small_mnist(monkeypatch):
    """``load_mnist`` gives separable blobs: 5,600 training digits (5,000 held out), 200 test digits."""
    data = tiny_mnist(n=5600)
    monkeypatch.setattr(data_mod, "load_mnist", lambda data_dir=None: data)
    return data


def write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(folder, n_train: int, n_test: int) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, n))


# --- divergence ------------------------------------------------------------------------


@pytest.mark.mnist
def test_a_two_step_blow_up_is_reported_as_diverged_and_saves_nothing(mnist_dir, tmp_path):
    out = tmp_path / "blown.npz"
    proc = digitpad("train", "--data-dir", str(mnist_dir), "--lr", "1e5", "--optimizer", "sgd", "--limit", "1000",
                    "--epochs", "1", "--out", str(out), "--json", "--quiet")
    assert proc.returncode == 1
    summary = strict_json(proc.stdout)
    assert summary["diverged"] and summary["steps"] == 2 and summary["model"] is None
    assert "exploded" in summary["message"]
    assert not out.exists() and "no model was saved" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.mnist
def test_a_diverged_run_leaves_an_existing_model_as_it_was(mnist_dir, tmp_path):
    precious = a_model_file(tmp_path / "precious.npz")
    before = precious.read_bytes()
    proc = digitpad("train", "--data-dir", str(mnist_dir), "--lr", "1e5", "--optimizer", "sgd", "--epochs", "2",
                    "--limit", "5000", "--out", str(precious), "--quiet")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert precious.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.npz"]


def test_divergence_after_a_good_epoch_saves_the_last_good_weights_under_a_new_name(
        small_mnist, tmp_path, monkeypatch, capsys):
    real = train_mod.learning_rate

    def blows_up_in_epoch_two(schedule, lr, step, total):
        return 1e9 if step >= 6 else real(schedule, lr, step, total)  # 6 steps an epoch

    monkeypatch.setattr(train_mod, "learning_rate", blows_up_in_epoch_two)
    precious = a_model_file(tmp_path / "precious.npz")
    before = precious.read_bytes()
    code = cli.main(["train", *SMALL_RUN, "--optimizer", "sgd", "--lr", "0.1", "--out", str(precious), "--json"])
    assert code == 1
    captured = capsys.readouterr()
    summary = strict_json(captured.out)
    kept = tmp_path / "precious-last-good.npz"
    assert summary["diverged"] and summary["epochs"] == 1 and summary["model"] == str(kept)
    assert precious.read_bytes() == before
    model, meta = model_io.load_model(kept)
    assert meta["diverged"] is True and model.is_finite()
    assert f"saved the last good weights as {kept}" in captured.err and "Traceback" not in captured.err


# --- where the model goes, checked before training -----------------------------------------


def test_out_onto_an_existing_folder_is_refused_before_training(tmp_path):
    folder = tmp_path / "models.npz"
    folder.mkdir()
    proc = digitpad("train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(folder))
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert "--out" in line and str(folder) in line and "is a folder" in line


def test_out_under_a_file_is_refused_before_training(tmp_path):
    (tmp_path / "notes.txt").write_text("a file")
    proc = digitpad("train", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "notes.txt" / "m.npz"))
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert "--out" in line and f"{tmp_path / 'notes.txt'} is a file" in line


def test_out_in_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch, capsys):
    import os
    import tempfile

    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root writes anyway: make the folder refuse as it would a user
            def refuse(*args, **kwargs):
                raise PermissionError(errno.EACCES, "Permission denied")

            monkeypatch.setattr(tempfile, "mkstemp", refuse)
        loaded = []
        monkeypatch.setattr(data_mod, "load_mnist", lambda data_dir=None: loaded.append(1))
        code = cli.main(["train", "--out", str(folder / "m.npz")])
    finally:
        folder.chmod(0o755)
    assert code == 2 and not loaded  # refused before MNIST is even read
    line = one_line_error(capsys.readouterr().err)
    assert f"--out: cannot write in {folder} (Permission denied)" in line


# --- settings ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, field", [(["--seed", "-1"], "seed"), (["--hidden", "8192,8192"], "hidden"),
                                         (["--hidden", "16384,16384,16384,16384,16384,16384,16384,16384"], "hidden")])
def test_unusable_settings_are_refused_naming_them(tmp_path, args, field):
    proc = digitpad("train", *args, "--data-dir", str(tmp_path), "--out", str(tmp_path / "m.npz"))
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert line.startswith(f"digitpad: invalid setting: {field}:")


def test_a_training_set_too_small_for_the_validation_split_is_refused(tmp_path):
    write_mnist(tmp_path, n_train=300, n_test=10)
    proc = digitpad("train", "--data-dir", str(tmp_path), "--out", str(tmp_path / "m.npz"))
    assert proc.returncode == 2
    line = one_line_error(proc.stderr)
    assert "val_size" in line and "300 training digits" in line
    assert not (tmp_path / "m.npz").exists()


def test_an_empty_test_set_gives_null_test_figures_not_nan(tmp_path):
    write_mnist(tmp_path, n_train=5300, n_test=0)
    out = tmp_path / "m.npz"
    proc = digitpad("train", "--data-dir", str(tmp_path), *SMALL_RUN, "--limit", "200", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = strict_json(proc.stdout)
    assert summary["test_accuracy"] is None and summary["test_loss"] is None
    _, meta = model_io.load_model(out)
    assert meta["metrics"]["test_accuracy"] is None


def test_choices_come_from_cores_tables():
    from digitpad.core.functional import HIDDEN_ACTIVATIONS
    from digitpad.core.optim import OPTIMIZERS, SCHEDULES

    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices.items() if a[0] == "train")[1]
    choices = {a.dest: a.choices for a in train._actions if a.choices is not None}
    assert choices == {"activation": list(HIDDEN_ACTIVATIONS), "optimizer": list(OPTIMIZERS),
                       "schedule": list(SCHEDULES), "preset": list(train_mod.PRESETS)}


def test_hidden_none_trains_a_network_without_hidden_layers(small_mnist, tmp_path, capsys):
    out = tmp_path / "flat.npz"
    assert cli.main(["train", *SMALL_RUN, "--hidden", "none", "--out", str(out), "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["config"]["hidden"] == []
    assert model_io.load_model(out)[0].config.layer_sizes == (784, 10)


# --- Ctrl-C and full disks ----------------------------------------------------------------


def test_ctrl_c_while_loading_mnist_is_one_line(monkeypatch, tmp_path, capsys):
    def interrupted(data_dir=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(data_mod, "load_mnist", interrupted)
    assert cli.main(["train", "--out", str(tmp_path / "m.npz")]) == 130
    assert "interrupted while loading MNIST" in one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "m.npz").exists()


def test_ctrl_c_during_the_test_evaluation_still_saves_the_model(small_mnist, monkeypatch, tmp_path, capsys):
    real = train_mod.evaluate

    def interrupted_on_the_test_set(model, images, labels, *args):
        if images is small_mnist.test_images:
            raise KeyboardInterrupt
        return real(model, images, labels, *args)

    monkeypatch.setattr(train_mod, "evaluate", interrupted_on_the_test_set)
    out = tmp_path / "m.npz"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--json"]) == 130
    captured = capsys.readouterr()
    assert "test evaluation interrupted" in one_line_error(captured.err)
    assert strict_json(captured.out)["test_accuracy"] is None
    assert model_io.load_model(out)[0].is_finite()


def test_ctrl_c_while_saving_waits_for_the_save(small_mnist, monkeypatch, tmp_path, capsys):
    real = model_io.save_model

    def interrupted(path, model, metadata=None):
        signal.raise_signal(signal.SIGINT)  # arrives while the file is being written
        return real(path, model, metadata)

    monkeypatch.setattr(model_io, "save_model", interrupted)
    out = tmp_path / "m.npz"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out)]) == 130
    line = one_line_error(capsys.readouterr().err)
    assert f"finished saving {out} first" in line
    assert model_io.load_model(out)[0].is_finite()


def test_a_full_disk_saves_the_model_elsewhere_and_says_where(small_mnist, monkeypatch, tmp_path, capsys):
    real = model_io.save_model
    full = tmp_path / "full"
    full.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    def no_space_in_full(path, model, metadata=None):
        if full in path.parents:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, model, metadata)

    monkeypatch.setattr(model_io, "save_model", no_space_in_full)
    code = cli.main(["train", *SMALL_RUN, "--out", str(full / "m.npz"), "--json"])
    assert code == 1
    captured = capsys.readouterr()
    saved = tmp_path / "data" / "digitpad" / "models" / "m.npz"
    line = one_line_error(captured.err)
    assert f"cannot write {full / 'm.npz'} (No space left on device); saved the model as {saved} instead" in line
    assert strict_json(captured.out)["model"] == str(saved)
    assert model_io.load_model(saved)[0].is_finite() and not (full / "m.npz").exists()


def test_a_terminal_run_is_recorded_in_the_run_history(small_mnist, tmp_path, capsys):
    from digitpad.core.runs import list_runs, load_curves, runs_dir

    before = {r.id for r in list_runs()[0]}
    out = tmp_path / "m.npz"
    assert cli.main(["train", *SMALL_RUN, "--out", str(out), "--json"]) == 0
    summary = strict_json(capsys.readouterr().out)
    new = [r for r in list_runs()[0] if r.id not in before]
    assert [r.id for r in new] == [summary["run"]] and new[0].folder.parent == runs_dir()
    run = new[0]
    assert run.status == "finished" and run.info["source"] == "cli" and run.info["kept"] is True
    assert run.info["model"] == str(out.resolve()) and run.info["test_accuracy"] == pytest.approx(
        summary["test_accuracy"], rel=1e-5)
    assert len(load_curves(run).steps["step"]) == summary["steps"]


def test_a_diverged_terminal_run_is_recorded_as_diverged(small_mnist, tmp_path, capsys):
    from digitpad.core.runs import find_run

    code = cli.main(["train", "--hidden", "16", "--lr", "1e5", "--optimizer", "sgd", "--epochs", "1",
                     "--limit", "1000", "--quiet", "--out", str(tmp_path / "m.npz"), "--json"])
    assert code == 1
    run = find_run(strict_json(capsys.readouterr().out)["run"])
    assert run.status == "diverged" and run.info["kept"] is False
