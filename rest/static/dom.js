// The DOM helpers the modules share: an element, a button, a time as the clock shows it.

export function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

// A button with its visible words, its accessible name (which begins with them) and action;
// a toggle when `pressed` is given.
export function button(text, label, action, pressed) {
  const node = element("button", { type: "button", "aria-label": label }, text);
  if (pressed !== undefined) node.setAttribute("aria-pressed", String(pressed));
  node.addEventListener("click", action);
  return node;
}

// Seconds as m:ss.t.
export function clock(seconds) {
  const whole = Math.floor(seconds);
  const tenths = Math.floor((seconds - whole) * 10);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}.${tenths}`;
}
