// Runs on the audio thread: turns the microphone's float samples, at whatever rate the device runs (44.1
// or 48 kHz usually), into 16 kHz PCM16 frames of 100 ms (1600 samples), the format ingest takes.
//
// Resampling here, not in ingest, keeps ingest's one format and puts the cost on the speaker's own machine.
// A windowed-sinc filter (Blackman window, 16 input samples either side, cut-off 7.6 kHz) removes what
// 16 kHz cannot hold before sampling: without it, energy above 8 kHz folds back into the speech band.
const TARGET_RATE = 16000;
const FRAME = 1600;
const HALF_TAPS = 16;
const CUTOFF_HZ = 7600;

class PcmFramer extends AudioWorkletProcessor {
  constructor() {
    super();
    this.step = sampleRate / TARGET_RATE; // input samples per output sample
    this.fc = Math.min(CUTOFF_HZ, sampleRate / 2) / sampleRate; // cycles per input sample
    this.input = new Float32Array(8192);
    this.length = 0; // valid samples in this.input
    this.position = this.step === 1 ? 0 : HALF_TAPS; // input index of the next output sample
    this.frame = new Int16Array(FRAME);
    this.filled = 0;
    this.sumSquares = 0;
  }

  push(samples) {
    if (this.length + samples.length > this.input.length) {
      const grown = new Float32Array((this.length + samples.length) * 2);
      grown.set(this.input.subarray(0, this.length));
      this.input = grown;
    }
    this.input.set(samples, this.length);
    this.length += samples.length;
  }

  sampleAt(t) {
    if (this.step === 1) return this.input[t];
    const centre = Math.floor(t);
    let sum = 0, weights = 0;
    for (let i = centre - HALF_TAPS + 1; i <= centre + HALF_TAPS; i++) {
      const d = t - i;
      const x = 2 * this.fc * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      const w = 0.42 + 0.5 * Math.cos((Math.PI * d) / HALF_TAPS) + 0.08 * Math.cos((2 * Math.PI * d) / HALF_TAPS);
      const k = sinc * w;
      sum += this.input[i] * k;
      weights += k;
    }
    return sum / weights; // unit gain at DC whatever the fractional position
  }

  emit(value) {
    const clipped = Math.max(-1, Math.min(1, value));
    this.frame[this.filled++] = clipped < 0 ? clipped * 0x8000 : clipped * 0x7fff;
    this.sumSquares += clipped * clipped;
    if (this.filled === FRAME) {
      const level = Math.sqrt(this.sumSquares / FRAME);
      this.port.postMessage({ pcm: this.frame.buffer, level }, [this.frame.buffer]);
      this.frame = new Int16Array(FRAME);
      this.filled = 0;
      this.sumSquares = 0;
    }
  }

  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    this.push(channel);
    const lookahead = this.step === 1 ? 0 : HALF_TAPS;
    while (this.position + lookahead < this.length) {
      this.emit(this.sampleAt(this.position));
      this.position += this.step;
    }
    const keep = Math.max(0, Math.floor(this.position) - HALF_TAPS);
    if (keep > 0) {
      this.input.copyWithin(0, keep, this.length);
      this.length -= keep;
      this.position -= keep;
    }
    return true;
  }
}

registerProcessor("pcm-framer", PcmFramer);
