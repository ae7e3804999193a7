"""Train ▸ Experiments: an experiment runs its arms in the background, then the Runs page compares them."""

import pytest
from PySide6.QtWidgets import QApplication

from digitpad.core.runs import find_run


def test_experiments_are_in_the_train_menu(make_window, untrained_model_path):
    w = make_window(untrained_model_path)
    names = [a.objectName() for a in w.experiments.menu.actions()]
    assert names == ["action_experiment_vanishing", "action_experiment_dying_relu", "action_experiment_vs_sklearn"]
    assert w.experiments.menu.menuAction() in w.menu_train.actions()


def test_vanishing_runs_both_arms_and_the_runs_page_compares_them(make_window, untrained_model_path, qtbot, mnist):
    w = make_window(untrained_model_path, size=(1280, 800))
    with qtbot.waitSignal(w.experiments.experiment_finished, timeout=300_000) as done:
        assert w.experiments.run("vanishing", mnist=mnist)
        assert w.experiments.dialog.isVisible()
    name, ids, finding = done.args
    assert name == "vanishing" and len(ids) == 2
    assert [find_run(i).info["arm"] for i in ids] == ["sigmoid", "relu"]
    page = w.runs_page
    assert w.current_page() is page and page.ticked == ids
    assert len(page.plots["grad_ratio"].getPlotItem().listDataItems()) == 2
    assert page.finding.isVisible() and "sigmoid" in page.finding.text() and finding in page.finding.text()
    qtbot.waitUntil(lambda: w.experiments.dialog is None, timeout=5000)


def test_an_experiment_without_mnist_shows_how_to_get_it(make_window, untrained_model_path, monkeypatch):
    w = make_window(untrained_model_path)
    monkeypatch.setattr(w.retrain, "locate_data", lambda: None)
    assert not w.experiments.run("dying-relu")
    QApplication.processEvents()
    assert w.current_page() is w.train_page and w.train_page.data_panel.isVisible()
    assert "MNIST" in w.statusBar().currentMessage()


def test_cancel_ends_the_experiment_without_a_finding(make_window, untrained_model_path, qtbot, mnist):
    w = make_window(untrained_model_path)
    finished = []
    w.experiments.experiment_finished.connect(lambda *a: finished.append(a))
    assert w.experiments.run("vs-sklearn", mnist=mnist)
    job = w.experiments.job
    w.experiments.dialog.canceled.emit()  # what its Cancel button sends
    qtbot.waitUntil(lambda: job.finished, timeout=120_000)
    assert finished == [] and w.experiments.dialog is None and not w.experiments.is_running


@pytest.mark.parametrize("optimizer, ratio, words", [("adam", 0.5, "Experiments"), ("sgd", 0.5, "flows back well"),
                                                     ("sgd", 0.001, "vanishes")])
def test_the_gradient_sentence_points_to_the_experiment_when_adam_hides_the_lesson(optimizer, ratio, words):
    from digitpad.core.train import TrainConfig
    from digitpad.qt.panes.training import TrainingHistory, TrainingPanes
    from digitpad.qt.worker import RunInfo

    info = RunInfo(config=TrainConfig(activation="sigmoid", optimizer=optimizer, stats_every=5), total_steps=100,
                   steps_per_epoch=10, n_train=1000, n_val=100, layer_sizes=(784, 128, 10))
    h = TrainingHistory(info)
    h.grad_norm[:3] = [ratio, 1.0]
    h.n_stats = 3
    text = TrainingPanes._grad_hint(h)
    assert words in text
    assert ("Experiments" in text) == (optimizer == "adam" and ratio >= 0.1)
