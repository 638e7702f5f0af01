// The side panel: one service, the rollout, and the explain answer, as HTML.
import * as fmt from "./format.js";
import { spark } from "./spark.js";
import { COLORS } from "./graph.js";

const esc = fmt.esc;

function healthOf(success, healthy) {
  if (!healthy) return "fail";
  if (success == null) return "idle";
  if (success < 95) return "fail";
  if (success < 99) return "warn";
  return "ok";
}

function dot(state, title = "") {
  return `<i class="dot ${esc(state)}" title="${esc(title || state)}"></i>`;
}

function shareBar(share, weight) {
  const s = share ?? 0;
  const marker = weight == null ? "" : `<i class="weight" style="left:${Math.min(weight, 100)}%" title="configured weight ${fmt.pct(weight, 0)}"></i>`;
  return `<div class="share-bar" title="live share ${fmt.pct(share)}"><b style="width:${Math.min(s, 100)}%"></b>${marker}</div>`;
}

function rule(r, i) {
  const backends = r.backends.map((b) => `<span class="backend">${esc(b.version ?? b.service)} <b>${fmt.pct(b.percent, 0)}</b></span>`).join("");
  const answer = r.redirect ? `<span class="backend">redirect ${esc(r.redirect)}</span>` : r.respond ? `<span class="backend">respond ${esc(r.respond)}</span>` : "";
  const extras = [
    r.sticky && `sticky ${r.sticky}`, r.timeout && `timeout ${r.timeout}`, r.retries && `retries ${r.retries}`,
    r.fault && `fault: ${r.fault}`, r.mirror && `mirror ${r.mirror}`,
  ].filter(Boolean).map((x) => `<span>${esc(x)}</span>`).join("");
  return `<li class="rule"><div class="rule-head"><span class="n">${i + 1}</span><b>${esc(r.name)}</b><span class="match">${esc(r.match)}</span></div>` +
    `<div class="backends">${backends}${answer}</div>${extras ? `<div class="extras">${extras}</div>` : ""}</li>`;
}

export function serviceView(s) {
  const versions = s.versions.map((v) => {
    const healthy = v.instances.length === 0 || v.instances.some((i) => i.healthy);
    const state = healthOf(v.success, healthy);
    return `<div class="version" data-version="${esc(v.version)}">
      <div class="version-head">${dot(state)}<b class="vname">${esc(v.version)}</b>
        <div class="share-cell">${shareBar(v.share, v.weight)}</div>
        <span class="share-nums"><b data-testid="share-${esc(v.version)}">${fmt.pct(v.share)}</b> live · ${fmt.pct(v.weight, 0)} set</span>
      </div>
      <div class="series">
        <label><span>traffic</span>${spark(v.series, "rps", { color: "#0f766e", min: 0, format: fmt.rps, title: "requests per second, per 10 s" })}</label>
        <label><span>success</span>${spark(v.series, "success", { color: COLORS.ok, min: 0, max: 100, format: (x) => fmt.pct(x), title: "success rate, per 10 s" })}</label>
        <label><span>p50</span>${spark(v.series, "p50_ms", { color: "#2563eb", min: 0, format: fmt.ms, title: "p50 latency, per 10 s" })}</label>
        <label><span>p99</span>${spark(v.series, "p99_ms", { color: "#7c3aed", min: 0, format: fmt.ms, title: "p99 latency, per 10 s" })}</label>
      </div></div>`;
  }).join("");
  const instances = s.versions.flatMap((v) => v.instances.map((i) => `<tr>
      <td class="nowrap">${dot(i.healthy ? "ok" : "fail", i.status)}${esc(i.instance)}</td>
      <td>${esc(i.healthy ? "ready" : i.status)}</td>
      <td class="mono" title="${esc(i.revision ?? "")}">${esc(fmt.rev(i.revision))}</td>
      <td class="num">${fmt.rps(i.rps)}</td>
      <td class="num">${fmt.mb(i.pss_mb)}</td>
      <td class="num">${esc(i.restarts)}</td></tr>`)).join("");
  const statics = s.versions.filter((v) => v.static_endpoints.length).map((v) => `<p class="muted">${esc(v.version)}: static endpoints ${esc(v.static_endpoints.join(", "))}</p>`).join("");
  return `<div class="card head-card">
      <h2>${esc(s.service)} <small>${esc(s.protocol)}</small></h2>
      <div class="kpis">
        <div><span>traffic</span><b>${fmt.rps(s.rps)}</b></div>
        <div><span>errors</span><b>${fmt.pct(s.error_rate)}</b></div>
        <div><span>p50</span><b>${fmt.ms(s.p50_ms)}</b></div>
        <div><span>p99</span><b>${fmt.ms(s.p99_ms)}</b></div>
      </div>
      <p class="muted">last ${fmt.seconds(s.window_s)} · called by ${esc(s.callers.join(", ") || "nobody")}</p>
    </div>
    <div class="card"><h3>Versions <small>live share vs configured weight</small></h3>
      ${versions}</div>
    <div class="card"><h3>Route rules <small>${s.explicit_route ? "first match wins" : "no Route: every version by weight"}</small></h3>
      <ol class="rules">${s.rules.map(rule).join("")}</ol></div>
    <div class="card"><h3>Instances</h3>
      <table class="instances"><thead><tr><th>instance</th><th>health</th><th>revision</th><th>traffic</th><th>PSS</th><th>restarts</th></tr></thead>
      <tbody>${instances || `<tr><td colspan="6" class="muted">no instances run here</td></tr>`}</tbody></table>${statics}</div>
    ${s.access.length ? `<div class="card"><h3>Access</h3><ul class="access">${s.access.map((a) => `<li>${esc(a)}</li>`).join("")}</ul></div>` : ""}`;
}

const WAVE_STATE = { pending: "idle", updating: "warn", gating: "warn", passed: "ok", failed: "fail" };

function gateBlock(g, limits) {
  if (!g) return "";
  const within = Math.min(100, (100 * g.elapsed_s) / Math.max(limits.window_s, 0.001));
  const errBad = g.requests && g.error_rate > limits.max_error_rate;
  const p99Bad = g.p99_ms != null && g.p99_ms > limits.max_p99_ms;
  return `<div class="gate">
    <div class="gate-bar"><b style="width:${within.toFixed(0)}%"></b></div>
    <div class="gate-nums">
      <span>${fmt.seconds(g.elapsed_s)} / ${fmt.seconds(limits.window_s)}</span>
      <span><b>${esc(g.requests)}</b> requests</span>
      <span class="${errBad ? "bad" : ""}">errors <b>${fmt.pct(g.error_rate, 2)}</b> (max ${fmt.pct(limits.max_error_rate, 0)})</span>
      <span class="${p99Bad ? "bad" : ""}">p99 <b>${fmt.ms(g.p99_ms)}</b> (max ${fmt.ms(limits.max_p99_ms)})</span>
    </div>${g.verdict ? `<div class="verdict">${esc(g.verdict)}</div>` : ""}</div>`;
}

function progressCard(p) {
  const state = p.in_progress ? "warn" : p.status === "succeeded" ? "ok" : "fail";
  const waves = p.waves.map((w) => `<li class="wave ${esc(w.status)}">
      <div class="wave-head">${dot(WAVE_STATE[w.status] ?? "idle", w.status)}<b>${esc(w.label)}</b>
      <span class="muted">${esc(w.sidecars.join(", "))}</span><span class="wave-status">${esc(w.status)}${w.confirm_s != null ? ` · confirmed in ${fmt.seconds(w.confirm_s)}` : ""}</span></div>
      ${gateBlock(w.gate, p.gate)}</li>`).join("");
  return `<div class="card progress ${p.in_progress ? "live-card" : ""}" data-testid="apply-progress">
    <h3>${p.in_progress ? "In progress" : "Last rollout"}: ${esc(p.action)} <span class="status-chip ${state}">${esc(p.status)}</span></h3>
    <p><span class="mono">${esc(fmt.rev(p.base))}</span> → <span class="mono" title="${esc(p.target)}">${esc(fmt.rev(p.target))}</span> ${p.subject ? `<i>${esc(p.subject)}</i>` : ""}</p>
    <p class="muted">started ${esc(fmt.ago(p.started_at))}${p.added.length ? ` · starting ${esc(p.added.join(", "))}` : ""}${p.removed.length ? ` · stopping ${esc(p.removed.join(", "))}` : ""}</p>
    <ol class="waves">${waves || `<li class="muted">no sidecar config changes</li>`}</ol>
    ${p.message ? `<p class="message mono">${esc(p.message)}</p>` : ""}
  </div>`;
}

function promotionCard(p) {
  if (p.error) return `<div class="card"><h3>Promotion</h3><p class="error">${esc(p.error)}</p></div>`;
  const steps = p.steps.map((pct, i) => {
    const state = i < p.passed ? "passed" : i === p.passed && p.phase === "step" ? "current" : "pending";
    return `<li class="step ${state}" title="${esc(state)}">${esc(pct)} %</li>`;
  }).join("");
  const phase = p.phase === "rollback" ? "rolling back" : p.phase === "final" ? "retiring the old version" : `step ${Math.min(p.passed + 1, p.steps.length)} of ${p.steps.length}`;
  return `<div class="card progress live-card" data-testid="promotion">
    <h3>Promotion: ${esc(p.service)} ${esc(p.source)} → ${esc(p.target)} <span class="status-chip warn">${esc(phase)}</span></h3>
    <ol class="steps">${steps}</ol>
    <p class="muted">rule ${esc(p.rule)} · each step watched for ${fmt.seconds(p.interval_ms / 1000)} · ${esc(p.commits.length)} commit(s) so far · interrupted? <span class="mono">meshctl promote --resume</span></p>
  </div>`;
}

export function rolloutView(r) {
  const history = r.history.map((h) => `<tr class="${String(h.action).endsWith("-failed") ? "failed" : ""}">
      <td class="muted" title="${esc(fmt.clock(h.at))}">${esc(fmt.ago(h.at))}</td>
      <td><span class="action">${esc(h.action)}</span></td>
      <td class="mono" title="${esc(h.revision)}">${esc(fmt.rev(h.revision))}</td>
      <td>${esc(h.subject ?? "")}${h.note ? `<div class="muted">${esc(h.note)}</div>` : ""}</td></tr>`).join("");
  return `<div class="card head-card"><h3>Applied revision</h3>
      <p class="applied"><span class="mono" title="${esc(r.revision ?? "")}">${esc(fmt.rev(r.revision))}</span> ${r.subject ? `<b>${esc(r.subject)}</b>` : ""}</p></div>
    ${r.promotion ? promotionCard(r.promotion) : ""}
    ${r.progress ? progressCard(r.progress) : ""}
    <div class="card"><h3>History <small>newest first</small></h3>
      <table class="history">${history || `<tr><td class="muted">nothing applied yet</td></tr>`}</table></div>`;
}

export function explainView(x) {
  const a = x.answer;
  const outcome = a.status != null ? `sidecar answers ${a.status}${a.flags.length ? ` [${a.flags.join(",")}]` : ""}` : "forwarded";
  const state = a.status == null ? "ok" : a.status >= 400 ? "fail" : "warn";
  const backends = a.backends.map((b) => `<span class="backend">${esc(b.version ? `${b.service}/${b.version}` : b.service)} <b>${fmt.pct(b.probability * 100, 0)}</b></span>`).join("");
  const rows = x.text.trim().split("\n").map((line) => {
    const i = line.indexOf(":");
    return `<tr><th>${esc(line.slice(0, i))}</th><td>${esc(line.slice(i + 1).trim())}</td></tr>`;
  }).join("");
  return `<div class="card answer" data-testid="explain-answer">
    <h3><span class="status-chip ${state}">${esc(outcome)}</span> ${a.rule ? `rule <b>${esc(a.rule)}</b>` : ""}</h3>
    ${backends ? `<div class="backends">${backends}</div>` : ""}
    <table class="explain">${rows}</table></div>`;
}
