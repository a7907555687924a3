"""Decoded images for crops: an LRU bounded in bytes, and at most two decodes at a time.

A PNG cannot be decoded from the middle (each row is filtered against the previous one), so a
crop decodes its image once; the next crops of the same image (an annotator's queries come in
score order, many per image) read the cached RGB pixels. Memory per server process is at most
``max_bytes`` for the cache plus ``DECODERS`` images being decoded.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from PIL import Image as PILImage

DECODERS = 2


class DecodedCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[int, PILImage.Image] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._decoding = threading.BoundedSemaphore(DECODERS)
        self.hits = self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, key: int, decode: Callable[[], PILImage.Image]) -> PILImage.Image:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        with self._decoding:
            img = decode()
        self._put(key, img)
        return img

    def _put(self, key: int, img: PILImage.Image) -> None:
        cost = img.width * img.height * len(img.getbands())
        if cost > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = img
            self._bytes += cost
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.width * old.height * len(old.getbands())
