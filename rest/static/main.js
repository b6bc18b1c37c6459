// The page's start: the API key field, what the server offers, the list, the uploads, the URL.

import * as api from "./api.js";
import { ensembleForms } from "./ensemble.js";
import { setUpKeys } from "./keys.js";
import { SongList } from "./songs.js";
import { setUpUploads } from "./upload.js";

const alertBox = document.querySelector("#alert");

const alertText = document.querySelector("#alert-text");

// Errors pile up until dismissed, so that refusing several files at once names each one.
function showAlert(text) {
  if (alertBox.hidden) alertText.replaceChildren();
  const line = document.createElement("p");
  line.textContent = text;
  alertText.append(line);
  alertBox.hidden = false;
}

document.querySelector("#alert-dismiss").addEventListener("click", () => {
  alertBox.hidden = true;
});

function setUpKey() {
  const form = document.querySelector("#key-form");
  const field = form.querySelector("#api-key");
  field.value = api.apiKey();
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    api.setApiKey(field.value.trim());
    alertBox.hidden = true;
  });
}

function openFromUrl(songs) {
  const match = /^#([0-9a-f]{64})(?::([\w.-]+))?$/.exec(location.hash);
  if (match) songs.show(match[1], match[2] || "");
}

async function start() {
  setUpKey();
  setUpKeys(document.querySelector("#keys"));
  let capabilities;
  try {
    capabilities = await api.capabilities();
  } catch (error) {
    showAlert(`The service did not answer: ${api.explain(error)}`);
    return;
  }
  const songs = new SongList(document.querySelector("#songs"),
                             document.querySelector("#empty-list"), capabilities, showAlert);
  songs.onDone.push(ensembleForms(songs, capabilities));
  songs.restore();
  setUpUploads(document.querySelector("#upload-form"), capabilities, songs);
  openFromUrl(songs);
  window.addEventListener("hashchange", () => openFromUrl(songs));
  document.body.dataset.ready = "true";
}

start();
