"""digitpad: draw a digit, watch a NumPy neural network read it, retrain it and see it learn."""

__version__ = "0.1.0"
