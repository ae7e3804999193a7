"""The pyqtgraph panes of the main window, and the colours they share (light and dark themes).

Every pane creates its plot items once and updates them in place (``setOpts``,
``setData``, ``setImage(autoLevels=False)``); ``apply_theme`` recolours them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Theme:
    """Colours of one theme, as '#rrggbb' strings (pyqtgraph and Qt both take them)."""

    name: str
    background: str  # plot backgrounds
    foreground: str  # axes and text
    muted: str  # secondary text
    bar: str  # ordinary bars
    accent: str  # the winner
    negative: str  # negative scores
    window: str  # window background (Qt palette)
    base: str  # input fields (Qt palette)
    button: str


THEMES = {
    "dark": Theme("dark", background="#15171a", foreground="#d7dae0", muted="#8b919c", bar="#4f6f96",
                  accent="#ffb547", negative="#b0584f", window="#202327", base="#15171a", button="#2c3035"),
    "light": Theme("light", background="#ffffff", foreground="#23262b", muted="#6b717c", bar="#8fb0d6",
                   accent="#e07800", negative="#d08070", window="#f1f2f4", base="#ffffff", button="#e4e6ea"),
}
DEFAULT_THEME = "dark"


def style_plot(plot_item, theme: Theme) -> None:
    """Recolour a PlotItem's axes and title for ``theme``."""
    import pyqtgraph as pg

    pen = pg.mkPen(theme.muted)
    for name in ("left", "bottom", "right", "top"):
        axis = plot_item.getAxis(name)
        axis.setPen(pen)
        axis.setTextPen(pg.mkPen(theme.foreground))


def quiet_plot(plot_item) -> None:
    """A PlotItem that is a display, not an explorer: no mouse pan/zoom, no menu, no buttons."""
    plot_item.setMouseEnabled(x=False, y=False)
    plot_item.setMenuEnabled(False)
    plot_item.hideButtons()
    plot_item.vb.setDefaultPadding(0.0)


def bar_labels(plot_item, theme: Theme, n: int = 10) -> list:
    """One text item above each of ``n`` bars at x = 0 … n-1, added to ``plot_item``; set their text later."""
    import pyqtgraph as pg

    labels = []
    for i in range(n):
        t = pg.TextItem("", anchor=(0.5, 1.0), color=theme.foreground)
        t.setPos(i, 0.0)
        plot_item.addItem(t)
        labels.append(t)
    return labels
