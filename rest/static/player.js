// One transport over all stems of a song, mixed in the browser with the Web Audio API:
// per stem mute, solo, volume and a level meter, a download link and a remove button.

import * as api from "./api.js";
import { element } from "./dom.js";

const SILENT_DB = -60;
let context = null; // one AudioContext for the page, made on the first Play (a user gesture)
let sounding = null; // the player now playing: starting another pauses it

function audioContext() {
  context ??= new AudioContext();
  return context;
}

function clock(seconds) {
  const whole = Math.floor(seconds);
  const tenths = Math.floor((seconds - whole) * 10);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}.${tenths}`;
}

function levelDb(analyser, samples) {
  analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const value of samples) sum += value * value;
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? Math.max(SILENT_DB, Math.round(20 * Math.log10(rms))) : SILENT_DB;
}

export class Player {
  constructor(song, tracks, capabilities, onError) {
    this.song = song;
    this.capabilities = capabilities;
    this.onError = onError;
    this.offset = 0; // seconds into the song while paused
    this.duration = 0;
    this.startedAt = 0; // context time at which offset 0 would have played
    this.sources = [];
    this.timer = null;
    this.stems = tracks.map((track) => this.stemRow(track));
    this.element = this.build();
  }

  build() {
    const name = this.song.name;
    const root = element("section", { class: "player", "aria-label": `Player for ${name}` });
    const transport = element("div", { class: "transport" });
    this.playButton = element("button", { type: "button", "aria-label": `Play ${name}` }, "Play");
    this.playButton.addEventListener("click", () => (this.isPlaying() ? this.pause() : this.play()));
    const seekLabel = element("label", { class: "seek" }, "Position");
    this.seekBar = element("input", { type: "range", min: "0", max: "0", step: "0.1", value: "0",
                                      "aria-label": `Position in ${name}` });
    this.seekBar.addEventListener("input", () => this.seek(Number(this.seekBar.value)));
    // While a pointer drags the slider, the clock must not pull it back.
    this.seekBar.addEventListener("pointerdown", () => (this.dragging = true));
    this.seekBar.addEventListener("pointerup", () => (this.dragging = false));
    seekLabel.append(this.seekBar);
    this.clock = element("output", { class: "clock", "aria-label": `Playback time of ${name}` },
                         `${clock(0)} / -:--`);
    transport.append(this.playButton, seekLabel, this.clock);
    this.stemList = element("ul", { class: "stems" });
    this.stemList.append(...this.stems.map((stem) => stem.row));
    root.append(transport, this.stemList);
    if (this.capabilities.zip) {
      const zip = element("a", { href: api.zipUrl(this.song), class: "zip",
                                 download: `${this.baseName()}-stems.zip` },
                          "Download all stems (zip)");
      zip.addEventListener("click", (event) => this.download(event, zip));
      root.append(zip);
    }
    return root;
  }

  baseName() {
    return this.song.name.replace(/\.[^.]+$/, "");
  }

  stemRow(track) {
    const label = track.replace(/\.[a-z0-9]+$/, "");
    const stem = { track, label, muted: false, solo: false, volume: 1, gain: null, analyser: null };
    const row = element("li", { class: "stem" });
    const title = element("span", { class: "stem-name" }, label);
    const mute = element("button", { type: "button", "aria-pressed": "false",
                                     "aria-label": `Mute ${label}` }, "Mute");
    mute.addEventListener("click", () => this.toggle(stem, "muted", mute));
    const solo = element("button", { type: "button", "aria-pressed": "false",
                                     "aria-label": `Solo ${label}` }, "Solo");
    solo.addEventListener("click", () => this.toggle(stem, "solo", solo));
    const volumeLabel = element("label", { class: "volume" }, "Volume");
    const volume = element("input", { type: "range", min: "0", max: "1", step: "0.05",
                                      value: "1", "aria-label": `${label} volume` });
    volume.addEventListener("input", () => {
      stem.volume = Number(volume.value);
      this.applyGains();
    });
    volumeLabel.append(volume);
    stem.meter = element("div", { role: "meter", class: "meter", "aria-label": `${label} level`,
                                  "aria-valuemin": String(SILENT_DB), "aria-valuemax": "0" });
    stem.meter.append(element("div", { class: "fill" }));
    this.showLevel(stem, SILENT_DB);
    const download = element("a", { href: api.trackUrl(this.song, track),
                                    download: `${this.baseName()}-${track}` }, `Download ${track}`);
    download.addEventListener("click", (event) => this.download(event, download));
    row.append(title, mute, solo, volumeLabel, stem.meter, download);
    if (this.capabilities.removeTrack) {
      const remove = element("button", { type: "button", class: "danger" }, `Remove ${label}`);
      remove.addEventListener("click", () => this.removeStem(stem));
      row.append(remove);
    }
    stem.row = row;
    return stem;
  }

  toggle(stem, field, button) {
    stem[field] = !stem[field];
    button.setAttribute("aria-pressed", String(stem[field]));
    this.applyGains();
  }

  applyGains() {
    const anySolo = this.stems.some((stem) => stem.solo);
    for (const stem of this.stems) {
      if (!stem.gain) continue;
      const audible = !stem.muted && (!anySolo || stem.solo);
      stem.gain.gain.value = audible ? stem.volume : 0;
    }
  }

  showLevel(stem, db) {
    stem.meter.setAttribute("aria-valuenow", String(db));
    stem.meter.setAttribute("aria-valuetext", db <= SILENT_DB ? "silent" : `${db} dB`);
    stem.meter.firstChild.style.width = `${((db - SILENT_DB) / -SILENT_DB) * 100}%`;
  }

  // With an API key the link alone would go unauthenticated, so fetch it with the key.
  async download(event, link) {
    if (!api.apiKey()) return;
    event.preventDefault();
    try {
      const bytes = await api.fetchFile(link.href);
      const url = URL.createObjectURL(new Blob([bytes]));
      const saver = element("a", { href: url, download: link.getAttribute("download") });
      saver.click();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (error) {
      this.onError(`Could not download ${link.getAttribute("download")}: ${api.explain(error)}`);
    }
  }

  async removeStem(stem) {
    try {
      await api.removeTrack(this.song, stem.track);
    } catch (error) {
      this.onError(`Could not remove ${stem.label}: ${api.explain(error)}`);
      return;
    }
    stem.gain?.disconnect();
    stem.row.remove();
    this.stems = this.stems.filter((other) => other !== stem);
    if (!this.stems.length) this.pause();
    else if (this.isPlaying()) this.restart(this.position());
  }

  async load() {
    if (this.loaded) return this.loaded;
    const ctx = audioContext();
    this.loaded = Promise.all(this.stems.map(async (stem) => {
      const bytes = await api.fetchFile(api.trackUrl(this.song, stem.track));
      stem.buffer = await ctx.decodeAudioData(bytes);
      stem.gain = ctx.createGain();
      stem.analyser = ctx.createAnalyser();
      stem.analyser.fftSize = 2048;
      stem.samples = new Float32Array(stem.analyser.fftSize);
      stem.gain.connect(stem.analyser).connect(ctx.destination);
    })).then(() => {
      this.duration = Math.max(0, ...this.stems.map((stem) => stem.buffer.duration));
      this.seekBar.max = String(this.duration);
      this.applyGains();
    });
    this.loaded.catch(() => (this.loaded = null));
    return this.loaded;
  }

  isPlaying() {
    return this.sources.length > 0;
  }

  position() {
    if (!this.isPlaying()) return this.offset;
    return Math.min(this.duration, Math.max(0, context.currentTime - this.startedAt));
  }

  async play() {
    if (this.loading) return;
    if (sounding && sounding !== this) sounding.pause();
    // Not disabled while loading: a disabled button would drop the keyboard focus.
    this.loading = true;
    this.playButton.textContent = "Loading…";
    try {
      await this.load();
      await audioContext().resume();
      this.restart(this.offset >= this.duration ? 0 : this.offset);
    } catch (error) {
      this.onError(`Could not play ${this.song.name}: ${error instanceof api.ApiError
        ? api.explain(error) : error.message}`);
    } finally {
      this.loading = false;
      this.showState();
    }
  }

  // Every stem starts at the same context time, so they stay sample-aligned.
  restart(offset) {
    this.stopSources();
    const ctx = audioContext();
    const when = ctx.currentTime + 0.05;
    this.sources = this.stems.map((stem) => {
      const source = ctx.createBufferSource();
      source.buffer = stem.buffer;
      source.connect(stem.gain);
      source.start(when, Math.min(offset, stem.buffer.duration));
      return source;
    });
    this.startedAt = when - offset;
    sounding = this;
    this.timer ??= setInterval(() => this.tick(), 100);
  }

  stopSources() {
    for (const source of this.sources) source.stop();
    this.sources = [];
  }

  pause() {
    this.offset = this.position();
    this.stopSources();
    clearInterval(this.timer);
    this.timer = null;
    for (const stem of this.stems) this.showLevel(stem, SILENT_DB);
    this.showState();
  }

  seek(seconds) {
    if (this.isPlaying()) this.restart(seconds);
    else this.offset = seconds;
    this.showState();
  }

  tick() {
    if (this.position() >= this.duration) {
      this.pause();
      this.offset = 0;
      this.showState();
      return;
    }
    for (const stem of this.stems) this.showLevel(stem, levelDb(stem.analyser, stem.samples));
    this.showState();
  }

  showState() {
    const position = this.position();
    this.playButton.textContent = this.isPlaying() ? "Pause" : "Play";
    this.playButton.setAttribute("aria-label", `${this.playButton.textContent} ${this.song.name}`);
    if (!this.dragging) this.seekBar.value = String(position);
    this.clock.textContent = `${clock(position)} / ${this.duration ? clock(this.duration) : "-:--"}`;
  }

  close() {
    if (this.isPlaying()) this.pause();
  }
}
