// The microphone tap: an AudioWorkletProcessor that hands every 128-sample block of
// the first input channel to the page. Resampling and encoding happen on the page
// (voiced/console/static/codec.js), where they can be tested; the worklet only copies,
// so the audio thread never does more than a memcpy per block.
class CaptureProcessor extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel && channel.length) this.port.postMessage(channel.slice(0));
    return true; // keep running while the page holds the node
  }
}

registerProcessor("voiced-capture", CaptureProcessor);
