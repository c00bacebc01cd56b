"""The status page: `/` (jobs, newest first, with live progress bars; the schedules and their next runs) and `/jobs/{id}` (one job's phases, counts, links).

Plain server-rendered HTML with a little inline JavaScript: no build step, no
CDN, nothing fetched from elsewhere. The HTML shell is the same for everyone
and carries no job data (not even the id in the path), so it is served
without a token. The script takes a token from `#token=...` in the address
(then drops it from the address bar) or from the form, keeps it in
`sessionStorage` (this tab only), and sends it as `Authorization: Bearer` on
every fetch to `/v1/jobs...`, polling once a second. Job data is only ever
put into the page as text (`textContent`, attributes), never as markup.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["pages"], include_in_schema=False)

_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}

_CSS = """
:root { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1f2937; background: #fff; }
body { margin: 0; }
header { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.2rem; border-bottom: 1px solid #e5e7eb; background: #f9fafb; }
header h1 { font-size: 1.1rem; margin: 0; }
header h1 a { color: inherit; text-decoration: none; }
#token-form { margin-left: auto; display: flex; gap: .4rem; align-items: center; }
#token-form input { width: 16rem; padding: .2rem .4rem; }
main { padding: 1rem 1.2rem; }
a { color: #1e3a8a; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: .35rem .7rem; border-bottom: 1px solid #eef0f3; vertical-align: middle; }
thead th { font-weight: 600; color: #4b5563; border-bottom: 2px solid #e5e7eb; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.id { font-family: ui-monospace, monospace; }
td.error, p.error-line { color: #b91c1c; max-width: 28rem; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: .7rem; color: #fff; font-size: .85em; font-weight: 600; }
.badge.queued { background: #6b7280; } .badge.running { background: #7c3aed; } .badge.succeeded { background: #15803d; }
.badge.failed { background: #b91c1c; } .badge.cancelled { background: #a16207; } .badge.paused { background: #6b7280; }
.bar-wrap { display: flex; align-items: center; gap: .6rem; }
.progress-bar { width: 220px; height: 14px; background: #dde3ee; border-radius: 7px; overflow: hidden; flex: none; }
.progress-bar .fill { height: 100%; width: 0; background: #2563eb; }
.progress-bar.indeterminate .fill { width: 100%; opacity: .35; }
.bar-text { color: #4b5563; font-variant-numeric: tabular-nums; white-space: nowrap; }
.marker { font-weight: 600; } .marker.done { color: #15803d; } .marker.reused { color: #0e7490; } .marker.stopped { color: #a16207; }
.message { padding: .5rem .8rem; border-radius: .3rem; margin: 0 0 1rem; }
.message.error { background: #fef2f2; color: #991b1b; } .message.warn { background: #fffbeb; color: #92400e; } .message.info { background: #eff6ff; color: #1e3a8a; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; margin: 0 0 1rem; }
dt { color: #6b7280; } dd { margin: 0; }
h2 { font-size: 1rem; margin: 1.2rem 0 .4rem; }
pre { background: #f9fafb; padding: .6rem; max-height: 24rem; overflow: auto; }
#cancel { margin-left: 1rem; }
"""

_LIST = """
<table id="jobs" hidden>
  <thead><tr><th>id</th><th>state</th><th>phase</th><th>progress</th><th>created</th><th>error</th></tr></thead>
  <tbody id="jobs-body"></tbody>
</table>
<p id="jobs-empty" hidden>No jobs yet.</p>
<section id="schedules" hidden>
  <h2>Schedules</h2>
  <table>
    <thead><tr><th>name</th><th>cron</th><th>next run</th><th>last job</th><th>last firing</th></tr></thead>
    <tbody id="schedules-body"></tbody>
  </table>
</section>
"""

_JOB = """
<p id="action-message" class="message" hidden></p>
<section id="job" hidden>
  <h2>Job <span id="job-id" class="id"></span> <span id="job-state"></span><button id="cancel" type="button" hidden>Cancel</button></h2>
  <dl>
    <dt>created</dt><dd id="job-created"></dd>
    <dt>started</dt><dd id="job-started"></dd>
    <dt>finished</dt><dd id="job-finished"></dd>
    <dt>attempt</dt><dd id="job-attempt"></dd>
  </dl>
  <p id="job-error" class="error-line" hidden></p>
  <h2>Phases</h2>
  <table id="phases">
    <thead><tr><th>phase</th><th>progress</th><th>rows</th><th>rate</th><th>seconds</th></tr></thead>
    <tbody id="phases-body"></tbody>
  </table>
  <section id="counts" hidden>
    <h2>Counts</h2>
    <table><tbody id="counts-body"></tbody></table>
  </section>
  <h2>Output</h2>
  <p id="links">
    <a id="link-report" href="#" data-type="text/html" hidden>report</a>
    <a id="link-manifest" href="#" data-type="application/json" hidden>manifest.json</a>
    <a id="link-logs" href="#" data-type="text/plain">logs</a>
    <span id="no-output">(the report and the manifest come when the job has succeeded)</span>
  </p>
  <details id="manifest" hidden><summary>manifest.json</summary><pre id="manifest-json"></pre></details>
</section>
"""

_JS = r"""
"use strict";
const KEY = "thresher.token", READONLY = "thresher.readonly";
const PHASES = ["embed", "clusters", "fit", "dedup", "semdedup", "score", "search", "select", "write"];
const COUNTS = [["input", "input"], ["selected_docs", "selected docs"], ["selected_copies", "copies"],
                ["selected_tokens", "tokens"], ["not_selected", "not selected"], ["invalid", "invalid"]];
const ACTIVE = new Set(["queued", "running"]);
const $ = (id) => document.getElementById(id);
const page = document.body.dataset.page;
const jobId = page === "job" ? decodeURIComponent(location.pathname.replace(/^\/jobs\//, "").replace(/\/+$/, "")) : null;

// Elements built from job data: text goes in as text nodes, values as attributes; never as markup.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") e.className = v; else e.setAttribute(k, String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}
const num = (x) => Number(x).toLocaleString("en-US", {maximumFractionDigits: 1});
const pad = (n) => String(n).padStart(2, "0");
function when(t) {
  if (!t) return "—";
  const d = new Date(t * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
const firstLine = (s) => (s ? String(s).split("\n")[0] : "");
const badge = (state) => el("span", {class: "badge " + state}, state);

function say(text, kind, id = "message") {
  const m = $(id);
  if (!m) return;
  m.textContent = text || "";
  m.className = "message" + (kind ? " " + kind : "");
  m.hidden = !text;
}

// The token: from #token=... (then dropped from the address bar) or the form; kept in sessionStorage.
const token = () => sessionStorage.getItem(KEY);
function setToken(t) { sessionStorage.setItem(KEY, t); sessionStorage.removeItem(READONLY); }
function forget() { sessionStorage.removeItem(KEY); sessionStorage.removeItem(READONLY); }
function takeHashToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (!m) return;
  setToken(decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}
async function api(path, method = "GET") {
  const t = token();
  if (!t) throw new ApiError(401, "no token");
  let r;
  try {
    r = await fetch(path, {method, headers: {Authorization: "Bearer " + t}, cache: "no-store"});
  } catch (e) {
    throw new ApiError(0, "cannot reach the service (" + e.message + ")");
  }
  if (!r.ok) {
    let detail = r.statusText || "error";
    try { detail = (await r.json()).detail || detail; } catch (e) { /* not JSON */ }
    throw new ApiError(r.status, typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return r;
}

function bar(id, phase, f) {
  const done = f.rows_done || 0, total = f.rows_total || 0;
  const pct = total > 0 ? Math.min(100, (100 * done) / total) : null;
  const label = `${phase}: ${num(done)}${total ? " of " + num(total) : ""} rows`;
  const fill = el("div", {class: "fill"});
  if (pct !== null) fill.style.width = pct.toFixed(1) + "%";
  if (pct > 0) fill.style.minWidth = "4px";  // a sliver shows that rows are moving
  const b = el("div", {
    class: "progress-bar" + (pct === null ? " indeterminate" : ""), role: "progressbar", "aria-label": label,
    "aria-valuemin": 0, "aria-valuemax": 100, "aria-valuenow": pct === null ? null : pct.toFixed(1),
    "data-job-id": id, "data-phase": phase, "data-value": pct === null ? null : pct.toFixed(1),
  }, fill);
  const rate = f.rate ? ` · ${num(f.rate)} rows/s` : "";
  return el("div", {class: "bar-wrap"}, b, el("span", {class: "bar-text"}, `${num(done)} / ${total ? num(total) : "?"} rows${rate}`));
}

function currentPhase(j) {
  const p = j.progress || {};
  return p.phase || (j.state === "failed" || j.state === "cancelled" ? j.phase : null) || null;
}

// "/": the jobs, newest first.
function jobRow(j) {
  const phase = currentPhase(j), phases = (j.progress || {}).phases || {};
  const live = j.state === "running" && phase;
  return el("tr", {class: "job", "data-job-id": j.id},
    el("td", {class: "id"}, el("a", {href: "/jobs/" + encodeURIComponent(j.id)}, j.id)),
    el("td", {}, badge(j.state)),
    el("td", {class: "phase"}, phase || "—"),
    el("td", {}, live ? bar(j.id, phase, phases[phase] || {}) : null),
    el("td", {class: "time"}, when(j.created_at)),
    el("td", {class: "error", title: j.error || null}, j.state !== "succeeded" ? firstLine(j.error) : ""));
}
const isoWhen = (s) => (s ? when(Date.parse(s) / 1000) : "—");
function scheduleRow(s) {
  return el("tr", {class: "schedule", "data-schedule": s.name},
    el("td", {}, s.name),
    el("td", {class: "id"}, `${s.cron} (${s.timezone})`),
    el("td", {class: "next"}, s.paused ? badge("paused") : isoWhen(s.next_runs[0])),
    el("td", {class: "id"}, s.last_job_id ? el("a", {href: "/jobs/" + encodeURIComponent(s.last_job_id)}, s.last_job_id) : "—"),
    el("td", {class: "error", title: s.last_note || null}, s.last_note || ""));
}
async function refreshList() {
  const data = await (await api("/v1/jobs?limit=100")).json();
  const rows = data.jobs.map(jobRow);
  $("jobs-body").replaceChildren(...rows);
  $("jobs").hidden = rows.length === 0;
  $("jobs-empty").hidden = rows.length > 0;
  const schedules = (await (await api("/v1/schedules")).json()).schedules.map(scheduleRow);
  $("schedules-body").replaceChildren(...schedules);
  $("schedules").hidden = schedules.length === 0;
  return true;
}

// "/jobs/{id}": one job.
function ordered(phases) {
  const names = Object.keys(phases);
  return PHASES.filter((p) => names.includes(p)).concat(names.filter((p) => !PHASES.includes(p)));
}
function phaseRow(j, name, f) {
  const running = f.state === "running";  // as the job last reported it; a succeeded job's phases are all done
  let status;
  if (running && j.state === "running") status = bar(j.id, name, f);
  else if (running && j.state !== "succeeded") status = el("span", {class: "marker stopped"}, j.state === "failed" ? "failed" : "stopped");
  else if (f.reused) status = el("span", {class: "marker reused"}, "↺ reused");
  else status = el("span", {class: "marker done"}, "✓ done");
  const live = running && j.state !== "succeeded";
  const rows = live ? f.rows_done : f.rows, secs = live ? f.elapsed : f.seconds;
  const rate = live ? f.rate : f.docs_per_s || (f.rows && f.seconds ? f.rows / f.seconds : null);
  return el("tr", {class: "phase", "data-phase": name, "data-state": f.state || null},
    el("th", {scope: "row"}, name), el("td", {}, status),
    el("td", {class: "num"}, rows == null ? "—" : num(rows)),
    el("td", {class: "num"}, rate ? num(rate) + " rows/s" : "—"),
    el("td", {class: "num"}, secs == null ? "—" : Number(secs).toFixed(1) + " s"));
}
let manifest = null;
async function refreshJob() {
  const j = await (await api("/v1/jobs/" + encodeURIComponent(jobId))).json();
  const links = j.links || {}, done = j.state === "succeeded";
  if (done && links.manifest && !manifest) {
    manifest = await (await api(links.manifest)).json();
    $("manifest-json").textContent = JSON.stringify(manifest, null, 2);
    $("manifest").hidden = false;
  }
  document.title = "thresher · job " + j.id;
  $("job").hidden = false;
  $("job").dataset.jobId = j.id;
  $("job-id").textContent = j.id;
  $("job-state").replaceChildren(badge(j.state));
  $("job-created").textContent = when(j.created_at);
  $("job-started").textContent = when(j.started_at);
  $("job-finished").textContent = when(j.finished_at);
  $("job-attempt").textContent = j.attempt == null ? "—" : String(j.attempt);
  $("job-error").textContent = j.state !== "succeeded" ? firstLine(j.error) : "";
  $("job-error").title = j.error || "";
  $("job-error").hidden = !$("job-error").textContent;
  const phases = (j.progress || {}).phases || {}, timings = (manifest && manifest.timings) || {};
  // a succeeded job's manifest has every phase's rows and seconds (write's too, which reports no progress)
  $("phases-body").replaceChildren(...ordered(phases).map((name) => phaseRow(j, name, {...(timings[name] || {}), ...phases[name]})));
  $("cancel").hidden = !ACTIVE.has(j.state) || sessionStorage.getItem(READONLY) === "1";
  $("link-logs").dataset.path = links.logs || "";
  for (const k of ["report", "manifest"]) {
    $("link-" + k).hidden = !done || !links[k];
    $("link-" + k).dataset.path = links[k] || "";
  }
  $("no-output").hidden = done;
  if (done && j.counts) {
    $("counts-body").replaceChildren(...COUNTS.map(([k, label]) =>
      el("tr", {"data-count": k}, el("th", {scope: "row"}, label), el("td", {class: "num"}, j.counts[k] == null ? "—" : num(j.counts[k])))));
    $("counts").hidden = false;
  }
  return ACTIVE.has(j.state);  // a finished job does not change: stop polling
}

// The report, manifest and logs need the bearer header too: fetch them, then open what came as a blob URL.
async function openWithToken(ev) {
  ev.preventDefault();
  const a = ev.currentTarget;
  if (!a.dataset.path) return;
  const w = window.open("", "_blank");  // opened within the click, so no popup blocker stops it
  try {
    const body = await (await api(a.dataset.path)).blob();
    const url = URL.createObjectURL(new Blob([body], {type: a.dataset.type + ";charset=utf-8"}));
    if (w) { w.opener = null; w.location.href = url; } else location.href = url;
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    if (w) w.close();
    say(`Cannot open ${a.textContent}: ${e.message}`, "error", "action-message");
  }
}

async function cancelJob() {
  const button = $("cancel");
  button.disabled = true;
  try {
    await api("/v1/jobs/" + encodeURIComponent(jobId) + "/cancel", "POST");
    say("Cancel requested: the job stops shortly and publishes nothing.", "info", "action-message");
    start();
  } catch (e) {
    if (e.status === 403) {
      sessionStorage.setItem(READONLY, "1");
      button.hidden = true;
    }
    say("Cannot cancel: " + e.message, "error", "action-message");
  } finally {
    button.disabled = false;
  }
}

// Polling, once a second, one request at a time.
let timer = null, busy = false;
function stop() { if (timer) clearInterval(timer); timer = null; }
function start() { stop(); timer = setInterval(tick, 1000); tick(); }
function clearData() {
  for (const id of ["jobs", "jobs-empty", "job", "schedules"]) if ($(id)) $(id).hidden = true;
  for (const id of ["jobs-body", "phases-body", "counts-body", "schedules-body"]) if ($(id)) $(id).replaceChildren();
}
async function tick() {
  if (busy) return;
  busy = true;
  try {
    const more = await (page === "job" ? refreshJob() : refreshList());
    say("");
    if (!more) stop();
  } catch (e) {
    if (e.status === 401) {
      forget(); stop(); clearData();
      say(`The service refused the token (${e.message}). Enter a valid token: an admin or a read token.`, "error");
    } else if (e.status === 0) {
      say(e.message + "; retrying every second", "warn");
    } else {
      stop();
      say(`${e.status}: ${e.message}`, "error");
    }
  } finally {
    busy = false;
  }
}

$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token-input").value.trim();
  $("token-input").value = "";
  if (!t) return;
  if (/[^\x21-\x7e]/.test(t)) { say("A token is printable ASCII without spaces.", "error"); return; }
  setToken(t);
  start();
});
$("forget").addEventListener("click", () => { forget(); stop(); clearData(); say("Token forgotten. Enter a token to see jobs.", "info"); });
if (page === "job") {
  $("cancel").addEventListener("click", cancelJob);
  for (const id of ["link-report", "link-manifest", "link-logs"]) $(id).addEventListener("click", openWithToken);
}
window.addEventListener("hashchange", () => { if (/token=/.test(location.hash)) { takeHashToken(); start(); } });
takeHashToken();
if (token()) start();
else say("Enter a token to see jobs (or open this page as …#token=TOKEN). The page shows nothing without one.", "info");
"""

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>__TITLE__</title>
<style>__CSS__</style>
</head>
<body data-page="__PAGE__">
<header>
  <h1><a href="/">thresher</a></h1>
  <nav><a href="/">jobs</a></nav>
  <form id="token-form" autocomplete="off">
    <label for="token-input">Token</label>
    <input id="token-input" type="password" placeholder="admin or read token" spellcheck="false">
    <button type="submit">Use token</button>
    <button id="forget" type="button">Forget</button>
  </form>
</header>
<main>
<p id="message" class="message" role="status" hidden></p>
__MAIN__
</main>
<script>__JS__</script>
</body>
</html>
"""


def _render(page: str, title: str, main: str) -> str:
    return _PAGE.replace("__TITLE__", title).replace("__PAGE__", page).replace("__CSS__", _CSS).replace("__MAIN__", main).replace("__JS__", _JS)


_LIST_PAGE = _render("list", "thresher · jobs", _LIST)
_JOB_PAGE = _render("job", "thresher · job", _JOB)


@router.get("/", response_class=HTMLResponse)
def status_page() -> HTMLResponse:
    """The jobs, newest first; the data comes from /v1/jobs with the token the page is given."""
    return HTMLResponse(_LIST_PAGE, headers=_HEADERS)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(job_id: str) -> HTMLResponse:
    """One job's page; the shell is the same for every id (the script reads the id from the address)."""
    return HTMLResponse(_JOB_PAGE, headers=_HEADERS)
