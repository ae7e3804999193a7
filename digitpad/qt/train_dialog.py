"""The Train page's settings (presets and every training setting) and the panel that finds or downloads MNIST.

``TrainSettings`` starts on the Quick preset, so Train ▸ Retrain… then Enter trains a good
network in seconds; the other presets, the last settings used, and every field of
``TrainConfig`` that a person would change are one click away. Values are checked as they
are typed: the first unusable one is named under the form (in a line that is always there,
so nothing jumps), and Start puts the cursor in it.

``DataPanel`` shows on the page when MNIST is not on disk, before Start is pressed:
Download (progress and Cancel, as a ``worker.Job``) or Choose folder… for a folder that
already has the four files.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QFrame,
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
from digitpad.core import download as download_mod
from digitpad.core.train import MNIST_TRAIN_SIZE, PRESET_NOTES, PRESETS, TrainConfig, parse_hidden, run_size
from digitpad.qt.worker import Job

LAST_CONFIG_KEY = "retrain/last_config"

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


class TrainSettings(QWidget):
    """Choose a preset or set every training field; ``try_config()`` when Start is pressed."""

    edited = Signal()  # any field changed (the summary and the error line are already updated)

    def __init__(self, parent=None, settings: QSettings | None = None):
        super().__init__(parent)
        self.setObjectName("train_settings")
        self.settings = settings
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
        self.preset_note.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        two_lines = 2 * self.preset_note.fontMetrics().lineSpacing() + 2
        self.preset_note.setFixedHeight(two_lines)  # a shorter note must not move every row below it

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
        self.augment = QCheckBox("distort training digits",
                                 objectName="train_augment")
        self.augment.setToolTip("Shift, rotate, scale and elastically distort the training digits: slower, "
                                "more robust")
        self.limit = QSpinBox(objectName="train_limit", minimum=0, maximum=MNIST_TRAIN_SIZE, singleStep=1000)
        self.limit.setSpecialValueText("all")
        self.limit.setToolTip("How many of the training digits to learn from (after the validation digits are "
                              "set aside); fewer is faster")
        self.val_size = QSpinBox(objectName="train_val_size", minimum=0, maximum=MNIST_TRAIN_SIZE - 1, singleStep=1000)
        self.val_size.setToolTip("Training digits held out to pick the best epoch (never the test set)")
        self.seed = QSpinBox(objectName="train_seed", minimum=0, maximum=2**31 - 1)
        self.summary = QLabel(objectName="train_summary")
        self.summary.setWordWrap(True)
        self.summary.setFixedHeight(two_lines)
        self.error = QLabel(objectName="train_error")  # always there (empty when all is well): nothing jumps
        self.error.setWordWrap(True)
        self.error.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.error.setStyleSheet("color: #d32f2f; font-weight: bold")
        self.error.setFixedHeight(two_lines)

        self.fields: dict[str, QWidget] = {
            "hidden": self.hidden, "activation": self.activation, "optimizer": self.optimizer, "lr": self.lr,
            "schedule": self.schedule, "momentum": self.momentum, "batch_size": self.batch_size,
            "epochs": self.epochs, "weight_decay": self.weight_decay, "dropout": self.dropout,
            "augment": self.augment, "limit": self.limit, "val_size": self.val_size, "seed": self.seed,
        }
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
        form.addRow("Preset", self.preset)
        form.addRow("", self.preset_note)
        for name, widget in self.fields.items():
            form.addRow(FIELD_LABELS[name], widget)
            label = form.labelForField(widget)
            if label is not None:
                label.setBuddy(widget)
        self.form = form
        for combo in (self.preset, self.activation, self.optimizer, self.schedule):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)  # the column stays narrow
            combo.setMinimumContentsLength(10)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addWidget(self.summary)
        layout.addWidget(self.error)

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
        if self.preset.currentData() != "custom":
            self._filling = True
            self.preset.setCurrentIndex(self.preset.findData("custom"))
            self.preset_note.setText("your own settings")
            self._filling = False
        self._update_summary()
        self.edited.emit()

    def select_preset(self, name: str) -> None:
        """Show the preset ``name`` ("quick", …, "last") in the fields."""
        if name in self._presets:
            self.set_config(self._presets[name], preset=name)

    def remember(self, config: TrainConfig) -> None:
        """``config`` was started: it becomes "Last used", here and in the settings."""
        if self.settings is not None:
            save_last_config(self.settings, config)
        self._presets["last"] = config
        if self.preset.findData("last") == -1:
            self._filling = True
            self.preset.insertItem(self.preset.findData("custom"), "Last used", "last")
            self._filling = False

    def _sync_momentum(self) -> None:
        self.momentum.setEnabled(self.optimizer.currentData() == "sgd")

    def _update_summary(self) -> None:
        problem = self.field_error()
        self.error.setText(problem[1] if problem is not None else "")
        try:
            cfg = self._read()
        except ValueError:
            self.summary.setText("")
            return
        size = run_size(cfg, MNIST_TRAIN_SIZE)
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
        """The config the fields describe; ValueError naming the first bad field."""
        return self._read()

    def field_error(self) -> tuple[str, str] | None:
        """(field name, message naming the field) for the first unusable value, or None."""
        try:
            self._read()
        except ValueError as e:
            name, _, why = str(e).partition(": ")
            label = FIELD_LABELS.get(name, name)
            return name, f"{label}: {why}"
        return None

    def try_config(self) -> TrainConfig | None:
        """The config to start, or None: then the first bad field is named and the cursor is put in it."""
        problem = self.field_error()
        if problem is None:
            return self._read()
        name, message = problem
        self.error.setText(message)
        widget = self.fields.get(name)
        if widget is not None:
            widget.setFocus()
            if isinstance(widget, QLineEdit):
                widget.selectAll()
        return None


def missing_files(folder) -> list[str]:
    """The MNIST file names (plain or .gz) that ``folder`` lacks."""
    folder = Path(folder)
    return [n for n in data_mod.FILES if not ((folder / n).is_file() or (folder / f"{n}.gz").is_file())]


class DataPanel(QFrame):
    """MNIST is missing: download it (progress, Cancel) or choose a folder that has it; ``found`` then."""

    found = Signal(object)  # Path of a folder with the four files

    def __init__(self, parent=None, dest=None, mirrors: tuple | None = None):
        super().__init__(parent)
        self.setObjectName("data_panel")
        self.setFrameShape(QFrame.StyledPanel)
        self.folder: Path | None = None
        self._dest = Path(dest) if dest is not None else data_mod.user_data_dir()
        self._mirrors = mirrors
        self._job: Job | None = None
        text = QLabel(
            "<b>Training needs MNIST</b>, the 70,000 handwritten digits the network learns from "
            "(about 11 MB), and it is not on this computer yet.<br>"
            f"<b>Download</b> it into <code>{self._dest}</code>, or <b>choose a folder</b> that already has "
            "the four MNIST files (plain or .gz)."
        )
        text.setObjectName("data_text")
        text.setWordWrap(True)
        text.setTextFormat(Qt.RichText)
        self.progress = QProgressBar(objectName="data_progress")
        self.progress.hide()
        self.message = QLabel(objectName="data_message")  # wraps: a long offline error is read whole
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.download_button = QPushButton("&Download", objectName="data_download")
        self.choose_button = QPushButton("Choose &folder…", objectName="data_choose")
        self.cancel_button = QPushButton("Cancel", objectName="data_cancel")
        self.cancel_button.hide()
        self.download_button.clicked.connect(self.start_download)
        self.choose_button.clicked.connect(self._choose)
        self.cancel_button.clicked.connect(self.cancel)
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

    @property
    def downloading(self) -> bool:
        return self._job is not None

    def start_download(self) -> None:
        if self._job is not None:
            return
        self.message.setText("Connecting…")
        self.progress.setRange(0, 0)
        self.progress.show()
        self.download_button.setEnabled(False)
        self.choose_button.setEnabled(False)
        self.cancel_button.show()
        dest, mirrors = self._dest, self._mirrors

        def work(progress, cancel):
            kwargs = {} if mirrors is None else {"mirrors": mirrors}
            return download_mod.download_mnist(dest, progress=progress, cancel=cancel, **kwargs)

        self._job = Job(work, self._on_done, self._on_failed, on_progress=self._on_progress,
                        on_finished=self._on_finished, cancelled_by=(download_mod.DownloadCancelled,),
                        expected=(Exception,))

    def _on_finished(self) -> None:
        cancelled = self._job is not None and self._job.cancelled
        self._job = None
        self.download_button.setEnabled(True)
        self.choose_button.setEnabled(True)
        self.cancel_button.hide()
        if cancelled:
            self.progress.hide()
            self.message.setText("Download cancelled; nothing half-downloaded was kept.")

    def _on_progress(self, name: str, done: int, total) -> None:
        index = list(data_mod.FILES).index(name) + 1 if name in data_mod.FILES else 0
        if total:
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
        self.progress.setFormat(f"file {index}/{len(data_mod.FILES)}: {name} · {done / 1e6:.1f} MB")
        self.message.setText(f"Downloading {name}…")

    def _on_done(self, folder) -> None:
        self.folder = Path(folder)
        self.progress.hide()
        self.message.setText(f"MNIST is in {self.folder}.")
        self.found.emit(self.folder)

    def _on_failed(self, message: str) -> None:
        self.progress.hide()
        self.message.setText(message + "\n\nYou can choose a folder that has the files instead.")

    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder with the MNIST files")
        if folder:
            self.use_folder(folder)

    def use_folder(self, folder) -> bool:
        """Take ``folder`` when it has the four MNIST files; otherwise say which are missing."""
        missing = missing_files(folder)
        if missing:
            self.message.setText(f"{folder} lacks {', '.join(missing)} (plain or .gz).")
            return False
        self.folder = Path(folder).resolve()
        self.message.setText("")
        self.found.emit(self.folder)
        return True

    def cancel(self) -> None:
        """Stop a download (the partial file is removed); the panel stays for another choice."""
        if self._job is not None:
            self.message.setText("Cancelling…")
            self._job.cancel()

    def shutdown(self) -> None:
        """The window is closing: a download is cancelled and waited for."""
        if self._job is not None:
            self._job.cancel()
            Job.wait_all()
