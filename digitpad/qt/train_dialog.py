"""The Retrain dialog (presets and every training setting) and the dialog that finds or downloads MNIST.

``TrainDialog`` opens on the Quick preset, so Retrain… then OK trains a good network in
seconds; the other presets, the last settings used, and every field of ``TrainConfig``
that a person would change are one click away. Values are checked when OK is pressed:
an unusable one keeps the dialog open, names the field and puts the cursor in it.

``DataDialog`` appears when MNIST is not on disk: Download (progress bar and Cancel, in a
worker thread) or Choose folder… for a folder that already has the four files.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSettings, QThread, Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from digitpad.core import data as data_mod
from digitpad.core.functional import HIDDEN_ACTIVATIONS
from digitpad.core.optim import OPTIMIZERS, SCHEDULES
from digitpad.core.train import PRESET_NOTES, PRESETS, TrainConfig, parse_hidden, run_size

LAST_CONFIG_KEY = "retrain/last_config"
N_TRAIN_TOTAL = 60000

FIELD_LABELS = {
    "hidden": "Hidden layers",
    "activation": "Activation",
    "optimizer": "Optimiser",
    "lr": "Learning rate",
    "schedule": "Schedule",
    "batch_size": "Batch size",
    "epochs": "Epochs",
    "weight_decay": "L2 weight decay",
    "dropout": "Dropout",
    "momentum": "Momentum",
    "augment": "Augmentation",
    "limit": "Training digits",
    "val_size": "Validation digits",
    "seed": "Seed",
}
SCHEDULE_NOTES = {
    "constant": "constant",
    "cosine": "cosine decay to 0",
    "onecycle": "one-cycle (warm up, then decay)",
}


def parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not a number") from None


def load_last_config(settings: QSettings) -> TrainConfig | None:
    """The config last started from the dialog, or None when there is none or it no longer validates."""
    raw = settings.value(LAST_CONFIG_KEY)
    if not raw:
        return None
    try:
        d = json.loads(str(raw))
        d["hidden"] = tuple(d["hidden"])
        return TrainConfig.from_dict(d)
    except (ValueError, TypeError, KeyError):
        return None


def save_last_config(settings: QSettings, config: TrainConfig) -> None:
    settings.setValue(LAST_CONFIG_KEY, json.dumps(config.to_dict()))


class TrainDialog(QDialog):
    """Choose a preset or set every training field; ``config()`` after it is accepted."""

    def __init__(self, parent=None, settings: QSettings | None = None, pending_model: bool = False):
        super().__init__(parent)
        self.setObjectName("retrain_dialog")
        self.setWindowTitle("Retrain the network")
        self.settings = settings
        self._config: TrainConfig | None = None
        self._filling = False
        self._presets: dict[str, TrainConfig] = {name: cfg for name, cfg in PRESETS.items()}
        last = load_last_config(settings) if settings is not None else None
        if last is not None:
            self._presets["last"] = last

        self.preset = QComboBox(objectName="train_preset")
        for name in PRESETS:
            self.preset.addItem(name.capitalize(), name)
        if last is not None:
            self.preset.addItem("Last used", "last")
        self.preset.addItem("Custom", "custom")
        self.preset_note = QLabel(objectName="train_preset_note")
        self.preset_note.setWordWrap(True)

        self.hidden = QLineEdit(objectName="train_hidden")
        self.hidden.setPlaceholderText("e.g. 256, 128")
        self.hidden.setToolTip("Sizes of the hidden layers, input side first; 4 layers of sigmoid show "
                               "vanishing gradients well")
        self.activation = QComboBox(objectName="train_activation")
        for a in HIDDEN_ACTIVATIONS:
            self.activation.addItem(a, a)
        self.optimizer = QComboBox(objectName="train_optimizer")
        for o in OPTIMIZERS:
            self.optimizer.addItem({"adam": "Adam", "sgd": "SGD with momentum"}.get(o, o), o)
        self.lr = QLineEdit(objectName="train_lr")
        self.lr.setToolTip("Peak learning rate, e.g. 0.001 or 3e-3")
        self.schedule = QComboBox(objectName="train_schedule")
        for s in SCHEDULES:
            self.schedule.addItem(SCHEDULE_NOTES.get(s, s), s)
        self.momentum = QDoubleSpinBox(objectName="train_momentum", decimals=2, minimum=0.0, maximum=0.99,
                                       singleStep=0.05)
        self.batch_size = QSpinBox(objectName="train_batch_size", minimum=1, maximum=65536)
        self.epochs = QSpinBox(objectName="train_epochs", minimum=1, maximum=10000)
        self.weight_decay = QLineEdit(objectName="train_weight_decay")
        self.weight_decay.setToolTip("L2 penalty on the weight matrices; 0 for none, e.g. 1e-4")
        self.dropout = QDoubleSpinBox(objectName="train_dropout", decimals=2, minimum=0.0, maximum=0.9,
                                      singleStep=0.05)
        self.augment = QCheckBox("distort training digits (shift, rotate, scale, elastic): slower, more robust",
                                 objectName="train_augment")
        self.limit = QSpinBox(objectName="train_limit", minimum=0, maximum=N_TRAIN_TOTAL, singleStep=1000)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("How many of the training digits to learn from (after the validation digits are "
                              "set aside); fewer is faster")
        self.val_size = QSpinBox(objectName="train_val_size", minimum=0, maximum=N_TRAIN_TOTAL - 1, singleStep=1000)
        self.val_size.setToolTip("Training digits held out to pick the best epoch (never the test set)")
        self.seed = QSpinBox(objectName="train_seed", minimum=0, maximum=2**31 - 1)
        self.summary = QLabel(objectName="train_summary")
        self.error = QLabel(objectName="train_error")
        self.error.setWordWrap(True)
        self.error.setStyleSheet("color: #d32f2f; font-weight: bold")
        self.error.hide()

        self.fields: dict[str, QWidget] = {
            "hidden": self.hidden, "activation": self.activation, "optimizer": self.optimizer, "lr": self.lr,
            "schedule": self.schedule, "momentum": self.momentum, "batch_size": self.batch_size,
            "epochs": self.epochs, "weight_decay": self.weight_decay, "dropout": self.dropout,
            "augment": self.augment, "limit": self.limit, "val_size": self.val_size, "seed": self.seed,
        }
        form = QFormLayout()
        form.addRow("Preset", self.preset)
        form.addRow("", self.preset_note)
        for name, widget in self.fields.items():
            form.addRow(FIELD_LABELS[name], widget)
            label = form.labelForField(widget)
            if label is not None:
                label.setBuddy(widget)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.button(QDialogButtonBox.Ok).setText("Train")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        if pending_model:
            note = QLabel("The network from the last run has not been kept; training again discards it.")
            note.setObjectName("train_pending_note")
            note.setWordWrap(True)
            layout.addWidget(note)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

        self.preset.currentIndexChanged.connect(self._preset_chosen)
        for w in (self.hidden, self.lr, self.weight_decay):
            w.textChanged.connect(self._edited)
        for w in (self.activation, self.optimizer, self.schedule):
            w.currentIndexChanged.connect(self._edited)
        for w in (self.momentum, self.dropout, self.batch_size, self.epochs, self.limit, self.val_size, self.seed):
            w.valueChanged.connect(self._edited)
        self.augment.toggled.connect(self._edited)
        self.optimizer.currentIndexChanged.connect(self._sync_momentum)
        self.set_config(PRESETS["quick"], preset="quick")

    # ---- filling and reading -------------------------------------------------------------

    def set_config(self, config: TrainConfig, preset: str = "custom") -> None:
        """Show ``config`` in the fields and select ``preset`` in the list."""
        self._filling = True
        try:
            self._base = config
            self.hidden.setText(", ".join(str(h) for h in config.hidden))
            self.activation.setCurrentIndex(self.activation.findData(config.activation))
            self.optimizer.setCurrentIndex(self.optimizer.findData(config.optimizer))
            self.lr.setText(f"{config.lr:g}")
            self.schedule.setCurrentIndex(self.schedule.findData(config.schedule))
            self.momentum.setValue(config.momentum)
            self.batch_size.setValue(config.batch_size)
            self.epochs.setValue(config.epochs)
            self.weight_decay.setText(f"{config.weight_decay:g}")
            self.dropout.setValue(config.dropout)
            self.augment.setChecked(config.augment)
            self.limit.setValue(config.limit or 0)
            self.val_size.setValue(config.val_size)
            self.seed.setValue(config.seed)
            self.preset.setCurrentIndex(self.preset.findData(preset))
            self.preset_note.setText(PRESET_NOTES.get(preset, "the settings of the last run you started"
                                                      if preset == "last" else "your own settings"))
        finally:
            self._filling = False
        self._sync_momentum()
        self._update_summary()

    def _preset_chosen(self) -> None:
        if self._filling:
            return
        name = self.preset.currentData()
        if name in self._presets:
            self.set_config(self._presets[name], preset=name)

    def _edited(self, *_) -> None:
        if self._filling:
            return
        self.error.hide()
        if self.preset.currentData() != "custom":
            self._filling = True
            self.preset.setCurrentIndex(self.preset.findData("custom"))
            self.preset_note.setText("your own settings")
            self._filling = False
        self._update_summary()

    def _sync_momentum(self) -> None:
        self.momentum.setEnabled(self.optimizer.currentData() == "sgd")

    def _update_summary(self) -> None:
        try:
            cfg = self._read()
        except ValueError:
            self.summary.setText("")
            return
        size = run_size(cfg, N_TRAIN_TOTAL)
        layers = "-".join(str(s) for s in cfg.model_config().layer_sizes)
        self.summary.setText(f"{layers} {cfg.activation} · {size.n_train:,} training digits · "
                             f"{size.total_steps:,} steps")

    def _read(self) -> TrainConfig:
        """The config the fields describe; ValueError "Label: why" naming the first bad field."""
        values = {}
        parsers = {"hidden": (self.hidden, parse_hidden), "lr": (self.lr, parse_float),
                   "weight_decay": (self.weight_decay, parse_float)}
        for name, (widget, parse) in parsers.items():
            try:
                values[name] = parse(widget.text())
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
        values.update(
            activation=self.activation.currentData(), optimizer=self.optimizer.currentData(),
            schedule=self.schedule.currentData(), momentum=round(self.momentum.value(), 4),
            batch_size=self.batch_size.value(), epochs=self.epochs.value(),
            dropout=round(self.dropout.value(), 4), augment=self.augment.isChecked(),
            limit=self.limit.value() or None, val_size=self.val_size.value(), seed=self.seed.value(),
        )
        return replace(self._base, **values)  # replace() validates through __post_init__

    def config(self) -> TrainConfig:
        """The accepted config (valid by construction)."""
        return self._config if self._config is not None else self._read()

    def field_error(self) -> tuple[str, str] | None:
        """(field name, message naming the field) for the first unusable value, or None."""
        try:
            self._read()
        except ValueError as e:
            name, _, why = str(e).partition(": ")
            label = FIELD_LABELS.get(name, name)
            return name, f"{label}: {why}"
        return None

    def accept(self) -> None:
        problem = self.field_error()
        if problem is not None:
            name, message = problem
            self.error.setText(message)
            self.error.show()
            widget = self.fields.get(name)
            if widget is not None:
                widget.setFocus()
                if isinstance(widget, QLineEdit):
                    widget.selectAll()
            return
        self._config = self._read()
        if self.settings is not None:
            save_last_config(self.settings, self._config)
        super().accept()


def missing_files(folder) -> list[str]:
    """The MNIST file names (plain or .gz) that ``folder`` lacks."""
    folder = Path(folder)
    return [n for n in data_mod.FILES if not ((folder / n).is_file() or (folder / f"{n}.gz").is_file())]


class DataDialog(QDialog):
    """MNIST is missing: download it (progress, Cancel) or choose a folder that has it; ``folder`` when accepted."""

    def __init__(self, parent=None, dest=None, mirrors: tuple | None = None):
        super().__init__(parent)
        self.setObjectName("data_dialog")
        self.setWindowTitle("MNIST is needed to train")
        self.folder: Path | None = None
        self._dest = Path(dest) if dest is not None else data_mod.user_data_dir()
        self._mirrors = mirrors
        self._thread: QThread | None = None
        self._worker = None
        self._files_done: set[str] = set()
        text = QLabel(
            "Training needs MNIST, the 70,000 handwritten digits the network learns from "
            "(about 11 MB), and it is not on this computer yet.<br><br>"
            f"<b>Download</b> it into <code>{self._dest}</code>, or <b>choose a folder</b> that already has "
            "the four MNIST files (plain or .gz), for instance copied from another computer."
        )
        text.setWordWrap(True)
        text.setTextFormat(Qt.RichText)
        self.progress = QProgressBar(objectName="data_progress")
        self.progress.hide()
        self.message = QLabel(objectName="data_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.download_button = QPushButton("&Download", objectName="data_download")
        self.choose_button = QPushButton("Choose &folder…", objectName="data_choose")
        self.cancel_button = QPushButton("Cancel", objectName="data_cancel")
        self.download_button.clicked.connect(self.start_download)
        self.choose_button.clicked.connect(self._choose)
        self.cancel_button.clicked.connect(self.reject)
        row = QHBoxLayout()
        row.addWidget(self.download_button)
        row.addWidget(self.choose_button)
        row.addStretch(1)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(self.progress)
        layout.addWidget(self.message)
        layout.addLayout(row)
        self.setMinimumWidth(480)

    @property
    def downloading(self) -> bool:
        return self._thread is not None

    def start_download(self) -> None:
        from digitpad.qt.worker import DownloadWorker

        if self._thread is not None:
            return
        self.message.setText("Connecting…")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.download_button.setEnabled(False)
        self.choose_button.setEnabled(False)
        self._files_done.clear()
        self._worker = DownloadWorker(self._dest, self._mirrors)
        self._thread = QThread()
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.done.connect(self._on_done)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._thread.start()

    def _join(self) -> None:
        if self._thread is not None:
            self._thread.wait()
            self._thread = None
            self._worker = None
        self.download_button.setEnabled(True)
        self.choose_button.setEnabled(True)

    def _on_progress(self, name: str, done: int, total: int) -> None:
        index = list(data_mod.FILES).index(name) + 1 if name in data_mod.FILES else 0
        if total > 0:
            self.progress.setRange(0, total)
            self.progress.setValue(done)
        self.progress.setFormat(f"file {index}/{len(data_mod.FILES)}: {name} · {done / 1e6:.1f} MB")
        self.message.setText(f"Downloading {name}…")

    def _on_done(self, folder: str) -> None:
        self._join()
        self.folder = Path(folder)
        self.accept()

    def _on_failed(self, message: str) -> None:
        self._join()
        self.progress.hide()
        self.message.setText(message + "\n\nYou can choose a folder that has the files instead.")

    def _on_cancelled(self) -> None:
        self._join()
        self.progress.hide()
        self.message.setText("Download cancelled; nothing half-downloaded was kept.")

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with the MNIST files")
        if folder:
            self.use_folder(folder)

    def use_folder(self, folder) -> bool:
        """Accept ``folder`` when it has the four MNIST files; otherwise say which are missing."""
        missing = missing_files(folder)
        if missing:
            self.message.setText(f"{folder} lacks {', '.join(missing)} (plain or .gz).")
            return False
        self.folder = Path(folder).resolve()
        self.accept()
        return True

    def reject(self) -> None:
        """Cancel: during a download stops it (the partial file is removed) and stays open; otherwise closes."""
        if self._worker is not None:
            self.message.setText("Cancelling…")
            self._worker.cancel()
            return
        super().reject()

    def done(self, result: int) -> None:
        if self._worker is not None:  # closing for good: the download thread must end first
            self._worker.cancel()
            self._join()
        super().done(result)
