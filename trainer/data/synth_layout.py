"""Random street-scene layouts for the bundled benchmark (label maps, no colours).

A layout is a perspective road with sidewalks, a skyline of buildings, trees, sky, and
objects standing on the ground plane (cars on the road, persons on the sidewalks, poles
with traffic signs at the kerb), sized by their distance to the horizon. The two domains
share the classes and the kind of scene but differ in layout statistics (horizon height,
road width, object sizes and counts), as real sim-to-real gaps do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.constants import IGNORE_INDEX

CLASSES: list[tuple[str, tuple[int, int, int]]] = [
    ("road", (128, 64, 128)),
    ("sidewalk", (244, 35, 232)),
    ("building", (70, 70, 70)),
    ("pole", (153, 153, 153)),
    ("vegetation", (107, 142, 35)),
    ("sky", (70, 130, 180)),
    ("person", (220, 20, 60)),
    ("car", (0, 0, 142)),
    ("traffic sign", (220, 220, 0)),
]
ROAD, SIDEWALK, BUILDING, POLE, VEGETATION, SKY, PERSON, CAR, SIGN = range(9)
# The skyline's building widths are drawn in 1/SKYLINE_UNITS of the image width (a building is
# 6-24 units wide), so that a scene's random draws, and so the scene, are the same at every size:
# at 64x128 a unit is 1 pixel (the layouts of generator version 3, byte for byte), at 256x512
# 4 pixels, at 1024x2048 16 pixels.
SKYLINE_UNITS = 128


@dataclass
class Layout:
    """A scene's geometry.

    labels: uint8 (H, W) class ids (255 = ignore: ego-vehicle hood).
    instance: uint8 (H, W); 0 = stuff, k + 1 = object k.
    instance_class: class id of each object, len K.
    horizon, vanish_x, lane_x: horizon row, vanishing-point column, centre-line column
    at the bottom row (pixels, float).
    """

    labels: np.ndarray
    instance: np.ndarray
    instance_class: list[int]
    horizon: float
    vanish_x: float
    lane_x: float


@dataclass(frozen=True)
class _Road:
    """Road geometry as a function of depth d in [0, 1] (0 = horizon, 1 = bottom row)."""

    horizon: float
    height: int
    vanish_x: float
    bottom_x: float
    half: float
    kerb: float

    def row(self, d: float) -> float:
        return self.horizon + d * (self.height - self.horizon)

    def centre(self, d: float) -> float:
        return self.vanish_x + (self.bottom_x - self.vanish_x) * d


def _paint(lay: Layout, mask: np.ndarray, y0: int, x0: int, cls: int, inst: int) -> None:
    """Write class ``cls`` / instance ``inst`` where ``mask`` (h, w) is true, at (y0, x0)."""
    h, w = lay.labels.shape
    mh, mw = mask.shape
    ya, xa = max(y0, 0), max(x0, 0)
    yb, xb = min(y0 + mh, h), min(x0 + mw, w)
    if ya >= yb or xa >= xb:
        return
    m = mask[ya - y0 : yb - y0, xa - x0 : xb - x0]
    lab, ins = lay.labels[ya:yb, xa:xb], lay.instance[ya:yb, xa:xb]
    lab[m], ins[m] = cls, inst


def _rect(lay: Layout, y0: float, y1: float, x0: float, x1: float, cls: int, inst: int) -> None:
    """Fill the rectangle rows [y0, y1) x columns [x0, x1) (rounded)."""
    ya, yb, xa, xb = (int(round(v)) for v in (y0, y1, x0, x1))
    if yb > ya and xb > xa:
        _paint(lay, np.ones((yb - ya, xb - xa), bool), ya, xa, cls, inst)


def _ellipse(lay: Layout, cy: float, cx: float, ry: float, rx: float, cls: int, inst: int) -> None:
    """Fill the ellipse centred at (cy, cx) with radii (ry, rx)."""
    ry, rx = max(ry, 0.6), max(rx, 0.6)
    y0, x0 = int(np.floor(cy - ry)), int(np.floor(cx - rx))
    ys = np.arange(y0, int(np.ceil(cy + ry)) + 1)[:, None] + 0.5
    xs = np.arange(x0, int(np.ceil(cx + rx)) + 1)[None, :] + 0.5
    _paint(lay, ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1, y0, x0, cls, inst)


def _background(lay: Layout, road: _Road, rng: np.random.Generator) -> None:
    """Sky, skyline of buildings, roadside fill, trees, road and sidewalks."""
    h, w = lay.labels.shape
    yy = np.arange(h, dtype=np.float32)[:, None]
    xx = np.arange(w, dtype=np.float32)[None, :]
    top = np.full(w, float(h))
    x = 0  # in SKYLINE_UNITS of the width: the same draws (the same scene) at every size
    while x < SKYLINE_UNITS:
        bw = int(rng.integers(SKYLINE_UNITS // 20, SKYLINE_UNITS // 5))
        if rng.random() > 0.15:
            centre = (x + bw / 2) * w / SKYLINE_UNITS
            rise = h * rng.uniform(0.08, 0.35) * (1 + 1.2 * abs(centre - road.vanish_x) / w)
            top[round(x * w / SKYLINE_UNITS) : round((x + bw) * w / SKYLINE_UNITS)] = (
                road.horizon - rise
            )
        x += bw
    side = np.where(xx < road.vanish_x, *rng.choice([BUILDING, VEGETATION], 2, p=[0.6, 0.4]))
    below = yy >= road.horizon
    lay.labels[:] = np.where(below, side, np.where(yy >= top[None, :], BUILDING, SKY))
    for _ in range(int(rng.integers(1, 7))):
        r = h * rng.uniform(0.05, 0.16)
        cy = road.horizon - rng.uniform(0.0, 0.3) * h
        _ellipse(lay, cy, rng.uniform(0, w), r, r * rng.uniform(0.9, 1.6), VEGETATION, 0)
    d = np.clip((yy - road.horizon) / (h - road.horizon), 0, None)
    off = np.abs(xx - (road.vanish_x + (road.bottom_x - road.vanish_x) * d))
    lay.labels[(off < d * road.kerb) & below] = SIDEWALK
    lay.labels[(off < d * road.half) & below] = ROAD


def _car(lay: Layout, road: _Road, d: float, size: float, rng: np.random.Generator) -> None:
    """A car (body and cabin) standing on the road at depth ``d``."""
    lay.instance_class.append(CAR)
    k = len(lay.instance_class)
    yb, cw = road.row(d), lay.labels.shape[1] * 0.3 * d * size * rng.uniform(0.8, 1.2)
    cx = road.centre(d) + rng.uniform(-0.75, 0.75) * road.half * d
    ch = cw * rng.uniform(0.4, 0.55)
    _rect(lay, yb - 0.55 * ch, yb, cx - cw / 2, cx + cw / 2, CAR, k)
    _rect(lay, yb - ch, yb - 0.5 * ch, cx - 0.3 * cw, cx + 0.3 * cw, CAR, k)


def _person(lay: Layout, road: _Road, d: float, size: float, rng: np.random.Generator) -> None:
    """A person (body and head) standing on a sidewalk at depth ``d``."""
    lay.instance_class.append(PERSON)
    k = len(lay.instance_class)
    sign = rng.choice([-1.0, 1.0])
    x = road.centre(d) + sign * d * (road.half + (road.kerb - road.half) * rng.uniform(0.2, 0.8))
    ph = lay.labels.shape[0] * 0.42 * d * size * rng.uniform(0.85, 1.15)
    yb = road.row(d)
    _ellipse(lay, yb - 0.42 * ph, x, 0.42 * ph, 0.14 * ph, PERSON, k)
    _ellipse(lay, yb - 0.9 * ph, x, 0.1 * ph, 0.08 * ph, PERSON, k)


def _pole(lay: Layout, road: _Road, d: float, size: float, rng: np.random.Generator) -> None:
    """A pole at the kerb at depth ``d``, often carrying a traffic sign."""
    sign = rng.choice([-1.0, 1.0])
    x = road.centre(d) + sign * d * (road.half + (road.kerb - road.half) * 0.85)
    ph = lay.labels.shape[0] * rng.uniform(0.6, 0.9) * d * size
    yb, pw = road.row(d), max(1.0, 2.5 * d * size)
    _rect(lay, yb - ph, yb, x - pw / 2, x - pw / 2 + pw, POLE, 0)
    if rng.random() < 0.7:
        lay.instance_class.append(SIGN)
        r = max(1.5, 5.0 * d * size)
        if rng.random() < 0.5:
            _ellipse(lay, yb - ph, x, r, r, SIGN, len(lay.instance_class))
        else:
            _rect(lay, yb - ph - r, yb - ph + r, x - r, x + r, SIGN, len(lay.instance_class))


def sample_layout(rng: np.random.Generator, height: int, width: int, domain: str) -> Layout:
    """Draw a random street scene of size (height, width) with ``domain`` statistics.

    Source scenes have a higher horizon, a wider road and larger objects; target scenes
    have a lower horizon, more pedestrians and sometimes an ego-vehicle hood (ignore).
    """
    if domain not in ("source", "target"):
        raise ValueError(f"unknown domain {domain!r}; expected 'source' or 'target'")
    src = domain == "source"
    horizon = height * (rng.uniform(0.34, 0.46) if src else rng.uniform(0.42, 0.56))
    half = width * (rng.uniform(0.38, 0.55) if src else rng.uniform(0.28, 0.45))
    road = _Road(
        horizon,
        height,
        width * rng.uniform(0.3, 0.7),
        width * rng.uniform(0.4, 0.6),
        half,
        half * rng.uniform(1.3, 1.7),
    )
    lay = Layout(
        np.zeros((height, width), np.uint8),
        np.zeros((height, width), np.uint8),
        [],
        horizon,
        road.vanish_x,
        road.bottom_x + rng.uniform(-0.1, 0.1) * half,
    )
    _background(lay, road, rng)
    size = rng.uniform(1.0, 1.3) if src else rng.uniform(0.75, 1.0)
    kinds = [_car] * int(rng.integers(1, 6)) + [_pole] * int(rng.integers(1, 4))
    kinds += [_person] * int(rng.integers(0, 4) if src else rng.integers(1, 6))
    depths = rng.uniform(0.12, 0.95, len(kinds))
    for i in np.argsort(depths):
        kinds[i](lay, road, float(depths[i]), size, rng)
    if not src and rng.random() < 0.3:
        _ellipse(
            lay, height + 0.02 * height, width / 2, 0.12 * height, 0.7 * width, IGNORE_INDEX, 0
        )
    return lay
