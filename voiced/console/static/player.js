// The bot's voice: plays what voiced sends, the way Twilio's side of a call does.
//
// voiced sends a reply's audio faster than real time and relies on the carrier to
// buffer it, play it in order, echo each mark once the audio queued before it has
// played, and on `clear` drop what is queued and echo the pending marks at once.
// That is what this player does, on the AudioContext's clock:
//   - each chunk is decoded (mu-law -> float), upsampled to the context's rate and
//     scheduled right after the previous one (an AudioBufferSourceNode each);
//   - when playback starts from silence it starts JITTER_MS late, so chunks that
//     arrive a little apart still play back to back (the jitter buffer);
//   - a mark remembers the time its audio ends; a 20 ms timer echoes it then.
import { decodeUlaw, Upsampler } from "./codec.js";

const JITTER_MS = 80;
const MARK_POLL_MS = 20;

export class Player {
  /**
   * @param {AudioContext} context
   * @param {(name: string) => void} onMark  called when a mark's audio has played (or was cleared)
   */
  constructor(context, onMark) {
    this.context = context;
    this.onMark = onMark;
    this.upsampler = new Upsampler(8000, context.sampleRate);
    this.playhead = 0; // context time at which the queued audio ends
    this.sources = new Set();
    this.marks = []; // [{name, at}] in order
    this.stats = { chunks: 0, bytes: 0, scheduledSeconds: 0, playedSeconds: 0, marksEchoed: 0, clears: 0, peak: 0 };
    this.timer = setInterval(() => this.echoDueMarks(), MARK_POLL_MS);
  }

  /** @param {Uint8Array} ulaw  raw mu-law at 8 kHz, any length */
  enqueue(ulaw) {
    if (!ulaw.length) return;
    const samples = this.upsampler.process(decodeUlaw(ulaw));
    if (!samples.length) return;
    const buffer = this.context.createBuffer(1, samples.length, this.context.sampleRate);
    buffer.copyToChannel(samples, 0);
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    const now = this.context.currentTime;
    const startAt = this.playhead > now ? this.playhead : now + JITTER_MS / 1000;
    source.start(startAt);
    this.playhead = startAt + buffer.duration;
    this.sources.add(source);
    source.onended = () => {
      if (this.sources.delete(source)) this.stats.playedSeconds += buffer.duration; // not stopped by clear
    };
    this.stats.chunks += 1;
    this.stats.bytes += ulaw.length;
    this.stats.scheduledSeconds += buffer.duration;
    for (const x of samples) this.stats.peak = Math.max(this.stats.peak, Math.abs(x));
  }

  /** Echo `name` once everything queued before it has played (at once if nothing is). */
  mark(name) {
    if (this.playhead <= this.context.currentTime) this.echo(name);
    else this.marks.push({ name, at: this.playhead });
  }

  /** Stop now: drop the queue, echo every pending mark (Twilio does the same). */
  clear() {
    this.stats.clears += 1;
    const playing = [...this.sources];
    this.sources.clear();
    for (const source of playing) {
      try {
        source.stop();
      } catch (e) {
        // a source that has not started yet throws in some browsers; it is dropped anyway
      }
    }
    this.playhead = 0;
    const pending = this.marks;
    this.marks = [];
    for (const mark of pending) this.echo(mark.name);
  }

  echoDueMarks() {
    const now = this.context.currentTime;
    while (this.marks.length && this.marks[0].at <= now) this.echo(this.marks.shift().name);
  }

  echo(name) {
    this.stats.marksEchoed += 1;
    this.onMark(name);
  }

  /** Seconds of audio still queued. */
  get queuedSeconds() {
    return Math.max(0, this.playhead - this.context.currentTime);
  }

  close() {
    clearInterval(this.timer);
    this.clear();
  }
}
