// Canvas drawing for the annotator: the frame (whole or zoomed) with the pixel (or the region)
// marked, and a magnified crop.

import { drawRegion, regionPixels } from "./region.js";

const MAX_BACKING = 4096; // px per side of a canvas backing store

/**
 * The part of a w x h frame shown at `zoom` (1: all of it): 1/zoom of each side, centred on
 * pixel (x, y) where the frame allows (at an edge the window stops at the edge).
 */
export function viewAround(w, h, x, y, zoom = 1) {
  const vw = Math.max(1, Math.min(w, Math.ceil(w / zoom)));
  const vh = Math.max(1, Math.min(h, Math.ceil(h / zoom)));
  const x0 = Math.min(Math.max(0, x - Math.floor(vw / 2)), w - vw);
  const y0 = Math.min(Math.max(0, y - Math.floor(vh / 2)), h - vh);
  return { x0, y0, w: vw, h: vh };
}

/**
 * Draw the view of `bitmap` at `zoom` (see viewAround) scaled by an integer factor (nearest
 * neighbour) and mark pixel (x, y) with a box and crosshair, or, for a region query, the
 * region's outline (and its fill when `fill`). The canvas is then shown at CSS
 * width 100% with image-rendering: pixelated. `data-view` ("x0,y0,w,h" in image pixels) and
 * `data-mark` ("cx,cy,half": the box in canvas pixels) say what was drawn; for a region,
 * `data-region` ("pixels,edges": its pixel count and outline edges) and `data-fill` ("on",
 * "off").
 */
export function drawTarget(canvas, bitmap, x, y, zoom = 1, region = null, fill = true) {
  const v = viewAround(bitmap.width, bitmap.height, x, y, zoom);
  const shown = canvas.parentElement.clientWidth || 800;
  const want = Math.ceil((shown * (window.devicePixelRatio || 1)) / v.w);
  const k = Math.max(1, Math.min(want, Math.floor(MAX_BACKING / Math.max(v.w, v.h)) || 1));
  canvas.width = v.w * k;
  canvas.height = v.h * k;
  canvas.style.aspectRatio = `${v.w} / ${v.h}`;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, v.x0, v.y0, v.w, v.h, 0, 0, v.w * k, v.h * k);
  const cx = (x - v.x0 + 0.5) * k;
  const cy = (y - v.y0 + 0.5) * k;
  canvas.dataset.view = `${v.x0},${v.y0},${v.w},${v.h}`;
  if (region) {
    const edges = drawRegion(ctx, region, v, k, fill, Math.max(1, canvas.width / 800));
    canvas.dataset.region = `${regionPixels(region)},${edges}`;
    canvas.dataset.fill = fill ? "on" : "off";
    canvas.dataset.mark = "";
    return;
  }
  const half = crosshair(ctx, cx, cy, k, canvas.width, canvas.height);
  canvas.dataset.mark = `${cx},${cy},${half}`;
  canvas.dataset.region = "";
  canvas.dataset.fill = "";
}

/** Two-tone lines (dark under light) read on any street colour. */
function twoTone(ctx, width, paint) {
  ctx.lineWidth = width + 3;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.9)";
  paint();
  ctx.lineWidth = width;
  ctx.strokeStyle = "#ffffff";
  paint();
}

function crosshair(ctx, cx, cy, k, cw, ch) {
  const unit = Math.max(1, cw / 800); // keeps lines visible however large the backing store
  const half = Math.max(k / 2, 2 * unit) + 3 * unit; // box around the queried pixel
  const gap = half + 6 * unit;
  const lines = () => {
    ctx.beginPath();
    ctx.moveTo(0, cy);
    ctx.lineTo(cx - gap, cy);
    ctx.moveTo(cx + gap, cy);
    ctx.lineTo(cw, cy);
    ctx.moveTo(cx, 0);
    ctx.lineTo(cx, cy - gap);
    ctx.moveTo(cx, cy + gap);
    ctx.lineTo(cx, ch);
    ctx.stroke();
  };
  const box = () => {
    ctx.beginPath();
    ctx.rect(cx - half, cy - half, 2 * half, 2 * half);
    ctx.stroke();
  };
  twoTone(ctx, 1.5 * unit, lines);
  twoTone(ctx, 2 * unit, box);
  return half;
}

/**
 * Magnified crop of (2r+1)^2 pixels around (x, y); the centre cell is boxed.
 * Outside the image is drawn as a dark grey checker so borders are obvious.
 */
export function drawInset(canvas, bitmap, x, y, r = 7) {
  const cells = 2 * r + 1;
  const cell = Math.floor(canvas.width / cells);
  const size = cell * cells;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  for (let i = 0; i < cells; i += 1) {
    for (let j = 0; j < cells; j += 1) {
      ctx.fillStyle = (i + j) % 2 ? "#3a3a3a" : "#2a2a2a";
      ctx.fillRect(i * cell, j * cell, cell, cell);
    }
  }
  // Clip the source rectangle to the image so every browser draws the same thing.
  const sx = Math.max(0, x - r);
  const sy = Math.max(0, y - r);
  const ex = Math.min(bitmap.width, x + r + 1);
  const ey = Math.min(bitmap.height, y + r + 1);
  if (ex > sx && ey > sy) {
    const dx = (sx - (x - r)) * cell;
    const dy = (sy - (y - r)) * cell;
    ctx.drawImage(bitmap, sx, sy, ex - sx, ey - sy, dx, dy, (ex - sx) * cell, (ey - sy) * cell);
  }
  const c0 = r * cell;
  const mid = c0 + cell / 2;
  twoTone(ctx, 2, () => {
    ctx.beginPath();
    ctx.rect(c0 - 1.5, c0 - 1.5, cell + 3, cell + 3);
    for (const [ax, ay, bx, by] of [
      [0, mid, c0 - cell / 2, mid],
      [c0 + 1.5 * cell, mid, size, mid],
      [mid, 0, mid, c0 - cell / 2],
      [mid, c0 + 1.5 * cell, mid, size],
    ]) {
      ctx.moveTo(ax, ay);
      ctx.lineTo(bx, by);
    }
    ctx.stroke();
  });
}

/** Colour of pixel (x, y) as [r, g, b], read from a 1x1 draw. */
export function pixelColor(bitmap, x, y) {
  const probe = new OffscreenCanvas(1, 1).getContext("2d");
  probe.drawImage(bitmap, x, y, 1, 1, 0, 0, 1, 1);
  const d = probe.getImageData(0, 0, 1, 1).data;
  return [d[0], d[1], d[2]];
}
