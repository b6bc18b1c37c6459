// One stem's row in a player: its name, mute, solo, volume, level meter, download, remove
// and waveform; `player` (player.js) acts on them. Its meter reads the stem's analyser.

import * as api from "./api.js";
import { button, element } from "./dom.js";
import { Waveform } from "./waveform.js";

export const SILENT_DB = -60;

// The level of what an analyser hears now, in dB (SILENT_DB and below: silent).
export function levelDb(analyser, samples) {
  analyser.getFloatTimeDomainData(samples);
  let sum = 0;
  for (const value of samples) sum += value * value;
  const rms = Math.sqrt(sum / samples.length);
  return rms > 0 ? Math.max(SILENT_DB, Math.round(20 * Math.log10(rms))) : SILENT_DB;
}

// A stem's state and its row, for `track` (`vocals.mp3`) of the player's song.
export function stemRow(player, track) {
  const label = track.replace(/\.[a-z0-9]+$/, "");
  const stem = { track, label, muted: false, solo: false, volume: 1 };
  const row = element("li", { class: "stem", "data-stem": label });
  const title = element("span", { class: "stem-name" }, label);
  stem.muteButton = button("Mute", `Mute ${label}`, () => player.toggleStem(stem, "muted"), false);
  stem.soloButton = button("Solo", `Solo ${label}`, () => player.toggleStem(stem, "solo"), false);
  const volumeLabel = element("label", { class: "volume" }, "Volume");
  const volume = element("input", { type: "range", min: "0", max: "1", step: "0.05",
                                    value: "1", "aria-label": `${label} volume` });
  volume.addEventListener("input", () => {
    stem.volume = Number(volume.value);
    player.applyGains();
  });
  volumeLabel.append(volume);
  stem.meter = element("div", { role: "meter", class: "meter", "aria-label": `${label} level`,
                                "aria-valuemin": String(SILENT_DB), "aria-valuemax": "0" });
  stem.meter.append(element("div", { class: "fill" }));
  showLevel(stem, SILENT_DB);
  const download = element("a", { href: api.trackUrl(player.song, track),
                                  download: `${player.baseName()}-${track}` }, `Download ${track}`);
  download.addEventListener("click", (event) => player.download(event, download));
  row.append(title, stem.muteButton, stem.soloButton, volumeLabel, stem.meter, download);
  if (player.capabilities.removeTrack) {
    row.append(button(`Remove ${label}`, `Remove ${label}`, () => player.removeStem(stem)));
  }
  stem.waveform = new Waveform(label, label, player.peaks, player.view, {
    seek: (seconds) => player.seek(seconds),
    select: (region) => player.setRegion(region),
  });
  stem.figures = element("span", { class: "stem-analysis" });
  row.append(stem.waveform.canvas, stem.figures);
  stem.row = row;
  return stem;
}

// The meter of a stem at `db` (SILENT_DB and below: silent).
export function showLevel(stem, db) {
  stem.meter.setAttribute("aria-valuenow", String(db));
  stem.meter.setAttribute("aria-valuetext", db <= SILENT_DB ? "silent" : `${db} dB`);
  stem.meter.firstChild.style.width = `${((db - SILENT_DB) / -SILENT_DB) * 100}%`;
}
