"""`python -m digitpad`: same as the `digitpad` command."""

from digitpad.cli import main

raise SystemExit(main())
