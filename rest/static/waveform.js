// Waveforms drawn from the peaks the server computed once per stem (GET /apiv1/peaks): the page
// never decodes a stem to draw it. One View per player: the part of the song shown (zoom), the
// playhead and the looped region, shared by every stem's canvas.

import * as api from "./api.js";
import { element } from "./dom.js";

const HEADER_BYTES = 20; // audiowaveform .dat version 1: five 32-bit fields
const MAX_ZOOM = 64;
const DRAG_PX = 4; // a pointer that moved less than this clicked

// One peaks file: sample rate, samples per peak, and (min, max) int8 pairs.
function parsePeaks(buffer) {
  const header = new DataView(buffer, 0, HEADER_BYTES);
  const count = header.getUint32(16, true);
  return { rate: header.getInt32(8, true), spp: header.getInt32(12, true),
           pairs: new Int8Array(buffer, HEADER_BYTES, count * 2) };
}

export class Peaks {
  constructor(song) {
    this.song = song;
    this.levels = null; // stem -> [{samples_per_peak, url}], finest first
    this.cache = new Map(); // url -> Promise of a parsed file
    this.peak = 127; // the largest magnitude of the song's mix, as the files store it
  }

  async load() {
    this.index ??= api.fetchJson(api.peaksUrl(this.song)).then(async (index) => {
      this.levels = {};
      for (const [stem, levels] of Object.entries(index.stems)) {
        this.levels[stem] = [...levels].sort((a, b) => a.samples_per_peak - b.samples_per_peak);
      }
      // Drawn to the song's own peak (its mix's), so that a quiet song still shows its shape
      // and the stems keep their levels relative to each other.
      const mix = await this.file("mix", Infinity);
      this.peak = 1;
      for (const value of mix?.pairs || [127]) this.peak = Math.max(this.peak, Math.abs(value));
    });
    return this.index;
  }

  // The coarsest level that still gives a peak per pixel at `samplesPerPixel`.
  file(stem, samplesPerPixel) {
    const levels = this.levels?.[stem];
    if (!levels?.length) return null;
    const fitting = levels.filter((level) => level.samples_per_peak <= samplesPerPixel);
    const level = fitting.length ? fitting[fitting.length - 1] : levels[0];
    if (!this.cache.has(level.url)) {
      const loading = api.fetchFile(level.url).then(parsePeaks);
      loading.catch(() => this.cache.delete(level.url));
      this.cache.set(level.url, loading);
    }
    return this.cache.get(level.url);
  }
}

// What part of the song is shown, where the playhead is, and which region loops.
export class View {
  constructor(onChange) {
    this.onChange = onChange;
    this.duration = 0;
    this.zoom = 1;
    this.start = 0;
    this.position = 0;
    this.region = null;
  }

  get span() {
    return this.duration / this.zoom;
  }

  setZoom(zoom) {
    this.zoom = Math.min(MAX_ZOOM, Math.max(1, zoom));
    this.follow(this.position, true);
  }

  // Keep the playhead in view; `centre` puts it in the middle.
  follow(position, centre = false) {
    this.position = position;
    const outside = position < this.start || position > this.start + this.span;
    if (centre || outside) this.start = position - (centre ? this.span / 2 : 0);
    this.start = Math.max(0, Math.min(this.start, this.duration - this.span));
    this.onChange();
  }

  timeAt(fraction) {
    return Math.max(0, Math.min(this.duration, this.start + fraction * this.span));
  }
}

export class Waveform {
  // `actions`: {seek(seconds), select(region)}: a click or drag seeks, a shift-drag selects.
  constructor(stem, label, peaks, view, actions) {
    this.stem = stem;
    this.peaks = peaks;
    this.view = view;
    this.actions = actions;
    // A picture for the pointer; the same seeking is on the Position slider and the keys.
    this.canvas = element("canvas", { class: "waveform", "aria-hidden": "true",
                                      "data-stem": stem, title: `${label} waveform` });
    this.canvas.addEventListener("pointerdown", (event) => this.press(event));
  }

  fraction(event) {
    const box = this.canvas.getBoundingClientRect();
    return (event.clientX - box.left) / box.width;
  }

  press(event) {
    if (!this.view.duration) return;
    this.canvas.setPointerCapture(event.pointerId);
    const from = event.clientX;
    const anchor = this.view.timeAt(this.fraction(event));
    const selecting = event.shiftKey;
    const move = (moved) => {
      const at = this.view.timeAt(this.fraction(moved));
      if (selecting) this.actions.select({ start: Math.min(anchor, at), end: Math.max(anchor, at) });
      else if (Math.abs(moved.clientX - from) >= DRAG_PX) this.actions.seek(at);
    };
    const release = (released) => {
      this.canvas.removeEventListener("pointermove", move);
      if (!selecting) this.actions.seek(this.view.timeAt(this.fraction(released)));
      else move(released);
    };
    this.canvas.addEventListener("pointermove", move);
    this.canvas.addEventListener("pointerup", release, { once: true });
  }

  async draw() {
    const { canvas, view } = this;
    const width = Math.max(1, Math.round(canvas.clientWidth * devicePixelRatio));
    const height = Math.max(1, Math.round(canvas.clientHeight * devicePixelRatio));
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;
    const g = canvas.getContext("2d");
    const style = getComputedStyle(canvas);
    let peaks = null;
    if (view.duration) {
      const loading = this.peaks.file(this.stem, (view.span * 44100) / width);
      peaks = loading && (await loading.catch(() => null));
    }
    g.clearRect(0, 0, width, height);
    if (view.region) {
      g.fillStyle = style.getPropertyValue("--region");
      const x0 = ((view.region.start - view.start) / view.span) * width;
      const x1 = ((view.region.end - view.start) / view.span) * width;
      g.fillRect(x0, 0, x1 - x0, height);
    }
    if (peaks) this.drawPeaks(g, peaks, width, height, style.getPropertyValue("--wave"));
    g.fillStyle = style.getPropertyValue("--playhead");
    g.fillRect(((view.position - view.start) / view.span) * width - 1, 0, 2, height);
  }

  drawPeaks(g, { rate, spp, pairs }, width, height, colour) {
    const { view } = this;
    const perPixel = (view.span * rate) / spp / width; // peaks per pixel column
    const first = (view.start * rate) / spp;
    const count = pairs.length / 2;
    const middle = height / 2;
    const peak = this.peaks.peak || 127;
    g.fillStyle = colour;
    for (let x = 0; x < width; x += 1) {
      const from = Math.floor(first + x * perPixel);
      const to = Math.min(count, Math.max(from + 1, Math.floor(first + (x + 1) * perPixel)));
      if (from >= count) break;
      let low = 127;
      let high = -128;
      for (let i = from; i < to; i += 1) {
        low = Math.min(low, pairs[2 * i]);
        high = Math.max(high, pairs[2 * i + 1]);
      }
      const top = middle - Math.min(1, high / peak) * middle;
      g.fillRect(x, top, 1, Math.max(1, middle - Math.max(-1, low / peak) * middle - top));
    }
  }
}
