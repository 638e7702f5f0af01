// Numbers with their units, the same way everywhere on the page.

export const DASH = "–";

export function rps(v) {
  if (v == null) return DASH;
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} req/s`;
}

export function pct(v, digits = 1) {
  return v == null ? DASH : `${v.toFixed(digits)} %`;
}

export function ms(v) {
  if (v == null) return DASH;
  if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
  return `${v >= 10 ? v.toFixed(0) : v.toFixed(1)} ms`;
}

export function mb(v) {
  return v == null ? DASH : `${v.toFixed(0)} MB`;
}

export function seconds(v) {
  return v == null ? DASH : `${v.toFixed(v >= 10 ? 0 : 1)} s`;
}

export function rev(r) {
  return r ? String(r).slice(0, 10) : DASH;
}

export function clock(t) {
  if (!t) return DASH;
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function ago(t, now = Date.now() / 1000) {
  if (!t) return DASH;
  const s = Math.max(0, now - t);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  if (s < 86400) return `${(s / 3600).toFixed(0)} h ago`;
  return `${(s / 86400).toFixed(0)} d ago`;
}

const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
export function esc(v) {
  return String(v ?? "").replace(/[&<>"']/g, (c) => ESC[c]);
}
