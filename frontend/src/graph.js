// The service graph: Cytoscape.js with positions computed here from each node's rank, so the
// picture never moves when numbers change (no force layout, no randomness).
import cytoscape from "cytoscape";
import * as fmt from "./format.js";

export const COLORS = {
  ok: "#16a34a", warn: "#d97706", fail: "#dc2626", idle: "#94a3b8", denied: "#be123c",
};
const TINT = { ok: "#f0fdf4", warn: "#fffbeb", fail: "#fef2f2", idle: "#f8fafc" };

// Per orientation: px between ranks, px per version box along a rank, px between services.
const AXES = {
  LR: { rank: 310, version: 84, gap: 56, other: 56 },
  TB: { rank: 190, version: 200, gap: 110, other: 170 },
};
const BOX = { w: 178, h: 60 };

const LOCK = `<svg viewBox="0 0 16 16" width="13" height="13" aria-hidden="true"><rect x="3" y="7" width="10" height="8" rx="1.5" fill="currentColor"/><path d="M5 7V5a3 3 0 0 1 6 0v2" fill="none" stroke="currentColor" stroke-width="1.8"/></svg>`;

function versionLabel(n) {
  const lines = [n.label + (n.instances > 1 ? `  ×${n.instances}` : "")];
  if (n.rps == null || n.requests === 0) lines.push("idle");
  else lines.push(`${fmt.rps(n.rps)} · ${fmt.pct(n.error_rate)} err`);
  if (n.p99_ms != null) lines.push(`p99 ${fmt.ms(n.p99_ms)}`);
  return lines.join("\n");
}

function gatewayLabel(n) {
  const traffic = n.rps == null || n.requests === 0 ? "idle" : fmt.rps(n.rps);
  return `gateway ${n.label}\n${traffic}`;
}

function edgeLabel(e) {
  if (e.kind === "denied") return `denied ${fmt.rps(e.rps)}`;
  if (!e.requests) return "";
  return `${fmt.rps(e.rps)}\n${fmt.pct(e.error_rate)} err · p99 ${fmt.ms(e.p99_ms)}`;
}

function width(e) {
  if (!e.rps) return 1.5;
  return Math.min(2 + Math.log2(1 + e.rps) * 1.1, 8);
}

// Ranks along one axis (left to right, or top to bottom), in each rank gateways first, then
// services by name, versions of a service side by side; centred on the other axis.
export function positions(nodes, orientation = "LR") {
  const ax = AXES[orientation];
  const top = nodes.filter((n) => !n.parent);
  const children = new Map();
  for (const n of nodes) if (n.parent) {
    if (!children.has(n.parent)) children.set(n.parent, []);
    children.get(n.parent).push(n);
  }
  for (const list of children.values()) list.sort((a, b) => a.label.localeCompare(b.label, undefined, { numeric: true }));
  const ranks = new Map();
  for (const n of top) {
    if (!ranks.has(n.rank)) ranks.set(n.rank, []);
    ranks.get(n.rank).push(n);
  }
  const order = { gateway: 0, service: 1, external: 2 };
  const out = new Map();
  const place = (id, major, minor) => out.set(id, orientation === "LR" ? { x: major, y: minor } : { x: minor, y: major });
  for (const [rank, list] of ranks) {
    list.sort((a, b) => (order[a.kind] - order[b.kind]) || a.label.localeCompare(b.label));
    const sizes = list.map((n) => (n.kind === "service" ? Math.max(children.get(n.id)?.length ?? 1, 1) * ax.version : ax.other));
    const total = sizes.reduce((s, h) => s + h, 0) + ax.gap * (list.length - 1);
    let at = -total / 2;
    list.forEach((n, i) => {
      const major = rank * ax.rank;
      if (n.kind === "service") {
        (children.get(n.id) ?? []).forEach((c, j) => place(c.id, major, at + j * ax.version + ax.version / 2));
      } else {
        place(n.id, major, at + sizes[i] / 2);
      }
      at += sizes[i] + ax.gap;
    });
  }
  return out;
}

// The orientation that lets the graph be drawn largest in a w x h box.
export function orientationFor(nodes, w, h) {
  let best = "LR", bestScale = -1;
  for (const o of ["LR", "TB"]) {
    const pos = [...positions(nodes, o).values()];
    if (!pos.length) return "LR";
    const xs = pos.map((p) => p.x), ys = pos.map((p) => p.y);
    const bw = Math.max(...xs) - Math.min(...xs) + BOX.w + 40, bh = Math.max(...ys) - Math.min(...ys) + BOX.h + 60;
    const scale = Math.min(w / bw, h / bh);
    if (scale > bestScale + 0.05) { best = o; bestScale = scale; }
  }
  return best;
}

const STYLE = [
  { selector: "node", style: {
    "font-family": "DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif",
    "font-size": 12, color: "#0f172a", "text-wrap": "wrap", "text-valign": "center", "text-halign": "center",
  } },
  { selector: "node[kind = 'version']", style: {
    shape: "round-rectangle", width: BOX.w, height: BOX.h, "background-color": "data(tint)",
    "border-width": 2.5, "border-color": "data(color)", label: "data(text)", "line-height": 1.3,
  } },
  { selector: "node[kind = 'version'][?static]", style: { "border-style": "dashed" } },
  { selector: "node[kind = 'service']", style: {
    shape: "round-rectangle", "background-color": "#eef2f7", "background-opacity": 1,
    "border-width": 1, "border-color": "#cbd5e1", padding: 10, label: "data(text)",
    "text-valign": "top", "text-halign": "center", "text-margin-y": -4, "font-size": 13, "font-weight": 700,
    color: "#334155",
  } },
  { selector: "node[kind = 'service'].side-label", style: { "text-valign": "center", "text-halign": "left", "text-margin-x": -8, "text-margin-y": 0 } },
  { selector: "node[kind = 'gateway']", style: {
    shape: "round-rectangle", width: 150, height: 50, "background-color": "#1e293b",
    "border-width": 3, "border-color": "data(color)", label: "data(text)", color: "#f8fafc",
    "font-weight": 600, "line-height": 1.35,
  } },
  { selector: "node[kind = 'external']", style: {
    shape: "round-rectangle", width: 150, height: 40, "background-color": "#fff", "border-style": "dotted",
    "border-width": 2, "border-color": "#64748b", label: "data(text)",
  } },
  { selector: "edge", style: {
    "curve-style": "bezier", "target-arrow-shape": "triangle", "arrow-scale": 1.1,
    width: "data(width)", "line-color": "data(color)", "target-arrow-color": "data(color)",
    "target-label": "data(text)", "target-text-offset": 62, "font-size": 10.5, "font-family": "DejaVu Sans, Liberation Sans, Helvetica, Arial, sans-serif", color: "#0f172a",
    "text-background-color": "#ffffff", "text-background-opacity": 0.92, "text-background-padding": 2,
    "text-background-shape": "round-rectangle", "text-wrap": "wrap", "line-height": 1.25,
    "target-text-margin-y": -14,
  } },
  { selector: "edge[health = 'idle']", style: { "line-style": "dashed", "line-dash-pattern": [5, 5], opacity: 0.7 } },
  { selector: "edge[kind = 'denied']", style: {
    label: "data(text)", "target-label": "", // at the curve's bend, clear of the traffic labels
    "line-style": "dashed", "line-dash-pattern": [2, 4], "target-arrow-shape": "tee", color: COLORS.denied,
    "curve-style": "unbundled-bezier", "control-point-distances": [-60], "control-point-weights": [0.5],
  } },
  { selector: "node:selected", style: { "border-width": 4, "border-color": "#2563eb", "overlay-opacity": 0 } },
  { selector: "node[kind = 'service']:selected", style: { "background-color": "#dbeafe" } },
  { selector: ".faded", style: { opacity: 0.18 } },
  { selector: "node.explained", style: { "border-color": "#7c3aed", "border-width": 4, opacity: 1 } },
  { selector: "edge.explained", style: { "line-color": "#7c3aed", "target-arrow-color": "#7c3aed", width: 6, opacity: 1 } },
  { selector: "node.refused", style: { "border-color": COLORS.denied, "border-width": 4 } },
];

function nodeData(n) {
  const health = n.health ?? "idle";
  const text = n.kind === "version" ? versionLabel(n) : n.kind === "gateway" ? gatewayLabel(n) : n.label;
  return { ...n, parent: n.parent ?? undefined, text, color: COLORS[health] ?? COLORS.idle, tint: TINT[health] ?? TINT.idle };
}

function edgeData(e) {
  const color = e.kind === "denied" ? COLORS.denied : COLORS[e.health] ?? COLORS.idle;
  return { ...e, text: edgeLabel(e), color, width: e.kind === "denied" ? 2 : width(e) };
}

export class Graph {
  constructor(container, overlay, onSelect) {
    this.overlay = overlay;
    this.cy = cytoscape({
      container, style: STYLE, minZoom: 0.3, maxZoom: 1.6,
      boxSelectionEnabled: false, autoungrabify: true, layout: { name: "preset" },
    });
    this.cy.on("tap", "node", (ev) => onSelect(ev.target.data()));
    this.cy.on("render pan zoom resize", () => this.placeLocks());
    this.shape = "";
    this.orientation = "LR";
  }

  update(graph) {
    const cy = this.cy;
    const shape = graph.nodes.map((n) => n.id).sort().join(",");
    if (shape !== this.shape) this.orientation = orientationFor(graph.nodes, cy.width(), cy.height());
    const pos = positions(graph.nodes, this.orientation);
    const wanted = new Set();
    cy.batch(() => {
      // parents first: a child needs its compound node to exist
      const nodes = [...graph.nodes].sort((a, b) => (a.parent ? 1 : 0) - (b.parent ? 1 : 0));
      for (const n of nodes) {
        wanted.add(n.id);
        const el = cy.getElementById(n.id);
        if (el.nonempty()) el.data(nodeData(n));
        else cy.add({ group: "nodes", data: nodeData(n), position: pos.get(n.id) ?? { x: 0, y: 0 } });
        if (pos.has(n.id)) cy.getElementById(n.id).position(pos.get(n.id));
      }
      for (const e of graph.edges) {
        wanted.add(e.id);
        const el = cy.getElementById(e.id);
        if (el.nonempty()) el.data(edgeData(e));
        else cy.add({ group: "edges", data: edgeData(e) });
      }
      cy.elements().forEach((el) => { if (!wanted.has(el.id())) cy.remove(el); });
      cy.nodes("[kind = 'service']").toggleClass("side-label", this.orientation === "TB");
    });
    if (shape !== this.shape) { // refit only when the set of nodes changed
      this.shape = shape;
      cy.fit(undefined, 28);
    }
    this.placeLocks();
  }

  // A lock on each edge whose callee verified the caller's certificate on every request.
  placeLocks() {
    const html = [];
    const zoom = this.cy.zoom();
    this.cy.edges().forEach((e) => {
      if (e.data("mtls") !== true || e.hasClass("faded")) return;
      // beside the label, which sits LABEL_FROM_TARGET px before the arrow head
      const a = e.renderedSourceEndpoint(), b = e.renderedTargetEndpoint();
      const len = Math.hypot(b.x - a.x, b.y - a.y) || 1;
      const t = Math.max(0, 1 - (62 * zoom) / len);
      const x = a.x + (b.x - a.x) * t, y = a.y + (b.y - a.y) * t;
      html.push(`<span class="lock" style="left:${x.toFixed(0)}px;top:${(y + 12 * zoom).toFixed(0)}px" title="mutual TLS verified">${LOCK}</span>`);
    });
    const next = html.join("");
    if (next !== this._locks) { this.overlay.innerHTML = next; this._locks = next; }
  }

  select(id) {
    this.cy.$(":selected").unselect();
    if (id) this.cy.getElementById(id).select();
  }

  highlight(h) {
    const cy = this.cy;
    cy.elements().removeClass("faded explained refused");
    if (!h) { this.placeLocks(); return; }
    const nodes = new Set(h.nodes);
    const edges = new Set(h.edges);
    cy.elements().forEach((el) => {
      const id = el.id();
      const on = el.isNode() ? nodes.has(id) || el.children().some((c) => nodes.has(c.id())) : edges.has(id);
      el.addClass(on ? "explained" : "faded");
    });
    if (h.refused) for (const id of h.nodes) cy.getElementById(id).addClass("refused");
    this.placeLocks();
  }
}
