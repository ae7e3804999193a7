"""Models shipped with digitpad (installed as the package data `digitpad.models`)."""
