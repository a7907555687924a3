"""``torchrun ... -m trainer.distributed.run.run``: see :mod:`trainer.distributed.run.run.run`."""

import sys

from trainer.distributed.run.run.run import main

sys.exit(main())
