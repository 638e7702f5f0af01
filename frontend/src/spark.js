// Small inline SVG time series: one line, the latest value beside it.
import { esc } from "./format.js";

export function spark(points, key, { color = "#2563eb", format = String, min = null, max = null, title = "" } = {}) {
  const w = 96, h = 24, pad = 2;
  const values = points.map((p) => p[key]);
  const known = values.filter((v) => v != null);
  const last = known.length ? known[known.length - 1] : null;
  if (known.length < 2) {
    return `<span class="spark empty" title="${esc(title)}"><svg width="${w}" height="${h}"></svg><b>${esc(format(last))}</b></span>`;
  }
  const lo = min ?? Math.min(...known);
  let hi = max ?? Math.max(...known);
  if (hi - lo < 1e-9) hi = lo + 1;
  const step = (w - 2 * pad) / Math.max(values.length - 1, 1);
  let d = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v == null) { pen = false; return; }
    const x = pad + i * step;
    const y = h - pad - ((Math.min(Math.max(v, lo), hi) - lo) / (hi - lo)) * (h - 2 * pad);
    d += `${pen ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)}`;
    pen = true;
  });
  return `<span class="spark" title="${esc(title)}"><svg width="${w}" height="${h}" viewBox="0 0 ${w} ${h}">` +
    `<path d="${d}" fill="none" stroke="${color}" stroke-width="1.6" stroke-linejoin="round"/></svg>` +
    `<b>${esc(format(last))}</b></span>`;
}
