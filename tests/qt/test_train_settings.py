"""The Train page's settings refuse what the trainer would refuse, naming the field, and count steps as it does."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QSettings

from digitpad.core.train import PRESETS, run_size
from digitpad.qt.train_dialog import TrainSettings


@pytest.fixture
def dialog(qtbot, tmp_path):
    d = TrainSettings(None, QSettings(str(tmp_path / "settings.ini"), QSettings.IniFormat))
    qtbot.addWidget(d)
    d.show()
    return d


@pytest.mark.parametrize("text", ["8192, 8192", "16384 x 16384 x 16384 x 16384 x 16384 x 16384 x 16384 x 16384"])
def test_a_network_over_the_model_parameter_cap_is_refused_naming_hidden(dialog, text):
    dialog.hidden.setText(text)
    assert dialog.try_config() is None  # Start does not start it
    assert dialog.error.isVisible()
    assert dialog.error.text().startswith("Hidden layers: ") and "more than a digitpad model may have" in \
        dialog.error.text()


def test_the_summary_counts_steps_as_the_trainer_does(dialog):
    size = run_size(PRESETS["quick"])
    assert f"{size.n_train:,} training digits · {size.total_steps:,} steps" in dialog.summary.text()
    dialog.hidden.setText("12, x")  # not sizes: no summary rather than a wrong one
    assert dialog.summary.text() == ""
