// Calls to the service's HTTP API: the same routes, bodies and headers as curl would send.

const KEY_STORE = "micro-demucs.apiKey";

export function apiKey() {
  return localStorage.getItem(KEY_STORE) || "";
}

export function setApiKey(key) {
  if (key) localStorage.setItem(KEY_STORE, key);
  else localStorage.removeItem(KEY_STORE);
}

function authHeaders(extra = {}) {
  const key = apiKey();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

export class ApiError extends Error {
  constructor(status, message, retryAfter = null, body = {}) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter;
    this.body = body;
  }
}

async function parseBody(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

async function request(method, path, json) {
  const init = { method, headers: authHeaders() };
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "the server could not be reached");
  }
  const body = await parseBody(response);
  if (!response.ok) {
    throw new ApiError(response.status, body.error || response.statusText,
                       response.headers.get("Retry-After"), body);
  }
  return body;
}

// What the server offers: the routes its OpenAPI document lists and, when it serves several,
// its models. Older servers answer only base64 JSON uploads and mp3 stems.
export async function capabilities() {
  const document = await request("GET", "/apiv1/openapi.json");
  const paths = document.paths || {};
  const separate = paths["/apiv1/separate"]?.post?.requestBody?.content || {};
  const has = (path, method) => Boolean(paths[path]?.[method]);
  const found = {
    multipart: "multipart/form-data" in separate,
    models: [],
    zip: has("/apiv1/zip/{songhash}", "get"),
    cancel: has("/apiv1/cancel/{songhash}", "post"),
    deleteSong: has("/apiv1/song/{songhash}", "delete"),
    removeTrack: has("/apiv1/remove/{songhash}/{track}", "delete"),
  };
  if (has("/apiv1/models", "get")) {
    // Without a key a server that protects reads refuses; the default model is then used.
    found.models = (await request("GET", "/apiv1/models").catch(() => ({ models: [] }))).models;
  }
  return found;
}

function modelQuery(song, extra = {}) {
  const params = new URLSearchParams();
  if (song.model) params.set("model", song.model);
  for (const [name, value] of Object.entries(extra)) if (value) params.set(name, value);
  const text = params.toString();
  return text ? `?${text}` : "";
}

export const getStatus = (song) => request("GET", `/apiv1/status/${song.hash}${modelQuery(song)}`);
export const cancelSong = (song) =>
  request("POST", `/apiv1/cancel/${song.hash}${modelQuery(song)}`);
export const deleteSong = (song) => request("DELETE", `/apiv1/song/${song.hash}`);

// The rendition a song was asked for, as the query of its track and zip links.
function renditionQuery(song) {
  const options = song.options || {};
  if (options.format === "mp3" || !options.format) {
    return { bitrate: options.bitrate };
  }
  return { bits: options.bits };
}

export const removeTrack = (song, track) =>
  request("DELETE", `/apiv1/remove/${song.hash}/${track}${modelQuery(song, renditionQuery(song))}`);

export function trackUrl(song, track) {
  return `/apiv1/track/${song.hash}/${track}${modelQuery(song, renditionQuery(song))}`;
}

export function zipUrl(song) {
  const options = song.options || {};
  return `/apiv1/zip/${song.hash}${modelQuery(song, {
    format: options.format, two_stems: options.two_stems, ...renditionQuery(song),
  })}`;
}

export const peaksUrl = (song) => `/apiv1/peaks/${song.hash}${modelQuery(song)}`;
export const playbackUrl = (song) => `/apiv1/playback/${song.hash}${modelQuery(song)}`;
export const analysisUrl = (song) => `/apiv1/analysis/${song.hash}${modelQuery(song)}`;

// Ask the server to mix the stems as `mix` says ({gains, mute, solo, start, end, format});
// the answer names the URL the file will be at.
export const postMix = (song, mix) =>
  request("POST", `/apiv1/mix/${song.hash}`, { ...mix, model: song.model || undefined });

// Ask for an ensemble of the song ({algorithm, members, picks}); the answer names its model.
export const postEnsemble = (hash, spec) => request("POST", `/apiv1/ensemble/${hash}`, spec);

// A file's response once it is made (the server answers 202 with Retry-After until then).
async function whenMade(url) {
  for (;;) {
    let response;
    try {
      response = await fetch(url, { headers: authHeaders() });
    } catch {
      throw new ApiError(0, "the server could not be reached");
    }
    if (response.status === 202) {
      const wait = Number(response.headers.get("Retry-After") || 1);
      await new Promise((resolve) => setTimeout(resolve, wait * 1000));
      continue;
    }
    if (!response.ok) {
      const body = await parseBody(response);
      throw new ApiError(response.status, body.error || response.statusText,
                         response.headers.get("Retry-After"), body);
    }
    return response;
  }
}

// A track's (or a zip's, or a peaks file's) bytes, once made.
export async function fetchFile(url) {
  return (await whenMade(url)).arrayBuffer();
}

// The bytes `start` to `end` (excluded) of a file, with the API key; never the whole file
// (a server that answers 200 to a range is refused: it would send all of it).
export async function fetchRange(url, start, end) {
  let response;
  try {
    response = await fetch(url, { headers: authHeaders({ Range: `bytes=${start}-${end - 1}` }) });
  } catch {
    throw new ApiError(0, "the server could not be reached");
  }
  if (response.status !== 206) {
    const body = response.ok ? (await response.body?.cancel(), {}) : await parseBody(response);
    throw new ApiError(response.status, body.error || `no byte range (${response.status})`,
                       response.headers.get("Retry-After"), body);
  }
  return response.arrayBuffer();
}

// A download link followed with the API key (a plain link would go without it).
export async function saveWithKey(event, link) {
  if (!apiKey()) return;
  event.preventDefault();
  const bytes = await fetchFile(link.href);
  const url = URL.createObjectURL(new Blob([bytes]));
  const saver = document.createElement("a");
  saver.href = url;
  saver.download = link.getAttribute("download");
  saver.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// A JSON answer (peaks index, analysis), once made.
export async function fetchJson(url) {
  return (await whenMade(url)).json();
}

// Wait until a file is made without reading it: its download is left to a link.
export async function waitUntilMade(url) {
  const response = await whenMade(url);
  await response.body?.cancel();
}

function base64Of(bytes) {
  // In slices, because String.fromCharCode takes a bounded number of arguments.
  let text = "";
  for (let start = 0; start < bytes.length; start += 0x8000) {
    text += String.fromCharCode(...bytes.subarray(start, start + 0x8000));
  }
  return btoa(text);
}

async function uploadBody(file, options, multipart) {
  if (multipart) {
    const form = new FormData();
    for (const [name, value] of Object.entries(options)) if (value) form.append(name, value);
    form.append("file", file, file.name);
    return { body: form, type: null };
  }
  // A server without file uploads takes the song as base64 in the JSON field `mp3`.
  const bytes = new Uint8Array(await file.arrayBuffer());
  return { body: JSON.stringify({ mp3: base64Of(bytes) }), type: "application/json" };
}

// Submit one file; `onProgress(sent, total)` follows the bytes as they leave the browser.
export async function upload(file, options, multipart, onProgress) {
  const { body, type } = await uploadBody(file, options, multipart);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/apiv1/separate");
    for (const [name, value] of Object.entries(authHeaders())) xhr.setRequestHeader(name, value);
    if (type) xhr.setRequestHeader("Content-Type", type);
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    xhr.addEventListener("load", () => {
      let answer = {};
      try {
        answer = JSON.parse(xhr.responseText);
      } catch {
        // not JSON: a proxy in front of the service answered; its status says enough
      }
      if (xhr.status === 200) resolve(answer);
      else reject(new ApiError(xhr.status, answer.error || xhr.statusText,
                               xhr.getResponseHeader("Retry-After"), answer));
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "the upload could not reach the server")));
    xhr.send(body);
  });
}

// An error in words, with what to do next.
export function explain(error) {
  const detail = error.message;
  const wait = error.retryAfter ? `in ${error.retryAfter} s` : "in a moment";
  switch (error.status) {
    case 0:
      return `${detail}. Check that the service is running and your connection, then try again.`;
    case 401:
      return `${detail}. Enter a valid API key under Settings, save it, and try again.`;
    case 403:
      return `${detail}. Ask for a read-write API key and enter it under Settings.`;
    case 404:
      return `${detail}.`;
    case 409:
      return `${detail}. Nothing to do: the song has already finished.`;
    case 413:
      return `The file is too large: ${detail}. Pick a smaller file or a shorter song.`;
    case 400:
      return /not audio|not an? mp3/i.test(detail)
        ? `${detail}. Pick an audio file (MP3, WAV, FLAC, Ogg, Opus, AAC or M4A).`
        : `${detail}.`;
    case 415:
      return `${detail}. The page sends songs as files: reload it and try again.`;
    case 422:
      return `${detail}. Trim the song or pick a shorter one.`;
    case 429:
      return `Too many submissions: ${detail}. Try again ${wait}.`;
    case 503:
      return `The service is unavailable: ${detail}. Try again ${wait}.`;
    default:
      return `The server answered ${error.status}: ${detail}. Try again later.`;
  }
}
