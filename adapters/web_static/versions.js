// A reply's versions: regenerate answers the last message again (/retry) and the new reply
// joins the old one in the same bubble; ‹ › flip through them, as SillyTavern's swipes do,
// and the one shown last is the one the bot stores. Only the latest reply has these tools
// (every later message was answered with it in the prompt).
import { state } from "./state.js";
import { send } from "./connection.js";
import { setHtml, showAuthor } from "./conversation.js";
import { newId } from "./composer.js";

// The bubble's versions: [{id, who, html, extras: [elements shown under it]}], and which
// one is shown.
const versions = new WeakMap();

export function firstVersion(div, event) {
  versions.set(div, { list: [{ id: event.id, who: event.author, html: event.html, extras: [] }], shown: 0 });
}

export function addVersion(div, event) {
  const known = versions.get(div);
  known.list.push({ id: event.id, who: event.author, html: event.html, extras: [] });
  show(div, known.list.length - 1);
}

// A version's text changed while it streamed.
export function editVersion(div, id, html) {
  const known = versions.get(div);
  const version = known && known.list.find((v) => v.id === id);
  if (version) version.html = html;
  if (!known || known.list[known.shown] === version) setHtml(div, html);
}

// Something shown under the version shown now (its panel, its reasoning).
export function addExtra(div, element) {
  const known = versions.get(div);
  if (known) known.list[known.shown].extras.push(element);
  div.insertBefore(element, div.querySelector(".tools"));
}

// Another tab (or a reload) chose version `id`.
export function chosen(div, id) {
  const known = versions.get(div);
  const index = known ? known.list.findIndex((v) => v.id === id) : -1;
  if (index >= 0 && index !== known.shown) show(div, index);
}

function show(div, index) {
  const known = versions.get(div);
  for (const element of known.list[known.shown].extras) element.remove();
  known.shown = index;
  const version = known.list[index];
  showAuthor(div.querySelector(".who"), version.who);
  setHtml(div, version.html);
  for (const element of version.extras) div.insertBefore(element, div.querySelector(".tools"));
  div.dataset.id = version.id;
  const counter = div.querySelector(".swipes output");
  counter.textContent = `${index + 1}/${known.list.length}`;
  div.querySelector(".swipes").hidden = known.list.length < 2;
}

// The latest reply: the one regenerate and ‹ › apply to.
export function markLatest(div) {
  if (state.latest) state.latest.classList.remove("latest");
  state.latest = div;
  if (div) div.classList.add("latest");
}

export function versionTools(div) {
  const regenerate = document.createElement("button");
  regenerate.type = "button";
  regenerate.className = "regenerate";
  regenerate.setAttribute("aria-label", "regenerate");
  regenerate.addEventListener("click", () => send({ type: "regenerate", id: newId(), of: div.dataset.id }));
  const swipes = document.createElement("span");
  swipes.className = "swipes";
  swipes.hidden = true;
  const counter = document.createElement("output");
  for (const [label, step] of [["previous version", -1], ["next version", 1]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = step < 0 ? "previous" : "next";
    button.setAttribute("aria-label", label);
    button.addEventListener("click", () => flip(div, step));
    swipes.append(button);
    if (step < 0) swipes.append(counter);
  }
  return [regenerate, swipes];
}

function flip(div, step) {
  const known = versions.get(div);
  const index = known.shown + step;
  if (index < 0 || index >= known.list.length) return;
  show(div, index);
  send({ type: "choose", id: newId(), of: known.list[index].id });
}
