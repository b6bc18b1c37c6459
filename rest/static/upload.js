// Picking or dropping songs, the job options, and their uploads (several at a time).

import * as api from "./api.js";

function fillSelect(select, choices) {
  select.replaceChildren(...choices.map(([value, text]) => new Option(text, value)));
}

// A model in words, from what GET /apiv1/models says of it; absent facts are left out.
export function describeModel(model) {
  const parts = [];
  if (model.title) parts.push(model.title);
  if (model.stems?.length) parts.push(`${model.stems.length} stems: ${model.stems.join(", ")}`);
  const quality = (model.quality || [])[0];
  if (quality?.sdr) {
    const values = Object.values(quality.sdr);
    const sdr = quality.sdr.all ?? values.reduce((a, b) => a + b, 0) / values.length;
    parts.push(`quality ${sdr.toFixed(1)} dB SDR (${quality.dataset})`);
  }
  const speeds = Object.entries(model.speed || {}).filter(([, s]) => s?.rtf);
  if (speeds.length) {
    parts.push(speeds.map(([device, s]) => `speed ${(1 / s.rtf).toFixed(1)}× real time on ${device}`)
      .join(", "));
  } else if ("speed" in model) {
    parts.push("speed not measured yet");
  }
  if (model.ready === false) parts.push("no worker running it now");
  return parts.join(" · ");
}

// The options the server offers: models, two-stem choices of the chosen model, formats.
function setUpOptions(form, capabilities) {
  const models = capabilities.models;
  if (!capabilities.multipart) return () => ({});
  form.querySelector("#options").hidden = false;
  const model = form.querySelector("#model");
  const twoStems = form.querySelector("#two-stems");
  const format = form.querySelector("#format");
  form.querySelector("#model-field").hidden = models.length < 2;
  fillSelect(model, models.map((m) => [m.name, m.default ? `${m.name} (default)` : m.name]));
  const about = form.querySelector("#model-about");
  const showStems = () => {
    const chosen = models.find((m) => m.name === model.value);
    fillSelect(twoStems, [["", "All stems"],
      ...(chosen?.stems || []).map((stem) => [stem, `${stem} and no_${stem}`])]);
    about.textContent = chosen ? describeModel(chosen) : "";
  };
  const showQuality = () => {
    form.querySelector("#bitrate-field").hidden = format.value !== "mp3";
    form.querySelector("#bits-field").hidden = format.value === "mp3";
  };
  model.addEventListener("change", showStems);
  format.addEventListener("change", showQuality);
  showStems();
  showQuality();
  return () => {
    const chosen = models.find((m) => m.name === model.value);
    const options = { format: format.value, two_stems: twoStems.value };
    // The default model's results are addressed without ?model=, as older clients do.
    options.model = chosen && !chosen.default ? chosen.name : "";
    if (format.value === "mp3") options.bitrate = form.querySelector("#bitrate").value;
    else options.bits = form.querySelector("#bits").value;
    return options;
  };
}

async function send(file, options, capabilities, songs) {
  const upload = songs.startUpload(file, options);
  try {
    upload.accepted(await api.upload(file, options, capabilities.multipart, upload.progress));
  } catch (error) {
    upload.refused(error);
  }
}

export function setUpUploads(form, capabilities, songs) {
  const input = form.querySelector("#file-input");
  const zone = form.querySelector("#drop-zone");
  const chosenOptions = setUpOptions(form, capabilities);
  const submit = (files) => {
    const options = chosenOptions();
    for (const file of files) send(file, options, capabilities, songs);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!input.files.length) {
      input.focus();
      return;
    }
    submit([...input.files]);
    input.value = ""; // the options stay as chosen for the next songs
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("dragging");
    submit([...event.dataTransfer.files]);
  });
}
