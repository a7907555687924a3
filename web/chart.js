// Inline-SVG line chart: mIoU against labeled pixels (Fig. 1c of the paper), no library.

const NS = "http://www.w3.org/2000/svg";
const SERIES_COLORS = ["#6cb4ff", "#f2b84b", "#6ad08a", "#ff7a7a", "#c792ea"];

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== null) node.textContent = text;
  return node;
}

/** About `count` round tick values covering [lo, hi]. */
export function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Number(v.toPrecision(12)));
  }
  if (ticks[ticks.length - 1] < hi) ticks.push(ticks[ticks.length - 1] + step);
  return ticks;
}

/** 1234 -> "1.2k", 4096000 -> "4.1M". */
export function compact(n) {
  const a = Math.abs(n);
  if (a >= 1e6) return `${+(n / 1e6).toFixed(a >= 1e7 ? 0 : 1)}M`;
  if (a >= 1e3) return `${+(n / 1e3).toFixed(a >= 1e4 ? 0 : 1)}k`;
  return String(+n.toFixed(2));
}

/**
 * Draw `series` ([{name, points: [{x, y, title}]}]) into `svg`.
 * Every point is a `circle.chart-point[data-testid=<pointId>]` with data-x / data-y.
 */
export function renderChart(svg, series,
  { xLabel, yLabel, width = 640, height = 300, pointId = "chart-point" } = {}) {
  const m = { top: 14, right: 18, bottom: 44, left: 52 };
  const all = series.flatMap((s) => s.points);
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  if (!all.length) {
    svg.append(el("text", { x: width / 2, y: height / 2, class: "chart-empty",
      "text-anchor": "middle" }, "No metrics posted yet"));
    return;
  }
  const xs = niceTicks(0, Math.max(...all.map((p) => p.x)));
  const ylo = Math.max(0, Math.min(...all.map((p) => p.y)) - 2);
  const ys = niceTicks(ylo, Math.max(...all.map((p) => p.y)) + 2);
  const [x0, x1, y0, y1] = [xs[0], xs[xs.length - 1], ys[0], ys[ys.length - 1]];
  const px = (v) => m.left + ((v - x0) / (x1 - x0)) * (width - m.left - m.right);
  const py = (v) => height - m.bottom - ((v - y0) / (y1 - y0)) * (height - m.top - m.bottom);

  const grid = el("g", { class: "chart-grid" });
  for (const t of ys) {
    grid.append(el("line", { x1: m.left, x2: width - m.right, y1: py(t), y2: py(t) }));
    grid.append(el("text", { x: m.left - 6, y: py(t) + 4, "text-anchor": "end" }, compact(t)));
  }
  for (const t of xs) {
    grid.append(el("line", { x1: px(t), x2: px(t), y1: m.top, y2: height - m.bottom }));
    grid.append(el("text", { x: px(t), y: height - m.bottom + 16, "text-anchor": "middle" },
      compact(t)));
  }
  svg.append(grid);
  svg.append(el("text", { class: "chart-axis", x: (m.left + width - m.right) / 2, y: height - 6,
    "text-anchor": "middle" }, xLabel));
  svg.append(el("text", { class: "chart-axis", x: 14, y: (m.top + height - m.bottom) / 2,
    "text-anchor": "middle", transform: `rotate(-90 14 ${(m.top + height - m.bottom) / 2})` },
  yLabel));

  series.forEach((s, i) => {
    const color = SERIES_COLORS[i % SERIES_COLORS.length];
    const pts = [...s.points].sort((a, b) => a.x - b.x);
    const g = el("g", { class: "chart-series", "data-series": s.name });
    g.append(el("polyline", { class: "chart-line", fill: "none", stroke: color,
      points: pts.map((p) => `${px(p.x)},${py(p.y)}`).join(" ") }));
    for (const p of pts) {
      const c = el("circle", { class: "chart-point", "data-testid": pointId,
        "data-x": p.x, "data-y": p.y, cx: px(p.x), cy: py(p.y), r: 4, fill: color });
      c.append(el("title", {}, p.title));
      g.append(c);
    }
    svg.append(g);
    if (series.length > 1) {
      const ly = m.top + 4 + i * 16;
      svg.append(el("rect", { x: width - m.right - 110, y: ly, width: 10, height: 10, fill: color }));
      svg.append(el("text", { class: "chart-legend", x: width - m.right - 95, y: ly + 9 }, s.name));
    }
  });
}
