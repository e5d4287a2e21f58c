// Customer upgrades console: one page, no build step, no dependencies. It reads and steers the upgrade API
// (/api/...) of the origin that served it: the local stack, or `upgrade-customers console`, which signs
// every request with the operator's own AWS credentials. Live: it polls while the tab is visible.

import { STRATEGIES } from "/console/strategies.js";
import { tolerated, waveLabel } from "/console/waves.js";
import { analysisCharts, analysisFacts } from "/console/analysis.js";
import { movedTagFacts } from "/console/images.js";

const ACTIVE = new Set(["pending", "in_progress", "awaiting_continue"]);
const RESUMABLE = new Set(["halted", "aborted", "failed"]);
const ROLLBACKABLE = new Set(["completed", "completed_with_failures", "halted", "aborted", "failed"]);
const QUEUE_STATES = ["waiting", "active", "completed", "failed", "delayed", "paused"];
const QUEUE_UPGRADES = 20; // the queue view follows the executions of the most recent upgrades

const state = {
  config: { mode: "local", identity: "", readOnly: false },
  view: "upgrades",
  selected: null, // upgrade id
  upgrades: [],
  status: null,
  logs: [],
  filters: { status: "", wave: "", operation: "", q: "" },
  openRows: new Set(), // log ids whose helm output is shown
  queueState: "active",
  queueStats: null,
  attempts: new Map(), // upgrade id -> { status, jobIds }
  jobs: new Map(), // job id -> queue job (finished ones are not fetched again)
  fleet: null,
  promotions: null, // the selected upgrade's version through the rings
  customers: null,
  customerFilter: { which: "", label: "" },
  intervalMs: 2000,
  timer: null,
  busy: false,
};

const $ = (selector) => document.querySelector(selector);
const esc = (value) =>
  String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

/** Replace an element's content only when it changed: focus, scroll and open details survive a poll. */
function setHTML(element, html) {
  if (element && element.dataset.rendered !== html) {
    element.innerHTML = html;
    element.dataset.rendered = html;
  }
}

// --- API -------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.message || body.Message || body.error)) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin" };
  // every write says it is JSON, with a body or without: the servers refuse writes that do not (no
  // other web page can send that header to them without a CORS preflight, which they never grant)
  if (method !== "GET" && method !== "HEAD") headers["Content-Type"] = "application/json";
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text.slice(0, 300) };
  }
  if (!response.ok) {
    if (response.status === 403 && method !== "GET") setReadOnly(true, "the API refused an action (403)");
    throw new ApiError(response.status, data);
  }
  return data;
}

async function allLogs(upgradeId) {
  const entries = [];
  let offset = 0;
  for (let page = 0; page < 50 && offset !== null && offset !== undefined; page += 1) {
    const data = await api("GET", `/api/upgrades/${encodeURIComponent(upgradeId)}/logs?limit=1000&offset=${offset}`);
    entries.push(...data.logs);
    offset = data.nextOffset;
  }
  return entries;
}

// --- time and numbers ------------------------------------------------------------------------------

function when(value) {
  if (value === null || value === undefined || value === "") return "–";
  const date = typeof value === "number" ? new Date(value) : new Date(value);
  if (Number.isNaN(date.getTime())) return esc(value);
  const pad = (n) => String(n).padStart(2, "0");
  const local = `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}`;
  return `<time datetime="${esc(date.toISOString())}" title="${esc(date.toISOString())}">${esc(local)}</time>`;
}

function seconds(start, end) {
  if (!start) return "–";
  const a = new Date(start).getTime();
  const b = end ? new Date(end).getTime() : Date.now();
  if (Number.isNaN(a) || Number.isNaN(b)) return "–";
  const s = Math.max(0, (b - a) / 1000);
  if (s < 90) return `${s.toFixed(1)} s`;
  if (s < 5400) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${(s / 3600).toFixed(1)} h`;
}

const percent = (part, whole) => (whole > 0 ? Math.round((part * 100) / whole) : 0);
const statusBadge = (status) => `<span class="status ${esc(status)}">${esc(String(status).replaceAll("_", " "))}</span>`;

// --- mode, identity, notices -----------------------------------------------------------------------

function setReadOnly(readOnly, why) {
  if (state.config.readOnly === readOnly) return;
  state.config.readOnly = readOnly;
  document.body.classList.toggle("read-only", readOnly);
  renderMode();
  if (readOnly && why) notice(`Read-only: ${why}. Actions are hidden.`);
  render();
}

function renderMode() {
  const mode = $("#mode");
  const where = state.config.mode === "aws" ? `AWS · ${state.config.apiHost || "API"}` : "local stack";
  mode.textContent = state.config.readOnly ? `${where} · read-only` : where;
  mode.className = state.config.readOnly ? "badge ro" : "badge";
  $("#identity").textContent = state.config.identity ? `as ${state.config.identity}` : "";
}

function notice(text, isError = false) {
  const box = $("#notice");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.dataset.source = ""; // a poll's error notice says so itself; the next good poll clears only that one
}

function activity(text, isError = false) {
  const item = document.createElement("li");
  item.textContent = `${new Date().toLocaleTimeString()} · ${state.config.identity || "you"} · ${text}`;
  if (isError) item.className = "error";
  $("#activity").prepend(item);
}

// --- confirmation dialog ---------------------------------------------------------------------------

/** Ask before an action. `fields` are extra inputs (checkbox, text, number); resolves to their values or null. */
function confirmAction({ title, text, ok, fields = [] }) {
  const dialog = $("#confirm");
  $("#confirm-title").textContent = title;
  $("#confirm-text").textContent = text;
  $("#confirm-ok").textContent = ok;
  $("#confirm-fields").innerHTML = fields
    .map((f) => {
      const id = `confirm-field-${f.name}`;
      if (f.type === "checkbox") {
        return `<label for="${id}"><input type="checkbox" id="${id}" name="${esc(f.name)}"${f.checked ? " checked" : ""}> ${esc(f.label)}</label>`;
      }
      const extra = f.type === "number" ? ` min="1" max="1000" step="1"` : ` maxlength="500"`;
      return `<label for="${id}">${esc(f.label)}<input type="${f.type}" id="${id}" name="${esc(f.name)}"${extra} placeholder="${esc(f.placeholder || "")}"></label>`;
    })
    .join("");
  return new Promise((resolve) => {
    dialog.returnValue = "cancel";
    const done = () => {
      dialog.removeEventListener("close", done);
      if (dialog.returnValue !== "ok") return resolve(null);
      const values = {};
      for (const f of fields) {
        const input = dialog.querySelector(`[name="${f.name}"]`);
        values[f.name] = f.type === "checkbox" ? input.checked : input.value.trim();
      }
      resolve(values);
    };
    dialog.addEventListener("close", done);
    dialog.showModal();
    $("#confirm-cancel").focus(); // the safe choice has the focus: Enter never fires a fleet-wide change
  });
}

async function perform(label, method, path, body) {
  try {
    const answer = await api(method, path, body);
    const message = (answer && answer.message) || "done";
    activity(`${label}: ${message}`);
    notice(`${label}: ${message}`);
  } catch (error) {
    const status = error.status ? ` (HTTP ${error.status})` : "";
    activity(`${label} refused: ${error.message}${status}`, true);
    notice(`${label} refused: ${error.message}${status}`, true);
  }
  await refresh();
}

const actions = {
  async continue(id) {
    const ok = await confirmAction({
      title: `Continue upgrade ${id}?`,
      text: "The canary wave is done. Continuing upgrades every remaining customer of this upgrade.",
      ok: "Continue the rollout",
    });
    if (ok) await perform(`Continue upgrade ${id}`, "POST", `/api/upgrades/${id}/continue`);
  },
  async abort(id) {
    const values = await confirmAction({
      title: `Abort upgrade ${id}?`,
      text: "No customer that has not started yet will be upgraded; helm runs already started finish.",
      ok: "Abort the upgrade",
      fields: [
        { name: "rollback", type: "checkbox", label: "Also roll back every customer this upgrade changed" },
        { name: "reason", type: "text", label: "Reason (recorded with your name)", placeholder: "error rate up" },
      ],
    });
    if (!values) return;
    const body = { rollback: values.rollback };
    if (values.reason) body.reason = values.reason;
    const label = values.rollback ? `Abort upgrade ${id} with rollback` : `Abort upgrade ${id}`;
    await perform(label, "POST", `/api/upgrades/${id}/abort`, body);
  },
  async rollbackUpgrade(id) {
    const values = await confirmAction({
      title: `Roll back upgrade ${id}?`,
      text: "Every customer this upgrade changed goes back to its own previous version, last wave first.",
      ok: "Roll back the upgrade",
      fields: [{ name: "maxConcurrency", type: "number", label: "Rollbacks at once (optional)", placeholder: "5" }],
    });
    if (!values) return;
    const body = values.maxConcurrency ? { maxConcurrency: Number(values.maxConcurrency) } : {};
    await perform(`Roll back upgrade ${id}`, "POST", `/api/upgrades/${id}/rollback`, body);
  },
  async resume(id) {
    const values = await confirmAction({
      title: `Resume upgrade ${id}?`,
      text: "A new execution goes on with the customers not yet done.",
      ok: "Resume",
      fields: [{ name: "retryFailed", type: "checkbox", label: "Also retry customers whose upgrade failed" }],
    });
    if (values) await perform(`Resume upgrade ${id}`, "POST", `/api/upgrades/${id}/resume`, { retryFailed: values.retryFailed });
  },
  async rollbackCustomer(id, customer) {
    const ok = await confirmAction({
      title: `Roll back ${customer}?`,
      text: `Only this upgrade's component on ${customer} goes back to the version it ran before.`,
      ok: `Roll back ${customer}`,
    });
    if (ok) {
      await perform(`Roll back ${customer} (upgrade ${id})`, "POST",
        `/api/upgrades/${id}/rollback/${encodeURIComponent(customer)}`);
    }
  },
};

// --- upgrades view ---------------------------------------------------------------------------------

function renderUpgradeList() {
  const html = state.upgrades
    .map((u) => {
      const done = u.completed + u.failed;
      const current = String(u.upgradeId) === String(state.selected);
      return `<li><a class="card" href="#/upgrades/${esc(u.upgradeId)}" data-upgrade="${esc(u.upgradeId)}"${current ? ' aria-current="true"' : ""}>
        <span class="title"><span>#${esc(u.upgradeId)} ${esc(u.component)} → ${esc(u.version)}</span>${statusBadge(u.status)}</span>
        <span class="meta">${esc(u.strategy)} · ${done}/${esc(u.total)} done · ${esc(u.failed)} failed · ${when(u.createdAt)}</span>
        ${bar([{ n: u.completed, cls: "ok" }, { n: u.failed, cls: "fail" }], u.total, `upgrade ${u.upgradeId}`)}
      </a></li>`;
    })
    .join("");
  setHTML($("#upgrade-list"), html || `<li class="muted">No upgrade yet. Start one with upgrade-customers or POST /api/upgrades/deploy.</li>`);
}

/** A stacked bar (SVG, no inline styles): segments of `total`, announced as a progress bar. */
function bar(segments, total, label) {
  let x = 0;
  const rects = segments
    .filter((s) => s.n > 0 && total > 0)
    .map((s) => {
      const width = (s.n * 100) / total;
      const rect = `<rect class="${s.cls}" x="${x.toFixed(3)}%" y="0" width="${width.toFixed(3)}%" height="100%"></rect>`;
      x += width;
      return rect;
    })
    .join("");
  const done = segments.filter((s) => s.cls !== "run").reduce((sum, s) => sum + s.n, 0);
  const value = percent(done, total);
  return `<svg class="bar" role="progressbar" aria-label="${esc(label)}" aria-valuemin="0" aria-valuemax="100" aria-valuenow="${value}" data-percent="${value}" preserveAspectRatio="none">${rects}</svg>`;
}

function waveRows(status, logs) {
  const waves = new Map();
  for (const entry of logs) {
    if (entry.operation !== "upgrade" || entry.wave < 0) continue;
    const w = waves.get(entry.wave) || { total: 0, ok: 0, fail: 0, run: 0, skip: 0, pending: 0 };
    w.total += 1;
    if (entry.status === "completed") w.ok += 1;
    else if (entry.status === "failed" || entry.status === "rolled_back") w.fail += 1;
    else if (entry.status === "in_progress") w.run += 1;
    else if (entry.status === "skipped") w.skip += 1;
    else w.pending += 1;
    waves.set(entry.wave, w);
  }
  const threshold = (status.parameters || {}).failureThreshold;
  return [...waves.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([wave, w]) => ({ wave, ...w, budget: tolerated(STRATEGIES, status.strategy, wave, w.total, threshold) }));
}

// A version's path through the rings (GET /api/promotions): where it ran, where it may start, what was forced.
function promotionPath(path) {
  if (!path || !path.rings) return "";
  const rows = path.rings
    .map((r) => {
      const ran = r.evidence ? `${esc(r.evidence.succeeded)} of ${esc(r.evidence.targeted)} succeeded · upgrades ${r.evidence.upgrades.map((u) => `#${esc(u.upgradeId)}`).join(", ")}` : "never ran here";
      const decision = r.decision.allowed ? "may start" : `waits: ${r.decision.missing.map((m) => esc(m.message)).join("; ")}`;
      const forced = r.overrides.map((o) => `forced by ${esc(o.forcedBy || "–")}: ${esc(o.reason)}`).join("; ");
      return `<li data-ring="${esc(r.ring)}"><strong>${esc(r.ring)}</strong> — ${ran} — ${decision}${forced ? ` — <em>${forced}</em>` : ""}</li>`;
    })
    .join("");
  const rule = path.enforced ? `rule: ${esc(path.rule.minSuccessPercent)} % succeeded, bake ${esc(path.rule.minBakeSeconds)} s` : "no promotion rule: deploys are not checked";
  return `<h3>Path through the rings</h3><p class="muted">${rule}${path.nextRing ? ` · next: ${esc(path.nextRing)}` : ""}</p><ol class="rings" id="rings">${rows}</ol>`;
}

function renderUpgradeDetail() {
  const s = state.status;
  const pane = $("#upgrade-detail");
  if (!s) {
    setHTML(pane, `<p class="empty">Select an upgrade to see its waves, its customers and what you can do.</p>`);
    return;
  }
  const id = esc(s.upgradeId);
  const waves = waveRows(s, state.logs);
  const readOnly = state.config.readOnly;
  const params = s.parameters || {};
  // the wave under way: the last one any customer of which has started (the logs say so; 0-based)
  const current = [...waves].reverse().find((w) => w.total > w.pending) || waves[0];
  const facts = [
    ["Requested by", esc(s.requestedBy || "–")],
    ["Strategy", esc(s.strategy) + (params.canaryPercent ? ` ${esc(params.canaryPercent)} %` : "") + (params.batchSize ? ` of ${esc(params.batchSize)}` : "")],
    ["Wave", current ? `${current.wave + 1} of ${esc(s.totalWaves)}` : `– of ${esc(s.totalWaves)}`],
    ["Customers", [`${esc(s.completed)} done`, ...[[s.failed, "failed"], [s.inProgress, "running"], [s.pending, "pending"], [s.skipped, "skipped"], [s.rolledBack, "rolled back"]].filter(([n]) => n).map(([n, what]) => `${esc(n)} ${what}`)].join(" · ")],
    ["Created", when(s.createdAt)],
    ["Started", when(s.startedAt)],
    ["Finished", when(s.completedAt)],
    ["Duration", s.startedAt ? seconds(s.startedAt, s.completedAt) : "–"],
    ["Max concurrency", esc(params.maxConcurrency ?? "–")],
    ["Chart version", esc(s.chartVersion || "each keeps its own")],
    ["Execution", esc(s.jobId || "–")],
  ];
  if (s.components) facts.push(["Release train", Object.entries(s.components).map(([c, v]) => `${esc(c)} ${esc(v)}`).join(" + ")]);
  facts.push(...movedTagFacts(s.movedTags, esc), ...analysisFacts(s.analysis, esc));
  if (params.rings) facts.push(["Rings", esc(params.rings.join(", "))]);
  if (params.force) facts.push(["Promotion forced", `${esc(params.force.by || "–")} on ${esc((params.force.rings || []).join(", "))}: ${esc(params.force.reason)}`]);
  if (s.continuedBy) facts.push(["Continued by", `${esc(s.continuedBy)} ${when(s.continuedAt)}`]);
  const resumes = (s.attempts || []).filter((a) => a.attempt > 1);
  for (const a of resumes) facts.push([`Resumed (attempt ${esc(a.attempt)})`, `${esc(a.requestedBy || "–")} ${when(a.startedAt)}`]);

  let gate = "";
  if (s.gate === "approval" || s.awaitingContinue) {
    gate = `<div class="gate" id="gate" role="region" aria-label="Canary gate"><span><strong>Canary gate.</strong> The canary wave is done; the other ${esc(s.pending)} customers wait for your go-ahead.</span>
      ${readOnly ? "" : `<button class="primary" data-action="continue" data-id="${id}">Continue rollout</button>`}</div>`;
  } else if (s.gate === "bake") {
    gate = `<div class="gate" id="gate" role="region" aria-label="Bake"><span><strong>Baking</strong> between waves until ${when(s.gateUntil)}.</span></div>`;
  }
  const halt = s.haltReason ? `<div class="halt" role="note"><strong>${esc(s.status === "aborted" ? "Aborted" : "Stopped")}:</strong> ${esc(s.haltReason)}</div>` : "";
  const buttons = [];
  if (!readOnly) {
    if (ACTIVE.has(s.status)) buttons.push(`<button class="danger" data-action="abort" data-id="${id}">Abort…</button>`);
    if (RESUMABLE.has(s.status)) buttons.push(`<button data-action="resume" data-id="${id}">Resume…</button>`);
    if (ROLLBACKABLE.has(s.status)) buttons.push(`<button data-action="rollbackUpgrade" data-id="${id}">Roll back upgrade…</button>`);
  }
  const budget = current
    ? `<p class="budget" id="budget">Failure budget, wave ${current.wave + 1}: <strong>${current.fail}</strong> failed of <strong>${current.budget}</strong> tolerated
        <svg class="bar meter" role="meter" aria-label="failure budget consumed" aria-valuemin="0" aria-valuemax="${current.budget + 1}" aria-valuenow="${current.fail}" preserveAspectRatio="none"><rect class="fail" x="0" y="0" width="${Math.min(100, percent(current.fail, current.budget + 1))}%" height="100%"></rect></svg>
        <span class="muted">(the upgrade halts at ${current.budget + 1})</span></p>`
    : "";
  const waveHtml = waves
    .map((w) => {
      const name = waveLabel(STRATEGIES, s.strategy, w.wave);
      const done = w.ok + w.fail + w.skip;
      return `<div class="wave" data-wave="${w.wave}">
        <span class="label">Wave ${w.wave + 1}<small>${esc(name)} · ${w.total} customers</small></span>
        ${bar([{ n: w.ok, cls: "ok" }, { n: w.fail, cls: "fail" }, { n: w.skip, cls: "skip" }, { n: w.run, cls: "run" }], w.total, `wave ${w.wave + 1} progress`)}
        <span class="numbers">${percent(done, w.total)} % · ${w.ok} ok · ${w.fail} failed${w.run ? ` · ${w.run} running` : ""}${w.skip ? ` · ${w.skip} skipped` : ""}</span>
      </div>`;
    })
    .join("");
  const what = s.components
    ? `release train ${Object.entries(s.components).map(([c, v]) => `${esc(c)} → ${esc(v)}`).join(", ")}`
    : `${esc(s.component)} ${esc(s.fromVersion || "")} → ${esc(s.version)}`;
  const html = `<div class="detail-head"><h3>Upgrade #${id}: ${what}</h3>${statusBadge(s.status)}</div>
    <dl class="facts">${facts.map(([k, v]) => `<div><dt>${esc(k)}</dt><dd>${v}</dd></div>`).join("")}</dl>
    ${gate}${halt}
    <div class="actions" aria-label="Actions">${buttons.join("")}</div>
    <h3>Waves</h3>
    <div class="legend"><span><i class="ok"></i>completed</span><span><i class="fail"></i>failed or rolled back</span><span><i class="run"></i>running</span><span><i class="skip"></i>skipped</span></div>
    <div class="waves" id="waves">${waveHtml || '<p class="muted">No wave has been planned yet.</p>'}</div>
    ${budget}${analysisCharts(state.analysis, esc)}${promotionPath(state.promotions)}`;
  if (!pane.querySelector("#detail-summary")) {
    // the customer table lives beside the summary, so a poll never rebuilds its filters while you type
    pane.innerHTML = `<div id="detail-summary"></div><h3>Customers</h3><div id="customer-table"></div>`;
    pane.dataset.rendered = "";
  }
  setHTML($("#detail-summary"), html);
  renderCustomerTable();
}

// A release train's row: each component from -> to (a rollback row: what it restores), one per line.
function trainSteps(components) {
  return Object.entries(components)
    .map(([c, v]) => `<span class="train-step" data-component="${esc(c)}">${esc(c)} ${esc(v.from || "?")} → ${esc(v.to || "?")}</span>`)
    .join("<br>");
}

function renderCustomerTable() {
  const holder = $("#customer-table");
  if (!holder || !state.status) return;
  const f = state.filters;
  const statuses = [...new Set(state.logs.map((e) => e.status))].sort();
  const wavesSeen = [...new Set(state.logs.map((e) => e.wave))].sort((a, b) => a - b);
  const operations = [...new Set(state.logs.map((e) => e.operation))].sort();
  const rows = state.logs.filter(
    (e) =>
      (!f.status || e.status === f.status) &&
      (f.wave === "" || String(e.wave) === f.wave) &&
      (!f.operation || e.operation === f.operation) &&
      (!f.q || e.customer_id.toLowerCase().includes(f.q.toLowerCase())),
  );
  const option = (value, label, selected) => `<option value="${esc(value)}"${selected ? " selected" : ""}>${esc(label)}</option>`;
  if (!holder.querySelector("form")) {
    holder.innerHTML = `<form class="filters" id="log-filters" role="search" aria-label="Filter customers">
        <span class="field"><label for="f-q">Customer</label><input id="f-q" name="q" type="search" placeholder="cust_abc1" size="14"></span>
        <span class="field"><label for="f-status">Status</label><select id="f-status" name="status"></select></span>
        <span class="field"><label for="f-wave">Wave</label><select id="f-wave" name="wave"></select></span>
        <span class="field"><label for="f-operation">Operation</label><select id="f-operation" name="operation"></select></span>
        <span class="muted" id="row-count" aria-live="polite"></span>
      </form><div class="table-wrap"><table id="customers"><caption class="visually-hidden">Customers of this upgrade</caption><thead><tr>
        <th scope="col">Customer</th><th scope="col">Wave</th><th scope="col">Operation</th><th scope="col">Status</th>
        <th scope="col">From → to</th><th scope="col">Started</th><th scope="col">Duration</th><th scope="col">Helm</th><th scope="col"><span class="visually-hidden">Actions</span></th>
      </tr></thead><tbody></tbody></table></div>`;
  }
  const form = holder.querySelector("form");
  setHTML(form.elements.status, option("", "any", !f.status) + statuses.map((s) => option(s, s.replaceAll("_", " "), s === f.status)).join(""));
  setHTML(form.elements.wave, option("", "any", f.wave === "") + wavesSeen.map((w) => option(String(w), w < 0 ? "left out" : `wave ${w + 1}`, String(w) === f.wave)).join(""));
  setHTML(form.elements.operation, option("", "any", !f.operation) + operations.map((o) => option(o, o, o === f.operation)).join(""));
  $("#row-count").textContent = `${rows.length} of ${state.logs.length} rows`;
  const readOnly = state.config.readOnly;
  // upgrade rows already undone (or being undone) by a rollback row: nothing left to roll back there
  const undone = new Set(
    state.logs.filter((e) => e.rollback_of && !["failed", "skipped"].includes(e.status)).map((e) => e.rollback_of),
  );
  const body = rows
    .map((e) => {
      const open = state.openRows.has(e.id);
      const canRollBack = !readOnly && e.operation === "upgrade" && !undone.has(e.id) && (e.status === "completed" || (e.status === "failed" && e.version_after && e.version_after !== e.version_before));
      const hasOutput = e.output || e.error;
      const main = `<tr data-customer="${esc(e.customer_id)}" data-status="${esc(e.status)}">
        <th scope="row">${esc(e.customer_id)}</th>
        <td class="num">${e.wave < 0 ? "–" : e.wave + 1}</td>
        <td>${esc(e.operation)}</td>
        <td>${statusBadge(e.status)}${e.waiting_for ? `<br><small class="muted">waits for ${esc(e.waiting_for)}</small>` : ""}${e.left_out ? `<br><small class="muted">${esc(e.left_out)}</small>` : ""}</td>
        <td class="nowrap">${e.components ? trainSteps(e.components) : `${esc(e.from_version || "?")} → ${esc(e.to_version)}`}</td>
        <td class="nowrap">${when(e.started_at)}</td>
        <td class="num">${e.started_at ? seconds(e.started_at, e.completed_at) : "–"}</td>
        <td>${hasOutput ? `<button class="small" data-toggle="${esc(e.id)}" aria-expanded="${open}" aria-controls="out-${esc(e.id)}">${open ? "Hide" : e.error ? "Error" : "Output"}</button>` : '<span class="muted">–</span>'}</td>
        <td>${canRollBack ? `<button class="small" data-action="rollbackCustomer" data-id="${esc(state.status.upgradeId)}" data-customer="${esc(e.customer_id)}">Roll back…</button>` : ""}</td>
      </tr>`;
      const detail = open && hasOutput
        ? `<tr class="output" id="out-${esc(e.id)}"><td colspan="9">${e.error ? `<pre class="error" aria-label="error">${esc(e.error)}</pre>` : ""}${e.output ? `<pre aria-label="helm output">${esc(e.output)}</pre>` : ""}</td></tr>`
        : "";
      return main + detail;
    })
    .join("");
  setHTML(holder.querySelector("tbody"), body || `<tr><td colspan="9" class="muted">No customer matches.</td></tr>`);
}

// --- queue view ------------------------------------------------------------------------------------

async function loadQueue() {
  const [stats, list] = await Promise.all([api("GET", "/api/queue/stats"), api("GET", `/api/upgrades?limit=${QUEUE_UPGRADES}`)]);
  state.queueStats = stats;
  state.upgrades = list.upgrades;
  // executions of each upgrade: the first one and one per resume (status.attempts); refreshed while it changes
  await Promise.all(
    list.upgrades.map(async (u) => {
      const known = state.attempts.get(u.upgradeId);
      if (known && known.status === u.status && !ACTIVE.has(u.status)) return;
      const status = await api("GET", `/api/upgrades/${u.upgradeId}/status`);
      state.attempts.set(u.upgradeId, { status: u.status, upgrade: status, jobIds: status.attempts.map((a) => a.jobId) });
    }),
  );
  const wanted = [...state.attempts.values()].flatMap((a) => a.jobIds);
  await Promise.all(
    wanted.map(async (jobId) => {
      const known = state.jobs.get(jobId);
      if (known && (known.state === "completed" || known.state === "failed")) return;
      try {
        state.jobs.set(jobId, await api("GET", `/api/queue/jobs/${encodeURIComponent(jobId)}`));
      } catch (error) {
        if (error.status !== 404) throw error;
      }
    }),
  );
}

function jobState(job) {
  // a running execution that waits at a canary gate is what Bull calls paused; one baking is delayed
  const owner = [...state.attempts.values()].find((a) => a.jobIds.includes(job.id));
  if (job.state === "active" && owner && owner.upgrade.jobId === job.id) {
    if (owner.upgrade.gate === "approval") return "paused";
    if (owner.upgrade.gate === "bake") return "delayed";
  }
  return job.state;
}

/** Tab counts: Step Functions' counts of every execution, with the running ones that wait at a canary gate
 * (the database's count) shown as paused and those baking between waves as delayed, as Bull would. */
function queueCounts(stats, jobs) {
  const paused = stats.awaitingContinue;
  const delayed = jobs.filter((j) => jobState(j) === "delayed").length;
  return {
    waiting: stats.waiting,
    active: Math.max(0, stats.active - paused - delayed),
    completed: stats.completed,
    failed: stats.failed,
    delayed: stats.delayed + delayed,
    paused: stats.paused + paused,
  };
}

function renderQueue() {
  const stats = state.queueStats;
  if (!stats) return;
  const jobs = [...state.jobs.values()].sort((a, b) => (b.timestamp || 0) - (a.timestamp || 0));
  const counts = queueCounts(stats, jobs);
  const holder = $("#queue-tabs");
  if (!holder.children.length) {
    // built once and updated in place: a poll never takes the keyboard focus off a tab
    holder.innerHTML = QUEUE_STATES.map(
      (s) => `<button role="tab" id="tab-${s}" data-queue-state="${s}" aria-controls="queue-jobs">${s}<span class="n"></span></button>`,
    ).join("");
  }
  for (const s of QUEUE_STATES) {
    const tab = $(`#tab-${s}`);
    const selected = s === state.queueState;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    tab.querySelector(".n").textContent = String(counts[s]);
  }
  const shown = jobs.filter((j) => jobState(j) === state.queueState);
  const html = shown
    .map((job) => {
      const owner = [...state.attempts.values()].find((a) => a.jobIds.includes(job.id));
      const upgrade = owner ? owner.upgrade : null;
      return `<article class="job" data-job="${esc(job.id)}" aria-label="job ${esc(job.id)}">
        <header><strong>${esc(job.id)}</strong> <span class="muted">${esc(job.name)}</span> ${statusBadge(jobState(job))}
        ${upgrade ? `<a href="#/upgrades/${esc(upgrade.upgradeId)}">upgrade #${esc(upgrade.upgradeId)} (${esc(upgrade.component)} → ${esc(upgrade.version)}, ${esc(upgrade.status.replaceAll("_", " "))})</a>` : ""}</header>
        <p class="muted">added ${when(job.timestamp)} · processed ${when(job.processedOn)} · finished ${when(job.finishedOn)}${job.mapRuns.length ? ` · ${job.mapRuns.length} map runs (waves)` : ""}</p>
        ${job.failedReason ? `<p class="reason"><strong>Failed:</strong> ${esc(job.failedReason)}</p>` : ""}
        <details><summary>Data</summary><pre>${esc(JSON.stringify(job.data, null, 2))}</pre></details>
        ${job.returnvalue !== null && job.returnvalue !== undefined ? `<details><summary>Result</summary><pre>${esc(JSON.stringify(job.returnvalue, null, 2))}</pre></details>` : ""}
      </article>`;
    })
    .join("");
  const note = `<p class="muted">Counts: every execution of the state machine (a running one waiting at a canary gate counts as paused, one baking between waves as delayed). Listed: the executions of the ${QUEUE_UPGRADES} most recent upgrades.</p>`;
  setHTML($("#queue-jobs"), note + (html || `<p class="muted">No ${esc(state.queueState)} execution.</p>`));
}

// --- fleet view ------------------------------------------------------------------------------------

async function loadFleet() {
  const query = new URLSearchParams({ limit: "200" });
  if (state.customerFilter.which === "drift") query.set("drift", "true");
  if (state.customerFilter.which === "pinned") query.set("pinned", "true");
  if (state.customerFilter.label) query.set("label", state.customerFilter.label);
  const [fleet, customers] = await Promise.all([
    api("GET", "/api/fleet"),
    api("GET", `/api/customers?${query}`).catch((error) => ({ error: error.message, customers: [] })),
  ]);
  state.fleet = fleet;
  state.customers = customers;
}

function fleetChart(spread) {
  const total = spread.versions.reduce((sum, v) => sum + v.customers, 0) + spread.unknown;
  const rows = [...spread.versions.map((v) => ({ version: v.version, n: v.customers })), ...(spread.unknown ? [{ version: "unknown", n: spread.unknown }] : [])];
  const rowHeight = 26;
  const height = rows.length * rowHeight + 4;
  const bars = rows
    .map((r, i) => {
      const y = i * rowHeight + 4;
      const width = total ? (r.n * 100) / total : 0;
      return `<g data-version="${esc(r.version)}" data-count="${r.n}">
        <text x="0" y="${y + 14}">${esc(r.version)}</text>
        <rect class="track" x="30%" y="${y}" width="52%" height="18" rx="3"></rect>
        <rect class="v${Math.min(i, 5)}" x="30%" y="${y}" width="${((width * 52) / 100).toFixed(3)}%" height="18" rx="3"><title>${esc(r.version)}: ${r.n} customers</title></rect>
        <text class="count" x="84%" y="${y + 14}">${r.n} · ${percent(r.n, total)} %</text>
      </g>`;
    })
    .join("");
  const description = rows.map((r) => `${r.version}: ${r.n}`).join(", ");
  return `<figure class="chart" data-component="${esc(spread.component)}"><h3>${esc(spread.component)}</h3>
    <svg width="100%" height="${height}" role="img" aria-label="${esc(spread.component)} versions: ${esc(description)}">${bars}</svg>
    <figcaption class="visually-hidden">${esc(spread.component)}: ${esc(description)}</figcaption></figure>`;
}

function renderFleet() {
  const fleet = state.fleet;
  if (!fleet) return;
  const stat = (n, label, cls = "") => `<div class="stat ${cls}"><b>${esc(n)}</b><span>${esc(label)}</span></div>`;
  const sync = fleet.lastSync;
  setHTML(
    $("#fleet-summary"),
    `<div class="summary">${stat(fleet.customers, "customers")}${Object.entries(fleet.byStatus).map(([k, n]) => stat(n, k)).join("")}${stat(fleet.drift, "with drift", fleet.drift ? "drift" : "")}${stat(fleet.pinned, "pinned")}${(fleet.rings || []).map((r) => stat((fleet.byRing || {})[r] ?? 0, `ring ${r}`)).join("")}
      <div class="stat"><b>${sync ? statusBadge(sync.status) : "–"}</b><span>last sync ${sync ? when(sync.completedAt || sync.createdAt) : ""}</span></div></div>`,
  );
  setHTML($("#fleet-charts"), `<div class="charts">${fleet.components.map(fleetChart).join("")}</div>`);
  const customers = state.customers || { customers: [] };
  const components = fleet.components.map((c) => c.component);
  const rows = customers.customers
    .map((c) => {
      const drift = c.drift ? Object.entries(c.drift).map(([k, d]) => `${k}: ${d.recorded ?? "?"} → ${d.release ?? "?"}`).join("; ") : "";
      const pins = Object.entries(c.pins || {}).map(([k, p]) => `${k} ${p.version}${p.expired ? " (expired)" : ` until ${p.expiresAt.slice(0, 10)}`}: ${p.reason}`).join("; ");
      const w = c.maintenanceWindow;
      const windowText = w ? `${w.days.join(",")} ${w.start} ${w.timezone}, ${w.durationMinutes} min` : "";
      return `<tr data-customer="${esc(c.customerId)}"><th scope="row">${esc(c.customerId)}</th><td>${statusBadge(c.status)}</td><td>${esc(c.ring || "–")}</td>
        ${components.map((k) => `<td>${esc(c.versions[k] || "–")}</td>`).join("")}
        <td class="${drift ? "drift" : ""}">${esc(drift || "–")}</td><td>${esc(pins || "–")}</td><td>${esc(windowText || "–")}</td>
        <td>${esc(Object.entries(c.labels || {}).map(([k, v]) => `${k}=${v}`).join(" "))}</td></tr>`;
    })
    .join("");
  setHTML(
    $("#fleet-customers"),
    (customers.error ? `<p class="halt">${esc(customers.error)}</p>` : "") +
      `<div class="table-wrap"><table><caption class="visually-hidden">Customers</caption><thead><tr><th scope="col">Customer</th><th scope="col">Status</th><th scope="col">Ring</th>
      ${components.map((k) => `<th scope="col">${esc(k)}</th>`).join("")}<th scope="col">Drift</th><th scope="col">Pins</th><th scope="col">Window</th><th scope="col">Labels</th></tr></thead>
      <tbody>${rows || `<tr><td colspan="${components.length + 7}" class="muted">No customer matches.</td></tr>`}</tbody></table></div>
      ${customers.nextCursor ? '<p class="muted">The first 200 customers are shown; filter to see others.</p>' : ""}`,
  );
}

// --- routing, polling ------------------------------------------------------------------------------

function route() {
  const parts = (location.hash || "#/upgrades").replace(/^#\/?/, "").split("/");
  const view = ["upgrades", "queue", "fleet"].includes(parts[0]) ? parts[0] : "upgrades";
  state.view = view;
  if (view === "upgrades" && parts[1]) {
    if (parts[1] !== state.selected) {
      state.selected = parts[1];
      state.status = null;
      state.logs = [];
      state.openRows.clear();
      state.filters = { status: "", wave: "", operation: "", q: "" };
      const table = $("#customer-table");
      if (table) table.innerHTML = "";
    }
  }
  if (view === "queue" && QUEUE_STATES.includes(parts[1])) state.queueState = parts[1];
  for (const section of document.querySelectorAll("main > section")) section.hidden = section.dataset.view !== view;
  for (const link of document.querySelectorAll("nav a[data-view]")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function load() {
  if (state.view === "upgrades") {
    const list = await api("GET", "/api/upgrades?limit=30");
    state.upgrades = list.upgrades;
    if (!state.selected && list.upgrades.length) state.selected = String(list.upgrades[0].upgradeId);
    if (state.selected) {
      const id = encodeURIComponent(state.selected);
      const [status, logs] = await Promise.all([api("GET", `/api/upgrades/${id}/status`), allLogs(state.selected)]);
      state.status = status;
      state.logs = logs;
      const path = new URLSearchParams({ component: status.component, version: status.version });
      state.promotions = await api("GET", `/api/promotions?${path}`).catch(() => null);
      state.analysis = (status.parameters || {}).analysis ? await api("GET", `/api/upgrades/${id}/analysis`) : null;
    }
  } else if (state.view === "queue") {
    await loadQueue();
  } else {
    await loadFleet();
  }
}

function render() {
  if (state.view === "upgrades") {
    renderUpgradeList();
    renderUpgradeDetail();
  } else if (state.view === "queue") {
    renderQueue();
  } else {
    renderFleet();
  }
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    await load();
    render();
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = String(Date.now());
    if ($("#notice").className === "error" && $("#notice").dataset.source === "poll") notice("");
  } catch (error) {
    notice(`Cannot read the API: ${error.message}${error.status ? ` (HTTP ${error.status})` : ""}`, true);
    $("#notice").dataset.source = "poll";
  } finally {
    state.busy = false;
  }
}

function schedule() {
  clearTimeout(state.timer);
  if (!$("#live").checked) return;
  state.timer = setTimeout(async () => {
    if (document.visibilityState === "visible") await refresh();
    schedule();
  }, state.intervalMs);
}

// --- events ----------------------------------------------------------------------------------------

document.addEventListener("click", (event) => {
  const target = event.target.closest("button");
  if (!target) return;
  if (target.dataset.action) {
    const { action, id, customer } = target.dataset;
    actions[action](id, customer);
  } else if (target.dataset.toggle) {
    const id = Number(target.dataset.toggle);
    if (state.openRows.has(id)) state.openRows.delete(id);
    else state.openRows.add(id);
    renderCustomerTable();
    document.querySelector(`[data-toggle="${id}"]`)?.focus();
  } else if (target.dataset.queueState) {
    location.hash = `#/queue/${target.dataset.queueState}`;
  }
});

document.addEventListener("keydown", (event) => {
  // arrow keys move between the queue's state tabs (the WAI-ARIA tabs pattern)
  const tab = event.target.closest && event.target.closest('[role="tab"]');
  if (!tab || !["ArrowLeft", "ArrowRight"].includes(event.key)) return;
  const index = QUEUE_STATES.indexOf(tab.dataset.queueState);
  const next = QUEUE_STATES[(index + (event.key === "ArrowRight" ? 1 : QUEUE_STATES.length - 1)) % QUEUE_STATES.length];
  location.hash = `#/queue/${next}`;
  route();
  render();
  $(`#tab-${next}`).focus();
});

document.addEventListener("input", (event) => {
  const form = event.target.form;
  if (form && form.id === "log-filters") {
    state.filters[event.target.name] = event.target.value;
    renderCustomerTable();
  } else if (form && form.id === "customer-filters") {
    state.customerFilter[event.target.name] = event.target.value.trim();
    clearTimeout(state.filterTimer);
    state.filterTimer = setTimeout(refresh, 300);
  }
});
document.addEventListener("submit", (event) => {
  if (event.target.id !== "confirm-form") event.preventDefault();
});

window.addEventListener("hashchange", () => {
  route();
  render();
  refresh();
});

async function start() {
  const params = new URLSearchParams(location.search);
  const interval = Number(params.get("interval"));
  if (interval >= 250) state.intervalMs = interval;
  try {
    const response = await fetch("/console/config.json", { headers: { Accept: "application/json" } });
    if (response.status === 401) {
      // `upgrade-customers console` acts only for the browser that opened its one-time sign-in link
      notice("Not signed in: open the link `upgrade-customers console` printed in its terminal (it works once).", true);
      document.body.dataset.ready = "true";
      return;
    }
    if (response.ok) Object.assign(state.config, await response.json());
  } catch {
    // served without the console's config: a plain local stack
  }
  document.body.classList.toggle("read-only", Boolean(state.config.readOnly));
  renderMode();
  $("#live").addEventListener("change", schedule);
  route();
  await refresh();
  document.body.dataset.ready = "true";
  schedule();
}

start();
