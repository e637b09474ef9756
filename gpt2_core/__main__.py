"""Entry point of `python -m gpt2_core` (see cli.py)."""

import sys

from gpt2_core.cli import main

sys.exit(main())
