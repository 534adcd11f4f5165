// The controls panel (⚙): the debug view, /think with its rounds, and this channel's reply
// length and members' temperature. Each change is sent as the command that does it (/debug,
// /settings), shown in the conversation like one you typed, so the bot checks it in one
// place and says what it did; the panel then shows the bot's values again.
import { $, state } from "./state.js";
import { send } from "./connection.js";
import { showTyped } from "./conversation.js";
import { newId } from "./composer.js";

export async function loadControls() {
  const response = await fetch(`/api/settings?channel=${encodeURIComponent(state.channel)}`);
  if (!response.ok) return;
  const values = await response.json();
  $("debug-view").checked = values.debug;
  setSlider("length", values.length);
  setSlider("temperature", values.temperature);
  $("think-controls").hidden = values.rounds === null;
  if (values.rounds && !$("rounds").dataset.set) {
    $("rounds").min = values.rounds.min;
    $("rounds").max = values.rounds.max;
    setSlider("rounds", values.rounds.default);
    $("rounds").dataset.set = "yes"; // yours from then on
  }
}

function setSlider(name, value) {
  const slider = $(name);
  if (Number(value) > Number(slider.max)) slider.max = value; // config.toml's may be longer
  slider.value = value; // the slider may round it to its step: the number says it exactly
  $(`${name}-value`).textContent = value;
}

function command(text) {
  if ($("send").disabled) { // a reply is being written: its turn comes after
    $("status").textContent = "wait for the reply to finish, then change it";
    loadControls();
    return;
  }
  const id = newId();
  showTyped(text, id);
  send({ type: "message", id, text, files: [] });
}

// A message sent while "think deeply" is on goes as /think with the rounds chosen.
export function asTyped(text) {
  if (!$("think").checked || $("think-controls").hidden || /^[/!]/.test(text) || !text) return text;
  return `/think ${text} --rounds ${$("rounds").value}`;
}

export function wireControls() {
  $("controls-toggle").addEventListener("click", () => {
    const open = $("controls").hidden;
    $("controls").hidden = !open;
    $("controls-toggle").setAttribute("aria-expanded", String(open));
    if (open) loadControls();
  });
  $("debug-view").addEventListener("change", (e) => command(`/debug ${e.target.checked ? "on" : "off"}`));
  for (const name of ["length", "temperature", "rounds"]) {
    $(name).addEventListener("input", () => { $(`${name}-value`).textContent = $(name).value; });
  }
  $("length").addEventListener("change", () => command(`/settings --length ${$("length").value}`));
  $("temperature").addEventListener("change", () => command(`/settings --temperature ${$("temperature").value}`));
  $("settings-default").addEventListener("click", () => command("/settings default"));
}
