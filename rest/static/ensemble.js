// The ensemble form of a separated song: pick member models and an algorithm (avg, max_spec,
// min_spec, or a model per stem), POST /apiv1/ensemble/<hash>, follow the members and the
// render, and list the result as the song's entry `#<hash>:<ensemble model>`.

import * as api from "./api.js";
import { element } from "./dom.js";
import { songKey } from "./songs.js";

const ALGORITHMS = [
  ["avg", "Average of the members (avg)"],
  ["max_spec", "Loudest per frequency bin (max_spec)"],
  ["min_spec", "Quietest per frequency bin (min_spec)"],
  ["pick", "A model for each stem (pick)"],
];
const FINAL = new Set(["done", "failed", "cancelled"]);
const POLL_MS = 1000;

let forms = 0;

function modelName(model) {
  return model.title ? `${model.name} (${model.title})` : model.name;
}

// How a status reads in the progress line.
function stage(status) {
  if (!status) return "unknown";
  if (status.status === "processing") return `${Math.round((status.progress || 0) * 100)} %`;
  return status.status;
}

export class EnsembleForm {
  constructor(entry, songs, models) {
    this.entry = entry;
    this.songs = songs;
    this.models = models;
    this.timer = null;
    this.busy = false;
    const id = `ensemble-${++forms}`;
    this.element = element("details", { class: "ensemble" });
    this.element.append(element("summary", {}, "Make an ensemble of models"));
    this.form = element("form", { "aria-labelledby": `${id}-heading` });
    const heading = element("h4", { id: `${id}-heading` }, `Ensemble of ${entry.song.name}`);
    this.algorithm = element("select", { name: "algorithm" });
    for (const [value, words] of ALGORITHMS) {
      this.algorithm.append(element("option", { value }, words));
    }
    const algorithmLabel = element("label", {}, "Algorithm");
    algorithmLabel.append(this.algorithm);
    this.members = this.memberBoxes();
    this.picks = this.pickSelects();
    this.button = element("button", { type: "submit" }, "Make ensemble");
    this.progress = element("p", { class: "ensemble-progress", role: "status" });
    this.form.append(heading, this.members, algorithmLabel, this.picks, this.button,
                     this.progress);
    this.element.append(this.form);
    this.algorithm.addEventListener("change", () => this.showMode());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    this.showMode();
  }

  memberBoxes() {
    const own = this.entry.song.model || this.models.find((m) => m.default)?.name;
    const fieldset = element("fieldset", {});
    fieldset.append(element("legend", {}, "Member models"));
    for (const model of this.models) {
      const box = element("input", { type: "checkbox", name: "member", value: model.name });
      box.checked = model.name === own;
      const label = element("label", { class: "check" });
      label.append(box, ` ${modelName(model)}`);
      fieldset.append(label);
    }
    return fieldset;
  }

  // One select per stem any model makes: which model it is taken from, or left out.
  pickSelects() {
    const fieldset = element("fieldset", { class: "picks" });
    fieldset.append(element("legend", {}, "Model for each stem"));
    const stems = [...new Set(this.models.flatMap((m) => m.stems || []))];
    for (const stem of stems) {
      const select = element("select", { name: "pick", "data-stem": stem });
      select.append(element("option", { value: "" }, "Leave out"));
      for (const model of this.models.filter((m) => (m.stems || []).includes(stem))) {
        select.append(element("option", { value: model.name }, model.name));
      }
      const label = element("label", {}, `Model for ${stem}`);
      label.append(select);
      fieldset.append(label);
    }
    return fieldset;
  }

  showMode() {
    const pick = this.algorithm.value === "pick";
    this.picks.hidden = !pick;
    this.members.hidden = pick;
  }

  spec() {
    const algorithm = this.algorithm.value;
    if (algorithm === "pick") {
      const picks = {};
      for (const select of this.picks.querySelectorAll("select")) {
        if (select.value) picks[select.dataset.stem] = select.value;
      }
      return { algorithm, picks };
    }
    const members = [...this.members.querySelectorAll("input:checked")].map((box) => box.value);
    return { algorithm, members };
  }

  async submit() {
    const spec = this.spec();
    const song = this.entry.song;
    // Not disabled while asking: a disabled button would drop the keyboard focus.
    if (this.busy) return;
    this.busy = true;
    this.progress.textContent = "Asking the server…";
    let answer;
    try {
      answer = await api.postEnsemble(song.hash, spec);
    } catch (error) {
      this.progress.textContent = "";
      this.songs.showAlert(`The ensemble of ${song.name} was refused: ${api.explain(error)}`);
      return;
    } finally {
      this.busy = false;
    }
    const how = answer.algorithm === "pick"
      ? Object.entries(answer.picks).map(([stem, model]) => `${stem} from ${model}`).join(", ")
      : `${answer.algorithm} of ${Object.keys(answer.members).join(", ")}`;
    const result = { hash: song.hash, model: answer.model, name: `${song.name}: ensemble, ${how}`,
                     options: { format: "flac", bits: "24" } };
    // Asked for again (after a failure, say): the entry already listed follows it.
    const known = this.songs.entries.get(songKey(result.hash, result.model));
    if (known) this.songs.recheck(known);
    else this.songs.add(result);
    this.follow(result, Object.keys(answer.members));
  }

  // The members' and the ensemble's progress, in words, until the ensemble has ended.
  follow(result, members) {
    clearTimeout(this.timer);
    const tick = async () => {
      const [own, ...others] = await Promise.all(
        [result.model, ...members].map((model) => api.getStatus({ hash: result.hash, model })
          .catch(() => null)));
      if (!this.element.isConnected) return;
      const words = members.map((model, i) => `${model} ${stage(others[i])}`).join(", ");
      if (own && FINAL.has(own.status)) {
        this.progress.textContent = own.status === "done"
          ? `Ensemble ready: listed as “${result.name}”.`
          : `The ensemble ${own.status}: ${own.error || "no reason given"}.`;
        if (own.status === "failed") {
          this.songs.showAlert(`The ensemble of ${this.entry.song.name} failed: ${own.error}`);
        }
        return;
      }
      this.progress.textContent = own?.status === "processing"
        ? `Members done; making the ensemble's stems: ${stage(own)}.`
        : `Waiting for the members: ${words}.`;
      this.timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }
}

// Adds the form to each separated song that is not itself an ensemble, once; needs two
// models served (from GET /apiv1/models).
export function ensembleForms(songs, capabilities) {
  const models = capabilities.models || [];
  return (entry) => {
    const model = entry.song.model || "";
    if (models.length < 2 || model.startsWith("ensemble-")) return;
    if (entry.item.querySelector(".ensemble")) return;
    entry.item.append(new EnsembleForm(entry, songs, models).element);
  };
}
