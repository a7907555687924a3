"""The ``adamcu gpu-bench`` settings and command-line flags, without torch, so that the
``adamcu`` parser (stack/cli.py) and ``python -m trainer.bench.gpu`` share one definition."""

from __future__ import annotations

import argparse
from typing import NamedTuple

from trainer.nets.catalog import MODEL_NAMES

SETTINGS = {  # name -> (bf16 autocast, channels_last)
    "fp32": (False, False),
    "fp32-channels-last": (False, True),
    "bf16": (True, False),
    "bf16-channels-last": (True, True),
}


class StepShape(NamedTuple):
    """The input of a measured step: images of ``height`` x ``width`` with ``classes``."""

    height: int
    width: int
    classes: int


def model_name(text: str) -> str:
    """``text`` if it names a network (``trainer/nets/catalog.py``) or a user's function."""
    if text in MODEL_NAMES or ":" in text:
        return text
    raise argparse.ArgumentTypeError(
        f"unknown model {text!r}; choose one of {', '.join(MODEL_NAMES)} or package.module:function"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="outputs/gpu_bench.json")
    p.add_argument(
        "--model",
        default="deeplabv2_r101",
        type=model_name,
        help=f"the network: {', '.join(MODEL_NAMES)} (the README's model list), or your "
        "own package.module:function",
    )
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument(
        "--settings",
        default=",".join(SETTINGS),
        help=f"comma-separated subset of {', '.join(SETTINGS)}",
    )
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--max-seconds", type=float, default=270.0, help="start no setting after this many seconds"
    )
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--compile", action="store_true", help="torch.compile the step's pure kernels")
