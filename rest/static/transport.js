// Playback of a song's stems, streamed: one <audio> element per stem (the browser fetches and
// decodes a little ahead, never the whole song), each through a MediaElementAudioSourceNode into
// its own gain and meter. The first stem's element is the clock; the others follow it, and are
// put back in step when they drift. A region, when set, loops.

const RAMP_S = 0.02; // gain changes glide with this time constant, so they never click
const RESYNC_S = 0.03; // a follower further than this from the clock is moved back in step
const BLOCK_S = 128 / 44100; // one Web Audio render quantum: how close stems keep
const NUDGE = 0.05; // how much faster or slower a stem plays while it catches the clock up
const TICK_MS = 50;
export const SILENT_DB = -60;
let context = null; // one AudioContext for the page, made on the first Play (a user gesture)

// The level of what an analyser hears now, in dB (SILENT_DB and below: silent).
export function levelDb(analyser, samples) {
  analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const value of samples) sum += value * value;
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? Math.max(SILENT_DB, Math.round(20 * Math.log10(rms))) : SILENT_DB;
}

export function audioContext() {
  context ??= new AudioContext();
  return context;
}

function once(target, event) {
  return new Promise((resolve, reject) => {
    target.addEventListener(event, resolve, { once: true });
    target.addEventListener("error", () => reject(target.error), { once: true });
  });
}

export class Transport {
  // `sources`: [{stem, url}] in the model's order; `onTick(position)` while playing,
  // `onState()` when playing starts or stops, `onDuration(seconds)` once it is known.
  constructor(sources, { onTick, onState, onDuration, onError }) {
    this.handlers = { onTick, onState, onDuration, onError };
    this.stems = sources.map(({ stem, url }) => ({ stem, url, audio: this.element(url) }));
    this.region = null; // {start, end} seconds, looped while set
    this.timer = null;
    this.playing = false;
    this.duration = 0;
    const clock = this.stems[0]?.audio;
    clock?.addEventListener("loadedmetadata", () => {
      this.duration = clock.duration;
      this.handlers.onDuration(this.duration);
    });
    for (const stem of this.stems) {
      stem.audio.addEventListener("ended", () => stem === this.stems[0] && this.ended());
    }
  }

  // `url`: a URL, or the promise of one (a file fetched with an API key first).
  element(url) {
    // preload=metadata: the duration is known before the first Play, nothing more is fetched.
    const audio = new Audio();
    audio.preload = "metadata";
    Promise.resolve(url).then((src) => (audio.src = src),
                              (error) => this.handlers.onError(error));
    return audio;
  }

  // The Web Audio graph, made once, on the first Play (an AudioContext needs a user gesture).
  connect() {
    if (this.connected) return;
    const ctx = audioContext();
    for (const stem of this.stems) {
      stem.node = ctx.createMediaElementSource(stem.audio);
      stem.gain = ctx.createGain();
      stem.gain.gain.value = stem.level ?? 1;
      stem.analyser = ctx.createAnalyser();
      stem.analyser.fftSize = 2048;
      stem.samples = new Float32Array(stem.analyser.fftSize);
      stem.node.connect(stem.gain).connect(stem.analyser).connect(ctx.destination);
    }
    this.connected = true;
  }

  position() {
    return this.stems[0]?.audio.currentTime ?? 0;
  }

  // The largest distance in seconds between a stem's position and the clock's.
  drift() {
    const clock = this.position();
    return Math.max(0, ...this.stems.map((stem) => Math.abs(stem.audio.currentTime - clock)));
  }

  setLevel(stem, level) {
    stem.level = level;
    if (!stem.gain) return;
    const ctx = audioContext();
    stem.gain.gain.setTargetAtTime(level, ctx.currentTime, RAMP_S);
  }

  async play() {
    this.connect();
    await audioContext().resume();
    let start = this.position();
    if (this.region && (start < this.region.start || start >= this.region.end)) {
      start = this.region.start;
    }
    if (this.duration && start >= this.duration) start = 0;
    await this.start(start);
    this.playing = true;
    this.timer ??= setInterval(() => this.tick(), TICK_MS);
    this.handlers.onState();
  }

  pause() {
    for (const stem of this.stems) stem.audio.pause();
    this.playing = false;
    clearInterval(this.timer);
    this.timer = null;
    this.handlers.onState();
  }

  // Every element at `seconds`, each waited for until it can play from there.
  async align(seconds) {
    await Promise.all(this.stems.map(async (stem) => {
      stem.audio.playbackRate = 1;
      // Before its metadata an element does not seek (nor say it has): wait for it first.
      if (stem.audio.readyState === 0) await once(stem.audio, "loadedmetadata");
      if (Math.abs(stem.audio.currentTime - seconds) < 1e-3 && stem.audio.readyState >= 3) return;
      const ready = once(stem.audio, "seeked");
      stem.audio.currentTime = seconds;
      await ready;
      // Data to play from there, so that every element starts at once when told to.
      if (stem.audio.readyState < 3) await once(stem.audio, "canplay");
    }));
  }

  async seek(seconds) {
    const target = Math.max(0, Math.min(seconds, this.duration || seconds));
    if (!this.playing) {
      for (const stem of this.stems) stem.audio.currentTime = target;
      this.handlers.onTick(target);
      return;
    }
    if (this.duration && target >= this.duration && !this.region) {
      this.ended(); // play() at the very end would start again from the top
      return;
    }
    for (const stem of this.stems) stem.audio.pause();
    if (await this.start(target)) this.handlers.onTick(target);
  }

  // Every element started at `seconds`, together (a stem that began late is brought back in
  // step by follow()). False when `seconds` is the very end.
  async start(seconds) {
    await this.align(seconds);
    if (this.stems.some((stem) => stem.audio.ended)) {
      this.ended(); // sought to the very end: play() would start again from the top
      return false;
    }
    await Promise.all(this.stems.map((stem) => stem.audio.play()));
    return true;
  }

  setRegion(region) {
    this.region = region && region.end - region.start > 0.05 ? region : null;
  }

  tick() {
    const position = this.position();
    if (this.region && position >= this.region.end) {
      this.seek(this.region.start).catch((error) => this.handlers.onError(error));
      return;
    }
    if (!this.stems.some((stem) => stem.audio.seeking)) this.follow(position);
    this.handlers.onTick(position);
  }

  // Keep each stem on the clock: one far off is moved there; one a little off plays a touch
  // faster or slower until it is back within half a render block (no seek, so no gap).
  follow(clock) {
    for (const stem of this.stems.slice(1)) {
      const behind = clock - stem.audio.currentTime;
      if (Math.abs(behind) > RESYNC_S) {
        stem.audio.currentTime = clock;
        stem.audio.playbackRate = 1;
      } else {
        stem.audio.playbackRate = Math.abs(behind) > BLOCK_S / 2 ? 1 + Math.sign(behind) * NUDGE : 1;
      }
    }
  }

  ended() {
    if (this.region) return; // the loop's own seek takes it back
    this.pause();
    for (const stem of this.stems) stem.audio.currentTime = 0;
    this.handlers.onTick(0);
  }

  remove(stem) {
    stem.audio.pause();
    stem.gain?.disconnect();
    stem.audio.removeAttribute("src");
    this.stems = this.stems.filter((other) => other !== stem);
  }

  close() {
    if (this.playing) this.pause();
    for (const stem of this.stems) {
      stem.audio.removeAttribute("src");
      stem.audio.load(); // lets go of its buffer and connection
    }
  }
}
