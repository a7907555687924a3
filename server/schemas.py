"""Wire contract of the labeling service (docs/api.md in code form).

Pure pydantic: the trainer worker and the oracle import this module without SQLAlchemy.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Role = Literal["admin", "trainer", "annotator", "viewer"]
Group = Literal["high", "medium", "random", "entropy", "ripu", "other"]
QueryStatus = Literal["pending", "leased", "answered", "skipped", "withdrawn"]
RunStatus = Literal["active", "finished"]
SkipReason = Literal["cant_tell"]  # the annotator looked and could not tell the class
GROUPS: tuple[str, ...] = ("high", "medium", "random", "entropy", "ripu", "other")
MAX_QUERIES_PER_BATCH = 10_000
MAX_ANSWERS_PER_BATCH = 10_000
IGNORE_INDEX = 255  # "unlabeled" in masks and label banks; class ids lie below it
INT32_MAX = 2**31 - 1  # ids, pixel coordinates and most counters are 32-bit integer columns
INT53_MAX = 2**53 - 1  # a run's pixel counts are 64-bit (a full-size Cityscapes train set: 6.2e9)

DbInt = Annotated[int, Field(ge=0, le=INT32_MAX)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
ClassId = Annotated[int, Field(ge=0, le=IGNORE_INDEX - 1)]


def budget_total(budget_rate: float, target_pixels: int) -> int:
    """The budget M_e = floor(budget_rate x target_pixels) in pixels: the one rounding rule.

    The rate is read as the decimal the user wrote (``str(rate)``), so 0.57 of 100 pixels is 57,
    not the 56 that ``int(0.57 * 100)`` gives in binary floating point. The server stores this
    number with the run; the trainer reads it back (``budget_total``) or, with no server, calls
    this function.
    """
    return math.floor(Decimal(str(budget_rate)) * target_pixels)


# nesting of a free-form JSON value (a run's config); the JSON serialiser gives up at 255
MAX_JSON_DEPTH = 64


def _servable_json(value: Any, *, depth: int = 1) -> Any:
    """Refuse, anywhere in a JSON value, what the server could store but not send back (and so
    would break every listing that holds it): NaN and infinities, a lone surrogate (``"\\ud800"``,
    not valid Unicode) in a string or a key, nesting deeper than ``MAX_JSON_DEPTH``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinite numbers are not allowed")
    if isinstance(value, str) and (bad := _SURROGATE.search(value)):
        raise ValueError(f"lone surrogate U+{ord(bad.group()):04X} is not allowed")
    if isinstance(value, dict | list) and depth > MAX_JSON_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels is not allowed")
    inside = [*value, *value.values()] if isinstance(value, dict) else value
    for item in inside if isinstance(value, dict | list) else ():
        _servable_json(item, depth=depth + 1)
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
ServableJson = Annotated[dict[str, Any], AfterValidator(_servable_json)]


def _printable(value: str) -> str:
    """Refuse control characters (C0, DEL, C1; NUL included): PostgreSQL cannot store NUL in
    text, and none belongs in a name, a key or a label."""
    for ch in value:
        if ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            raise ValueError(f"control character U+{ord(ch):04X} is not allowed")
    return value


def _safe_key(value: str) -> str:
    """An image key is a relative path: segments joined by ``/``, none empty, ``.`` or ``..``;
    no backslash, no ``:``, no control character. It names the mask in ``masks.zip``."""
    _printable(value)
    if "\\" in value or ":" in value:
        raise ValueError("an image key may not contain a backslash or ':'")
    if any(part in ("", ".", "..") for part in value.split("/")):
        raise ValueError(
            "an image key is a relative path: no leading, trailing or double '/', "
            "no '.' or '..' segment"
        )
    return value


Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_printable)]
RunName = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_printable)]
Label = Annotated[str, Field(max_length=100), AfterValidator(_printable)]
ImageKey = Annotated[str, Field(min_length=1, max_length=500), AfterValidator(_safe_key)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- the error envelope: server/schemas_reports.py ------------------------------------------


# --- tokens: server/schemas_tokens.py ----------------------------------------------------


# --- runs ---------------------------------------------------------------------------------


Channel = Annotated[int, Field(ge=0, le=255, strict=True)]  # an RGB value: an int, not 1.0


class ClassSpec(Strict):
    id: ClassId
    name: Name
    color: tuple[Channel, Channel, Channel] = (0, 0, 0)


class ClassOut(BaseModel):  # as stored (runs made before colours were checked included)
    id: int
    name: str
    color: tuple[int, int, int]


class RunIn(Strict):
    name: RunName
    classes: list[ClassSpec] = Field(min_length=1, max_length=IGNORE_INDEX)
    target_pixels: int = Field(ge=0, le=INT53_MAX)
    budget_rate: float = Field(ge=0.0, le=1.0)
    strategy: Label = "full"
    config: ServableJson = Field(default_factory=dict)
    # the annotators' time this run may spend, in seconds (beside M_e in pixels); None: no limit
    budget_seconds: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _unique_class_ids(self) -> RunIn:
        ids = [c.id for c in self.classes]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"class ids must be unique in a run; repeated: {twice}")
        return self


class RunPatch(Strict):
    status: RunStatus


class RunOut(BaseModel):
    id: int
    name: str
    classes: list[ClassOut]
    target_pixels: int
    budget_rate: float
    budget_total: int
    strategy: str
    config: dict[str, Any]
    status: RunStatus
    created_at: datetime
    budget_seconds: float | None = None


# --- images: server/schemas_images.py -------------------------------------------------


# --- queries and answers ------------------------------------------------------------------


MAX_REGION_PIXELS = 1 << 20  # a region's box holds at most this many pixels (1024 x 1024)


class Region(Strict):
    """The pixels a region query asks about, in image coordinates: a box and the run lengths of
    the region's mask inside the box, row by row, alternating outside / inside and starting with
    an outside run (0 where the box's first pixel is inside). The one encoding of a region on
    the wire: the trainer writes it, the server stores it, the web UI draws it, the answer's
    class labels every inside pixel.

    Example: a 2 x 3 box at (top 4, left 7) whose mask rows are ``011`` and ``110`` is
    ``{"top": 4, "left": 7, "height": 2, "width": 3, "runs": [1, 4, 1]}``.
    """

    top: DbInt
    left: DbInt
    height: int = Field(ge=1, le=MAX_REGION_PIXELS)
    width: int = Field(ge=1, le=MAX_REGION_PIXELS)
    runs: list[DbInt] = Field(min_length=2, max_length=MAX_REGION_PIXELS + 1)

    @model_validator(mode="after")
    def _fits(self) -> Region:
        if self.height * self.width > MAX_REGION_PIXELS:
            raise ValueError(f"a region's box holds at most {MAX_REGION_PIXELS} pixels")
        if sum(self.runs) != self.height * self.width:
            raise ValueError(
                f"the runs cover {sum(self.runs)} pixels; the {self.height} x {self.width} box "
                f"holds {self.height * self.width}"
            )
        if self.pixels == 0:
            raise ValueError("a region holds at least one pixel")
        return self

    @property
    def pixels(self) -> int:
        """How many pixels the region holds (its inside runs)."""
        return sum(self.runs[1::2])

    def spans(self) -> list[tuple[int, int]]:
        """The inside runs as ``(start, length)`` in box-relative row-major offsets."""
        out, at = [], 0
        for i, run in enumerate(self.runs):
            if i % 2 and run:
                out.append((at, run))
            at += run
        return out

    def cells(self) -> list[tuple[int, int]]:
        """Every inside pixel as ``(y, x)`` in image coordinates, row-major."""
        w = self.width
        return [
            (self.top + k // w, self.left + k % w)
            for start, run in self.spans()
            for k in range(start, start + run)
        ]

    def contains(self, y: int, x: int) -> bool:
        """Whether the image pixel ``(y, x)`` is inside the region."""
        dy, dx = y - self.top, x - self.left
        if not (0 <= dy < self.height and 0 <= dx < self.width):
            return False
        k = dy * self.width + dx
        return any(start <= k < start + run for start, run in self.spans())


class QueryIn(Strict):
    """One query: the pixel ``(y, x)``, or with ``region`` the region holding ``(y, x)`` (its
    dominant class is asked; ``(y, x)`` is where the UI centres it)."""

    image_id: DbInt
    y: DbInt
    x: DbInt
    group: Group = "other"
    score: Finite = 0.0
    region: Region | None = None

    @model_validator(mode="after")
    def _inside(self) -> QueryIn:
        if self.region is not None and not self.region.contains(self.y, self.x):
            raise ValueError(f"the pixel ({self.y}, {self.x}) is not inside the query's region")
        return self


class QueriesIn(Strict):
    queries: list[QueryIn] = Field(min_length=1, max_length=MAX_QUERIES_PER_BATCH)


class QueryOut(BaseModel):
    id: int
    run_id: int
    image_id: int
    y: int
    x: int
    group: Group
    score: float
    status: QueryStatus
    lease_expires_at: datetime | None
    skip_reason: SkipReason | None = None
    image_key: str  # the image's name in the run (what the trainer registered it as)
    image_width: int
    image_height: int
    region: Region | None = None  # a region query's pixels; None for a pixel query


def query_pixels(region: Region | None) -> int:
    """What a query costs the pixel budget: 1 for a pixel query, a region query's pixel count
    (the pixels its answer labels)."""
    return 1 if region is None else region.pixels


# --- listings, claims, skips, answers, undo: server/schemas_answers.py -------------------


# --- budget: server/schemas_budget.py ------------------------------------------------------
