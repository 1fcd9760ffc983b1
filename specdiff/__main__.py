"""``python -m specdiff``: the same as the ``specdiff`` console command."""

from specdiff.cli import main

raise SystemExit(main())
