// A lossless stem read a stretch at a time: its FLAC header fetched once, then, for a stretch
// of samples, the whole frames that hold it (byte ranges the server's seek index names). They
// are decoded frame by frame by WebCodecs straight into AudioBuffers the stem reuses, so that
// memory holds a few stretches and never waits for the garbage collector; a browser without
// WebCodecs (or a page not served over https nor from localhost) decodes header and frames
// joined as a small FLAC file with decodeAudioData instead.

import { fetchRange } from "./api.js";
import { findFrames } from "./flacframes.js";

const CACHED = 2; // stretches kept decoded per stem: a short loop plays them again unfetched
const POOLED = 8; // spare buffers kept per stem at most

export class FlacStem {
  // `index`: the stem's seek index ({sample_rate, channels, total_samples, header_bytes,
  // bytes, frames: [[first sample, byte offset], ...], url}) from /apiv1/playback;
  // `longest`: the most seconds a stretch is asked for.
  constructor(index, longest) {
    this.index = index;
    this.url = index.url;
    this.points = index.frames.map(([sample]) => sample);
    let gap = index.total_samples - this.points[this.points.length - 1];
    for (let i = 1; i < this.points.length; i++) gap = Math.max(gap, this.points[i] - this.points[i - 1]);
    // A stretch with the frames around it: a pooled buffer holds any.
    this.capacity = Math.ceil(longest * index.sample_rate) + 2 * gap;
    this.spare = [];
    this.cache = new Map(); // "from-to" -> Promise of a part {buffer, first, length, refs}
    this.queue = Promise.resolve(); // one decode at a time through the stem's decoder
  }

  header() {
    this.headerBytes ??= fetchRange(this.url, 0, this.index.header_bytes);
    return this.headerBytes;
  }

  // The position in `points` of the last point at or before `sample`.
  pointAt(sample) {
    let low = 0;
    let high = this.points.length - 1;
    while (low < high) {
      const middle = (low + high + 1) >> 1;
      if (this.points[middle] <= sample) low = middle;
      else high = middle - 1;
    }
    return low;
  }

  // The first point at or after `sample` (past the last: the end of the file).
  pointAfter(sample) {
    const at = this.pointAt(sample);
    return this.points[at] >= sample ? at : at + 1;
  }

  // A part {buffer, first, length}: the samples `start` to `end` and a little around them
  // (whole frames), `first` the sample the buffer begins at, `length` the samples it holds.
  // The cache holds it; take() and release() count its other users.
  stretch(context, start, end) {
    const from = this.pointAt(start);
    const to = this.pointAfter(end);
    const key = `${from}-${to}`;
    let part = this.cache.get(key);
    if (!part) {
      part = this.decode(context, from, to);
      part.catch(() => this.cache.delete(key));
      this.cache.set(key, part);
      while (this.cache.size > CACHED) {
        const [oldest, evicted] = this.cache.entries().next().value;
        this.cache.delete(oldest);
        evicted.then((done) => this.release(done), () => {});
      }
    }
    return part;
  }

  take(part) {
    part.refs += 1;
  }

  release(part) {
    part.refs -= 1;
    if (part.refs === 0 && part.buffer.length === this.capacity && this.spare.length < POOLED) {
      this.spare.push(part.buffer);
    }
  }

  async decode(context, from, to) {
    const frames = this.index.frames;
    const endByte = to < frames.length ? frames[to][1] : this.index.bytes;
    const [header, body] = await Promise.all([
      this.header(), fetchRange(this.url, frames[from][1], endByte)]);
    const first = frames[from][0];
    if (!(await this.webCodecs(header))) {
      const buffer = await context.decodeAudioData(joined(header, body));
      return { buffer, first, length: buffer.length, refs: 1 };
    }
    const bytes = new Uint8Array(body);
    const found = findFrames(bytes, this.index.channels);
    const length = found.reduce((sum, frame) => sum + frame.size, 0);
    const buffer = length <= this.capacity && this.spare.length ? this.spare.pop()
      : context.createBuffer(this.index.channels, Math.max(length, this.capacity),
                             this.index.sample_rate);
    const part = { buffer, first, length: 0, refs: 1 };
    const run = () => this.decodeFrames(bytes, found, part);
    this.queue = this.queue.then(run, run);
    await this.queue;
    return part;
  }

  // Whether this browser decodes the stem with WebCodecs (asked once).
  webCodecs(header) {
    this.config ??= (async () => {
      if (typeof AudioDecoder === "undefined") return null;
      const config = { codec: "flac", sampleRate: this.index.sample_rate,
                       numberOfChannels: this.index.channels, description: header };
      return (await AudioDecoder.isConfigSupported(config).catch(() => ({}))).supported
        ? config : null;
    })();
    return this.config;
  }

  async decodeFrames(bytes, found, part) {
    const config = await this.config;
    if (!this.decoder || this.decoder.state === "closed") {
      this.decoder = new AudioDecoder({ output: (data) => this.output(data),
                                        error: (error) => (this.failure = error) });
      this.decoder.configure(config);
    }
    this.target = part;
    this.failure = null;
    let sample = part.first;
    found.forEach(({ at, size }, i) => {
      const data = bytes.subarray(at, found[i + 1]?.at ?? bytes.length);
      const timestamp = Math.round((sample * 1e6) / this.index.sample_rate);
      this.decoder.decode(new EncodedAudioChunk({ type: "key", timestamp, data }));
      sample += size;
    });
    try {
      await this.decoder.flush();
    } catch (error) {
      throw this.failure ?? error;
    }
  }

  // One decoded frame, copied after the last into the part being decoded.
  output(data) {
    const part = this.target;
    try {
      const room = part.buffer.length - part.length;
      const frames = Math.min(data.numberOfFrames, room);
      for (let channel = 0; channel < part.buffer.numberOfChannels; channel++) {
        const into = part.buffer.getChannelData(channel).subarray(part.length, part.length + frames);
        data.copyTo(into, { planeIndex: channel, format: "f32-planar", frameCount: frames });
      }
      part.length += frames;
    } finally {
      data.close();
    }
  }

  close() {
    this.cache.clear();
    this.spare = [];
    if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
  }
}

function joined(header, body) {
  const file = new Uint8Array(header.byteLength + body.byteLength);
  file.set(new Uint8Array(header), 0);
  file.set(new Uint8Array(body), header.byteLength);
  return file.buffer;
}
