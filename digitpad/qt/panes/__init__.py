"""The pyqtgraph panes of the main window."""
