"""The bundled synthetic-to-real benchmark: procedural street scenes in two domains.

``sample_layout`` draws a random street scene as a label map (perspective road with
sidewalks, buildings, vegetation, sky, cars, persons, poles with traffic signs).
``render_scene`` paints a layout either in the *source* ("game-like": flat colours, sharp
edges, one palette) or the *target* domain ("real-like": shifted palette, per-image
illumination, per-class texture, sensor noise, blur and gamma). How far the target look is
from the source is a *shift* (``trainer.data.synth_shift``): ``moderate`` (default, classes
keep their colours) or ``hard`` (colours swap classes). Layout statistics also differ a
little between the domains (horizon height, object sizes), as in real sim-to-real gaps,
while the classes stay the same.

``generate_benchmark`` writes the plain folder format (see ``trainer.data.folder``)::

    root/classes.json
    root/<split>/images/000000.png   RGB uint8
    root/<split>/labels/000000.png   uint8 class ids, 255 = ignore
    root/meta.json                   generator params, shift + version (the cache key)
"""

from __future__ import annotations

import json
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from trainer.constants import IGNORE_INDEX
from trainer.data.safety import check_generation_target
from trainer.data.synth_layout import (
    BUILDING,
    CAR,
    CLASSES,
    PERSON,
    ROAD,
    Layout,
    sample_layout,
)
from trainer.data.synth_shift import (
    DEFAULT_SHIFT,
    SHIFTS,
    SOURCE_CAR_COLOURS,
    SOURCE_PALETTE,
    Shift,
    get_shift,
)

__all__ = [
    "CLASSES",
    "DEFAULT_COUNTS",
    "DEFAULT_SHIFT",
    "DEFAULT_SIZE",
    "SHIFTS",
    "GENERATOR_VERSION",
    "Layout",
    "generate_benchmark",
    "render_scene",
    "sample_layout",
]

GENERATOR_VERSION = 4  # bump whenever layouts or rendering change (cache key)
DEFAULT_SIZE = (64, 128)  # (height, width) pixels of the generated images
DEFAULT_COUNTS: dict[str, int] = {
    "source-train": 500,
    "target-train": 500,
    "target-val": 100,
    "target-test": 200,
}


def _instance_colours(
    layout: Layout,
    palette: np.ndarray,
    rng: np.random.Generator,
    cars: np.ndarray,
    clothes: np.ndarray,
) -> np.ndarray:
    """Colour per instance id, shape (K+1, 3); row 0 is unused (background)."""
    n = len(layout.instance_class)
    colours = palette[layout.instance_class].copy() if n else np.zeros((0, 3), np.float32)
    for k, cls in enumerate(layout.instance_class):
        if cls == CAR:
            colours[k] = cars[rng.integers(len(cars))]
        elif cls == PERSON:
            colours[k] = clothes[rng.integers(len(clothes))]
    return np.concatenate([np.zeros((1, 3), np.float32), colours])


def _base_image(layout: Layout, palette: np.ndarray, inst_colours: np.ndarray) -> np.ndarray:
    """Flat colour image (H, W, 3) float32 from class palette and instance colours."""
    labels = layout.labels
    safe = np.where(labels == IGNORE_INDEX, 0, labels)
    img = palette[safe]
    has_inst = layout.instance > 0
    img[has_inst] = inst_colours[layout.instance[has_inst]]
    img[labels == IGNORE_INDEX] = (35.0, 35.0, 40.0)  # ego-vehicle hood
    return img


def _facade_pattern(
    layout: Layout, period: tuple[int, int], size: tuple[int, int], offset: tuple[int, int]
) -> np.ndarray:
    """Boolean (H, W) window grid restricted to building pixels."""
    h, w = layout.labels.shape
    yy = (np.arange(h)[:, None] + offset[0]) % period[0] < size[0]
    xx = (np.arange(w)[None, :] + offset[1]) % period[1] < size[1]
    return yy & xx & (layout.labels == BUILDING)


def _lane_marks(layout: Layout) -> np.ndarray:
    """Boolean (H, W) dashed centre line on the road."""
    h, w = layout.labels.shape
    ys = np.arange(h)[:, None].astype(np.float32)
    xs = np.arange(w)[None, :].astype(np.float32)
    depth = np.clip((ys - layout.horizon) / max(h - layout.horizon, 1), 0, 1)
    half = 0.25 + 1.5 * depth
    centre = layout.vanish_x + (layout.lane_x - layout.vanish_x) * depth
    dash = (np.log1p(8 * depth) * 6).astype(np.int32) % 2 == 0
    return (np.abs(xs - centre) < half) & dash & (layout.labels == ROAD)


def _render_source(layout: Layout, rng: np.random.Generator) -> np.ndarray:
    """Game-like image (H, W, 3) float32: flat colours, sharp edges, one palette."""
    inst = _instance_colours(
        layout, SOURCE_PALETTE, rng, SOURCE_CAR_COLOURS, SOURCE_PALETTE[[PERSON]]
    )
    img = _base_image(layout, SOURCE_PALETTE, inst)
    img[_facade_pattern(layout, (6, 6), (3, 3), (0, 0))] = (90, 70, 60)
    img[_lane_marks(layout)] = (240, 240, 240)
    return img + rng.normal(0, 2.0, size=3).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise (H, W) float32, roughly unit variance, correlated over ``cell`` pixels."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    ys = np.arange(h, dtype=np.float32) / cell
    xs = np.arange(w, dtype=np.float32) / cell
    y0, x0 = ys.astype(np.int32), xs.astype(np.int32)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return (top * (1 - fy) + bot * fy) * 1.6


def _blur(img: np.ndarray, strength: float) -> np.ndarray:
    """Separable [1, 2, 1] blur mixed with the input by ``strength`` in [0, 1]; (H, W, 3)."""
    pad = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    v = (pad[:-2] + 2 * pad[1:-1] + pad[2:]) / 4
    b = (v[:, :-2] + 2 * v[:, 1:-1] + v[:, 2:]) / 4
    return (1 - strength) * img + strength * b


def _paint_target(layout: Layout, shift: Shift, rng: np.random.Generator) -> np.ndarray:
    """Target colours, facades, lane marks and per-class texture, before the camera."""
    h, w = layout.labels.shape
    jitter = rng.normal(0, shift.palette_jitter, size=shift.palette.shape)
    palette = shift.palette + jitter.astype(np.float32)
    inst = _instance_colours(layout, palette, rng, shift.car_colours, shift.clothes)
    img = _base_image(layout, palette, inst)
    offset = tuple(rng.integers(0, 4, 2))
    img[_facade_pattern(layout, shift.facade_period, shift.facade_size, offset)] *= (
        shift.facade_shade
    )
    img[_lane_marks(layout)] = shift.lane
    safe = np.where(layout.labels == IGNORE_INDEX, 0, layout.labels)
    amp = shift.texture[safe]
    fine = rng.standard_normal((h, w)).astype(np.float32)
    coarse = _smooth_noise(rng, h, w, 4)
    img += amp[..., :1] * fine[..., None] + amp[..., 1:] * coarse[..., None]  # stays float32
    return img


def _camera_effects(img: np.ndarray, shift: Shift, rng: np.random.Generator) -> np.ndarray:
    """Illumination, colour cast, shading, blur, sensor noise and gamma on (H, W, 3)."""
    h, w = img.shape[:2]
    ramp = np.linspace(-1, 1, h, dtype=np.float32)[:, None, None]
    light = rng.uniform(*shift.light) * (1 + rng.uniform(-shift.ramp, shift.ramp) * ramp)
    cast = rng.uniform(*shift.cast, size=3).astype(np.float32)
    img = img * light * cast + shift.shade * _smooth_noise(rng, h, w, 16)[..., None]
    img = _blur(img, rng.uniform(*shift.blur))
    img += rng.normal(0, rng.uniform(*shift.noise), size=img.shape).astype(np.float32)
    gamma = rng.uniform(*shift.gamma)
    return 255 * (np.clip(img, 0, 255) / 255) ** gamma


def _render_target(layout: Layout, rng: np.random.Generator, shift: Shift) -> np.ndarray:
    """Real-like image (H, W, 3) float32 in ``shift``'s look."""
    return _camera_effects(_paint_target(layout, shift, rng), shift, rng)


def render_scene(
    layout: Layout, domain: str, rng: np.random.Generator, shift: str | Shift = DEFAULT_SHIFT
) -> np.ndarray:
    """Paint ``layout`` in ``domain`` ("source" or "target"): RGB uint8 (H, W, 3).

    ``shift`` (a name in ``SHIFTS`` or a :class:`Shift`) sets the target look; the source
    look is the same under every shift.
    """
    if domain == "source":
        img = _render_source(layout, rng)
    elif domain == "target":
        img = _render_target(layout, rng, get_shift(shift) if isinstance(shift, str) else shift)
    else:
        raise ValueError(f"unknown domain {domain!r}; expected 'source' or 'target'")
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _domain_of(split: str) -> str:
    """Source splits render the source domain, every other split the target domain."""
    return "source" if split.startswith("source") else "target"


def _render_one(args: tuple[Path, str, int, int, int, int, str]) -> None:
    """Sample, render and write image ``index`` of ``split`` (worker entry point)."""
    root, split, index, seed, height, width, shift = args
    seq = np.random.SeedSequence([seed, zlib.crc32(split.encode()), index])
    rng = np.random.default_rng(seq)
    domain = _domain_of(split)
    layout = sample_layout(rng, height, width, domain)
    image = render_scene(layout, domain, rng, shift)
    name = f"{index:06d}.png"
    Image.fromarray(image, "RGB").save(root / split / "images" / name)
    Image.fromarray(layout.labels, "L").save(root / split / "labels" / name)


def _meta(
    height: int, width: int, counts: dict[str, int], seed: int, shift: str
) -> dict[str, object]:
    """The generator parameters that define a benchmark (the cache key)."""
    return {
        "generator": "adamcu.synth",
        "version": GENERATOR_VERSION,
        "height": height,
        "width": width,
        "counts": dict(sorted(counts.items())),
        "seed": seed,
        "shift": shift,
    }


def _write_classes(root: Path) -> None:
    """Write ``root/classes.json`` in the plain folder format."""
    classes = [{"id": i, "name": n, "color": list(c)} for i, (n, c) in enumerate(CLASSES)]
    (root / "classes.json").write_text(json.dumps({"classes": classes}, indent=1))


def _clear(root: Path, splits: set[str]) -> None:
    """Remove meta.json and the given split folders so a rerun starts clean."""
    (root / "meta.json").unlink(missing_ok=True)
    for split in splits:
        if (root / split).is_dir():
            shutil.rmtree(root / split)


def generate_benchmark(
    root: Path,
    *,
    height: int = DEFAULT_SIZE[0],
    width: int = DEFAULT_SIZE[1],
    counts: dict[str, int] | None = None,
    seed: int = 0,
    workers: int = 1,
    shift: str = DEFAULT_SHIFT,
) -> Path:
    """Write the benchmark under ``root`` (cached by meta.json) and return ``root``.

    Same seed and params give identical bytes; each split uses its own sub-seed, each
    image its own stream, so ``workers`` changes speed only. Splits whose name starts with
    "source" render the source domain, all others the target domain in ``shift``'s look
    (a name in ``SHIFTS``; source images are the same under every shift).
    """
    get_shift(shift)  # a clear error before anything is written
    root = Path(root)
    check_generation_target(root)  # never a user's folder (trainer/data/safety.py)
    counts = dict(DEFAULT_COUNTS if counts is None else counts)
    meta = _meta(height, width, counts, seed, shift)
    meta_path = root / "meta.json"
    old: dict[str, object] = {}
    if meta_path.is_file():
        old = json.loads(meta_path.read_text())
        if old == meta:
            return root
    old_counts = old.get("counts", {})
    _clear(root, set(counts) | (set(old_counts) if isinstance(old_counts, dict) else set()))
    jobs = []
    for split, n in counts.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "labels").mkdir(parents=True, exist_ok=True)
        jobs += [(root, split, i, seed, height, width, shift) for i in range(n)]
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_render_one, jobs, chunksize=32))
    else:
        for job in jobs:
            _render_one(job)
    _write_classes(root)
    meta_path.write_text(json.dumps(meta, indent=1))
    return root
