// /console/calls: polls /console/api/calls every two seconds; a selected call is
// fetched whole (its record) and, while live, refreshed on each of its stream's events.
import { Transcript, renderChart } from "./transcript.js";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);
const transcript = new Transcript($("transcript"));
let selected = new URLSearchParams(location.search).get("call");
let events = null;

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

// What the caller heard comes from the carrier's echoes or, for a carrier without them,
// from voiced's own playout clock: say which.
function carrierLabel(summary) {
  const label = summary.playout === "local" ? `${summary.carrier} (local playout)` : summary.carrier;
  return summary.direction === "outbound" ? `${label}, outbound` : label;
}

// A call voiced placed: its dial's status history (queued, ringing, answered, ...).
function dialLabel(dial) {
  if (!dial) return "";
  return `dial ${dial.id}: ` + dial.history.map((h) => h.status).join(" \u2192 ");
}

function callRow(call, last) {
  const row = document.createElement("tr");
  row.dataset.callSid = call.call_sid;
  if (call.call_sid === selected) row.classList.add("selected");
  const link = document.createElement("a");
  link.href = `?call=${encodeURIComponent(call.call_sid)}`;
  link.textContent = call.call_sid;
  link.addEventListener("click", (e) => {
    e.preventDefault();
    select(call.call_sid);
  });
  cell(row, "").appendChild(link);
  cell(row, carrierLabel(call));
  cell(row, call.from || "-");
  cell(row, call.to || "-");
  cell(row, `${call.duration_s} s`);
  cell(row, last);
  cell(row, String(call.turns));
  return row;
}

async function refresh() {
  try {
    const response = await fetch("/console/api/calls", { credentials: "same-origin" });
    if (!response.ok) throw new Error(`/console/api/calls answered ${response.status}`);
    const table = await response.json();
    $("live").replaceChildren(...table.live.map((c) => callRow(c, c.state)));
    $("recent").replaceChildren(...table.recent.map((c) => callRow(c, c.end_reason || "-")));
    $("live-count").textContent = `(${table.live.length})`;
    $("recent-count").textContent = `(${table.recent.length})`;
    $("error").textContent = "";
  } catch (error) {
    $("error").textContent = String(error.message || error);
  }
}

async function showCall(callSid) {
  const response = await fetch(`/console/api/calls/${encodeURIComponent(callSid)}`, { credentials: "same-origin" });
  if (!response.ok) {
    $("detail-state").textContent = response.status === 404 ? "(not found: too old, or not started yet)" : `(${response.status})`;
    return null;
  }
  const call = await response.json();
  $("detail-carrier").textContent = `via ${carrierLabel(call.summary)}`;
  $("detail-state").textContent = call.live ? `live, ${call.summary.state}` : `ended: ${call.record.end_reason}`;
  $("detail-dial").textContent = dialLabel(call.dial);
  transcript.renderRecord(call.record, call.language);
  showRecording(call.recording_url);
  renderChart($("chart"), call.record.turns.map((t) => ({ turn: t.number, metrics: t.metrics })));
  return call;
}

// The call's recording, when calls are recorded: its transcript lines are seek points.
function showRecording(url) {
  const player = $("recording");
  player.hidden = !url;
  if (!url) {
    player.removeAttribute("src");
    delete player.dataset.src;
  } else if (player.dataset.src !== url) {
    player.dataset.src = url;
    player.src = url;
  }
}

$("transcript").addEventListener("click", (e) => {
  const line = e.target.closest("[data-at]");
  const player = $("recording");
  if (!line || player.hidden) return;
  player.currentTime = Number(line.dataset.at);
  player.play().catch(() => {}); // a browser that will not play unasked still seeks
});

async function select(callSid) {
  selected = callSid;
  history.replaceState(null, "", `?call=${encodeURIComponent(callSid)}`);
  for (const row of document.querySelectorAll("tr[data-call-sid]")) row.classList.toggle("selected", row.dataset.callSid === callSid);
  $("detail").hidden = false;
  $("detail-sid").textContent = callSid;
  if (events) events.close();
  events = null;
  const call = await showCall(callSid);
  if (call && call.live) {
    // Any call's stream, not only a browser's: each event re-reads the record.
    events = new EventSource(`/console/api/calls/${encodeURIComponent(callSid)}/events`);
    for (const kind of ["caller", "reply", "bot", "turn", "end"]) {
      events.addEventListener(kind, () => showCall(callSid));
    }
    events.addEventListener("end", () => events && events.close());
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
if (selected) select(selected);
