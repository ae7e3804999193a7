"""The My digits page and its controller: the user's own digits, saved in one click, and fine-tuning on them.

``SamplesPage`` is a fixed composition: on the left one row per digit (its count and the
thumbnails of its samples; select them, Delete removes), on the right what can be done
with them (Import folder…, Export folder…, Fine-tune, a note when some digit has too few)
and, after a fine-tune, its figures before and after with Keep / Revert.

``SamplesController(window)`` owns the ``SampleStore``: a click on a digit's bar on the
Draw page (or Shift+digit) saves the canvas as a sample of that digit, with an Undo in
the status bar; import and export run as ``Job``s; a fine-tune is a run of the window's
``TrainController`` driven by a ``FineTuneRun`` (the ``FineTuner`` shaped like a Trainer),
so it has the Train page's live dashboard, reads the canvas as it learns, and ends in the
same Keep (a new model file, the run marked kept in the run history) or Revert.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEvent, QObject, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from digitpad.core.finetune import (
    FineTuneConfig,
    FineTuneResult,
    FineTuner,
    FoldRecord,
    SampleSet,
    TooFewSamples,
    check_samples,
    read_samples,
)
from digitpad.core.samples import DIGITS, SampleError, SampleStore
from digitpad.core.train import run_size

THUMB = 40  # pixels: a sample's thumbnail
UNDO_MS = 12000  # the status bar's Undo stays this long after a save or a delete
MAX_LISTED = 12  # skipped files listed in a message, then "and N more"


class FineTuneRun:
    """A fine-tune shaped like a ``Trainer`` for the training worker: its records, ``stop()``, ``result``.

    Reads the samples (in the worker thread), yields the ``FineTuner``'s trainer records and
    keeps its ``FoldRecord``s in ``folds_done``; ``details`` is the ``FineTuneResult``.
    """

    def __init__(self, model, samples_root, mnist, config: FineTuneConfig):
        samples = read_samples(samples_root)
        self.tuner = FineTuner(model, samples, mnist, config)
        self.model = model
        self.skipped = samples.skipped
        self.folds_done: list[FoldRecord] = []
        n_mix = config.steps * config.batch_size
        size = run_size(self.tuner.train_config, n_mix)
        self.total_steps, self.steps_per_epoch = size.total_steps, size.steps_per_epoch
        self.train_labels, self.val_labels = range(n_mix), ()

    def __iter__(self):
        for record in self.tuner:
            if isinstance(record, FoldRecord):
                self.folds_done.append(record)
            else:
                yield record

    def stop(self) -> None:
        self.tuner.stop()

    @property
    def result(self):
        return self.tuner.result.train

    @property
    def details(self) -> FineTuneResult | None:
        return self.tuner.result


def describe_shortfall(counts: dict[int, int], min_per_digit: int) -> str:
    """'' when every digit that has samples has enough, else the fine-tuner's word on what to add."""
    labels = np.repeat(np.arange(10, dtype=np.uint8), [counts.get(d, 0) for d in DIGITS])
    try:
        check_samples(SampleSet(np.zeros((len(labels), 0, 0), np.uint8), labels), min_per_digit)
    except TooFewSamples as e:
        return str(e)[0].upper() + str(e)[1:] + "."
    except SampleError:  # none at all: nothing is missing yet
        return ""
    return ""


def _percent(x) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.1%}"


def _listed(lines: list[str]) -> str:
    shown = lines[:MAX_LISTED]
    more = f"\n… and {len(lines) - MAX_LISTED} more" if len(lines) > MAX_LISTED else ""
    return "\n".join(shown) + more


class DigitRow(QWidget):
    """One digit: its count and a strip of thumbnails (several can be selected)."""

    def __init__(self, digit: int, parent=None):
        super().__init__(parent)
        self.digit = digit
        self.setObjectName(f"samples_row_{digit}")
        self.label = QLabel()
        self.label.setObjectName(f"samples_count_{digit}")
        self.label.setFixedWidth(64)
        self.label.setAlignment(Qt.AlignCenter)
        self.list = QListWidget()
        self.list.setObjectName(f"samples_list_{digit}")
        self.list.setAccessibleName(f"Your samples of {digit}")
        self.list.setViewMode(QListWidget.IconMode)
        self.list.setFlow(QListWidget.LeftToRight)
        self.list.setWrapping(False)
        self.list.setMovement(QListWidget.Static)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setSpacing(2)
        self.list.setSelectionMode(QAbstractItemView.ExtendedSelection)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAsNeeded)
        self.list.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setFixedHeight(THUMB + 24)  # ten rows fit a 800-high window
        self.list.setToolTip("Double-click (or Enter) to see it on the Draw page, as the network sees it; "
                             "Delete removes the selected ones")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.label)
        lay.addWidget(self.list, 1)
        self.set_samples([])

    def set_samples(self, samples) -> None:
        self.list.clear()
        for s in samples:
            item = QListWidgetItem(QIcon(str(s.path)), "")
            item.setData(Qt.UserRole, s.id)
            item.setToolTip(str(s.path))
            self.list.addItem(item)
        n = len(samples)
        self.label.setText(f"<span style='font-size: 20pt; font-weight: 600;'>{self.digit}</span><br>{n}")

    def selected_ids(self) -> list[str]:
        return [item.data(Qt.UserRole) for item in self.list.selectedItems()]


class SamplesPage(QWidget):
    """The My digits page: a row per digit | import, export, fine-tune and its before/after."""

    sample_opened = Signal(str)  # a sample's id, double-clicked or Enter
    delete_requested = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("page_samples")
        self.rows = {d: DigitRow(d) for d in DIGITS}
        grid = QWidget()
        grid.setObjectName("samples_grid")
        gl = QVBoxLayout(grid)
        gl.setContentsMargins(8, 8, 8, 8)
        gl.setSpacing(2)
        for row in self.rows.values():
            row.list.itemActivated.connect(lambda item: self.sample_opened.emit(item.data(Qt.UserRole)))
            gl.addWidget(row)
        gl.addStretch(1)
        self.grid_scroll = QScrollArea()
        self.grid_scroll.setObjectName("samples_scroll")
        self.grid_scroll.setWidget(grid)
        self.grid_scroll.setWidgetResizable(True)
        self.grid_scroll.setFrameShape(QFrame.NoFrame)

        self.summary = QLabel()
        self.summary.setObjectName("samples_summary")
        self.summary.setWordWrap(True)
        self.note = QLabel()
        self.note.setObjectName("samples_note")
        self.note.setWordWrap(True)
        self.import_button = QPushButton("Import folder…")
        self.import_button.setObjectName("samples_import")
        self.import_button.setToolTip("Add pictures from a folder laid out as DIR/<digit>/*.png")
        self.export_button = QPushButton("Export folder…")
        self.export_button.setObjectName("samples_export")
        self.export_button.setToolTip("Copy your digits to a folder as DIR/<digit>/*.png")
        self.delete_button = QPushButton("Delete selected")
        self.delete_button.setObjectName("samples_delete")
        self.delete_button.setToolTip("Remove the selected samples (Delete); Undo in the status bar brings them back")
        self.delete_button.clicked.connect(self.delete_requested)
        self.finetune_button = QPushButton("Fine-tune on my digits")
        self.finetune_button.setObjectName("samples_finetune")
        self.finetune_button.setToolTip("Train the current model a little on your digits, with MNIST replayed so "
                                        "it forgets nothing")
        self.result = QLabel()
        self.result.setObjectName("samples_result")
        self.result.setWordWrap(True)
        self.result.setTextFormat(Qt.RichText)
        self.keep_button = QPushButton("Keep")
        self.keep_button.setObjectName("samples_keep")
        self.revert_button = QPushButton("Revert")
        self.revert_button.setObjectName("samples_revert")
        choice = QHBoxLayout()
        choice.addWidget(self.keep_button)
        choice.addWidget(self.revert_button)
        self.result_box = QWidget()
        self.result_box.setObjectName("samples_result_box")
        rl = QVBoxLayout(self.result_box)
        rl.setContentsMargins(0, 8, 0, 0)
        rl.addWidget(self.result)
        rl.addLayout(choice)
        self.result_box.hide()
        hint = QLabel("Save a drawing as one of your digits on the Draw page: click the right digit's bar, "
                      "or press Shift+digit.")
        hint.setObjectName("samples_hint")
        hint.setWordWrap(True)

        side = QWidget()
        side.setObjectName("samples_side")
        sl = QVBoxLayout(side)
        sl.setContentsMargins(8, 8, 8, 8)
        sl.addWidget(self.summary)
        sl.addWidget(hint)
        files = QHBoxLayout()
        files.addWidget(self.import_button)
        files.addWidget(self.export_button)
        sl.addLayout(files)
        sl.addWidget(self.delete_button)
        line = QFrame()
        line.setFrameShape(QFrame.HLine)
        sl.addWidget(line)
        sl.addWidget(self.finetune_button)
        sl.addWidget(self.note)
        sl.addWidget(self.result_box)
        sl.addStretch(1)
        side.setMinimumWidth(280)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("samples_splitter")
        self.splitter.addWidget(self.grid_scroll)
        self.splitter.addWidget(side)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([800, 340])
        self.splitters = (self.splitter,)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.splitter)

        for row in self.rows.values():
            row.list.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:
        """Delete or Backspace in a digit's list deletes the selection (not the canvas's Clear, which shares Delete)."""
        if event.type() in (QEvent.ShortcutOverride, QEvent.KeyPress) \
                and event.key() in (Qt.Key_Delete, Qt.Key_Backspace) and event.modifiers() == Qt.NoModifier:
            event.accept()
            if event.type() == QEvent.KeyPress:
                self.delete_requested.emit()
            return True
        return super().eventFilter(obj, event)

    def selected_ids(self) -> list[str]:
        return [i for row in self.rows.values() for i in row.selected_ids()]

    def show_samples(self, samples, counts: dict[int, int], note: str) -> None:
        for d, row in self.rows.items():
            row.set_samples([s for s in samples if s.digit == d])
        total = sum(counts.values())
        taught = sum(1 for n in counts.values() if n)
        self.summary.setText(f"<b>{total} of your digits</b>" + (f" · {taught} digit{'s' if taught != 1 else ''} taught")
                             if total else "<b>No digits of yours yet.</b>")
        self.note.setText(note)
        self.note.setVisible(bool(note))

    def show_result(self, outcome) -> None:
        """A fine-tune's figures before and after, side by side, and the choice."""
        r: FineTuneResult = outcome.details
        held = f"held out, {r.folds}-fold" if r.folds else "not held out: too few to hold some back"
        rows = [(f"Your digits ({held})", r.samples_accuracy_before, r.samples_accuracy_after),
                ("MNIST test set", outcome.old_test_accuracy, outcome.test_accuracy)]
        body = "".join(f"<tr><td>{html.escape(name)}</td><td align='right'>&nbsp;{_percent(a)}&nbsp;</td>"
                       f"<td align='right'>&nbsp;<b>{_percent(b)}</b></td></tr>" for name, a, b in rows)
        head = ("<b>Fine-tune stopped.</b>" if outcome.stopped else
                f"<b>Fine-tuned</b> on {r.samples} of your digits in {r.seconds:.1f} s.")
        if outcome.diverged:
            head = f"<b>The fine-tune went wrong:</b> {html.escape(outcome.message)}"
        self.result.setText(f"{head}<table><tr><td></td><td align='right'>before</td>"
                            f"<td align='right'>after</td></tr>{body}</table>"
                            "Try it on the Draw page, then keep it or revert.")
        self.keep_button.setEnabled(outcome.model.is_finite())
        self.result_box.show()


class SamplesController(QObject):
    """The user's digits: saving from the Draw page, the My digits page, and fine-tuning on them."""

    saved = Signal(str)  # the new sample's id
    changed = Signal()  # samples added or removed

    def __init__(self, window, store: SampleStore | None = None, config: FineTuneConfig = FineTuneConfig()):
        super().__init__(window)
        self.window = window
        self.store = store if store is not None else SampleStore()
        self.config = config
        self.page: SamplesPage = window.samples_page
        self.retrain = window.retrain
        self.job = None  # the import or export going on
        self.finetuning = False  # the training run going (or waiting for Keep / Revert) is a fine-tune
        self._undo = None  # what the status bar's Undo does

        self.action_finetune = QAction("&Fine-tune on my digits", self)
        self.action_finetune.setObjectName("action_finetune")
        self.action_finetune.setStatusTip("Teach the current model your handwriting (My digits page)")
        self.action_finetune.triggered.connect(lambda: self.finetune())
        window.addAction(self.action_finetune)
        self.save_actions = []
        for d in DIGITS:
            act = QAction(f"Save the drawing as a {d}", self)
            act.setObjectName(f"action_save_sample_{d}")
            act.setShortcut(QKeySequence(f"Shift+{d}"))
            act.triggered.connect(lambda checked=False, d=d: self.save_sample(d))
            window.addAction(act)
            self.save_actions.append(act)

        self.undo_button = QToolButton()
        self.undo_button.setObjectName("sample_undo")
        self.undo_button.setText("Undo")
        self.undo_button.hide()
        self.undo_button.clicked.connect(self.undo)
        window.statusBar().insertPermanentWidget(0, self.undo_button)
        self._undo_timer = QTimer(self)
        self._undo_timer.setSingleShot(True)
        self._undo_timer.timeout.connect(self._drop_undo)

        window.probabilities.digit_clicked.connect(self.save_sample)
        window.probabilities.setToolTip("Click a digit's bar to save the drawing as that digit (Shift+digit)")
        window.probabilities.setCursor(Qt.PointingHandCursor)
        p = self.page
        p.import_button.clicked.connect(self.choose_import)
        p.export_button.clicked.connect(self.choose_export)
        p.delete_requested.connect(self.delete_selected)
        p.finetune_button.clicked.connect(lambda: self.finetune())
        p.sample_opened.connect(self.show_sample)
        p.keep_button.clicked.connect(self.retrain.keep)
        p.revert_button.clicked.connect(self.retrain.revert)
        self.retrain.run_finished.connect(self._on_run_finished)
        self.retrain.run_failed.connect(self._on_run_failed)
        self.retrain.kept.connect(lambda _: self._end_finetune())
        self.retrain.reverted.connect(self._end_finetune)
        self.retrain.run_started.connect(self._on_run_started)
        window.page_changed.connect(self._on_page_changed)
        self.refresh()

    # ---- the list ----------------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the sample folder again and show it."""
        try:
            samples = self.store.samples()
        except OSError as e:
            samples = []
            self.window.show_status(f"Cannot read your digits in {self.store.root}: {e}", 10000)
        counts = dict.fromkeys(DIGITS, 0)
        for s in samples:
            counts[s.digit] += 1
        self.counts = counts
        self.page.show_samples(samples, counts, describe_shortfall(counts, self.config.min_per_digit))
        self._update()

    def _update(self) -> None:
        total = sum(self.counts.values())
        ready = total > 0 and not describe_shortfall(self.counts, self.config.min_per_digit)
        busy = self.retrain.is_running or self.retrain.outcome is not None
        self.page.finetune_button.setEnabled(ready and not self.retrain.is_running)
        self.action_finetune.setEnabled(not self.retrain.is_running)
        self.page.export_button.setEnabled(total > 0 and self.job is None)
        self.page.import_button.setEnabled(self.job is None)
        if not busy and self.finetuning:
            self.finetuning = False

    def _on_page_changed(self, page) -> None:
        on_draw = page is self.window.draw_page
        for act in self.save_actions:
            act.setEnabled(on_draw)
        if page is self.page:
            self.refresh()

    # ---- saving from the Draw page -----------------------------------------------------------

    def save_sample(self, digit: int) -> str | None:
        """Keep what the canvas shows (its bitmap and strokes, or the opened picture) as a sample of ``digit``."""
        canvas = self.window.canvas
        if canvas.picture is not None:
            picture, strokes = canvas.picture, None
        elif canvas.is_empty():
            self.window.show_status("Nothing to save: the canvas is blank. Draw a digit first.", 5000)
            return None
        else:
            picture, strokes = canvas.bitmap(), canvas.strokes
        try:
            sample_id = self.store.add(digit, picture, strokes)
        except (SampleError, OSError, ValueError) as e:
            self.window.message("warning", "Save as my digit", f"Could not save the sample in {self.store.root}:\n{e}")
            return None
        self.refresh()
        n = sum(self.counts.values())
        self._offer_undo(f"Saved as a {digit} · {n} of your digits", lambda: self._remove([sample_id]))
        self.saved.emit(sample_id)
        self.changed.emit()
        return sample_id

    def _offer_undo(self, text: str, undo) -> None:
        self._undo = undo
        self.undo_button.setToolTip(f"Undo: {text}")
        self.undo_button.show()
        self._undo_timer.start(UNDO_MS)
        self.window.show_status(text, UNDO_MS)

    def _drop_undo(self) -> None:
        self._undo = None
        self.undo_button.hide()

    def undo(self) -> None:
        """Take back the last save or delete."""
        undo, self._undo = self._undo, None
        self._drop_undo()
        self._undo_timer.stop()
        if undo is not None:
            undo()
            self.refresh()
            self.changed.emit()

    def _remove(self, ids) -> None:
        for sample_id in ids:
            try:
                self.store.remove(sample_id)
            except (SampleError, OSError) as e:
                self.window.show_status(f"Could not remove {sample_id}: {e}", 8000)
                return
        self.window.show_status("Removed" if len(ids) == 1 else f"Removed {len(ids)} samples", 4000)

    # ---- the page's actions ------------------------------------------------------------------

    def delete_selected(self) -> int:
        """Remove the selected samples; Undo puts them back (their pictures and strokes are held until then)."""
        ids = self.page.selected_ids()
        kept = []
        for sample_id in ids:
            try:
                kept.append((sample_id, self.store.picture(sample_id), self.store.strokes(sample_id)))
                self.store.remove(sample_id)
            except (SampleError, OSError, ValueError) as e:
                self.window.show_status(f"Could not delete {sample_id}: {e}", 8000)
        if not kept:
            return 0
        self.refresh()

        def put_back():
            for sample_id, picture, strokes in kept:
                self.store.add(int(sample_id[0]), picture, strokes)

        n = sum(self.counts.values())
        what = "a sample" if len(kept) == 1 else f"{len(kept)} samples"
        self._offer_undo(f"Deleted {what} · {n} of your digits", put_back)
        self.changed.emit()
        return len(kept)

    def show_sample(self, sample_id: str) -> None:
        """The sample on the Draw page's canvas, read as the network reads it."""
        try:
            picture = self.store.picture(sample_id)
        except (SampleError, OSError, ValueError) as e:
            self.window.show_status(f"Cannot show {sample_id}: {e}", 8000)
            return
        self.window.canvas.set_picture(picture)
        self.window.show_page(self.window.draw_page)
        self.window.show_status(f"Your sample of {sample_id[0]}; the network reads it as shown", 6000)

    def choose_import(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Import digits from a folder (DIR/<digit>/*.png)",
                                                  str(Path.home()))
        if folder:
            self.import_folder(folder)

    def choose_export(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export your digits to a folder", str(Path.home()))
        if folder:
            self.export_folder(folder)

    def import_folder(self, folder):
        """Import ``DIR/<digit>/*`` in a job; files that cannot be read are listed in a message."""
        store = self.store
        return self._start_job(lambda progress, cancel: store.import_folder(folder), self._imported, "Import folder")

    def export_folder(self, folder):
        """Copy every sample to ``folder/<digit>/`` in a job."""
        store = self.store
        return self._start_job(lambda progress, cancel: (folder, store.export_folder(folder)), self._exported,
                               "Export folder")

    def _start_job(self, fn, done, title: str):
        from digitpad.qt.worker import Job

        if self.job is not None:
            return None

        def failed(message):
            self.window.message("warning", title, message)

        def finished():
            self.job = None
            self.refresh()

        self.job = Job(fn, done, failed, on_finished=finished, expected=(SampleError, OSError))
        self._update()
        return self.job

    def _imported(self, report) -> None:
        self.refresh()
        added = f"Imported {len(report.added)} digit{'s' if len(report.added) != 1 else ''}"
        if report.skipped:
            self.window.message("warning", "Import folder",
                                f"{added}; these could not be used:\n{_listed(report.skipped)}",
                                name="samples_skipped")
        else:
            self.window.show_status(f"{added} · {sum(self.counts.values())} of your digits", 6000)
        self.changed.emit()

    def _exported(self, result) -> None:
        folder, n = result
        self.window.show_status(f"Exported {n} digit{'s' if n != 1 else ''} to {folder}", 8000)

    # ---- fine-tuning -------------------------------------------------------------------------

    def finetune(self, mnist=None, config: FineTuneConfig | None = None) -> bool:
        """Start fine-tuning the current model on the samples (``mnist``: replay and test data, else MNIST on disk)."""
        config = config or self.config
        self.refresh()
        model = self.window.current_model
        problem = None
        if self.retrain.is_running:
            problem = "A training run is going: fine-tune when it has ended."
        elif model is None:
            problem = "No model to fine-tune: load one first."
        elif not sum(self.counts.values()):
            problem = ("No digits of yours yet: on the Draw page, click the right digit's bar (or Shift+digit) "
                       "to save a drawing, or import a folder.")
        else:
            problem = describe_shortfall(self.counts, config.min_per_digit) or None
        if problem is not None:
            self.window.show_page(self.page)
            self.page.note.setText(problem)
            self.page.note.show()
            self.window.show_status(problem, 8000)
            return False
        root = self.store.root
        self.page.result_box.hide()
        self.finetuning = True
        started = self.retrain.start(config.train_config(model), mnist=mnist, source="finetune",
                                     make_trainer=lambda _, data: FineTuneRun(model, root, data, config))
        if started:
            self.window.show_page(self.window.train_page)  # the live dashboard, your drawing read as it learns
            self.window.show_status(f"Fine-tuning on {sum(self.counts.values())} of your digits…")
        elif self.retrain.is_running:
            self.finetuning = False
        self._update()
        return started

    def _on_run_started(self, info) -> None:
        self._update()
        if self.finetuning:
            self.window.show_status(f"Fine-tuning {'-'.join(map(str, info.layer_sizes))} on your "
                                    f"{sum(self.counts.values())} digits with MNIST replayed: "
                                    f"{info.total_steps:,} steps, then the held-out check")

    def _on_run_finished(self, outcome) -> None:
        self._update()
        if not isinstance(outcome.details, FineTuneResult):
            self.finetuning = False
            return
        self.finetuning = True
        self.page.show_result(outcome)
        self.window.show_page(self.page)
        r = outcome.details
        self.window.show_status(f"Fine-tuned: your digits {_percent(r.samples_accuracy_before)} → "
                                f"{_percent(r.samples_accuracy_after)}, MNIST {_percent(outcome.old_test_accuracy)} → "
                                f"{_percent(outcome.test_accuracy)}. Keep or revert?")

    def _on_run_failed(self, message: str) -> None:
        if self.finetuning:
            self.page.note.setText(f"The fine-tune failed: {message}")
            self.page.note.show()
        self.finetuning = False
        self._update()

    def _end_finetune(self) -> None:
        self.finetuning = False
        self.page.result_box.hide()
        self._update()
