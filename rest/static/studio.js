// What the render workers make of a song on request: its analysis (tempo, key, loudness of
// the mix and of each stem) and an export of the mix the page plays.

import * as api from "./api.js";
import { element } from "./dom.js";

function figures(found) {
  const parts = [];
  if (found?.tempo_bpm) parts.push(`${found.tempo_bpm} BPM`);
  if (found?.key) parts.push(found.key);
  if (found?.loudness_lufs !== null && found?.loudness_lufs !== undefined) {
    parts.push(`${found.loudness_lufs} LUFS`);
  }
  return parts.join(" · ");
}

export class Analysis {
  // Fills `summary` with the mix's figures and each stem's `figures` element with its own.
  constructor(song, stems, summary) {
    this.closed = false;
    summary.textContent = "Analysing tempo, key and loudness…";
    api.fetchJson(api.analysisUrl(song)).then((report) => {
      if (this.closed) return;
      const mix = figures(report.mix);
      summary.textContent = mix ? `Tempo, key, loudness: ${mix}` : "";
      for (const stem of stems) stem.figures.textContent = figures(report.stems?.[stem.label]);
    }, (error) => {
      if (!this.closed) summary.textContent = `No analysis: ${api.explain(error)}`;
    });
  }

  close() {
    this.closed = true;
  }
}

export class MixExport {
  // `mixState()` gives {gains, mute, start, end} as the page plays; `announce(words)` speaks;
  // `download(event, link)` follows a link with the API key.
  constructor(song, mixState, onError, announce, download) {
    this.song = song;
    this.download = download;
    this.mixState = mixState;
    this.onError = onError;
    this.announce = announce;
    this.element = this.build();
  }

  build() {
    const name = this.song.name;
    const root = element("div", { class: "export", role: "group", "aria-label": `Export the mix of ${name}` });
    const formatLabel = element("label", {}, "Mix format");
    this.format = element("select", { "aria-label": `Mix format for ${name}` });
    for (const [value, text] of [["wav", "WAV"], ["flac", "FLAC"], ["mp3", "MP3"]]) {
      this.format.append(new Option(text, value));
    }
    formatLabel.append(this.format);
    this.button = element("button", { type: "button", "aria-label": `Export mix of ${name}` },
                          "Export mix");
    this.button.addEventListener("click", () => this.export());
    this.result = element("span", { class: "export-result" });
    root.append(formatLabel, this.button, this.result);
    return root;
  }

  async export() {
    if (this.busy) return;
    this.busy = true;
    const mix = { ...this.mixState(), format: this.format.value };
    this.result.replaceChildren("Mixing…");
    try {
      const answer = await api.postMix(this.song, mix);
      await api.waitUntilMade(answer.url);
      const base = this.song.name.replace(/\.[^.]+$/, "");
      const link = element("a", { href: answer.url, download: `${base}-mix.${mix.format}` },
                           `Download the mix (${mix.format.toUpperCase()})`);
      link.addEventListener("click", (event) => this.download(event, link));
      this.result.replaceChildren(link);
      this.announce("The mix is ready to download");
    } catch (error) {
      this.result.replaceChildren("");
      this.onError(`Could not export the mix of ${this.song.name}: ${api.explain(error)}`);
    } finally {
      this.busy = false;
    }
  }
}
