"""``python -m oracle``: same as ``adamcu-oracle``."""

import sys

from oracle.cli import main

sys.exit(main())
