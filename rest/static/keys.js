// Keyboard shortcuts of the players: Space plays or pauses, the arrows seek, M and S mute and
// solo the stem that has the focus, L loops, ? lists the keys. They act on the player holding
// the focus, else on the one last used; typing in a field is never taken over.

import { Player } from "./player.js";

const SEEK_S = 5;
const TYPING = new Set(["INPUT", "SELECT", "TEXTAREA"]);

function playerOf(target) {
  return target.closest?.(".player")?.player || Player.current();
}

function stemOf(player, target) {
  const row = target.closest?.(".stem");
  return row && player.stems.find((stem) => stem.row === row);
}

// Whether a key on `target` belongs to the control itself (typing, a slider's own arrows).
function ownKey(target, key) {
  if (target.isContentEditable) return true;
  if (!TYPING.has(target.tagName)) return false;
  return target.type !== "range" || key.startsWith("Arrow"); // a slider keeps its arrows
}

const ACTIONS = {
  " ": (player) => player.toggle(),
  ArrowLeft: (player) => player.seek(Math.max(0, player.transport.position() - SEEK_S)),
  ArrowRight: (player) => player.seek(player.transport.position() + SEEK_S),
  l: (player) => player.toggleLoop(),
  m: (player, stem) => stem && player.toggleStem(stem, "muted"),
  s: (player, stem) => stem && player.toggleStem(stem, "solo"),
};

export function setUpKeys(dialog) {
  document.querySelector("#keys-close").addEventListener("click", () => dialog.close());
  document.querySelector("#keys-open").addEventListener("click", () => dialog.showModal());
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || dialog.open) return;
    const { target } = event;
    if (event.key === "?" && !ownKey(target, event.key)) {
      event.preventDefault();
      dialog.showModal();
      return;
    }
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const action = ACTIONS[key];
    if (!action || ownKey(target, event.key)) return;
    // Space on a button outside the players keeps its own meaning (press the button).
    if (key === " " && target.tagName === "BUTTON" && !target.closest(".player")) return;
    if (target.tagName === "A" && key === " ") return;
    const player = playerOf(target);
    if (!player) return;
    event.preventDefault();
    action(player, stemOf(player, target));
  });
}
