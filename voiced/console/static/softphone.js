// A Twilio Media Streams peer in the browser: to voiced it is a phone call like any
// other, so the browser exercises the real call path and nothing else.
//
// Messages sent (as Twilio sends them; all values strings but sampleRate/channels):
//   connected                       first, no streamSid
//   start   customParameters        once, sequenceNumber "1"
//   media   track inbound, chunk, timestamp, payload = 160 mu-law bytes (20 ms), base64
//   dtmf    digit                   the keypad
//   mark    name                    the echo of a mark voiced sent, once its audio played
//   stop                            "Hang up"
// Messages received: media (the bot's audio), mark, clear (see player.js).
import { Downsampler, encodeUlaw, fromBase64, toBase64 } from "./codec.js";
import { Player } from "./player.js";

const FRAME_SAMPLES = 160; // 20 ms at 8 kHz

function randomSid(prefix) {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Softphone {
  /**
   * @param {object} options
   * @param {(state: string) => void} options.onState  idle | connecting | in-call | ended
   * @param {(error: string) => void} options.onError
   * @param {Record<string,string>} options.parameters  customParameters of the start message
   */
  constructor({ onState, onError, parameters }) {
    this.onState = onState;
    this.onError = onError;
    this.parameters = parameters;
    this.callSid = randomSid("CA");
    this.streamSid = randomSid("MZ");
    this.accountSid = "AC" + "0".repeat(32); // no Twilio account: a browser call
    this.sequence = 0;
    this.chunk = 0;
    this.pending = []; // 8 kHz samples not yet a whole frame
    this.stats = { framesSent: 0, digitsSent: 0, marksReceived: 0, clearsReceived: 0, closeCode: null };
    this.state = "idle";
  }

  setState(state) {
    this.state = state;
    this.onState(state);
  }

  /** Open the microphone and the media socket. `mediaUrl` carries the console's token. */
  async call(mediaUrl) {
    this.setState("connecting");
    try {
      // The context must start from the click ("Call") or autoplay policy keeps it suspended.
      this.context = new AudioContext();
      await this.context.resume();
      this.microphone = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
      await this.context.audioWorklet.addModule("/console/static/capture-worklet.js");
    } catch (error) {
      this.fail(`microphone: ${error.message || error}`);
      return;
    }
    this.player = new Player(this.context, (name) => this.send({ event: "mark", streamSid: this.streamSid, mark: { name } }, true));
    this.downsampler = new Downsampler(this.context.sampleRate, 8000);
    const source = this.context.createMediaStreamSource(this.microphone);
    this.capture = new AudioWorkletNode(this.context, "voiced-capture");
    // A node nobody pulls is not run: route it to the speakers through a muted gain.
    const mute = new GainNode(this.context, { gain: 0 });
    source.connect(this.capture).connect(mute).connect(this.context.destination);
    this.capture.port.onmessage = (event) => this.captured(event.data);

    this.socket = new WebSocket(mediaUrl);
    this.socket.onopen = () => this.opened();
    this.socket.onmessage = (event) => this.received(event.data);
    this.socket.onclose = (event) => this.closed(event.code);
    this.socket.onerror = () => this.onError("media socket error");
  }

  opened() {
    this.startedAt = performance.now();
    this.send({ event: "connected", protocol: "Call", version: "1.0.0" }, false);
    this.send({
      event: "start",
      streamSid: this.streamSid,
      start: {
        streamSid: this.streamSid,
        accountSid: this.accountSid,
        callSid: this.callSid,
        tracks: ["inbound"],
        customParameters: this.parameters,
        mediaFormat: { encoding: "audio/x-mulaw", sampleRate: 8000, channels: 1 },
      },
    });
    this.setState("in-call");
  }

  /** A message out; `numbered` adds the sequenceNumber Twilio puts on all but `connected`. */
  send(message, numbered = true) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return;
    if (numbered) message.sequenceNumber = String(++this.sequence);
    this.socket.send(JSON.stringify(message));
  }

  captured(block) {
    if (this.state !== "in-call") return; // audio before the start message has nowhere to go
    const samples = this.downsampler.process(block);
    for (const x of samples) this.pending.push(x);
    while (this.pending.length >= FRAME_SAMPLES) {
      const frame = this.pending.splice(0, FRAME_SAMPLES);
      this.chunk += 1;
      this.send({
        event: "media",
        streamSid: this.streamSid,
        media: {
          track: "inbound",
          chunk: String(this.chunk),
          timestamp: String((this.chunk - 1) * 20),
          payload: toBase64(encodeUlaw(frame)),
        },
      });
      this.stats.framesSent += 1;
    }
  }

  received(text) {
    let message;
    try {
      message = JSON.parse(text);
    } catch (e) {
      return;
    }
    if (message.event === "media" && message.media) this.player.enqueue(fromBase64(message.media.payload || ""));
    else if (message.event === "mark" && message.mark) {
      this.stats.marksReceived += 1;
      this.player.mark(message.mark.name);
    } else if (message.event === "clear") {
      this.stats.clearsReceived += 1;
      this.player.clear();
    }
  }

  /** A keypad press: Twilio's dtmf message. */
  digit(digit) {
    if (this.state !== "in-call") return;
    this.send({ event: "dtmf", streamSid: this.streamSid, dtmf: { track: "inbound_track", digit } });
    this.stats.digitsSent += 1;
  }

  /** "Hang up": Twilio's stop message; voiced then closes the socket. */
  hangUp() {
    if (this.state === "in-call") {
      this.send({ event: "stop", streamSid: this.streamSid, stop: { accountSid: this.accountSid, callSid: this.callSid } });
    }
    if (this.socket && this.socket.readyState === WebSocket.CONNECTING) this.socket.close();
    if (this.state === "connecting") this.closed(null);
  }

  closed(code) {
    if (this.state === "ended") return;
    this.stats.closeCode = code;
    if (this.microphone) for (const track of this.microphone.getTracks()) track.stop();
    if (this.capture) this.capture.port.onmessage = null;
    // The bot waits for its last mark before it hangs up: what is queued has played.
    // Keep the context a moment so a cut-off tail still sounds, then let it go.
    const player = this.player;
    const context = this.context;
    setTimeout(() => {
      if (player) player.close();
      if (context && context.state !== "closed") context.close();
    }, 1500);
    this.setState("ended");
  }

  fail(reason) {
    this.onError(reason);
    this.closed(null);
  }
}
