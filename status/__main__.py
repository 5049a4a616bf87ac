"""``python -m status``: see status/cli.py."""

from __future__ import annotations

from status.cli import main

raise SystemExit(main())
