"""The PySide6 + pyqtgraph desktop app: a thin layer over digitpad.core."""
