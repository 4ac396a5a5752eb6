// The softphone's audio arithmetic: G.711 mu-law, streaming resamplers, base64.
// Pure functions and small stateful classes, no DOM and no Web Audio, so the same
// file runs in the page and under node (tests/js/codec.test.mjs).
//
// mu-law is the table Twilio (and Python's audioop.lin2ulaw) uses: G.711 on the top
// 14 bits, bias 33, clip at 8159, the result's bits inverted.

const BIAS = 0x84;
const SEGMENT_END = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];

/** One 16-bit linear sample -> one mu-law byte (bit for bit what audioop.lin2ulaw gives). */
export function linearToUlaw(sample) {
  let pcm = Math.max(-32768, Math.min(32767, sample | 0)) >> 2;
  let mask = 0xff;
  if (pcm < 0) {
    pcm = -pcm;
    mask = 0x7f;
  }
  pcm = Math.min(pcm, 8159) + (BIAS >> 2);
  let segment = 0;
  while (segment < 8 && pcm > SEGMENT_END[segment]) segment++;
  if (segment >= 8) return 0x7f ^ mask;
  return ((segment << 4) | ((pcm >> (segment + 1)) & 0x0f)) ^ mask;
}

/** One mu-law byte -> one 16-bit linear sample. */
export function ulawToLinear(byte) {
  const u = ~byte & 0xff;
  const exponent = (u >> 4) & 0x07;
  const magnitude = (((u & 0x0f) << 3) + BIAS) << exponent;
  return u & 0x80 ? BIAS - magnitude : magnitude - BIAS;
}

// Decoding is a table lookup: 256 entries, as floats in [-1, 1).
const DECODE = new Float32Array(256);
for (let i = 0; i < 256; i++) DECODE[i] = ulawToLinear(i) / 32768;

/** Float32 samples in [-1, 1] -> mu-law bytes. */
export function encodeUlaw(floats) {
  const out = new Uint8Array(floats.length);
  for (let i = 0; i < floats.length; i++) out[i] = linearToUlaw(Math.round(floats[i] * 32767));
  return out;
}

/** mu-law bytes -> Float32 samples in [-1, 1). */
export function decodeUlaw(bytes) {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] = DECODE[bytes[i]];
  return out;
}

/** A windowed-sinc low-pass filter's taps (Blackman window), unity gain at DC. */
export function lowPassTaps(cutoffHz, sampleRate, count) {
  const taps = new Float32Array(count);
  const fc = cutoffHz / sampleRate;
  const middle = (count - 1) / 2;
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const x = i - middle;
    const sinc = x === 0 ? 2 * fc : Math.sin(2 * Math.PI * fc * x) / (Math.PI * x);
    const window = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (count - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (count - 1));
    taps[i] = sinc * window;
    sum += taps[i];
  }
  for (let i = 0; i < count; i++) taps[i] /= sum;
  return taps;
}

/**
 * Microphone rate (48 kHz, 44.1 kHz, ...) -> 8 kHz, block by block. Low-pass first
 * (below 4 kHz, or what is above it folds back as noise), then take the samples at
 * the output's instants, interpolating between input samples when the ratio is not whole.
 */
export class Downsampler {
  constructor(inRate, outRate = 8000, tapCount = 95) {
    // Positions in units of 1/outRate input samples, as integers (no drift; see Upsampler).
    this.inRate = inRate;
    this.outRate = outRate;
    this.taps = lowPassTaps(outRate * 0.45, inRate, tapCount);
    this.history = new Float32Array(tapCount - 1); // the previous block's tail
    this.position = 0; // where the next output sample falls in the filtered block
    this.lastFiltered = 0;
  }

  process(input) {
    const n = this.taps.length;
    const joined = new Float32Array(this.history.length + input.length);
    joined.set(this.history);
    joined.set(input, this.history.length);
    // filtered[k] is the filter's output aligned with input[k].
    const filtered = new Float32Array(input.length);
    for (let k = 0; k < input.length; k++) {
      let acc = 0;
      for (let t = 0; t < n; t++) acc += this.taps[t] * joined[k + t];
      filtered[k] = acc;
    }
    this.history = joined.slice(joined.length - (n - 1));
    const out = [];
    // The last filtered sample of the previous block is needed to interpolate at block edges.
    // Output k sits between filtered[i-1] and filtered[i] (one sample of delay, the same in every block).
    const previous = this.lastFiltered;
    while (this.position < input.length * this.outRate) {
      const i = Math.floor(this.position / this.outRate);
      const frac = (this.position - i * this.outRate) / this.outRate;
      const a = i - 1 < 0 ? previous : filtered[i - 1];
      const b = filtered[i];
      out.push(a + (b - a) * frac);
      this.position += this.inRate;
    }
    this.position -= input.length * this.outRate;
    this.lastFiltered = filtered[input.length - 1];
    return Float32Array.from(out);
  }
}

/**
 * 8 kHz -> the speakers' rate, by linear interpolation, continuous across chunks.
 * Telephone audio has nothing above 4 kHz: interpolation is all it needs.
 */
export class Upsampler {
  constructor(inRate = 8000, outRate = 48000) {
    // Positions are kept in units of 1/outRate input samples, as integers: a float
    // step (1/6) would drift, and chunked output would differ from whole-file output.
    this.inRate = inRate;
    this.outRate = outRate;
    this.position = 0; // the next output's place in the chunk at hand (-outRate = the previous chunk's last)
    this.last = 0; // the previous chunk's last sample
  }

  process(input) {
    const n = input.length;
    if (!n) return new Float32Array(0);
    const out = [];
    while (this.position <= (n - 1) * this.outRate) {
      const i = Math.floor(this.position / this.outRate);
      const frac = (this.position - i * this.outRate) / this.outRate;
      const a = i < 0 ? this.last : input[i];
      const b = i + 1 <= n - 1 ? input[i + 1] : a;
      out.push(a + (b - a) * frac);
      this.position += this.inRate;
    }
    this.position -= n * this.outRate;
    this.last = input[n - 1];
    return Float32Array.from(out);
  }
}

/** Bytes -> base64 (btoa in a browser, Buffer under node). */
export function toBase64(bytes) {
  if (typeof btoa === "function") {
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  }
  return Buffer.from(bytes).toString("base64");
}

/** base64 -> bytes. */
export function fromBase64(text) {
  if (typeof atob === "function") {
    const raw = atob(text);
    const out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  return new Uint8Array(Buffer.from(text, "base64"));
}
