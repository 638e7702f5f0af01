// The dashboard page: live ticks over server-sent events, the graph, and the side panel.
import { Graph } from "./graph.js";
import * as fmt from "./format.js";
import { explainView, rolloutView, serviceView } from "./panels.js";

const $ = (sel) => document.querySelector(sel);
const state = { service: null, tab: "service", graph: null, rollout: null, explained: null, fetching: false, lastTick: 0 };

const graph = new Graph($("#graph"), $("#overlay"), (node) => {
  const name = node.kind === "version" || node.kind === "service" ? node.service : null;
  if (!name) return;
  state.service = name;
  showTab("service");
  loadService();
});

function showTab(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll(".tabs button")) b.classList.toggle("active", b.dataset.tab === tab);
  for (const name of ["service", "rollout", "explain"]) $(`#tab-${name}`).hidden = name !== tab;
  if (tab === "rollout" && state.rollout) $("#tab-rollout").innerHTML = rolloutView(state.rollout);
}
for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));

async function getJSON(url, options) {
  const resp = await fetch(url, options);
  const body = await resp.json();
  if (!resp.ok) throw new Error(body.error || resp.statusText);
  return body;
}

async function loadService() {
  if (!state.service || state.fetching) return;
  state.fetching = true;
  try {
    const view = await getJSON(`/api/services/${encodeURIComponent(state.service)}`);
    $("#tab-service").innerHTML = serviceView(view);
    graph.select(`service/${state.service}`);
  } catch (err) {
    $("#tab-service").innerHTML = `<p class="error">${fmt.esc(err.message)}</p>`;
  } finally {
    state.fetching = false;
  }
}

function fillExplainSources(g) {
  const select = $("#explain-from");
  const names = [
    ...g.nodes.filter((n) => n.kind === "gateway").map((n) => n.id),
    ...g.nodes.filter((n) => n.kind === "service").map((n) => n.service),
  ];
  if (select.dataset.names === names.join(",")) return;
  const current = select.value;
  select.innerHTML = names.map((n) => `<option>${fmt.esc(n)}</option>`).join("");
  select.dataset.names = names.join(",");
  if (names.includes(current)) select.value = current;
  else if (names.includes("frontend")) select.value = "frontend";
}

function caption(g) {
  const traffic = g.edges.filter((e) => e.kind === "traffic" && e.requests);
  const total = g.nodes.filter((n) => n.kind === "gateway").reduce((s, n) => s + (n.rps || 0), 0);
  const denied = g.edges.filter((e) => e.kind === "denied").reduce((s, e) => s + (e.rps || 0), 0);
  return `<b>${fmt.rps(total)}</b> in through gateways · ${traffic.length} live edges` +
    (denied ? ` · <span class="bad">${fmt.rps(denied)} denied</span>` : "") +
    ` · numbers over the last ${fmt.seconds(g.window_s)}`;
}

function onTick(snap) {
  state.lastTick = Date.now();
  $("#live").classList.add("on");
  $("#live span").textContent = `live · ${new Date(snap.at * 1000).toLocaleTimeString()}`;
  const banner = $("#error");
  banner.hidden = !snap.error;
  banner.textContent = snap.error || "";
  if (snap.graph) {
    state.graph = snap.graph;
    graph.update(snap.graph);
    if (state.explained) graph.highlight(state.explained);
    $("#revision").textContent = `revision ${fmt.rev(snap.graph.revision)}`;
    $("#revision").title = snap.graph.revision || "";
    $("#caption").innerHTML = caption(snap.graph);
    fillExplainSources(snap.graph);
  }
  if (snap.rollout) {
    state.rollout = snap.rollout;
    if (snap.rollout.subject) $("#revision").textContent = `revision ${fmt.rev(snap.rollout.revision)} · ${snap.rollout.subject}`;
    const live = snap.rollout.progress?.in_progress || (snap.rollout.promotion && !snap.rollout.promotion.error);
    $("#rollout-chip").hidden = !live;
    $("#rollout-badge").hidden = !live;
    const p = snap.rollout.progress;
    if (p?.in_progress) $("#rollout-chip").textContent = `${p.action} ${fmt.rev(p.target)} in progress`;
    else if (live) $("#rollout-chip").textContent = `promoting ${snap.rollout.promotion.service} ${snap.rollout.promotion.target}`;
    if (state.tab === "rollout") $("#tab-rollout").innerHTML = rolloutView(snap.rollout);
  }
  if (state.tab === "service") loadService();
}

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("tick", (ev) => onTick(JSON.parse(ev.data)));
  source.onerror = () => {
    $("#live").classList.remove("on");
    $("#live span").textContent = "reconnecting…";
  };
}

$("#explain-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const body = {
    from: form.get("from"), method: form.get("method"), url: form.get("url"),
    headers: String(form.get("headers") || "").split("\n").map((h) => h.trim()).filter(Boolean),
  };
  try {
    const x = await getJSON("/api/explain", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    $("#explain-result").innerHTML = explainView(x);
    state.explained = x.highlight;
    graph.highlight(x.highlight);
  } catch (err) {
    $("#explain-result").innerHTML = `<p class="error" data-testid="explain-error">${fmt.esc(err.message)}</p>`;
    state.explained = null;
    graph.highlight(null);
  }
});
$("#explain-from").addEventListener("change", (ev) => {
  $("#explain-url").placeholder = ev.target.value.startsWith("gateway/") ? "/product/1" : "http://reviews/reviews/1";
});
$("#explain-clear").addEventListener("click", () => {
  state.explained = null;
  graph.highlight(null);
  $("#explain-result").innerHTML = "";
});

window.meshDashboard = { cy: graph.cy, state }; // for browser tests and the devtools console
connect();
