"""``python -m stack``: same as ``adamcu``."""

import sys

from stack.cli import main

sys.exit(main())
