"""Experiments: the findings hold on real MNIST, arms are recorded as runs, the finding quotes the numbers."""

import json
import os
import subprocess
import sys

import pytest

from digitpad.core.experiments import EXPERIMENTS, get_experiment, run_experiment
from digitpad.core.runs import list_runs, load_curves


def test_unknown_experiment_names_the_choices():
    with pytest.raises(ValueError, match="vanishing"):
        get_experiment("nope")


def test_arms_change_one_thing_and_share_seed_and_data():
    for experiment in EXPERIMENTS.values():
        a, b = (arm.config.to_dict() for arm in experiment.arms)
        assert a["seed"] == b["seed"] and a["limit"] == b["limit"] and a["hidden"] == b["hidden"]
        differ = {k for k in a if a[k] != b[k]}
        assert len(differ) <= 2, (experiment.name, differ)  # e.g. activation; lr


def test_vanishing_sigmoid_gradient_is_far_smaller_than_relus(mnist, tmp_path):
    results, finding = run_experiment("vanishing", mnist, root=tmp_path)
    sigmoid, relu = results
    assert sigmoid.grad_ratio_first_last * 20 <= relu.grad_ratio_first_last
    assert relu.test_accuracy > sigmoid.test_accuracy + 0.3
    assert f"{sigmoid.grad_ratio_first_last:.2g}" in finding and f"{relu.test_accuracy:.1%}" in finding
    runs, problems = list_runs(tmp_path)
    assert problems == [] and sorted(r.info["arm"] for r in runs) == ["relu", "sigmoid"]
    assert all(r.status == "finished" and r.info["experiment"] == "vanishing" for r in runs)
    by_arm = {r.info["arm"]: r for r in runs}
    recorded = load_curves(by_arm["sigmoid"]).grad_ratio_first_last()
    assert recorded == pytest.approx(sigmoid.grad_ratio_first_last, rel=1e-3)


def test_dying_relu_too_high_learning_rate_kills_units(mnist, tmp_path):
    results, finding = run_experiment("dying-relu", mnist, root=tmp_path)
    sensible, too_high = results
    assert max(too_high.dead_fraction) >= 0.30
    assert max(sensible.dead_fraction) <= 0.10
    assert f"{max(too_high.dead_fraction):.0%}" in finding


@pytest.mark.slow
def test_vs_sklearn_both_learn_on_the_same_digits(mnist, tmp_path):
    results, finding = run_experiment("vs-sklearn", mnist, root=tmp_path)
    ours, theirs = results
    assert len(ours.epoch_accuracy) == len(theirs.epoch_accuracy) == 5
    assert ours.test_accuracy > 0.93 and theirs.test_accuracy > 0.93
    assert "scikit-learn" in finding
    runs, _ = list_runs(tmp_path)
    sk = [r for r in runs if r.info.get("engine") == "sklearn"][0]
    assert len(load_curves(sk).epochs["val_acc"]) == 5


def test_cli_experiment_json(mnist_dir, tmp_path):
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "digitpad", "experiment", "vanishing", "--json", "--data-dir",
                           str(mnist_dir)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["experiment"] == "vanishing" and len(out["arms"]) == 2
    for arm in out["arms"]:
        for key in ("name", "activation", "optimizer", "lr", "test_accuracy", "grad_ratio_first_last",
                    "dead_fraction", "seconds"):
            assert key in arm
        assert len(arm["dead_fraction"]) == 5
    assert out["arms"][0]["grad_ratio_first_last"] * 20 <= out["arms"][1]["grad_ratio_first_last"]
    assert out["conclusion"].startswith("With sigmoid")
    listed = subprocess.run([sys.executable, "-m", "digitpad", "runs", "--json"], capture_output=True, text=True,
                            env=env, timeout=120)
    runs = json.loads(listed.stdout)
    assert [r["arm"] for r in runs] == ["sigmoid", "relu"]  # in the order they ran, even within one second
    for run in runs:
        for key in ("name", "started", "config", "status", "test_accuracy", "seconds"):
            assert key in run
    shown = subprocess.run([sys.executable, "-m", "digitpad", "runs", "show", runs[0]["id"], "--json"],
                           capture_output=True, text=True, env=env, timeout=120)
    assert json.loads(shown.stdout)["grad_ratio_first_last"] == pytest.approx(
        out["arms"][0]["grad_ratio_first_last"], rel=1e-3)
    gone = subprocess.run([sys.executable, "-m", "digitpad", "runs", "delete", runs[0]["id"]], capture_output=True,
                          text=True, env=env, timeout=120)
    assert gone.returncode == 0
    missing = subprocess.run([sys.executable, "-m", "digitpad", "runs", "show", runs[0]["id"]], capture_output=True,
                             text=True, env=env, timeout=120)
    assert missing.returncode == 1 and "no such run" in missing.stderr
