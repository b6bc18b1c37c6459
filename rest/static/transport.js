// Playback of a song's stems, sample-exact: the lossless stems are decoded a stretch of a few
// seconds at a time (flacstream.js) and scheduled on one AudioContext clock, every stem's part
// of a stretch starting at the same context time and each stretch abutting the one before, a
// few seconds ahead at most (bounded memory whatever the song's length). Per stem a gain and a
// meter, into one bus. A region, when set, loops: the schedule wraps at its end.

import { FlacStem } from "./flacstream.js";

const RAMP_S = 0.02; // gain changes glide with this time constant, so they never click
const FIRST_S = 1; // the first stretch after Play or a seek: short, so that sound comes soon
const STRETCH_S = 2; // the stretches after it
const LONGEST_S = Math.max(FIRST_S, STRETCH_S);
const AHEAD_S = 3; // scheduled ahead of the clock at most
const LEAD_S = 0.06; // from a stretch decoded to its start: the audio thread's margin
const TICK_MS = 50;
const LOGGED = 64; // the latest stretches scheduled, kept for drift() and for tests
const contexts = new Map(); // sample rate -> the page's AudioContext at that rate

// The page's AudioContext at the stems' sample rate (made on the first Play, a user gesture):
// decoding then never resamples, which done to each stretch apart would click at the joins.
export function audioContext(rate) {
  if (!contexts.has(rate)) contexts.set(rate, new AudioContext({ sampleRate: rate }));
  return contexts.get(rate);
}

export class Transport {
  // `sources`: [{stem, name}] in the model's order, `name` the stem's entry in `index`, a
  // promise of /apiv1/playback's answer; `onTick(position)` while playing, `onState()` when
  // playing starts or stops, `onDuration(seconds)` once the index is in, `onError(error)`.
  constructor(sources, index, { onTick, onState, onDuration, onError }) {
    this.handlers = { onTick, onState, onDuration, onError };
    this.stems = sources.map(({ stem, name }) => ({ stem, name: name ?? stem, level: 1 }));
    this.region = null; // {start, end} seconds, looped while set
    this.playing = false;
    this.duration = 0;
    this.offset = 0; // the sample playing starts from
    this.generation = 0; // a schedule's number: a seek or a pause starts another
    this.stretches = []; // scheduled and not yet played: {start, end, when, sources}
    this.log = []; // the latest stretches: {generation, start, end, when: per stem}
    this.ready = Promise.resolve(index).then((answer) => this.load(answer));
    this.ready.catch((error) => onError(error));
  }

  load(answer) {
    this.gain = answer.gain ?? 1; // the stems are stored divided by it
    const readers = new Map(); // one per stem file, whatever the voices playing it
    for (const stem of this.stems) {
      const index = answer.stems?.[stem.name];
      if (!index) throw new Error(`the playback index has no stem ${stem.name}`);
      if (!readers.has(stem.name)) readers.set(stem.name, new FlacStem(index, LONGEST_S));
      stem.reader = readers.get(stem.name);
      stem.url = index.url;
    }
    this.clockStem = this.stems[0].reader;
    this.rate = this.clockStem.index.sample_rate;
    this.total = Math.min(...this.stems.map((stem) => stem.reader.index.total_samples));
    this.duration = this.total / this.rate;
    this.handlers.onDuration(this.duration);
  }

  // The Web Audio graph, made once, on the first Play.
  connect() {
    if (this.context) return;
    this.context = audioContext(this.rate);
    this.bus = this.context.createGain();
    this.bus.connect(this.context.destination);
    for (const stem of this.stems) {
      stem.gain = this.context.createGain();
      stem.gain.gain.value = stem.level * this.gain;
      stem.analyser = this.context.createAnalyser();
      stem.analyser.fftSize = 2048;
      stem.samples = new Float32Array(stem.analyser.fftSize);
      stem.gain.connect(stem.analyser).connect(this.bus);
    }
  }

  // The sample now heard (or to start from), by the context's clock.
  sample() {
    if (!this.playing || !this.context) return this.offset;
    const now = this.context.currentTime;
    let heard = this.offset;
    for (const { start, end, when } of this.stretches) {
      if (now < when) return start;
      if (now < when + (end - start) / this.rate) return start + (now - when) * this.rate;
      heard = end; // played: the next one is late, or the song's end is reached
    }
    return heard;
  }

  position() {
    return this.rate ? this.sample() / this.rate : 0;
  }

  // The largest distance in seconds between two stems' start times of one stretch.
  drift() {
    return Math.max(0, ...this.log.map(({ when }) => Math.max(...when) - Math.min(...when)));
  }

  setLevel(stem, level) {
    stem.level = level;
    if (!stem.gain) return;
    stem.gain.gain.setTargetAtTime(level * this.gain, this.context.currentTime, RAMP_S);
  }

  async play() {
    await this.ready;
    this.connect();
    await this.context.resume();
    let start = this.offset;
    const loop = this.loopSamples();
    if (loop && (start < loop.start || start >= loop.end)) start = loop.start;
    if (start >= this.total) start = 0;
    this.playing = true;
    this.timer ??= setInterval(() => this.tick(), TICK_MS);
    try {
      await this.start(start);
    } catch (error) {
      this.pause();
      throw error;
    }
    this.handlers.onState();
  }

  pause() {
    if (this.playing) this.offset = Math.round(this.sample());
    this.generation += 1;
    this.silence();
    this.playing = false;
    clearInterval(this.timer);
    this.timer = null;
    this.handlers.onState();
  }

  async seek(seconds) {
    await this.ready;
    const sample = Math.round(Math.max(0, Math.min(seconds, this.duration)) * this.rate);
    if (!this.playing) {
      this.offset = sample;
      this.handlers.onTick(sample / this.rate);
      return;
    }
    if (sample >= this.total && !this.region) {
      this.ended(); // playing from the very end would start again from the top
      return;
    }
    await this.start(sample);
    this.handlers.onTick(sample / this.rate);
  }

  setRegion(region) {
    this.region = region && region.end - region.start > 0.05 ? region : null;
    if (!this.playing) return;
    // What is scheduled may run past the new end: schedule afresh from here.
    const loop = this.loopSamples();
    const here = Math.round(this.sample());
    const from = !loop || (here >= loop.start && here < loop.end) ? here : loop.start;
    this.start(from).catch((error) => this.handlers.onError(error));
  }

  loopSamples() {
    if (!this.region || !this.rate) return null;
    const end = Math.min(this.total, Math.round(this.region.end * this.rate));
    return { start: Math.min(end - 1, Math.round(this.region.start * this.rate)), end };
  }

  // Play from `sample`: what was scheduled is dropped, the first stretch decoded, then
  // scheduled from a context time on a whole sample (every later one abuts it exactly).
  start(sample) {
    const generation = (this.generation += 1);
    this.silence();
    this.offset = sample;
    this.next = sample; // the song's sample the next stretch starts at
    this.origin = null; // the context time of the first stretch's first sample
    this.scheduled = 0; // samples scheduled since the origin
    this.ending = null;
    return this.refill(generation);
  }

  refill(generation = this.generation) {
    if (this.filling?.generation === generation) return this.filling.done;
    const done = this.fill(generation).finally(() => {
      if (this.filling?.done === done) this.filling = null;
    });
    this.filling = { generation, done };
    return done;
  }

  // Stretches decoded and scheduled until AHEAD_S are, or the song's end is.
  async fill(generation) {
    while (generation === this.generation && this.ending === null && this.wanted()) {
      const start = this.next;
      const end = this.stretchEnd(start);
      const parts = await Promise.all(
        this.stems.map((stem) => stem.reader.stretch(this.context, start, end)));
      if (generation !== this.generation) return;
      // The first stretch, or one too late to abut the last (a slow network): from a whole
      // sample just ahead of the clock, every stem still at once.
      const soonest = Math.ceil((this.context.currentTime + LEAD_S) * this.rate) / this.rate;
      if (this.origin === null || this.origin + this.scheduled / this.rate < soonest - LEAD_S / 2) {
        this.origin = soonest - this.scheduled / this.rate;
      }
      this.schedule(start, end, this.origin + this.scheduled / this.rate, parts);
      this.scheduled += end - start;
      const loop = this.loopSamples();
      if (loop && end >= loop.end) this.next = loop.start;
      else if (end >= this.total) this.ending = this.total;
      else this.next = end;
    }
  }

  wanted() {
    if (this.origin === null) return true;
    return this.origin + this.scheduled / this.rate - this.context.currentTime < AHEAD_S;
  }

  // Where a stretch from `start` ends: on a frame of the first stem (its stretch then needs
  // no frame past it), at the region's end or the song's.
  stretchEnd(start) {
    const length = (this.origin === null ? FIRST_S : STRETCH_S) * this.rate;
    const points = this.clockStem.points;
    const loop = this.loopSamples();
    return Math.min(points[this.clockStem.pointAfter(start + length)] ?? this.total,
                    loop && start < loop.end ? loop.end : this.total, this.total);
  }

  // Every stem's part of the stretch `start`..`end`, started at the same context time `when`.
  schedule(start, end, when, parts) {
    const stretch = { start, end, when, sources: new Map() };
    const times = [];
    this.stems.forEach((stem, i) => {
      const part = parts[i];
      const source = this.context.createBufferSource();
      source.buffer = part.buffer;
      source.connect(stem.gain);
      // The part's own samples only: a reused buffer holds an older stretch after them.
      const length = Math.min(end, part.first + part.length) - start;
      source.start(when, (start - part.first) / this.rate, Math.max(0, length) / this.rate);
      source.onended = () => this.retire(stretch); // all end at once: the first retires all
      stem.reader.take(part);
      source.part = part;
      stretch.sources.set(stem, source);
      times.push(when);
    });
    this.stretches.push(stretch);
    this.log = [...this.log.slice(1 - LOGGED),
                { generation: this.generation, start, end, when: times }];
  }

  // A stretch played or stopped: its sources let go, their buffers free for another.
  retire(stretch) {
    for (const [stem, source] of stretch.sources) {
      source.onended = null;
      source.stop();
      source.disconnect();
      stem.reader.release(source.part);
    }
    stretch.sources.clear();
    this.stretches = this.stretches.filter((other) => other !== stretch);
  }

  silence() {
    for (const stretch of [...this.stretches]) this.retire(stretch);
  }

  tick() {
    if (!this.playing) return;
    const end = this.origin === null ? null : this.origin + this.scheduled / this.rate;
    if (this.ending !== null && this.context.currentTime >= end) {
      this.ended();
      return;
    }
    this.refill().catch((error) => {
      this.pause(); // once, not again on every tick
      this.handlers.onError(error);
    });
    this.handlers.onTick(this.position());
  }

  ended() {
    if (this.region) return; // the schedule wraps at the region's end instead
    this.pause();
    this.offset = 0;
    this.handlers.onTick(0);
  }

  remove(stem) {
    for (const stretch of this.stretches) {
      const source = stretch.sources.get(stem);
      if (!source) continue;
      stretch.sources.delete(stem);
      source.onended = null;
      source.stop();
      stem.reader.release(source.part);
    }
    stem.gain?.disconnect();
    this.stems = this.stems.filter((other) => other !== stem);
  }

  close() {
    if (this.playing) this.pause();
    for (const stem of this.stems) stem.reader?.close();
  }
}
