// hybridgrid flow UI: plain JS, no build step. Hash routes:
//   #/                              workflows
//   #/workflows/<id>                a workflow's DAG and runs
//   #/workflows/<id>/runs/<runId>   a run: DAG with node states, agent runs, approvals
//   #/approvals                     approvals waiting for a decision
//   #/agents                        the agent registry
// Query parameters: ?token=T (bearer token for writes, kept in localStorage),
//                   ?autoapprove=ID|any (click Approve on that waiting approval once it shows).
"use strict";

const params = new URLSearchParams(location.search);
if (params.get("token")) localStorage.setItem("hgflow-token", params.get("token"));
const AUTO_APPROVE = params.get("autoapprove");
const TERMINAL = new Set(["SUCCESS", "SUCCEEDED", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);
let pollTimer = null;
let autoApproved = false;
let selectedNode = null;

const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const badge = (s) => `<span class="status s-${esc(s)}">${esc(s || "?")}</span>`;
const fmtTime = (t) => (t ? new Date(t).toLocaleString() : "");
const pretty = (v) => (v === undefined || v === null || v === "" ? "(none)" : typeof v === "string" ? v : JSON.stringify(v, null, 2));
const nodeIdOf = (n) => n.id ?? n.nodeId ?? n.node_id ?? n.node;
const view = () => document.getElementById("view");

async function api(path, opts = {}) {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 10000);
  const headers = { "Content-Type": "application/json" };
  const tok = localStorage.getItem("hgflow-token");
  if (tok) headers["Authorization"] = "Bearer " + tok;
  try {
    const r = await fetch(path, { ...opts, headers, signal: ctl.signal });
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = text; }
    if (!r.ok) {
      const msg = body && body.message ? body.message : `HTTP ${r.status}`;
      const e = new Error(msg);
      e.status = r.status;
      throw e;
    }
    return body;
  } catch (e) {
    if (e.name === "AbortError") throw new Error(`the server did not answer ${path} within 10 s`);
    if (e instanceof TypeError) throw new Error(`cannot reach the server (${e.message})`);
    throw e;
  } finally {
    clearTimeout(t);
  }
}

function showError(e, where) {
  view().insertAdjacentHTML("afterbegin", `<div class="err" id="error">Error${where ? " " + esc(where) : ""}: ${esc(e.message)}</div>`);
}

async function health() {
  const el = document.getElementById("health");
  try {
    const h = await api("/health");
    let db = "?";
    try { db = (await api("/health/db")).status; } catch (e) { db = "down: " + e.message; }
    el.textContent = `server ${h.status} · db ${db}`;
  } catch (e) {
    el.textContent = "server unreachable: " + e.message;
  }
  try {
    const a = await api("/api/approvals?status=PENDING");
    const n = (Array.isArray(a) ? a : a.approvals || []).length;
    document.getElementById("approval-count").textContent = n ? `(${n})` : "";
  } catch (_) { /* counted next time */ }
}

// ---------- DAG ----------
function edgesOf(wf) {
  const edges = [];
  const seen = new Set();
  const add = (from, to) => { const k = from + "\u0000" + to; if (!seen.has(k)) { seen.add(k); edges.push({ from, to }); } };
  for (const e of wf.edges || []) add(e.from, e.to);
  for (const n of wf.nodes || []) for (const d of n.dependsOn || n.depends_on || []) add(d, nodeIdOf(n));
  return edges;
}

function dagSvg(wf, states, onclick) {
  const nodes = (wf.nodes || []).map(nodeIdOf);
  const edges = edgesOf(wf);
  const level = {};
  const parents = {};
  nodes.forEach((n) => { parents[n] = []; });
  edges.forEach((e) => { (parents[e.to] ||= []).push(e.from); });
  const depth = (n, guard = 0) => {
    if (level[n] !== undefined) return level[n];
    if (guard > nodes.length) return 0;
    level[n] = 0;
    const ps = parents[n] || [];
    level[n] = ps.length ? 1 + Math.max(...ps.map((p) => depth(p, guard + 1))) : 0;
    return level[n];
  };
  nodes.forEach((n) => depth(n));
  const cols = {};
  const pos = {};
  nodes.forEach((n) => { const l = level[n]; cols[l] = (cols[l] || 0) + 1; pos[n] = { x: 20 + l * 210, y: 20 + (cols[l] - 1) * 72 }; });
  const w = 20 + (Math.max(0, ...Object.keys(cols).map(Number)) + 1) * 210;
  const h = 30 + Math.max(1, ...Object.values(cols)) * 72;
  let svg = `<svg width="${w}" height="${h}" id="dag"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#5c6773"/></marker></defs>`;
  for (const e of edges) {
    const a = pos[e.from], b = pos[e.to];
    if (!a || !b) continue;
    const x1 = a.x + 170, y1 = a.y + 24, x2 = b.x, y2 = b.y + 24, mx = (x1 + x2) / 2;
    svg += `<path class="edge" d="M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}"/>`;
  }
  const colors = { SUCCESS: "#1f4d2b", SUCCEEDED: "#1f4d2b", COMPLETED: "#1f4d2b", FAILED: "#5a1d1d", RUNNING: "#16365c", WAITING_APPROVAL: "#5a4312", SKIPPED: "#2d333b", CANCELLED: "#2d333b" };
  for (const n of nodes) {
    const p = pos[n];
    const st = states ? states[n] || "PENDING" : "";
    const def = (wf.nodes || []).find((x) => nodeIdOf(x) === n) || {};
    const fill = colors[st] || "#222a35";
    svg += `<g class="node${selectedNode === n ? " sel" : ""}" data-node="${esc(n)}" id="node-${esc(n)}" data-state="${esc(st)}"><rect x="${p.x}" y="${p.y}" width="170" height="48" rx="8" fill="${fill}"/>` +
      `<text x="${p.x + 10}" y="${p.y + 19}" font-weight="600">${esc(n)}</text>` +
      `<text x="${p.x + 10}" y="${p.y + 37}" class="muted">${esc(st || def.agent || "")}${def.approvalRequired ? " · approval" : ""}</text></g>`;
  }
  svg += "</svg>";
  setTimeout(() => {
    document.querySelectorAll("#dag .node").forEach((g) => g.addEventListener("click", () => onclick && onclick(g.dataset.node)));
  }, 0);
  return svg;
}

// ---------- views ----------
async function workflowsView() {
  const list = await api("/api/workflows");
  const wfs = Array.isArray(list) ? list : list.workflows || [];
  let html = `<h2>Workflows</h2>`;
  if (!wfs.length) html += `<p class="muted">No workflows yet. Create one with POST /api/workflows (see /api/openapi.json), or run <code>hg-flow demo</code>.</p>`;
  else {
    html += `<table id="workflows"><tr><th>Name</th><th>Status</th><th>Nodes</th><th>Trigger</th><th></th></tr>`;
    for (const w of wfs) {
      html += `<tr><td><a href="#/workflows/${encodeURIComponent(w.id)}">${esc(w.name)}</a><div class="muted">${esc(w.description || "")}</div></td>` +
        `<td>${badge(w.status)}</td><td>${(w.nodes || []).length}</td><td>${esc(w.trigger ? w.trigger.type || JSON.stringify(w.trigger) : "manual")}</td>` +
        `<td><button data-trigger="${esc(w.id)}">Run now</button></td></tr>`;
    }
    html += `</table>`;
  }
  view().innerHTML = html;
  view().querySelectorAll("button[data-trigger]").forEach((b) => b.addEventListener("click", () => trigger(b.dataset.trigger)));
}

async function trigger(id) {
  try {
    const r = await api(`/api/workflows/${encodeURIComponent(id)}/trigger`, { method: "POST", body: "{}" });
    location.hash = `#/workflows/${encodeURIComponent(id)}/runs/${encodeURIComponent(r.runId || r.id)}`;
  } catch (e) { showError(e, "triggering"); }
}

async function workflowView(id) {
  const [wf, runsBody] = await Promise.all([api(`/api/workflows/${encodeURIComponent(id)}`), api(`/api/workflows/${encodeURIComponent(id)}/runs`)]);
  const runs = Array.isArray(runsBody) ? runsBody : runsBody.runs || [];
  let html = `<h2>${esc(wf.name)} ${badge(wf.status)} <span class="muted">v${esc(wf.version ?? "")}</span> <button data-trigger="${esc(wf.id)}">Run now</button></h2>`;
  html += `<div class="card">${dagSvg(wf, null, null)}</div>`;
  html += `<h2>Runs</h2><table id="runs"><tr><th>Run</th><th>Status</th><th>Trigger</th><th>Started</th><th>Finished</th></tr>`;
  for (const r of runs) {
    html += `<tr><td><a href="#/workflows/${encodeURIComponent(id)}/runs/${encodeURIComponent(r.id)}">${esc(r.id)}</a></td><td>${badge(r.status)}</td><td>${esc(r.trigger?.type ?? r.trigger ?? "")}</td><td>${fmtTime(r.startedAt || r.createdAt)}</td><td>${fmtTime(r.finishedAt || r.completedAt)}</td></tr>`;
  }
  if (!runs.length) html += `<tr><td colspan="5" class="muted">No runs yet.</td></tr>`;
  view().innerHTML = html + `</table>`;
  view().querySelectorAll("button[data-trigger]").forEach((b) => b.addEventListener("click", () => trigger(b.dataset.trigger)));
}

function whyText(run, nodeStates, agentRuns, approvals) {
  const st = run.status;
  const nodes = Object.entries(nodeStates);
  const running = nodes.filter(([, s]) => s === "RUNNING").map(([n]) => n);
  const failed = agentRuns.filter((a) => a.status === "FAILED");
  if (st === "WAITING_APPROVAL" || approvals.length) {
    const a = approvals[0];
    if (a) return { cls: "", text: `Waiting for approval of step “${a.nodeId ?? a.node_id ?? "?"}” since ${fmtTime(a.requestedAt || a.createdAt)}${a.expiresAt ? `; it expires at ${fmtTime(a.expiresAt)}` : ""}. Approve or reject it below.` };
    return { cls: "", text: "Waiting for an approval decision." };
  }
  if (st === "FAILED" || st === "TIMED_OUT") {
    const parts = [`This run ${st === "TIMED_OUT" ? "timed out" : "failed"}${run.error ? ": " + run.error : "."}`];
    for (const f of failed) parts.push(`Step “${f.nodeId ?? f.node_id}” failed: ${f.error || "exit " + (f.exitCode ?? "?")}.`);
    const skipped = nodes.filter(([, s]) => s === "SKIPPED").map(([n]) => n);
    if (skipped.length) parts.push(`Skipped downstream: ${skipped.join(", ")}.`);
    parts.push("Retry resumes from the failed steps and keeps the successful ones.");
    return { cls: "bad", text: parts.join(" ") };
  }
  if (st === "CANCELLED") return { cls: "bad", text: `This run was cancelled${run.error ? ": " + run.error : ""}. Retry resumes it.` };
  if (TERMINAL.has(st)) return { cls: "good", text: `Finished ${st}${run.finishedAt && run.startedAt ? ` in ${((new Date(run.finishedAt) - new Date(run.startedAt)) / 1000).toFixed(2)} s` : ""}.` };
  if (running.length) return { cls: "", text: `Running: ${running.join(", ")}${run.deadline ? `. The run fails if it is not done by ${fmtTime(run.deadline)}` : ""}.` };
  if (st === "PENDING" || st === "QUEUED") return { cls: "", text: "Queued: waiting for an orchestrator to pick it up." };
  return { cls: "", text: `Status ${st}: no step is running right now; the engine schedules the next ready step${run.deadline ? ` (deadline ${fmtTime(run.deadline)})` : ""}.` };
}

async function runView(wfId, runId) {
  const base = `/api/workflows/${encodeURIComponent(wfId)}/runs/${encodeURIComponent(runId)}`;
  const [wf, run, arBody, apBody] = await Promise.all([
    api(`/api/workflows/${encodeURIComponent(wfId)}`),
    api(base),
    api(`${base}/agent-runs`),
    api(`/api/approvals?runId=${encodeURIComponent(runId)}`),
  ]);
  // The run's own nodes carry the pinned definition's dependencies (the workflow may have changed since).
  const def = run.nodes && run.nodes.length ? { nodes: run.nodes } : wf;
  const agentRuns = Array.isArray(arBody) ? arBody : arBody.agentRuns || [];
  const approvals = (Array.isArray(apBody) ? apBody : apBody.approvals || []).filter((a) => (a.runId ?? a.run_id) === runId && (a.status === "PENDING" || a.status === "WAITING"));
  const nodeStates = {};
  for (const n of run.nodes || run.steps || []) nodeStates[nodeIdOf(n)] = n.status ?? n.state;
  for (const a of agentRuns) { const id = a.nodeId ?? a.node_id; if (id && !nodeStates[id]) nodeStates[id] = a.status; }
  for (const a of approvals) { const id = a.nodeId ?? a.node_id; if (id) nodeStates[id] = "WAITING_APPROVAL"; }
  const why = whyText(run, nodeStates, agentRuns, approvals);
  let html = `<h2><a href="#/workflows/${encodeURIComponent(wfId)}">${esc(wf.name)}</a> / run <span id="run-id">${esc(run.id)}</span> <span id="run-status">${badge(run.status)}</span></h2>`;
  html += `<div class="why ${why.cls}" id="why">${esc(why.text)}</div>`;
  if (!TERMINAL.has(run.status)) html += `<button class="plain" id="cancel">Cancel run</button> `;
  if (run.status === "FAILED" || run.status === "CANCELLED" || run.status === "TIMED_OUT") html += `<button class="plain" id="retry">Retry from failed steps</button>`;
  if (approvals.length) {
    html += `<h2>Waiting approvals</h2><table id="approvals"><tr><th>Step</th><th>Requested</th><th>Notes</th><th></th></tr>`;
    for (const a of approvals) html += approvalRow(a);
    html += `</table>`;
  }
  html += `<h2>DAG</h2><div class="card">${dagSvg(def, nodeStates, (n) => { selectedNode = n; route(); })}</div>`;
  html += `<h2>Agent runs</h2><table id="agent-runs"><tr><th>Step</th><th>Agent</th><th>Status</th><th>Attempt</th><th>Duration</th><th>Error</th></tr>`;
  for (const a of agentRuns) {
    const id = a.nodeId ?? a.node_id;
    html += `<tr data-node="${esc(id)}"><td><a href="javascript:void 0" data-select="${esc(id)}">${esc(id)}</a></td><td>${esc(a.agent?.name ?? a.agent ?? a.agentName ?? "")}</td><td>${badge(a.status)}</td><td>${esc(a.attempt ?? "")}</td><td>${a.durationMs != null ? esc(a.durationMs) + " ms" : ""}</td><td>${esc(a.error || "")}</td></tr>`;
  }
  if (!agentRuns.length) html += `<tr><td colspan="6" class="muted">No agent has run yet.</td></tr>`;
  html += `</table>`;
  const sel = selectedNode && agentRuns.filter((a) => (a.nodeId ?? a.node_id) === selectedNode).pop();
  if (sel) {
    html += `<h2>Step “${esc(selectedNode)}” (attempt ${esc(sel.attempt ?? "")})</h2><div class="grid" id="agent-run-detail">` +
      `<div><b>Input</b><pre id="ar-input">${esc(pretty(sel.input))}</pre></div><div><b>Output</b><pre id="ar-output">${esc(pretty(sel.output))}</pre></div>` +
      `<div><b>stderr</b><pre id="ar-stderr">${esc(pretty(sel.stderr))}</pre></div><div><b>stdout</b><pre id="ar-stdout">${esc(pretty(sel.stdout))}</pre></div></div>`;
  } else if (selectedNode) {
    html += `<p class="muted">Step “${esc(selectedNode)}” has not run yet.</p>`;
  } else if (agentRuns.length) {
    html += `<p class="muted">Click a step to see its input, output and stderr.</p>`;
  }
  html += `<h2>Context</h2><pre id="run-context">${esc(pretty(run.context))}</pre>`;
  view().innerHTML = html;
  wireApprovals();
  view().querySelectorAll("[data-select]").forEach((el) => el.addEventListener("click", () => { selectedNode = el.dataset.select; route(); }));
  const c = document.getElementById("cancel");
  if (c) c.addEventListener("click", () => act(`/api/workflows/runs/${encodeURIComponent(runId)}/cancel`));
  const r = document.getElementById("retry");
  if (r) r.addEventListener("click", () => act(`/api/workflows/runs/${encodeURIComponent(runId)}/retry`));
  if (!TERMINAL.has(run.status)) schedule(1500);
}

async function act(path) {
  try { await api(path, { method: "POST", body: "{}" }); route(); } catch (e) { showError(e); }
}

function approvalRow(a) {
  return `<tr data-approval="${esc(a.id)}"><td>${esc(a.nodeId ?? a.node_id ?? "")}<div class="muted">run ${esc(a.runId ?? a.run_id ?? "")}</div></td><td>${fmtTime(a.requestedAt || a.createdAt)}</td>` +
    `<td><input type="text" placeholder="notes" data-notes="${esc(a.id)}"></td>` +
    `<td><button class="approve" data-decide="APPROVED" data-id="${esc(a.id)}">Approve</button> <button class="reject" data-decide="REJECTED" data-id="${esc(a.id)}">Reject</button></td></tr>`;
}

function wireApprovals() {
  view().querySelectorAll("button[data-decide]").forEach((b) => b.addEventListener("click", () => decide(b.dataset.id, b.dataset.decide, b)));
  if (AUTO_APPROVE && !autoApproved) {
    const sel = AUTO_APPROVE === "any" || AUTO_APPROVE === "1" ? `button.approve` : `button.approve[data-id="${CSS.escape(AUTO_APPROVE)}"]`;
    const b = view().querySelector(sel);
    if (b) { autoApproved = true; b.click(); }
  }
}

async function decide(id, decision, btn) {
  const notesEl = view().querySelector(`[data-notes="${CSS.escape(id)}"]`);
  document.querySelectorAll("button[data-decide]").forEach((b) => { if (b.dataset.id === id) b.disabled = true; });
  try {
    await api(`/api/approvals/${encodeURIComponent(id)}/decision`, { method: "POST", body: JSON.stringify({ decision, decidedBy: "web-ui", notes: notesEl ? notesEl.value : "" }) });
    document.body.setAttribute("data-decided", `${id}:${decision}`);
    route();
  } catch (e) {
    if (btn) btn.disabled = false;
    showError(e, "deciding approval");
  }
}

async function approvalsView() {
  const body = await api("/api/approvals?status=PENDING");
  const list = Array.isArray(body) ? body : body.approvals || [];
  let html = `<h2>Approvals waiting for a decision</h2>`;
  if (!list.length) html += `<p class="muted" id="no-approvals">Nothing is waiting for approval.</p>`;
  else {
    html += `<table id="approvals"><tr><th>Step</th><th>Requested</th><th>Notes</th><th></th></tr>`;
    for (const a of list) html += approvalRow(a).replace("<td>", `<td><a href="#/workflows/${encodeURIComponent(a.workflowId ?? a.workflow_id ?? "")}/runs/${encodeURIComponent(a.runId ?? a.run_id ?? "")}">open run</a> `);
    html += `</table>`;
  }
  view().innerHTML = html;
  wireApprovals();
  schedule(3000);
}

async function agentsView() {
  const body = await api("/api/agents");
  const list = Array.isArray(body) ? body : body.agents || [];
  let html = `<h2>Agents</h2><table id="agents"><tr><th>Name</th><th>Kind</th><th>Version</th><th>Risk</th><th>Actions</th></tr>`;
  for (const a of list) {
    const kind = typeof a.kind === "string" ? a.kind : a.kind ? a.kind.type || Object.keys(a.kind)[0] : a.type || "";
    const caps = (a.capabilities || []).map((c) => c.name || c.action || c).join(", ");
    html += `<tr><td>${esc(a.name)}</td><td>${esc(kind)}</td><td>${esc(a.version ?? "")}</td><td>${badge(a.riskLevel ?? a.risk ?? "")}</td><td>${esc(caps)}</td></tr>`;
  }
  if (!list.length) html += `<tr><td colspan="5" class="muted">No agents registered.</td></tr>`;
  view().innerHTML = html + `</table>`;
}

function schedule(ms) {
  clearTimeout(pollTimer);
  pollTimer = setTimeout(route, ms);
}

async function route() {
  clearTimeout(pollTimer);
  const parts = location.hash.replace(/^#\/?/, "").split("/").filter(Boolean).map(decodeURIComponent);
  try {
    if (parts[0] === "workflows" && parts[2] === "runs" && parts[3]) await runView(parts[1], parts[3]);
    else if (parts[0] === "workflows" && parts[1]) { selectedNode = null; await workflowView(parts[1]); }
    else if (parts[0] === "approvals") await approvalsView();
    else if (parts[0] === "agents") await agentsView();
    else await workflowsView();
  } catch (e) {
    view().innerHTML = "";
    showError(e, "loading this page");
    view().insertAdjacentHTML("beforeend", `<p class="muted">Retrying in 5 s.</p>`);
    schedule(5000);
  }
  health();
}

window.addEventListener("hashchange", () => { selectedNode = null; route(); });
route();
