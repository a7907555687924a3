"""Counting host synchronisations of a training step.

On a GPU, :func:`cuda_sync_count` runs a function under ``torch.cuda.set_sync_debug_mode("warn")``
and counts the warnings: every blocking copy between host and device and every stream
synchronisation the CUDA caching layer reports (``.item()``, ``nonzero``, a pageable copy).

On the CPU nothing ever synchronises, so :class:`SyncCounter` counts what *would* synchronise
on a GPU: calls of the tensor methods and functions that need a device value on the host
(``item``, ``tolist``, ``bool/int/float(tensor)``, ``nonzero``, ``unique``, ``masked_select``,
``repeat_interleave`` without ``output_size``, boolean-mask indexing, ``.cpu()``/``.numpy()``),
observed by a ``TorchFunctionMode``. Calls made by the label bank (a host-side store of CPU
tensors by design) and inside :meth:`SyncCounter.host` blocks (the oracle, the budget's
``spent``) are host work, not device syncs, and are not counted.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_T = torch.Tensor
# functions whose result needs device data on the host (or a data-dependent shape)
_ALWAYS = {
    _T.item: "item",
    _T.tolist: "tolist",
    _T.__bool__: "bool",
    _T.__int__: "int",
    _T.__float__: "float",
    _T.__index__: "index",
    _T.nonzero: "nonzero",
    torch.nonzero: "nonzero",
    _T.unique: "unique",
    torch.unique: "unique",
    _T.unique_consecutive: "unique",
    torch.unique_consecutive: "unique",
    _T.masked_select: "masked_select",
    torch.masked_select: "masked_select",
    torch.argwhere: "nonzero",
    torch.where: "where",  # only the one-argument form (a nonzero), see _is_sync
    _T.cpu: "cpu",
    _T.numpy: "numpy",
    _T.__getitem__: "bool_index",  # only with a boolean tensor index, see _is_sync
    _T.__setitem__: "bool_index",
    _T.repeat_interleave: "repeat_interleave",
    torch.repeat_interleave: "repeat_interleave",
}
_HOST_FILES = {"labelbank.py"}  # the host-side label bank (trainer/learning/labelbank.py)


def _bool_index(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool and i.dim() > 0 for i in items)


def _is_sync(name: str, args: tuple, kwargs: dict) -> bool:
    if name == "where":
        return len(args) + len(kwargs) == 1
    if name == "bool_index":
        if not _bool_index(args[1]):
            return False
        # x[mask] = scalar is a masked_fill (no sync); a tensor value needs the mask's count
        return len(args) < 3 or (isinstance(args[2], torch.Tensor) and args[2].dim() > 0)
    if name == "repeat_interleave":
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats", args[0])
        tensor_repeats = isinstance(repeats, torch.Tensor) and repeats.dim() > 0
        return tensor_repeats and kwargs.get("output_size") is None
    return True


class SyncCounter(TorchFunctionMode):
    """``with SyncCounter() as c: step()``; then ``c.count`` and ``c.calls`` (name -> count).

    ``c.where`` lists ``file:line name`` of every counted call (the first frame in ``trainer``)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()
        self.where: list[str] = []
        self._host = 0

    @property
    def count(self) -> int:
        return sum(self.calls.values())

    @contextmanager
    def host_work(self) -> Iterator[None]:
        self._host += 1
        try:
            yield
        finally:
            self._host -= 1

    def host(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` wrapped so that its calls are host work (the oracle, ``spent``)."""

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            with self.host_work():
                return fn(*args, **kwargs)

        return wrapped

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _ALWAYS.get(func)
        if name is not None and not self._host and _is_sync(name, args, kwargs):
            site = _caller()
            if site is not None:
                self.calls[name] += 1
                self.where.append(f"{site} {name}")
        return func(*args, **kwargs)


def _caller() -> str | None:
    """``file:line`` of the innermost frame of this project, None inside the label bank."""
    frame = sys._getframe(2)
    here = Path(__file__).name
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if path.name in _HOST_FILES:
            return None
        if "site-packages" not in path.parts and "torch" not in path.parts and path.name != here:
            return f"{path.parent.name}/{path.name}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def cuda_sync_count(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``fn()``'s result and the number of sync warnings CUDA's debug mode raised during it."""
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            result = fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    return result, len(syncs)


def count_aten_ops(fn: Callable[[], Any]) -> int:
    """aten operator calls of one ``fn()`` (``torch.profiler`` key averages, CPU side)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
