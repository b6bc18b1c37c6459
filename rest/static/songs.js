// The song list: each song's state from the API, in words and as a progress bar, kept across
// reloads in localStorage; `/#<hash>` (or `/#<hash>:<model>`) adds and shows one song.

import * as api from "./api.js";
import { element } from "./dom.js";
import { Player } from "./player.js";

const STORE = "micro-demucs.songs";
const FINAL = new Set(["done", "failed", "cancelled", "gone"]);
const POLL_MS = 1000;

const REASONS = {
  decode_failed: "the file could not be decoded as audio",
  input_missing: "the upload was missing from the object store; submit the file again",
  too_long: "the song is longer than this server separates",
  worker_lost: "separating it stopped the worker several times",
  separation_failed: "the model could not separate it",
  encode_failed: "its stems could not be written in the format asked for",
};

function ordinal(n) {
  const suffix = { 1: "st", 2: "nd", 3: "rd" }[n % 100 > 10 && n % 100 < 14 ? 0 : n % 10];
  return `${n}${suffix || "th"}`;
}

function readable(error) {
  const [code, ...rest] = String(error || "unknown error").split(": ");
  const words = REASONS[code];
  return words ? `${words} (${rest.join(": ") || code})` : String(error);
}

function trackName(track) {
  return typeof track === "string" ? track : track.track || track.name;
}

// The tracks of the rendition this song was asked for, as the status lists them.
function tracksOf(song, status) {
  const names = [...new Set((status.tracks || []).map(trackName).filter(Boolean))];
  const ext = song.options?.format || "mp3";
  const wanted = names.filter((name) => name.endsWith(`.${ext}`));
  return wanted.length ? wanted : names;
}

export function songKey(hash, model = "") {
  return model ? `${hash}:${model}` : hash;
}

let rows = 0;

export class SongList {
  constructor(list, emptyNote, capabilities, showAlert) {
    this.list = list;
    this.emptyNote = emptyNote;
    this.capabilities = capabilities;
    this.showAlert = showAlert;
    this.entries = new Map(); // key -> entry; uploads get a key once the server names the song
    this.timer = null;
    this.refreshing = false;
    this.onDone = []; // called with each entry whose song is done (the ensemble form)
  }

  restore() {
    let saved = [];
    try {
      saved = JSON.parse(localStorage.getItem(STORE) || "[]");
    } catch {
      saved = [];
    }
    for (const song of saved) this.add(song);
  }

  save() {
    const songs = [...this.entries.values()].filter((entry) => entry.song.hash)
      .map((entry) => entry.song);
    localStorage.setItem(STORE, JSON.stringify(songs));
  }

  // A song the server already knows: from storage, from the URL, or once an upload is accepted.
  add(song) {
    const key = songKey(song.hash, song.model);
    if (this.entries.has(key)) return this.entries.get(key);
    const entry = this.row(song);
    this.entries.set(key, entry);
    this.recheck(entry);
    this.save();
    return entry;
  }

  recheck(entry) {
    this.setState(entry, "checking", 0, "Checking with the server…");
    this.poll();
  }

  // A file on its way up; returns callbacks for the upload's progress and outcome.
  startUpload(file, options) {
    const entry = this.row({ name: file.name, model: options.model || "", options });
    this.setState(entry, "uploading", 0, "Uploading…");
    return {
      progress: (sent, total) => {
        const percent = Math.round((sent / total) * 100);
        this.setState(entry, "uploading", percent, `Uploading: ${percent} % of ${total} bytes sent`);
      },
      accepted: (answer) => {
        entry.song = { ...entry.song, hash: answer.hash, added: Date.now() };
        const key = songKey(answer.hash, entry.song.model);
        const known = this.entries.get(key);
        if (known) {
          // Sent again (after a cancel, say): the row already in the list follows it.
          entry.item.remove();
          this.recheck(known);
          return;
        }
        this.entries.set(key, entry);
        this.recheck(entry);
        this.save();
      },
      refused: (error) => {
        entry.item.remove();
        this.updateEmpty();
        this.showAlert(`${file.name} was refused: ${api.explain(error)}`);
      },
    };
  }

  row(song) {
    const id = `song-${++rows}`;
    const item = element("li", { class: "song", "aria-labelledby": id });
    const heading = element("h3", { id }, song.name);
    const state = element("p", { class: "state", role: "status" });
    const bar = element("div", { role: "progressbar", class: "bar", "aria-valuemin": "0",
                                 "aria-valuemax": "100", "aria-valuenow": "0",
                                 "aria-label": `Progress of ${song.name}` });
    bar.append(element("div", { class: "fill" }));
    const actions = element("div", { class: "actions" });
    const result = element("div", { class: "result" });
    item.append(heading, state, bar, actions, result);
    this.list.append(item);
    this.updateEmpty();
    const entry = { song, item, heading, state, bar, actions, result, status: "", player: null };
    return entry;
  }

  updateEmpty() {
    this.emptyNote.hidden = this.list.children.length > 0;
  }

  setState(entry, status, percent, words) {
    // Unchanged, nothing is touched: the status is not announced again, focus stays put.
    if (entry.state.textContent === words && entry.status === status) return;
    const newStatus = entry.status !== status;
    entry.status = status;
    entry.item.dataset.state = status;
    entry.state.textContent = words;
    entry.bar.setAttribute("aria-valuenow", String(percent));
    entry.bar.setAttribute("aria-valuetext", words);
    entry.bar.firstChild.style.width = `${percent}%`;
    if (entry.song.hash && newStatus) this.showActions(entry);
  }

  showActions(entry) {
    const { song, actions, status } = entry;
    const buttons = [];
    const name = song.name;
    const link = element("a", { href: `#${songKey(song.hash, song.model)}` }, "Link to this song");
    if (this.capabilities.cancel && (status === "queued" || status === "processing")) {
      buttons.push(this.button(`Cancel ${name}`, "Cancel", () => this.cancel(entry)));
    }
    if (this.capabilities.deleteSong && status !== "gone") {
      buttons.push(this.button(`Delete from server: ${name}`, "Delete from server",
                               () => this.deleteFromServer(entry)));
    }
    buttons.push(this.button(`Remove from list: ${name}`, "Remove from list",
                             () => this.forget(entry)));
    // A control still offered stays the same element, so the focus on it stays put.
    const kept = new Map([...actions.children].map((node) => [node.getAttribute("aria-label")
      || node.textContent, node]));
    const wanted = [link, ...buttons].map(
      (node) => kept.get(node.getAttribute("aria-label") || node.textContent) || node);
    for (const node of [...actions.children]) if (!wanted.includes(node)) node.remove();
    wanted.forEach((node, i) => {
      // Only new controls are inserted; the kept ones are never moved (that would blur them).
      if (actions.children[i] !== node) actions.insertBefore(node, actions.children[i] || null);
    });
  }

  button(label, text, action) {
    const button = element("button", { type: "button", "aria-label": label }, text);
    button.addEventListener("click", action);
    return button;
  }

  async cancel(entry) {
    try {
      await api.cancelSong(entry.song);
    } catch (error) {
      this.showAlert(`Could not cancel ${entry.song.name}: ${api.explain(error)}`);
    }
    this.poll();
  }

  async deleteFromServer(entry) {
    try {
      await api.deleteSong(entry.song);
    } catch (error) {
      if (error.status !== 404) {
        this.showAlert(`Could not delete ${entry.song.name}: ${api.explain(error)}`);
        return;
      }
    }
    this.forget(entry);
  }

  forget(entry) {
    entry.player?.close();
    entry.item.remove();
    this.entries.delete(songKey(entry.song.hash, entry.song.model));
    this.save();
    this.updateEmpty();
  }

  // Bring a song into view, adding it first when this browser has not seen it.
  show(hash, model = "") {
    const entry = this.add({ hash, model, name: `Song ${hash.slice(0, 12)}`, options: {} });
    entry.item.scrollIntoView({ block: "start" });
    entry.heading.setAttribute("tabindex", "-1");
    entry.heading.focus();
  }

  // One polling loop for the whole list, running while any song is not final.
  poll() {
    if (!this.timer && !this.refreshing) this.timer = setTimeout(() => this.refresh(), 0);
  }

  async refresh() {
    this.timer = null;
    this.refreshing = true;
    try {
      const waiting = [...this.entries.values()].filter((entry) => !FINAL.has(entry.status));
      const statuses = await Promise.all(waiting.map((entry) => this.fetchStatus(entry)));
      waiting.forEach((entry, i) => statuses[i] && this.update(entry, statuses[i]));
    } finally {
      this.refreshing = false;
    }
    if ([...this.entries.values()].some((entry) => !FINAL.has(entry.status))) {
      this.timer = setTimeout(() => this.refresh(), POLL_MS);
    }
  }

  async fetchStatus(entry) {
    try {
      return await api.getStatus(entry.song);
    } catch (error) {
      if (error.status === 404) {
        this.setState(entry, "gone", 0, "The server no longer has this song (deleted or " +
                      "expired). Submit the file again to separate it.");
      } else {
        this.setState(entry, entry.status, Number(entry.bar.getAttribute("aria-valuenow")),
                      `Cannot read the status: ${api.explain(error)} Retrying…`);
      }
      return null;
    }
  }

  update(entry, status) {
    if (status.options && !entry.song.options?.format) {
      // Opened from a link: the server says which rendition was asked for.
      const { format, bits, bitrate, two_stems: twoStems } = status.options;
      entry.song.options = { format, bits, bitrate, two_stems: twoStems || "" };
      this.save();
    }
    if (status.status === "queued") {
      // The status gives the song's place in its own model's queue.
      const where = status.position
        ? `, ${ordinal(status.position)} of ${status.queue_length} in the queue` : "";
      this.setState(entry, "queued", 0, `Queued${where}`);
    } else if (status.status === "processing") {
      const percent = Math.round((status.progress || 0) * 100);
      this.setState(entry, "processing", percent, `Separating: ${percent} %`);
    } else if (status.status === "done") {
      this.setState(entry, "done", 100, "Done");
      this.showResult(entry, tracksOf(entry.song, status));
      for (const done of this.onDone) done(entry);
    } else if (status.status === "failed") {
      this.setState(entry, "failed", 0, `Failed: ${readable(status.error)}.`);
    } else if (status.status === "cancelled") {
      this.setState(entry, "cancelled", 0, "Cancelled. Submit the file again to separate it.");
    }
  }

  showResult(entry, tracks) {
    entry.player?.close();
    if (!tracks.length) {
      entry.result.replaceChildren(element("p", {}, "No stems are left for this song."));
      return;
    }
    entry.player = new Player(entry.song, tracks, this.capabilities, this.showAlert);
    entry.result.replaceChildren(entry.player.element);
  }
}
