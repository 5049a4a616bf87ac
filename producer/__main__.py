"""`python -m producer`: see producer/cli.py and `python -m producer --help`."""

from __future__ import annotations

from producer.cli import main

raise SystemExit(main())
