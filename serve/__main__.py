"""python -m serve: see serve/cli.py."""

from __future__ import annotations

import sys

from serve.cli import main

sys.exit(main())
