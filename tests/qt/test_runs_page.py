"""The Runs page: the table of runs, overlaying ticked runs, rename, delete, loading a kept run's model."""

from types import SimpleNamespace

import numpy as np
import pytest
from PySide6.QtCore import Qt

from digitpad.core.runs import RUN_FILE, RunRecorder, list_runs
from digitpad.core.train import EpochRecord, StepRecord, TrainConfig
from digitpad.qt.runs_page import MAX_COMPARED, RunsPage


def fake_run(root, name, activation="relu", n_layers=3, steps=60, kept=None, status="finished"):
    """A recorded run with step, statistics and epoch lines, without training anything."""
    config = TrainConfig(hidden=(16,) * (n_layers - 1), activation=activation)
    rng = np.random.default_rng(len(name))
    rec = RunRecorder(config, root=root, name=name)
    layers = None
    for step in range(1, steps + 1):
        if step % 5 == 0:
            layers = tuple(SimpleNamespace(grad_norm=10.0 ** -(n_layers - i), dead_fraction=0.1 * i, act_mean=0.5,
                                           act_std=0.2, update_ratio=1e-3) for i in range(n_layers))
        rec.add(StepRecord(step=step, total_steps=steps, epoch=0, epoch_progress=step / steps,
                           loss=float(2 / step + rng.random() * 0.01), accuracy=0.5, lr=1e-3,
                           samples_per_second=1.0, elapsed=step * 0.01, layers=layers))
        layers = None
        if step % 30 == 0:
            rec.add(EpochRecord(epoch=step // 30, step=step, train_loss=0.5, train_accuracy=0.8, val_loss=0.4,
                                val_accuracy=0.85, seconds=step * 0.01, best=True))
    result = SimpleResult(steps=steps, epochs_done=steps // 30, stopped=status == "stopped")
    rec.finish(result, test_accuracy=0.9, model_path=kept)
    return rec.id


class SimpleResult:
    def __init__(self, steps, epochs_done, stopped=False):
        self.steps, self.epochs_done, self.stopped = steps, epochs_done, stopped
        self.seconds, self.best_val_accuracy, self.best_epoch = steps * 0.01, 0.85, epochs_done
        self.diverged, self.message = False, ""


@pytest.fixture
def page(qtbot, tmp_path):
    p = RunsPage(root=tmp_path)
    qtbot.addWidget(p)
    p.resize(1200, 700)
    p.show()
    return p


def _curve_count(page, plot):
    return sum(1 for item in page.plots[plot].getPlotItem().listDataItems())


def test_table_lists_runs_and_ticking_overlays_them_in_their_colours(page, tmp_path):
    a = fake_run(tmp_path, "sigmoid run", "sigmoid", n_layers=3)
    b = fake_run(tmp_path, "relu run", "relu", n_layers=3)
    page.refresh()
    assert page.table.rowCount() == 2
    names = {page.table.item(r, 1).text() for r in range(2)}
    assert names == {"sigmoid run", "relu run"}
    assert _curve_count(page, "loss") == 0
    page.set_ticked(a, True)
    page.set_ticked(b, True)
    assert _curve_count(page, "loss") == 2
    assert _curve_count(page, "grad_norm") == 2 * 3  # one line per weight layer per run
    assert _curve_count(page, "dead") == 2 * 2  # hidden layers only
    assert _curve_count(page, "grad_ratio") == 2
    colours = {item.opts["pen"].color().name() for item in page.plots["loss"].getPlotItem().listDataItems()}
    assert len(colours) == 2
    # the same run keeps its colour in every plot
    ratio_colours = {item.opts["pen"].color().name() for item in page.plots["grad_ratio"].getPlotItem().listDataItems()}
    assert ratio_colours == colours
    page.set_ticked(a, False)
    assert _curve_count(page, "loss") == 1


def test_ticking_by_the_checkbox_and_the_limit_of_six(page, tmp_path):
    ids = [fake_run(tmp_path, f"run {i}", steps=10) for i in range(MAX_COMPARED + 1)]
    page.refresh()
    for row in range(page.table.rowCount()):
        page.table.item(row, 0).setCheckState(Qt.Checked)
    assert len(page.ticked) == MAX_COMPARED
    checked = sum(page.table.item(r, 0).checkState() == Qt.Checked for r in range(page.table.rowCount()))
    assert checked == MAX_COMPARED
    assert set(page.ticked) < set(ids)


def test_x_axis_and_smoothing_change_the_curves(page, tmp_path):
    a = fake_run(tmp_path, "one", steps=60)
    page.refresh()
    page.set_ticked(a, True)
    page.smoothing.setValue(0)
    x_steps, y_raw = page.plots["loss"].getPlotItem().listDataItems()[0].getOriginalDataset()
    assert x_steps[-1] == 60
    page.smoothing.setValue(90)
    _, y_smooth = page.plots["loss"].getPlotItem().listDataItems()[0].getOriginalDataset()
    assert np.nanstd(np.diff(y_smooth)) < np.nanstd(np.diff(y_raw))
    page.x_axis.setCurrentText("epochs")
    x_epochs, _ = page.plots["loss"].getPlotItem().listDataItems()[0].getOriginalDataset()
    assert x_epochs[-1] == pytest.approx(2.0)  # 30 steps an epoch
    page.x_axis.setCurrentText("seconds")
    x_sec, _ = page.plots["loss"].getPlotItem().listDataItems()[0].getOriginalDataset()
    assert x_sec[-1] == pytest.approx(0.6)


def test_rename_delete_and_damaged_runs(page, tmp_path):
    a = fake_run(tmp_path, "first")
    b = fake_run(tmp_path, "second")
    bad = tmp_path / "19990101-000000-relu-1"
    bad.mkdir()
    (bad / RUN_FILE).write_text("{ damaged")
    page.refresh()
    assert page.table.rowCount() == 2
    assert "could not be read" in page.hint.text() and str(bad / RUN_FILE) in page.hint.text()
    row = next(r for r in range(2) if page.table.item(r, 1).data(Qt.UserRole) == a)
    page.table.item(row, 1).setText("renamed in place")
    assert {r.name for r in list_runs(tmp_path)[0]} == {"renamed in place", "second"}
    assert page.delete([b], confirm=False) == 1
    assert [r.id for r in list_runs(tmp_path)[0]] == [a]
    assert page.table.rowCount() == 1


def test_double_click_on_a_kept_run_asks_for_its_model(page, tmp_path, qtbot):
    kept = tmp_path / "kept.npz"
    a = fake_run(tmp_path, "kept run", kept=kept)
    b = fake_run(tmp_path, "not kept")
    page.refresh()
    row_of = {page.table.item(r, 1).data(Qt.UserRole): r for r in range(2)}
    with qtbot.waitSignal(page.model_requested) as blocker:
        page.table.cellDoubleClicked.emit(row_of[a], 3)
    assert blocker.args == [str(kept.resolve())]
    with qtbot.waitSignal(page.status) as blocker:
        page.table.cellDoubleClicked.emit(row_of[b], 3)
    assert "not kept" in blocker.args[0]


def test_select_runs_ticks_an_experiments_arms(page, tmp_path):
    ids = [fake_run(tmp_path, f"arm {i}", steps=10) for i in range(3)]
    page.select_runs(ids[:2])
    assert page.ticked == ids[:2]
    assert _curve_count(page, "loss") == 2
