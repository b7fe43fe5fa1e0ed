// Runs the web app's microphone worklet outside a browser: feeds it a tone at an input rate, 128 samples a
// call as the audio thread does, and prints what it framed (JSON on stdout).
import { readFileSync } from "node:fs";
import vm from "node:vm";

const [, , path, inputRate, toneHz, seconds] = process.argv;
const posted = [];
let Processor = null;
const context = {
  sampleRate: Number(inputRate),
  AudioWorkletProcessor: class { constructor() { this.port = { postMessage: (m) => posted.push(m) }; } },
  registerProcessor: (name, cls) => { Processor = cls; },
  Math, Float32Array, Int16Array,
};
vm.runInNewContext(readFileSync(path, "utf8"), context);
const node = new Processor();
const total = Math.round(Number(inputRate) * Number(seconds));
for (let start = 0; start < total; start += 128) {
  const block = new Float32Array(Math.min(128, total - start));
  for (let i = 0; i < block.length; i++) block[i] = 0.5 * Math.sin((2 * Math.PI * Number(toneHz) * (start + i)) / Number(inputRate));
  node.process([[block]]);
}
const samples = posted.flatMap((m) => Array.from(new Int16Array(m.pcm)));
console.log(JSON.stringify({ frames: posted.map((m) => new Int16Array(m.pcm).length), samples, levels: posted.map((m) => m.level) }));
