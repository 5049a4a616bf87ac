"""``python -m visualize``: see visualize/cli.py."""

from __future__ import annotations

from visualize.cli import main

raise SystemExit(main())
