// One song's stem studio: a transport over all stems (lossless, sample-exact, streamed by
// byte range: transport.js), per stem its row (stemrow.js); zoom and a looped region; the
// song's analysis; and an export of the mix as the server renders it (studio.js).

import * as api from "./api.js";
import { button, clock, element } from "./dom.js";
import { Analysis, MixExport } from "./studio.js";
import { levelDb, showLevel, SILENT_DB, stemRow } from "./stemrow.js";
import { Transport } from "./transport.js";
import { Peaks, View } from "./waveform.js";

let sounding = null; // the player now playing: starting another pauses it
let latest = null; // the player last used: the keys act on it when focus is outside any

export class Player {
  static current() {
    return latest;
  }

  constructor(song, tracks, capabilities, onError) {
    this.song = song;
    this.capabilities = capabilities;
    this.onError = onError;
    this.peaks = new Peaks(song);
    this.shownPlaying = false;
    this.view = new View(() => this.drawSoon());
    this.stems = tracks.map((track) => stemRow(this, track));
    this.transport = new Transport(
      this.stems.map((stem) => ({ stem: stem.label })), api.fetchJson(api.playbackUrl(song)), {
        onTick: (position) => this.showPosition(position),
        onState: () => this.showState(),
        onDuration: (seconds) => this.showDuration(seconds),
        onError: (error) => this.onError(`Playback of ${song.name}: ${error.message || error}`),
      });
    this.transport.stems.forEach((voice, i) => (this.stems[i].voice = voice));
    this.element = this.build();
    this.analysis = new Analysis(song, this.stems, this.summary);
    this.peaks.load().then(() => this.drawSoon(), () => {}); // drawn blank until peaks come
    new ResizeObserver(() => this.drawSoon()).observe(this.stemList);
  }

  get name() {
    return this.song.name;
  }

  build() {
    const name = this.name;
    const root = element("section", { class: "player", "aria-label": `Player for ${name}` });
    root.player = this;
    const transport = element("div", { class: "transport" });
    this.playButton = button("Play", `Play ${name}`, () => this.toggle());
    const seekLabel = element("label", { class: "seek" }, "Position");
    this.seekBar = element("input", { type: "range", min: "0", max: "0", step: "0.1", value: "0",
                                      "aria-label": `Position in ${name}` });
    this.seekBar.addEventListener("input", () => this.seek(Number(this.seekBar.value)));
    // While a pointer drags the slider, the clock must not pull it back.
    this.seekBar.addEventListener("pointerdown", () => (this.dragging = true));
    this.seekBar.addEventListener("pointerup", () => (this.dragging = false));
    seekLabel.append(this.seekBar);
    // Not a live region: it changes ten times a second. The state is announced below.
    this.clock = element("output", { class: "clock", "aria-live": "off",
                                     "aria-label": `Playback time of ${name}` },
                         `${clock(0)} / -:--`);
    transport.append(this.playButton, seekLabel, this.clock);
    const tools = element("div", { class: "tools", role: "group", "aria-label": `View and loop of ${name}` });
    this.loopButton = button("Loop", `Loop ${name}`, () => this.toggleLoop(), false);
    tools.append(
      button("Zoom out", `Zoom out of ${name}`, () => this.zoom(0.5)),
      button("Zoom in", `Zoom in to ${name}`, () => this.zoom(2)),
      button("Loop from here", `Loop from here in ${name}`, () => this.markLoop("start")),
      button("Loop to here", `Loop to here in ${name}`, () => this.markLoop("end")),
      this.loopButton);
    this.summary = element("p", { class: "analysis" }, "");
    this.announcer = element("p", { class: "visually-hidden", role: "status" });
    this.stemList = element("ul", { class: "stems" });
    this.stemList.append(...this.stems.map((stem) => stem.row));
    this.exporter = new MixExport(this.song, () => this.mixState(), this.onError,
                                  (words) => this.announce(words),
                                  (event, link) => this.download(event, link));
    root.append(transport, tools, this.summary, this.stemList, this.exporter.element,
                this.announcer);
    if (this.capabilities.zip) {
      const zip = element("a", { href: api.zipUrl(this.song), class: "zip",
                                 download: `${this.baseName()}-stems.zip` },
                          "Download all stems (zip)");
      zip.addEventListener("click", (event) => this.download(event, zip));
      root.append(zip);
    }
    root.addEventListener("focusin", () => (latest = this));
    return root;
  }

  baseName() {
    return this.name.replace(/\.[^.]+$/, "");
  }

  toggleStem(stem, field) {
    stem[field] = !stem[field];
    const control = field === "muted" ? stem.muteButton : stem.soloButton;
    control.setAttribute("aria-pressed", String(stem[field]));
    this.applyGains();
    const what = field === "muted" ? (stem.muted ? "muted" : "unmuted")
      : (stem.solo ? "soloed" : "no longer soloed");
    this.announce(`${stem.label} ${what}`);
  }

  audible(stem) {
    const anySolo = this.stems.some((other) => other.solo);
    return !stem.muted && (!anySolo || stem.solo);
  }

  applyGains() {
    for (const stem of this.stems) {
      this.transport.setLevel(stem.voice, this.audible(stem) ? stem.volume : 0);
    }
  }

  // The mix as the page plays it: what MixExport asks the server to render.
  mixState() {
    const mix = { gains: {}, mute: [] };
    for (const stem of this.stems) {
      if (!this.audible(stem) || stem.volume === 0) mix.mute.push(stem.label);
      else if (stem.volume !== 1) mix.gains[stem.label] = 20 * Math.log10(stem.volume);
    }
    if (this.transport.region) Object.assign(mix, this.transport.region);
    return mix;
  }

  announce(words) {
    this.announcer.textContent = words;
  }

  // With an API key the link alone would go unauthenticated, so fetch it with the key.
  async download(event, link) {
    try {
      await api.saveWithKey(event, link);
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
    this.transport.remove(stem.voice);
    stem.row.remove();
    this.stems = this.stems.filter((other) => other !== stem);
    if (!this.stems.length) this.transport.pause();
  }

  isPlaying() {
    return this.transport.playing;
  }

  toggle() {
    return this.isPlaying() ? this.transport.pause() : this.play();
  }

  async play() {
    if (this.loading) return;
    if (sounding && sounding !== this) sounding.transport.pause();
    latest = this;
    // Not disabled while loading: a disabled button would drop the keyboard focus.
    this.loading = true;
    this.playButton.textContent = "Loading…";
    try {
      this.applyGains();
      await this.transport.play();
      sounding = this;
    } catch (error) {
      this.onError(`Could not play ${this.name}: ${error?.message || "the audio did not load"}`);
    } finally {
      this.loading = false;
      this.showState();
    }
  }

  seek(seconds) {
    latest = this;
    this.transport.seek(seconds).catch((error) => this.onError(`Could not seek: ${error.message}`));
    this.showPosition(seconds);
  }

  zoom(factor) {
    this.view.setZoom(this.view.zoom * factor);
    this.announce(`Zoom ${this.view.zoom}×`);
  }

  setRegion(region) {
    this.transport.setRegion(region);
    this.view.region = this.transport.region;
    this.loopButton.setAttribute("aria-pressed", String(Boolean(this.transport.region)));
    this.drawSoon();
    const loop = this.transport.region;
    this.announce(loop ? `Loop on, from ${clock(loop.start)} to ${clock(loop.end)}` : "Loop off");
  }

  markLoop(edge) {
    const position = this.transport.position();
    const region = this.pendingRegion || { start: 0, end: this.transport.duration };
    region[edge] = position;
    this.pendingRegion = region;
    if (region.end > region.start) this.setRegion({ ...region });
  }

  toggleLoop() {
    if (this.transport.region) this.setRegion(null);
    else this.setRegion(this.pendingRegion || { start: this.transport.position(),
                                                end: this.transport.duration });
  }

  showDuration(seconds) {
    this.seekBar.max = String(seconds);
    this.view.duration = seconds;
    this.view.follow(this.transport.position());
    this.showPosition(this.transport.position());
  }

  showPosition(position) {
    if (!this.dragging) this.seekBar.value = String(position);
    const total = this.transport.duration ? clock(this.transport.duration) : "-:--";
    this.clock.textContent = `${clock(position)} / ${total}`;
    this.view.follow(position);
    if (this.isPlaying()) {
      for (const stem of this.stems) {
        if (stem.voice.analyser) showLevel(stem, levelDb(stem.voice.analyser, stem.voice.samples));
      }
    }
  }

  showState() {
    const playing = this.isPlaying();
    const text = playing ? "Pause" : "Play";
    this.playButton.textContent = text;
    this.playButton.setAttribute("aria-label", `${text} ${this.name}`);
    if (playing !== this.shownPlaying) {
      this.shownPlaying = playing;
      this.announce(playing ? `Playing ${this.name}` : `Paused at ${clock(this.transport.position())}`);
    }
    if (!playing) for (const stem of this.stems) showLevel(stem, SILENT_DB);
    this.showPosition(this.transport.position());
  }

  drawSoon() {
    if (this.drawing) return;
    this.drawing = requestAnimationFrame(() => {
      this.drawing = null;
      for (const stem of this.stems) stem.waveform.draw();
    });
  }

  close() {
    this.transport.close();
    this.analysis.close();
    if (sounding === this) sounding = null;
    if (latest === this) latest = null;
  }
}
