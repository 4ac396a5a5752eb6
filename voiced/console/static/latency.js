// Where a turn's time went, as a stacked bar per turn, drawn as inline SVG.
//
// The TURN line's values all count from a point in the turn (README, "What every turn
// reports"); the bar lays them end to end from the caller's speech end:
//   STT_FINAL_MS            speech end -> final transcript (includes the end-of-utterance wait)
//   AGENT_FIRST_SENTENCE_MS turn handed to the agent -> its first sentence
//   TTS_READY_MS            reply text known -> first audio ready
//   send                    what is left of TOTAL_LATENCY_MS (first audio sent to the carrier)
//   PLAYBACK_START_MS       ... minus TOTAL_LATENCY_MS: until the caller starts hearing it
// A missing value ("-" in the log, null here) is drawn as nothing, never guessed.

export const SEGMENTS = [
  { key: "stt", label: "end of utterance + STT final", color: "#4e79a7" },
  { key: "agent", label: "agent first sentence", color: "#f28e2b" },
  { key: "tts", label: "TTS ready", color: "#59a14f" },
  { key: "send", label: "sent to the carrier", color: "#bab0ac" },
  { key: "playback", label: "playback start", color: "#b07aa1" },
];

const value = (metrics, name) => (typeof metrics[name] === "number" ? metrics[name] : null);

/** A turn's metrics -> [{key, label, color, ms}] laid end to end (ms >= 0). */
export function turnSegments(metrics) {
  const m = metrics || {};
  const stt = value(m, "STT_FINAL_MS");
  const agent = value(m, "AGENT_FIRST_SENTENCE_MS");
  const tts = value(m, "TTS_READY_MS");
  const total = value(m, "TOTAL_LATENCY_MS");
  const playback = value(m, "PLAYBACK_START_MS");
  const known = (stt ?? 0) + (agent ?? 0) + (tts ?? 0);
  const ms = {
    stt,
    agent,
    tts,
    send: total === null ? null : Math.max(0, total - known),
    playback: playback === null || total === null ? null : Math.max(0, playback - total),
  };
  return SEGMENTS.map((s) => ({ ...s, ms: ms[s.key] === null ? 0 : Math.max(0, ms[s.key]) }));
}

/** The whole bar's length: what the caller waited, as far as it is known. */
export function turnTotal(metrics) {
  return turnSegments(metrics).reduce((sum, s) => sum + s.ms, 0);
}

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/**
 * @param {{turn: number, metrics: object}[]} turns
 * @returns {SVGSVGElement} one row per turn, a legend below
 */
export function latencyChart(turns, width = 640) {
  const rowHeight = 22;
  const labelWidth = 56;
  const legendHeight = 22 * Math.ceil(SEGMENTS.length / 3);
  const height = turns.length * rowHeight + 24 + legendHeight;
  const longest = Math.max(1, ...turns.map((t) => turnTotal(t.metrics)));
  const scale = (width - labelWidth - 70) / longest;
  const chart = svg("svg", { class: "latency-chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img" });
  chart.appendChild(svg("title", {}, "Per-turn latency: where each turn's time went"));
  turns.forEach((t, row) => {
    const y = row * rowHeight + 4;
    chart.appendChild(svg("text", { x: 0, y: y + 14, class: "chart-label" }, `turn ${t.turn}`));
    let x = labelWidth;
    for (const segment of turnSegments(t.metrics)) {
      if (!segment.ms) continue;
      const rect = svg("rect", { x, y, width: Math.max(1, segment.ms * scale), height: rowHeight - 6, fill: segment.color });
      rect.appendChild(svg("title", {}, `${segment.label}: ${segment.ms} ms`));
      chart.appendChild(rect);
      x += segment.ms * scale;
    }
    chart.appendChild(svg("text", { x: x + 6, y: y + 14, class: "chart-value" }, `${turnTotal(t.metrics)} ms`));
  });
  const legendTop = turns.length * rowHeight + 16;
  SEGMENTS.forEach((segment, i) => {
    const x = (i % 3) * (width / 3);
    const y = legendTop + Math.floor(i / 3) * 22;
    chart.appendChild(svg("rect", { x, y, width: 12, height: 12, fill: segment.color }));
    chart.appendChild(svg("text", { x: x + 18, y: y + 11, class: "chart-legend" }, segment.label));
  });
  return chart;
}
