// /console/phone: the softphone page. "Call" mints a media token, opens this call's
// event stream (so no event is missed) and then the media socket; the transcript and
// the turn metrics come from the stream, exactly as for any other call.
//
// Automation contract: ?autocall=1 calls on load; #transcript holds the lines
// (data-role="caller" | "bot"); #call-state is idle | connecting | in-call | ended.
import { Softphone } from "./softphone.js";
import { METRIC_HEADERS, Transcript, metricsRow, renderChart } from "./transcript.js";

const $ = (id) => document.getElementById(id);
const transcript = new Transcript($("transcript"));
const turns = new Map(); // turn number -> metrics
let phone = null;
let events = null;

for (const name of METRIC_HEADERS) {
  const th = document.createElement("th");
  th.textContent = name;
  $("metric-headers").appendChild(th);
}

function showState(state) {
  $("call-state").textContent = state;
  document.body.dataset.callState = state;
  $("call").disabled = state === "connecting" || state === "in-call";
  $("hangup").disabled = !(state === "connecting" || state === "in-call");
  if (state === "ended" && events) setTimeout(() => events && events.close(), 3000); // the last events follow the close
}

function showError(text) {
  $("error").textContent = text;
}

function showTurn(turn, metrics) {
  turns.set(turn, metrics);
  $("metrics").appendChild(metricsRow(turn, metrics));
  renderChart($("chart"), [...turns].map(([number, m]) => ({ turn: number, metrics: m })));
}

function follow(callSid) {
  events = new EventSource(`/console/api/calls/${encodeURIComponent(callSid)}/events`);
  const on = (kind, handle) => events.addEventListener(kind, (e) => handle(JSON.parse(e.data)));
  on("snapshot", (d) => transcript.setLanguage(d.language)); // always the stream's first event
  on("caller", (d) => transcript.caller(d.turn, d.text, d.event));
  on("reply", (d) => transcript.reply(d.turn, d.text));
  on("bot", (d) => transcript.bot(d.turn, d.text, d.heard, d.interrupted));
  on("turn", (d) => showTurn(d.turn, d.metrics));
  on("end", () => events.close());
}

async function mintMediaUrl() {
  const response = await fetch("/console/api/media-token", { method: "POST", credentials: "same-origin" });
  if (!response.ok) throw new Error(`the console refused a media token (${response.status})`);
  const { token, param } = await response.json();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/media?${param}=${encodeURIComponent(token)}`;
}

async function call() {
  showError("");
  transcript.clear();
  turns.clear();
  $("metrics").replaceChildren();
  $("chart").replaceChildren();
  phone = new Softphone({
    onState: showState,
    onError: showError,
    parameters: { From: "browser", To: "voiced", Source: "console-phone" },
  });
  window.voicedPhone.softphone = phone;
  $("call-sid").textContent = phone.callSid;
  $("call-link").href = `/console/calls?call=${phone.callSid}`;
  $("call-link").hidden = false;
  follow(phone.callSid);
  try {
    await phone.call(await mintMediaUrl());
  } catch (error) {
    showError(String(error.message || error));
    phone.closed(null);
  }
}

$("call").addEventListener("click", call);
$("hangup").addEventListener("click", () => phone && phone.hangUp());
for (const key of $("keypad").querySelectorAll("button")) {
  key.addEventListener("click", () => phone && phone.digit(key.textContent));
}

// For tests and kiosks: what the page sent and played.
window.voicedPhone = {
  softphone: null,
  call,
  stats() {
    const p = window.voicedPhone.softphone;
    return p ? { state: p.state, callSid: p.callSid, ...p.stats, player: p.player ? { ...p.player.stats } : null } : null;
  },
};

showState("idle");
if (new URLSearchParams(location.search).get("autocall") === "1") call();
