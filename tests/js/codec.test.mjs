// Unit tests of the softphone's codec and resamplers (voiced/console/static/codec.js)
// and the latency chart's arithmetic (latency.js). Plain node, no test framework:
//   node tests/js/codec.test.mjs [expected.json]
// expected.json (written by tests/test_console_js.py) holds Python's audioop tables,
// so the JS mu-law is checked bit for bit against the codec voiced itself uses.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  Downsampler, Upsampler, decodeUlaw, encodeUlaw, fromBase64, linearToUlaw, toBase64, ulawToLinear,
} from "../../voiced/console/static/codec.js";
import { turnSegments, turnTotal } from "../../voiced/console/static/latency.js";

const tests = [];
const test = (name, fn) => tests.push([name, fn]);

const expectedPath = process.argv[2];
if (expectedPath) {
  const expected = JSON.parse(readFileSync(expectedPath, "utf8"));
  test("mu-law encoding is audioop's for every 16-bit sample", () => {
    for (let i = 0; i < 65536; i++) assert.equal(linearToUlaw(i - 32768), expected.encode[i], `sample ${i - 32768}`);
  });
  test("mu-law decoding is audioop's for every byte", () => {
    for (let i = 0; i < 256; i++) assert.equal(ulawToLinear(i), expected.decode[i], `byte ${i}`);
  });
}

test("mu-law round trip keeps a sample within its quantization step", () => {
  for (const x of [0, 0.001, -0.001, 0.25, -0.5, 0.99, -1]) {
    const back = decodeUlaw(encodeUlaw(Float32Array.of(x)))[0];
    assert.ok(Math.abs(back - x) <= Math.max(0.002, Math.abs(x) * 0.07), `${x} -> ${back}`);
  }
});

test("silence is 0xff and stays silent", () => {
  assert.equal(linearToUlaw(0), 0xff);
  assert.equal(decodeUlaw(Uint8Array.of(0xff))[0], 0);
});

function tone(hz, rate, seconds) {
  const out = new Float32Array(Math.round(rate * seconds));
  for (let i = 0; i < out.length; i++) out[i] = 0.5 * Math.sin((2 * Math.PI * hz * i) / rate);
  return out;
}

function rms(samples) {
  return Math.sqrt(samples.reduce((s, x) => s + x * x, 0) / samples.length);
}

function inBlocks(resampler, input, block) {
  const parts = [];
  for (let i = 0; i < input.length; i += block) parts.push(...resampler.process(input.subarray(i, i + block)));
  return Float32Array.from(parts);
}

for (const rate of [48000, 44100, 16000]) {
  test(`downsampling ${rate} Hz -> 8 kHz in 128-sample blocks: the right count, speech band kept, aliases cut`, () => {
    const out = inBlocks(new Downsampler(rate), tone(1000, rate, 1), 128);
    assert.ok(Math.abs(out.length - 8000) <= 1, `${out.length} samples for 1 s`);
    assert.ok(Math.abs(rms(out.subarray(400)) - 0.5 / Math.SQRT2) < 0.03, `1 kHz kept: rms ${rms(out.subarray(400))}`);
    if (rate > 16000) {
      const alias = inBlocks(new Downsampler(rate), tone(6000, rate, 1), 128); // would fold to 2 kHz
      assert.ok(rms(alias.subarray(400)) < 0.02, `6 kHz leaks: rms ${rms(alias.subarray(400))}`);
    }
  });
}

test("upsampling 8 kHz -> 48 kHz is continuous across chunks of any size", () => {
  const input = tone(440, 8000, 0.5);
  const whole = new Upsampler(8000, 48000).process(input);
  const chunked = inBlocks(new Upsampler(8000, 48000), input, 37);
  assert.equal(chunked.length, whole.length);
  assert.ok(Math.abs(whole.length - 24000) <= 6, `${whole.length}`);
  for (let i = 0; i < whole.length; i++) assert.ok(Math.abs(whole[i] - chunked[i]) < 1e-6, `sample ${i}`);
  assert.ok(chunked.every(Number.isFinite));
});

test("upsampling 8 kHz -> 44.1 kHz keeps the count and the level", () => {
  const out = inBlocks(new Upsampler(8000, 44100), tone(440, 8000, 1), 160);
  assert.ok(Math.abs(out.length - 44100) <= 6, `${out.length}`);
  assert.ok(Math.abs(rms(out) - 0.5 / Math.SQRT2) < 0.02);
});

test("base64 round trip", () => {
  const bytes = Uint8Array.from({ length: 160 }, (_, i) => (i * 37) & 0xff);
  assert.deepEqual(fromBase64(toBase64(bytes)), bytes);
});

test("latency bars lay the TURN values end to end from the speech end", () => {
  const m = { STT_FINAL_MS: 300, AGENT_FIRST_SENTENCE_MS: 40, TTS_READY_MS: 60, TOTAL_LATENCY_MS: 450, PLAYBACK_START_MS: 530 };
  assert.deepEqual(turnSegments(m).map((s) => s.ms), [300, 40, 60, 50, 80]);
  assert.equal(turnTotal(m), 530);
});

test("a missing value is drawn as nothing, never guessed", () => {
  const m = { STT_FINAL_MS: 300, AGENT_FIRST_SENTENCE_MS: null, TTS_READY_MS: 60, TOTAL_LATENCY_MS: null, PLAYBACK_START_MS: 700 };
  assert.deepEqual(turnSegments(m).map((s) => s.ms), [300, 0, 60, 0, 0]);
});

let failed = 0;
for (const [name, fn] of tests) {
  try {
    fn();
    console.log(`ok   ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAIL ${name}\n     ${error.message}`);
  }
}
console.log(`${tests.length - failed}/${tests.length} passed`);
process.exit(failed ? 1 : 0);
