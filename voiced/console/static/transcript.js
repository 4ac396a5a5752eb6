// A call's conversation as lines in an element (the automation contract:
// each line has data-role="caller" or data-role="bot" and holds its text).
// Fed either event by event (the live stream) or from a whole CallRecord.
//
// What was said sits in its own element with dir="auto" and the call's language
// (lang="he-IL"): the page is English and left-to-right, so without them a Hebrew
// line's final full stop would be drawn at its right end (".שמעתי").
import { latencyChart } from "./latency.js";

function eventText(event) {
  if (!event) return "";
  if (event.dtmf !== undefined) return `pressed ${event.dtmf}`;
  if (event.idle !== undefined) return "(silence)";
  if (event.unheard !== undefined) return `(not heard: ${event.unheard})`;
  return JSON.stringify(event);
}

export class Transcript {
  /**
   * @param {HTMLElement} element  the id="transcript" list
   * @param {string} language  BCP-47 tag of the call's words ("" when unknown)
   */
  constructor(element, language = "") {
    this.element = element;
    this.language = language;
  }

  /** The call's language, for the lines shown from now on (the server says it). */
  setLanguage(language) {
    this.language = language || "";
  }

  clear() {
    this.element.replaceChildren();
  }

  /** `spoken` is false for a placeholder the page writes itself ("pressed 5"). */
  line(role, text, turn, spoken = true) {
    const item = document.createElement("li");
    item.dataset.role = role;
    if (turn !== null && turn !== undefined) item.dataset.turn = String(turn);
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "caller" ? "Caller" : "Bot";
    const said = document.createElement("span");
    said.className = "text";
    said.dir = "auto";
    if (spoken && this.language) said.lang = this.language;
    said.textContent = text;
    item.append(who, said);
    this.element.appendChild(item);
    item.scrollIntoView({ block: "nearest" });
    return item;
  }

  /** The caller's turn: what STT heard, or the event that made the turn (a key press). */
  caller(turn, text, event) {
    const item = this.line("caller", text || eventText(event), turn, !!text);
    if (!text) item.classList.add("event");
    return item;
  }

  /** The bot's line, shown while it plays; `bot` later says whether it was cut. */
  reply(turn, text) {
    const item = this.openBotLine(turn) || this.line("bot", text, turn);
    item.querySelector(".text").textContent = text;
    item.classList.add("speaking");
  }

  /** A reply finished or was cut by barge-in (then only `heard` reached the caller). */
  bot(turn, text, heard, interrupted) {
    const item = this.openBotLine(turn) || this.line("bot", text, turn);
    item.classList.remove("speaking");
    item.dataset.final = "1";
    if (interrupted) {
      item.classList.add("cut");
      item.dataset.interrupted = "1";
      // A tooltip takes no dir: first-strong isolates keep a Hebrew quote in order.
      item.title = `Cut by barge-in. The caller heard: “\u2068${heard}\u2069”`;
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "cut";
      item.appendChild(badge);
    }
    return item;
  }

  openBotLine(turn) {
    const key = turn === null || turn === undefined ? null : String(turn);
    const lines = [...this.element.querySelectorAll('[data-role="bot"]:not([data-final])')];
    return lines.reverse().find((item) => (item.dataset.turn ?? null) === key) || null;
  }

  /** A whole CallRecord (as_json), e.g. an ended call opened in /console/calls. */
  renderRecord(record, language = this.language) {
    this.setLanguage(language);
    this.clear();
    for (const turn of record.turns || []) {
      seekPoint(this.caller(turn.number, turn.caller_text, turn.event), turn.caller_at_s);
      if (turn.reply_text) seekPoint(this.bot(turn.number, turn.reply_text, turn.heard_text, turn.interrupted), turn.bot_at_s);
    }
  }
}

/** A line said `at` seconds into the call (and its recording): a click there plays from it. */
function seekPoint(item, at) {
  if (at === null || at === undefined) return;
  item.dataset.at = String(at);
  item.classList.add("seekable");
  item.title = item.title || `${at.toFixed(1)} s into the call: click to play from here`;
}

/** Turns with metrics -> a chart in `container` (or a note while there are none). */
export function renderChart(container, turns) {
  const measured = turns.filter((t) => t.metrics && Object.keys(t.metrics).length);
  container.replaceChildren();
  if (!measured.length) {
    const note = document.createElement("p");
    note.className = "muted";
    note.textContent = "No turn measured yet.";
    container.appendChild(note);
    return;
  }
  container.appendChild(latencyChart(measured));
}

/** One turn's TURN-line values as a table row. */
export function metricsRow(turn, metrics) {
  const row = document.createElement("tr");
  const names = ["STT_FIRST_PARTIAL_MS", "STT_FINAL_MS", "AGENT_FIRST_SENTENCE_MS", "TTS_READY_MS", "TOTAL_LATENCY_MS", "PLAYBACK_START_MS"];
  for (const cell of [turn, ...names.map((n) => (metrics[n] ?? "-"))]) {
    const td = document.createElement("td");
    td.textContent = String(cell);
    row.appendChild(td);
  }
  return row;
}

export const METRIC_HEADERS = ["turn", "STT first partial", "STT final", "agent 1st sentence", "TTS ready", "total", "playback start"];
