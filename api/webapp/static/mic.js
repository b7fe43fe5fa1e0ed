// The speaker's microphone, streamed to ingest (docs/ingest-protocol.md): 16 kHz PCM16 frames of 100 ms
// from mic-worklet.js, over WS /v1/meetings/{m}/stream with a fresh single-use ticket per connection.
//
// Nothing is lost or doubled across a dropped socket: every frame is kept until an ack covers it, and a
// reconnect asks to resume at the last acked sample ("start_sample") and sends everything after it again.
// Frames go out through a token bucket within the server's limits ("ready".limits), so the backlog of an
// outage drains fast without tripping the rate limit (4029). Mute sends silence: the stream's clock keeps
// running and the socket is not closed as idle.
import { post, socketUrl } from "./api.js";

const RATE = 16000;
// Close codes after which the same audio can be sent again (docs/ingest-protocol.md, "Reconnecting").
// 1013 is also a full server's: its reason ends in "retry after N s" (palaver/admission.py).
const TRANSIENT = new Set([1001, 1005, 1006, 1011, 1012, 1013, 4009]);
const RETRY_HINT = /retry after (\d+(?:\.\d+)?) s$/;
const MAX_BACKLOG_SAMPLES = RATE * 60 * 30; // a longer outage drops the oldest audio, loudly

export async function microphones() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  return devices.filter((d) => d.kind === "audioinput");
}

export class MicStream {
  constructor(meetingId, { onState = () => {}, onLevel = () => {}, onReady = () => {} } = {}) {
    this.meetingId = meetingId;
    this.onState = onState;
    this.onLevel = onLevel;
    this.onReady = onReady;
    this.muted = false;
    this.frames = []; // [{start, pcm}] not yet acked; start is the stream sample, null until placed
    this.captured = 0; // samples captured, counted from this page's first frame
    this.base = null; // stream sample of this page's first frame (from the first "ready")
    this.acked = 0; // stream samples durable in Kafka
    this.sentUpTo = 0; // index into this.frames of the next frame to send on this connection
    this.ws = null;
    this.stopped = false;
    this.attempts = 0;
    this.bucket = null;
    this.dropped = 0;
  }

  async start(deviceId) {
    this.media = await navigator.mediaDevices.getUserMedia({
      audio: { deviceId: deviceId ? { exact: deviceId } : undefined, channelCount: 1,
               echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    this.context = new AudioContext();
    await this.context.audioWorklet.addModule("/app/mic-worklet.js");
    const source = this.context.createMediaStreamSource(this.media);
    this.node = new AudioWorkletNode(this.context, "pcm-framer");
    this.node.port.onmessage = (event) => this.captureFrame(new Int16Array(event.data.pcm), event.data.level);
    source.connect(this.node);
    this.node.connect(this.context.destination); // the node outputs silence; connected so it is pulled
    if (this.context.state === "suspended") await this.context.resume();
    this.connect();
  }

  async switchDevice(deviceId) {
    if (!this.context) return;
    const media = await navigator.mediaDevices.getUserMedia({
      audio: { deviceId: { exact: deviceId }, channelCount: 1, echoCancellation: true, noiseSuppression: true },
    });
    this.media.getTracks().forEach((t) => t.stop());
    this.media = media;
    this.context.createMediaStreamSource(media).connect(this.node);
  }

  setMuted(muted) {
    this.muted = muted;
    this.media && this.media.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  }

  captureFrame(pcm, level) {
    if (this.muted) pcm.fill(0);
    this.onLevel(this.muted ? 0 : level);
    const start = this.base === null ? null : this.base + this.captured;
    this.frames.push({ start, local: this.captured, pcm });
    this.captured += pcm.length;
    this.trimBacklog();
    this.pump();
  }

  trimBacklog() {
    let held = this.frames.reduce((n, f) => n + f.pcm.length, 0);
    while (held > MAX_BACKLOG_SAMPLES && this.frames.length) {
      held -= this.frames.shift().pcm.length;
      this.dropped += 1;
      this.sentUpTo = Math.max(0, this.sentUpTo - 1);
    }
  }

  async connect() {
    if (this.stopped) return;
    this.onState(this.attempts ? "reconnecting" : "connecting");
    let ticket;
    try {
      ticket = await post(`/v1/meetings/${this.meetingId}/ingest-tickets`);
    } catch (error) {
      if (error.status === 409 || error.status === 403 || error.status === 404) {
        this.fail(`cannot stream: ${error.message}`);
        return;
      }
      this.retry();
      return;
    }
    const ws = new WebSocket(socketUrl(`${ticket.url}?ticket=${encodeURIComponent(ticket.ticket)}`));
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.sentUpTo = 0;
    this.placed = false;
    ws.onopen = () => {
      const header = { sample_rate: RATE, encoding: "pcm_s16le", channels: 1 };
      if (this.base !== null) header.start_sample = this.acked; // resume after the last durable sample
      ws.send(JSON.stringify(header));
    };
    ws.onmessage = (event) => this.onMessage(ws, JSON.parse(event.data));
    ws.onclose = (event) => this.onClose(ws, event);
  }

  onMessage(ws, message) {
    if (ws !== this.ws) return;
    if (message.type === "ready") {
      this.attempts = 0;
      this.placed = true;
      if (this.base === null) {
        this.base = message.first_sample;
        for (const f of this.frames) f.start = this.base + f.local;
        this.acked = this.base;
        this.onReady(message);
      }
      this.skipTo(message.first_sample);
      const limits = message.limits || { max_speed: 1.5, burst_s: 10 };
      const capacity = 0.5 * limits.burst_s * RATE;
      this.bucket = { tokens: capacity, capacity, perMs: (0.9 * limits.max_speed * RATE) / 1000, at: performance.now() };
      this.onState("live");
      this.pump();
    } else if (message.type === "ack") {
      this.acked = Math.max(this.acked, message.samples);
      let covered = 0;
      while (covered < this.frames.length && this.frames[covered].start + this.frames[covered].pcm.length <= this.acked) covered++;
      this.frames.splice(0, covered);
      this.sentUpTo = Math.max(0, this.sentUpTo - covered);
      if (this.ending && this.frames.length === 0) this.onState("ended");
    }
  }

  // The server placed this connection's audio at stream sample ``first``: send from there.
  skipTo(first) {
    let index = 0;
    while (index < this.frames.length && this.frames[index].start + this.frames[index].pcm.length <= first) index++;
    const partial = this.frames[index];
    if (partial && partial.start < first) {
      partial.pcm = partial.pcm.subarray(first - partial.start);
      partial.start = first;
    }
    this.sentUpTo = index;
  }

  pump() {
    const ws = this.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN || !this.placed || !this.bucket) return;
    const now = performance.now();
    const b = this.bucket;
    b.tokens = Math.min(b.capacity, b.tokens + (now - b.at) * b.perMs);
    b.at = now;
    while (this.sentUpTo < this.frames.length) {
      const frame = this.frames[this.sentUpTo];
      if (b.tokens < frame.pcm.length) {
        clearTimeout(this.pumpTimer);
        this.pumpTimer = setTimeout(() => this.pump(), Math.ceil((frame.pcm.length - b.tokens) / b.perMs));
        return;
      }
      b.tokens -= frame.pcm.length;
      ws.send(frame.pcm);
      this.sentUpTo += 1;
    }
    if (this.ending && !this.endSent) {
      this.endSent = true;
      ws.send(JSON.stringify({ type: "end" }));
    }
  }

  onClose(ws, event) {
    if (ws !== this.ws) return;
    this.ws = null;
    if (this.stopped && (event.code === 1000 || this.ending)) {
      this.onState("ended");
      return;
    }
    if (TRANSIENT.has(event.code) || event.code === 4401) {
      const hint = event.code === 1013 && RETRY_HINT.exec(event.reason || "");
      this.retry(hint ? Number(hint[1]) * 1000 : 0);
    } else {
      this.fail(`the server closed the microphone stream: ${event.code} ${event.reason}`);
    }
  }

  // askedMs: the wait a full server asked for; stretched by up to half again at random, so the clients it
  // refused at once do not all come back at once.
  retry(askedMs = 0) {
    if (this.stopped) return;
    this.attempts += 1;
    const backoff = Math.min(4000, 250 * 2 ** Math.min(this.attempts - 1, 4));
    const delay = askedMs ? Math.max(backoff, askedMs * (1 + 0.5 * Math.random())) : backoff;
    this.onState("reconnecting");
    setTimeout(() => this.connect(), delay);
  }

  fail(reason) {
    this.stopped = true;
    this.release();
    this.onState("failed", reason);
  }

  // Stop capturing, send what is left, then "end": the server closes with 1000 once all of it is durable.
  async stop() {
    this.ending = true;
    this.stopped = true;
    this.release();
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.pump();
    else this.onState("ended");
  }

  release() {
    clearTimeout(this.pumpTimer);
    if (this.media) this.media.getTracks().forEach((t) => t.stop());
    if (this.context) this.context.close().catch(() => {});
    this.media = null;
    this.context = null;
  }
}
