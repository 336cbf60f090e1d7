"""``python -m fleetsafe`` = the ``fleetsafe`` command."""

from fleetsafe.cli import main

raise SystemExit(main())
