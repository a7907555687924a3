"""``python -m trainer.worker``: same as ``adamcu-worker``."""

import sys

from trainer.worker.main import main

sys.exit(main())
