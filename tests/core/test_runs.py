"""Run history: written as the run goes, read back, interrupted runs, damaged files, management."""

import json
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

from digitpad.core.runs import (
    CURVES_FILE,
    RUN_FILE,
    RunRecorder,
    delete_run,
    find_run,
    list_runs,
    load_curves,
    rename_run,
)
from digitpad.core.train import EpochRecord, StepRecord, TrainConfig, Trainer
from tests.core.test_train import tiny_mnist


CONFIG = TrainConfig(hidden=(16, 8), epochs=2, batch_size=50, val_size=200, stats_every=3, snapshot_every=0)


def record_run(root, config=CONFIG, **kw):
    trainer = Trainer(config, tiny_mnist())
    records = []
    with RunRecorder(config, source="test", root=root, **kw) as rec:
        for r in trainer:
            rec.add(r)
            records.append(r)
        rec.finish(trainer.result, test_accuracy=0.5)
    return rec, trainer.result, records


def test_a_run_reads_back_with_its_settings_result_and_curves(tmp_path):
    rec, result, records = record_run(tmp_path, name="my first run")
    runs, problems = list_runs(tmp_path)
    assert problems == [] and len(runs) == 1
    run = runs[0]
    assert run.name == "my first run" and run.id == rec.id and run.status == "finished"
    assert run.config["hidden"] == [16, 8] and run.info["layer_sizes"] == [784, 16, 8, 10]
    assert run.info["test_accuracy"] == 0.5 and run.info["epochs_done"] == 2
    assert run.info["started"] and run.info["ended"]
    steps = [r for r in records if isinstance(r, StepRecord)]
    curves = load_curves(run)
    assert len(curves.steps["step"]) == len(steps)
    np.testing.assert_allclose(curves.steps["loss"], [r.loss for r in steps], rtol=1e-5)
    np.testing.assert_allclose(curves.steps["lr"], [r.lr for r in steps], rtol=1e-5)
    stats = [r for r in steps if r.layers is not None]
    assert curves.stats["grad_norm"].shape == (len(stats), 3)
    assert curves.stats["dead"].shape == (len(stats), 2)
    np.testing.assert_allclose(curves.stats["grad_norm"][:, 0], [r.layers[0].grad_norm for r in stats], rtol=1e-5)
    epochs = [r for r in records if isinstance(r, EpochRecord)]
    np.testing.assert_allclose(curves.epochs["val_acc"], [r.val_accuracy for r in epochs], rtol=1e-5)
    assert curves.final_dead() == pytest.approx([s.dead_fraction for s in stats[-1].layers[:-1]], abs=1e-6)
    ratio = np.median([r.layers[0].grad_norm / r.layers[-1].grad_norm for r in stats])
    assert curves.grad_ratio_first_last() == pytest.approx(ratio, rel=1e-4)


def test_the_run_is_on_disk_while_it_goes(tmp_path):
    trainer = Trainer(CONFIG, tiny_mnist())
    rec = RunRecorder(CONFIG, root=tmp_path)
    n = 0
    for r in trainer:
        rec.add(r)
        if isinstance(r, EpochRecord):  # an epoch's end is written out at once
            n = r.step
            break
    run = find_run(rec.id, tmp_path)
    assert run.status == "running"  # this process still holds it
    assert len(load_curves(run).steps["step"]) == n
    rec.close()  # never finished: it was cut short
    assert find_run(rec.id, tmp_path).status == "interrupted"


def test_a_run_whose_process_died_reads_as_interrupted_and_keeps_its_curves(tmp_path):
    script = textwrap.dedent(f"""
        import os
        from digitpad.core.runs import RunRecorder
        from digitpad.core.train import StepRecord, TrainConfig
        rec = RunRecorder(TrainConfig(hidden=(4,)), root={str(tmp_path / "runs")!r})
        for i in range(1, 31):
            rec.add(StepRecord(step=i, total_steps=100, epoch=0, epoch_progress=i / 100, loss=2.0 / i,
                               accuracy=0.5, lr=1e-3, samples_per_second=1.0, elapsed=0.1 * i))
        rec._flush()
        os._exit(9)  # as a crash or kill -9 would: no clean-up at all
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    runs, problems = list_runs(tmp_path / "runs")
    assert problems == [] and [r.status for r in runs] == ["interrupted"]
    curves = load_curves(runs[0])
    assert len(curves.steps["step"]) == 30 and curves.steps["loss"][-1] == pytest.approx(2 / 30, rel=1e-5)


def test_a_torn_last_line_is_skipped(tmp_path):
    rec, _, _ = record_run(tmp_path)
    curves_file = rec.folder / CURVES_FILE
    n = len(load_curves(find_run(rec.id, tmp_path)).steps["step"])
    with open(curves_file, "a") as f:
        f.write('{"k":"step","step":999,"t":1.0,"lo')
    assert len(load_curves(find_run(rec.id, tmp_path)).steps["step"]) == n


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"format": 99}', b"\xff\xfe\x00",
                                     b'{"format": 1, "status": "running"}'])
def test_a_damaged_run_file_is_reported_and_skipped(tmp_path, content):
    good, _, _ = record_run(tmp_path)
    bad = tmp_path / "20200101-000000-relu-8"
    bad.mkdir()
    (bad / RUN_FILE).write_bytes(content)
    runs, problems = list_runs(tmp_path)
    assert [r.id for r in runs] == [good.id]
    assert len(problems) == 1 and str(bad / RUN_FILE) in problems[0]


def _result(**kw):
    """What ``RunRecorder.finish`` reads of a TrainResult."""
    fields = dict(seconds=1.0, steps=3, epochs_done=0, best_val_accuracy=float("nan"), best_epoch=0, message="m",
                  diverged=False, stopped=False)
    return SimpleNamespace(**{**fields, **kw})


def test_status_says_how_the_run_ended(tmp_path):
    for kw, status in ((dict(diverged=True), "diverged"), (dict(stopped=True), "stopped"), ({}, "finished")):
        rec = RunRecorder(CONFIG, root=tmp_path)
        rec.finish(_result(**kw))
        assert find_run(rec.id, tmp_path).status == status
    with pytest.raises(RuntimeError):
        with RunRecorder(CONFIG, root=tmp_path) as rec:
            raise RuntimeError("disk on fire")
    run = find_run(rec.id, tmp_path)
    assert run.status == "failed" and "disk on fire" in run.info["message"]


def test_rename_find_and_delete(tmp_path):
    a, _, _ = record_run(tmp_path, name="same")
    b, _, _ = record_run(tmp_path, name="same")
    with pytest.raises(KeyError, match="2 runs"):
        find_run("same", tmp_path)
    renamed = rename_run(find_run(b.id, tmp_path), "  the  second\n")
    assert renamed.name == "the second" and find_run("the second", tmp_path).id == b.id
    with pytest.raises(ValueError, match="name"):
        rename_run(renamed, "   ")
    delete_run(find_run("same", tmp_path))
    assert [r.id for r in list_runs(tmp_path)[0]] == [b.id]
    assert not a.folder.exists()
    with pytest.raises(KeyError, match="no such run"):
        find_run("nothing", tmp_path)


def test_a_run_still_going_cannot_be_deleted(tmp_path):
    rec = RunRecorder(CONFIG, root=tmp_path)
    with pytest.raises(ValueError, match="still going"):
        delete_run(find_run(rec.id, tmp_path))
    rec.close()


def test_kept_model_is_recorded(tmp_path):
    rec, _, _ = record_run(tmp_path)
    rec.set_model(tmp_path / "kept.npz")
    run = find_run(rec.id, tmp_path)
    assert run.info["kept"] is True and run.info["model"].endswith("kept.npz")


def test_a_long_run_stays_compact(tmp_path):
    """A Quick run is about 650 steps with statistics every 8: its files stay far below 1 MB."""
    rng = np.random.default_rng(0)
    config = TrainConfig(hidden=(512, 128))
    with RunRecorder(config, root=tmp_path) as rec:
        for step in range(1, 651):
            layers = None
            if step % 8 == 0:
                layers = tuple(SimpleNamespace(grad_norm=rng.random(), dead_fraction=rng.random(),
                                               act_mean=rng.random(), act_std=rng.random(),
                                               update_ratio=rng.random() * 1e-3) for _ in range(3))
            rec.add(StepRecord(step=step, total_steps=650, epoch=step // 108, epoch_progress=0.5,
                               loss=rng.random(), accuracy=rng.random(), lr=rng.random() * 1e-3,
                               samples_per_second=1e4, elapsed=step * 0.007, layers=layers))
        rec.finish(_result())
    size = sum(p.stat().st_size for p in rec.folder.iterdir())
    assert size < 200_000, size
    assert len(load_curves(find_run(rec.id, tmp_path)).stats["step"]) == 650 // 8


def test_run_json_is_strict_json_even_with_nan(tmp_path):
    rec = RunRecorder(CONFIG, root=tmp_path)
    rec.add(StepRecord(step=1, total_steps=2, epoch=0, epoch_progress=0.5, loss=float("nan"), accuracy=0.0,
                       lr=1e-3, samples_per_second=0.0, elapsed=0.1))
    rec.finish(None, status="diverged", test_accuracy=float("nan"))
    info = json.loads((rec.folder / RUN_FILE).read_text())
    assert info["test_accuracy"] is None and info["status"] == "diverged"
    for line in (rec.folder / CURVES_FILE).read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


def test_smoothing_is_a_debiased_moving_average():
    from digitpad.core.runs import smooth

    x = np.array([1.0, 1.0, 1.0, 5.0, np.nan, 5.0])
    np.testing.assert_array_equal(smooth(x, 0.0)[:4], x[:4])
    s = smooth(x, 0.5)
    assert s[0] == 1.0 and s[2] == pytest.approx(1.0)  # debiased: a constant stays itself
    assert 1.0 < s[3] < 5.0 and np.isnan(s[4]) and s[3] < s[5] < 5.0


def test_a_setting_changed_during_the_run_is_an_event_line(tmp_path):
    trainer = Trainer(CONFIG, tiny_mnist())
    with RunRecorder(CONFIG, source="test", root=tmp_path) as rec:
        for r in trainer:
            if isinstance(r, StepRecord) and r.step == 5:
                trainer.set_lr(2e-4)
            rec.add(r)
        rec.finish(trainer.result)
    run = list_runs(tmp_path)[0][0]
    curves = load_curves(run)
    assert [(step, text) for step, _, text in curves.events] == [(6, "learning rate 0.001 → 0.0002")]
    assert 6 in curves.steps["step"]  # the step itself is still a curve point


def test_a_run_without_a_name_is_named_by_what_sets_it_apart(tmp_path):
    rec = RunRecorder(CONFIG, root=tmp_path)
    rec.close()
    assert find_run(rec.id, tmp_path).name == "relu 16-8 · adam 0.001"


def test_runs_started_within_one_second_are_listed_in_the_order_they_started(tmp_path):
    names = ["zeta", "alpha", "mid"]
    for name in names:
        RunRecorder(TrainConfig(hidden=(4,), activation=("sigmoid" if name == "zeta" else "relu")), root=tmp_path,
                    name=name).close()
    assert [r.name for r in list_runs(tmp_path)[0]] == names
