"""The Runs page: the run history as a table, and up to six runs overlaid in one colour each.

The table lists every recorded run (name, date, activation, layers, optimiser, learning
rate, epochs, test accuracy, duration, how it ended, kept); it can be sorted, and runs
renamed (edit the name cell or F2) and deleted. Ticking runs overlays them: loss,
accuracy, per-layer gradient norm on a log axis, the first layer's gradient over the
last's, and the dead (or saturated) fraction per layer. A run keeps its colour in every
plot; layers of one run are told apart by the line's dash. The x axis is steps, epochs
or seconds, and a slider smooths the curves as TensorBoard does. Double-clicking a run
whose model was kept asks the window to load that model.

Runs are read from disk (``core.runs``) when the page is shown or told to refresh; a
ticked run's curves are read once and kept until its files change.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QColor, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSlider,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from digitpad.core.runs import Curves, delete_run, list_runs, load_curves, rename_run, smooth
from digitpad.core.train import TrainConfig, run_size
from digitpad.qt.panes import DEFAULT_THEME, THEMES, Theme, style_plot

MAX_COMPARED = 6
RUN_COLOURS = ["#4e9af1", "#f28e2b", "#59c36a", "#e15759", "#b07aa1", "#edc948"]  # one per ticked run
LAYER_DASHES = [Qt.SolidLine, Qt.DashLine, Qt.DotLine, Qt.DashDotLine, Qt.DashDotDotLine]
COLUMNS = ["name", "started", "activation", "layers", "optimiser", "lr", "epochs", "test accuracy", "time",
           "ended", "kept"]
X_AXES = ("steps", "epochs", "seconds")


class _SortItem(QTableWidgetItem):
    """A table cell that sorts by a number (or any key) rather than by its text."""

    def __init__(self, text: str, key):
        super().__init__(text)
        self.key = key

    def __lt__(self, other):
        if isinstance(other, _SortItem):
            return self.key < other.key
        return super().__lt__(other)


def _cell(text: str, key=None, editable: bool = False) -> QTableWidgetItem:
    item = _SortItem(text, key if key is not None else text)
    flags = Qt.ItemIsSelectable | Qt.ItemIsEnabled
    if editable:
        flags |= Qt.ItemIsEditable
    item.setFlags(flags)
    return item


def _plot(name: str, title: str, log_y: bool = False) -> pg.PlotWidget:
    w = pg.PlotWidget()
    w.setObjectName(name)
    w.setMinimumSize(160, 110)
    item = w.getPlotItem()
    item.setTitle(title, size="9pt")
    item.setLogMode(y=log_y)
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setMenuEnabled(False)
    item.setClipToView(True)
    item.setDownsampling(auto=True, mode="peak")
    for axis in ("left", "bottom"):
        item.getAxis(axis).enableAutoSIPrefix(False)
    return w


class RunsPage(QWidget):
    """The run history and its comparison plots (object name ``page_runs``)."""

    model_requested = Signal(str)  # path of a kept run's model, on double-click
    status = Signal(str)  # a short message for the window's status bar

    def __init__(self, parent=None, theme: Theme = THEMES[DEFAULT_THEME], root=None):
        super().__init__(parent)
        self.setObjectName("page_runs")
        self.root = root
        self.theme = theme
        self.runs = {}  # id -> Run
        self.ticked: list[str] = []  # ids, in the order they were ticked (fixes their colours)
        self._curves: dict[str, tuple[float, Curves]] = {}  # id -> (mtime of curves file, curves)
        self._items: dict[str, list] = {}  # id -> plot items drawn for it

        # --- the table
        self.table = QTableWidget(0, len(COLUMNS) + 1)
        self.table.setObjectName("runs_table")
        self.table.setHorizontalHeaderLabels(["", *COLUMNS])
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditKeyPressed | QAbstractItemView.SelectedClicked)
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        self.table.itemChanged.connect(self._on_item_changed)
        self.table.cellDoubleClicked.connect(self._on_double_click)
        self.table.itemSelectionChanged.connect(self._update_buttons)

        self.rename_button = QPushButton("Rename")
        self.rename_button.setObjectName("runs_rename")
        self.rename_button.clicked.connect(self._rename_selected)
        self.delete_button = QPushButton("Delete…")
        self.delete_button.setObjectName("runs_delete")
        self.delete_button.clicked.connect(self._delete_selected)
        self.load_button = QPushButton("Load model")
        self.load_button.setObjectName("runs_load")
        self.load_button.setToolTip("Read with this run's model (only for runs whose model was kept)")
        self.load_button.clicked.connect(self._load_selected)
        self.hint = QLabel()
        self.hint.setObjectName("runs_hint")
        self.hint.setWordWrap(True)
        buttons = QHBoxLayout()
        for b in (self.rename_button, self.delete_button, self.load_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.table, 1)
        lv.addLayout(buttons)
        lv.addWidget(self.hint)

        # --- the plots
        self.x_axis = QComboBox()
        self.x_axis.setObjectName("runs_x_axis")
        self.x_axis.addItems(X_AXES)
        self.x_axis.currentIndexChanged.connect(self._replot)
        self.smoothing = QSlider(Qt.Horizontal)
        self.smoothing.setObjectName("runs_smoothing")
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(60)
        self.smoothing.setToolTip("Smoothing of the step curves (an exponential moving average, as TensorBoard's)")
        self.smoothing_label = QLabel()
        self.smoothing.valueChanged.connect(self._replot)
        controls = QHBoxLayout()
        controls.addWidget(QLabel("x axis"))
        controls.addWidget(self.x_axis)
        controls.addSpacing(16)
        controls.addWidget(QLabel("smoothing"))
        controls.addWidget(self.smoothing, 1)
        controls.addWidget(self.smoothing_label)
        self.legend = QLabel()
        self.legend.setObjectName("runs_legend")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.RichText)

        self.plots = {
            "loss": _plot("runs_loss", "loss (training batches)"),
            "accuracy": _plot("runs_accuracy", "accuracy: batches (line), validation (dots)"),
            "grad_norm": _plot("runs_grad_norm", "gradient norm per layer", log_y=True),
            "grad_ratio": _plot("runs_grad_ratio", "first layer's gradient / output layer's", log_y=True),
            "dead": _plot("runs_dead", "dead or saturated units per layer"),
            "lr": _plot("runs_lr", "learning rate"),
        }
        grid = QGridLayout()
        for k, w in enumerate(self.plots.values()):
            grid.addWidget(w, k // 2, k % 2)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addLayout(controls)
        rv.addWidget(self.legend)
        rv.addLayout(grid, 1)

        self.splitter = QSplitter(Qt.Horizontal)
        self.splitter.setObjectName("runs_splitter")
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 2)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([560, 740])
        self.splitters = [self.splitter]  # sizes the window remembers
        self.finding = QLabel()
        self.finding.setObjectName("runs_finding")
        self.finding.setWordWrap(True)
        self.finding.setTextFormat(Qt.RichText)
        self.finding.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(self.finding)
        layout.addWidget(self.splitter, 1)
        QShortcut(QKeySequence(Qt.Key_Delete), self.table, self._delete_selected, context=Qt.WidgetShortcut)
        self.apply_theme(theme)
        self._update_buttons()

    # ---- the table ---------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the run list again (cheap: one small file per run)."""
        runs, problems = list_runs(self.root)
        self.runs = {r.id: r for r in runs}
        self.ticked = [i for i in self.ticked if i in self.runs]
        blocker = QSignalBlocker(self.table)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(runs))
        for row, run in enumerate(reversed(runs)):  # newest first until the user sorts
            self._fill_row(row, run)
        self.table.setSortingEnabled(True)
        del blocker
        self._sync_ticks()
        if problems:
            self.hint.setText(f"{len(problems)} run folder(s) could not be read and are not listed: "
                              + "; ".join(problems[:3]) + (" …" if len(problems) > 3 else ""))
        elif not runs:
            self.hint.setText("No runs yet. Every training run (Train page, Train ▸ Experiments, or "
                              "`digitpad train`) is recorded here.")
        else:
            self.hint.setText(f"Tick up to {MAX_COMPARED} runs to compare them.")
        self._update_buttons()
        self._replot()

    def _fill_row(self, row: int, run) -> None:
        info, c = run.info, run.config
        tick = _cell("", key=0)
        tick.setFlags(Qt.ItemIsUserCheckable | Qt.ItemIsEnabled | Qt.ItemIsSelectable)
        tick.setCheckState(Qt.Checked if run.id in self.ticked else Qt.Unchecked)
        tick.setData(Qt.UserRole, run.id)
        acc, secs = info.get("test_accuracy"), info.get("seconds")
        layers = info.get("layer_sizes") or []
        cells = [
            _cell(run.name, key=run.name.lower(), editable=True),
            _cell(str(info.get("started") or "")[:16].replace("T", " "), key=str(info.get("started") or "")),
            _cell(str(c.get("activation", ""))),
            _cell("-".join(map(str, layers)), key=len(layers)),
            _cell(str(c.get("optimizer", ""))),
            _cell(f"{c.get('lr', 0):g}", key=float(c.get("lr", 0) or 0)),
            _cell(str(info.get("epochs_done", "")), key=int(info.get("epochs_done") or 0)),
            _cell("" if acc is None else f"{acc:.2%}", key=-1.0 if acc is None else float(acc)),
            _cell("" if secs is None else f"{secs:.1f} s", key=-1.0 if secs is None else float(secs)),
            _cell(run.status),
            _cell("kept" if info.get("kept") else "", key=bool(info.get("kept"))),
        ]
        if info.get("message"):
            cells[9].setToolTip(str(info["message"]))
        if info.get("model"):
            cells[10].setToolTip(str(info["model"]))
        self.table.setItem(row, 0, tick)
        for col, item in enumerate(cells, start=1):
            item.setData(Qt.UserRole, run.id)
            self.table.setItem(row, col, item)

    def _row_id(self, row: int) -> str | None:
        item = self.table.item(row, 0)
        return None if item is None else item.data(Qt.UserRole)

    def selected_ids(self) -> list[str]:
        rows = sorted({i.row() for i in self.table.selectedIndexes()})
        return [i for i in (self._row_id(r) for r in rows) if i]

    def _update_buttons(self) -> None:
        ids = self.selected_ids()
        self.rename_button.setEnabled(len(ids) == 1)
        self.delete_button.setEnabled(bool(ids) and all(self.runs[i].status != "running" for i in ids
                                                        if i in self.runs))
        self.load_button.setEnabled(len(ids) == 1 and bool(self.runs.get(ids[0]) and
                                                           self.runs[ids[0]].info.get("model")))

    def _on_item_changed(self, item: QTableWidgetItem) -> None:
        run_id = item.data(Qt.UserRole)
        if run_id not in self.runs:
            return
        if item.column() == 0:
            self.set_ticked(run_id, item.checkState() == Qt.Checked)
        elif item.column() == 1:
            self.rename(run_id, item.text())

    def set_ticked(self, run_id: str, on: bool) -> bool:
        """Tick or untick a run for comparison; at most ``MAX_COMPARED`` at once."""
        if on and run_id not in self.ticked:
            if len(self.ticked) >= MAX_COMPARED:
                self.status.emit(f"At most {MAX_COMPARED} runs can be compared at once; untick one first.")
                self._sync_ticks()
                return False
            self.ticked.append(run_id)
        elif not on and run_id in self.ticked:
            self.ticked.remove(run_id)
        self._sync_ticks()
        self._replot()
        return True

    def _sync_ticks(self) -> None:
        blocker = QSignalBlocker(self.table)
        for row in range(self.table.rowCount()):
            item = self.table.item(row, 0)
            state = Qt.Checked if item.data(Qt.UserRole) in self.ticked else Qt.Unchecked
            if item.checkState() != state:
                item.setCheckState(state)
            colour = self._colour(item.data(Qt.UserRole))
            self.table.item(row, 1).setData(Qt.DecorationRole, _swatch(colour) if colour else None)
        del blocker

    def rename(self, run_id: str, name: str) -> bool:
        run = self.runs.get(run_id)
        if run is None:
            return False
        try:
            self.runs[run_id] = rename_run(run, name)
        except (ValueError, OSError) as e:
            self.status.emit(f"Not renamed: {e}")
            self.refresh()
            return False
        self.status.emit(f"Renamed to “{self.runs[run_id].name}”")
        self.refresh()
        return True

    def _rename_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 1:
            return
        for row in range(self.table.rowCount()):
            if self._row_id(row) == ids[0]:
                self.table.editItem(self.table.item(row, 1))
                return

    def delete(self, run_ids: list[str], confirm: bool = True) -> int:
        """Delete runs (after asking, unless ``confirm`` is False); return how many went."""
        runs = [self.runs[i] for i in run_ids if i in self.runs]
        if not runs:
            return 0
        if confirm:
            names = ", ".join(r.name for r in runs[:5]) + (" …" if len(runs) > 5 else "")
            answer = QMessageBox.question(self, "Delete runs",
                                          f"Delete {len(runs)} run(s) from the history?\n{names}\n\n"
                                          "Models that were kept stay where they are.")
            if answer != QMessageBox.Yes:
                return 0
        gone = 0
        for run in runs:
            try:
                delete_run(run)
                gone += 1
            except (ValueError, OSError) as e:
                self.status.emit(f"{run.name}: not deleted ({e})")
            self._curves.pop(run.id, None)
        self.refresh()
        self.status.emit(f"Deleted {gone} run(s)")
        return gone

    def _delete_selected(self) -> None:
        self.delete(self.selected_ids())

    def _load_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) == 1:
            self._request_model(ids[0])

    def _on_double_click(self, row: int, column: int) -> None:
        if column != 1:  # the name cell edits instead
            run_id = self._row_id(row)
            if run_id:
                self._request_model(run_id)

    def _request_model(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        path = run.info.get("model") if run else None
        if not path:
            self.status.emit(f"{run.name if run else run_id}: its model was not kept")
            return
        self.model_requested.emit(str(path))

    def set_finding(self, text: str) -> None:
        """A sentence above the plots (an experiment's finding); empty hides it."""
        self.finding.setText(text)
        self.finding.setVisible(bool(text))

    def select_runs(self, run_ids) -> None:
        """Tick exactly these runs (e.g. an experiment's arms) and show them."""
        self.refresh()
        self.ticked = [i for i in run_ids if i in self.runs][:MAX_COMPARED]
        self._sync_ticks()
        self._replot()

    # ---- the plots ---------------------------------------------------------------------

    def _colour(self, run_id: str) -> str | None:
        if run_id not in self.ticked:
            return None
        return RUN_COLOURS[self.ticked.index(run_id) % len(RUN_COLOURS)]

    def curves(self, run_id: str) -> Curves:
        run = self.runs[run_id]
        path = run.folder / "curves.jsonl"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        cached = self._curves.get(run_id)
        if cached is None or cached[0] != mtime:
            cached = (mtime, load_curves(run))
            self._curves[run_id] = cached
        return cached[1]

    def _x(self, run_id: str, curves: Curves, steps: np.ndarray, t: np.ndarray) -> np.ndarray:
        mode = self.x_axis.currentText()
        if mode == "seconds":
            return t
        if mode == "epochs":
            per_epoch = _steps_per_epoch(self.runs[run_id].info, curves)
            return steps / per_epoch
        return steps

    def _replot(self) -> None:
        weight = self.smoothing.value() / 100
        self.smoothing_label.setText(f"{weight:.2f}")
        for w in self.plots.values():
            w.getPlotItem().clear()
        self._items.clear()
        legend = []
        for run_id in self.ticked:
            run = self.runs[run_id]
            colour = self._colour(run_id)
            c = self.curves(run_id)
            legend.append(f"<span style='color:{colour}'>■</span> {run.name}")
            items = self._items.setdefault(run_id, [])
            s = c.steps
            if len(s.get("step", [])):
                x = self._x(run_id, c, s["step"], s["t"])
                items.append(self.plots["loss"].plot(x, smooth(s["loss"], weight), pen=pg.mkPen(colour, width=1.5)))
                items.append(self.plots["accuracy"].plot(x, smooth(s["acc"], weight), pen=pg.mkPen(colour, width=1)))
                items.append(self.plots["lr"].plot(x, s["lr"], pen=pg.mkPen(colour, width=1.5)))
            e = c.epochs
            if len(e.get("epoch", [])):
                xe = self._x(run_id, c, e["step"], e["t"])
                items.append(self.plots["accuracy"].plot(xe, e["val_acc"], pen=None, symbol="o", symbolSize=7,
                                                         symbolBrush=colour, symbolPen=None))
                if not len(s.get("step", [])):  # a run without step curves (scikit-learn's): its epoch losses
                    items.append(self.plots["loss"].plot(xe, e["train_loss"], pen=pg.mkPen(colour, width=1.5),
                                                         symbol="o", symbolSize=5, symbolBrush=colour))
            st = c.stats
            if st and len(st["step"]):
                xs = self._x(run_id, c, st["step"], st["t"])
                g = st["grad_norm"]
                n_layers = g.shape[1]
                for i in range(n_layers):
                    pen = pg.mkPen(colour, width=1.3, style=LAYER_DASHES[min(i, len(LAYER_DASHES) - 1)])
                    items.append(self.plots["grad_norm"].plot(xs, _positive(smooth(g[:, i], weight)), pen=pen))
                    if i < n_layers - 1:
                        items.append(self.plots["dead"].plot(xs, st["dead"][:, i], pen=pen))
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = g[:, 0] / g[:, -1]
                items.append(self.plots["grad_ratio"].plot(xs, _positive(smooth(ratio, weight)),
                                                           pen=pg.mkPen(colour, width=1.5)))
        for w in self.plots.values():
            w.getPlotItem().enableAutoRange()
            w.getPlotItem().setLabel("bottom", self.x_axis.currentText())
        for key in ("lr", "dead"):  # rates and fractions start at 0
            top = max((float(np.nanmax(i.yData)) for i in self.plots[key].getPlotItem().listDataItems()
                       if i.yData is not None and len(i.yData) and np.isfinite(i.yData).any()), default=0.0)
            if top > 0:
                self.plots[key].getPlotItem().setYRange(0.0, top * 1.1, padding=0)
        if legend:
            self.legend.setText("  ".join(legend) + "<br><span style='color:gray'>per-layer lines: solid = layer 1 "
                                "(input side), dashed = 2, dotted = 3, dash-dot = 4, …; the output layer is the "
                                "last</span>")
        else:
            self.legend.setText("<span style='color:gray'>Tick runs in the table to compare them here.</span>")

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        for w in self.plots.values():
            w.setBackground(theme.background)
            style_plot(w.getPlotItem(), theme)
            item = w.getPlotItem()
            item.setTitle(item.titleLabel.text, size="9pt", color=theme.foreground)


def _swatch(colour: str) -> QPixmap:
    """A small square of a run's colour, shown beside its name while it is compared."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor(colour))
    return pixmap


def _positive(a: np.ndarray) -> np.ndarray:
    """Values for a log axis: non-positive ones become NaN (a gap) instead of -inf."""
    a = np.array(a, dtype=np.float64)
    a[~(a > 0)] = np.nan
    return a


def _steps_per_epoch(info: dict, curves: Curves) -> float:
    e = curves.epochs
    if len(e.get("epoch", [])) and e["epoch"][0] > 0:
        return float(e["step"][0] / e["epoch"][0])
    steps, epochs = info.get("steps") or 0, info.get("epochs_done") or 0
    if steps and epochs:
        return steps / epochs
    try:
        return float(run_size(TrainConfig.from_dict(info.get("config") or {})).steps_per_epoch)
    except (TypeError, ValueError):  # settings of another digitpad version
        return 1.0
