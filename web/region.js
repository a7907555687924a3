// A region query's pixels (server/schemas.py Region: a box and the run lengths of its mask,
// row-major, alternating outside / inside, starting with an outside run), decoded and drawn.

/** The box's mask as a Uint8Array of height x width (1: inside the region). */
export function regionMask(region) {
  const mask = new Uint8Array(region.height * region.width);
  let at = 0;
  region.runs.forEach((run, i) => {
    if (i % 2) mask.fill(1, at, at + run);
    at += run;
  });
  return mask;
}

/** How many pixels the region holds (its inside runs). */
export function regionPixels(region) {
  return region.runs.reduce((n, run, i) => (i % 2 ? n + run : n), 0);
}

/**
 * The region's outline: the pixel edges between an inside pixel and an outside one (or the
 * box's border), as [x0, y0, x1, y1] in image coordinates (pixel corners).
 */
export function regionEdges(region, mask = regionMask(region)) {
  const { top, left, height: h, width: w } = region;
  const inside = (r, c) => r >= 0 && r < h && c >= 0 && c < w && mask[r * w + c] === 1;
  const edges = [];
  for (let r = 0; r < h; r += 1) {
    for (let c = 0; c < w; c += 1) {
      if (!mask[r * w + c]) continue;
      const y = top + r;
      const x = left + c;
      if (!inside(r - 1, c)) edges.push([x, y, x + 1, y]);
      if (!inside(r + 1, c)) edges.push([x, y + 1, x + 1, y + 1]);
      if (!inside(r, c - 1)) edges.push([x, y, x, y + 1]);
      if (!inside(r, c + 1)) edges.push([x + 1, y, x + 1, y + 1]);
    }
  }
  return edges;
}

/**
 * Draw `region` on a canvas showing the image view `v` ({x0, y0}) scaled by `k`: a
 * translucent fill of its pixels when `fill`, then its outline in two tones (dark under
 * light), which reads on any colour.
 */
export function drawRegion(ctx, region, v, k, fill, unit) {
  const mask = regionMask(region);
  const px = (x) => (x - v.x0) * k;
  const py = (y) => (y - v.y0) * k;
  if (fill) {
    ctx.fillStyle = "rgba(255, 215, 0, 0.45)";
    for (let r = 0; r < region.height; r += 1) {
      let c = 0;
      while (c < region.width) {
        if (!mask[r * region.width + c]) {
          c += 1;
          continue;
        }
        const start = c;
        while (c < region.width && mask[r * region.width + c]) c += 1;
        ctx.fillRect(px(region.left + start), py(region.top + r), (c - start) * k, k);
      }
    }
  }
  const edges = regionEdges(region, mask);
  const path = () => {
    ctx.beginPath();
    for (const [x0, y0, x1, y1] of edges) {
      ctx.moveTo(px(x0), py(y0));
      ctx.lineTo(px(x1), py(y1));
    }
    ctx.stroke();
  };
  ctx.lineCap = "square";
  ctx.lineWidth = 2 * unit + 3;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.9)";
  path();
  ctx.lineWidth = 2 * unit;
  ctx.strokeStyle = "#ffffff";
  path();
  return edges.length;
}
