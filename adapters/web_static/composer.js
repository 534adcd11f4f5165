// The box at the bottom: typing, files, sending, and the command list after "/".
import { $, state } from "./state.js";
import { notice, showFile, showTyped } from "./conversation.js";
import { send, connected } from "./connection.js";
import { asTyped } from "./controls.js";

export function readFile(file) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve({
      name: file.name, type: file.type || "application/octet-stream",
      data: String(reader.result).split(",")[1] || "",
    });
    reader.readAsDataURL(file);
  });
}

// A small JPEG of an image you attach, shown in your message (and kept with it for a
// reload); "" when the browser cannot draw it.
export const THUMBNAIL_SIDE = 160;

async function thumbnail(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, THUMBNAIL_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.max(1, Math.round(bitmap.width * scale));
    canvas.height = Math.max(1, Math.round(bitmap.height * scale));
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    return canvas.toDataURL("image/jpeg", 0.7);
  } catch {
    return "";
  }
}

export async function attach(files) {
  for (const file of files) {
    if (state.pending.length >= state.maxFiles) {
      notice(`At most ${state.maxFiles} files go with one message: ${file.name} was not attached.`);
      continue;
    }
    // Over the limit: sent without its bytes, and the bot says it is too large.
    const read = file.size > state.maxBytes
      ? { name: file.name, type: file.type || "application/octet-stream", size: file.size, data: "" }
      : await readFile(file);
    if (read.data && read.type.startsWith("image/")) read.thumb = await thumbnail(file);
    state.pending.push(read);
    const tag = document.createElement("span");
    tag.textContent = file.name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.textContent = "×";
    remove.setAttribute("aria-label", `remove ${file.name}`);
    remove.addEventListener("click", () => {
      state.pending.splice(state.pending.indexOf(read), 1);
      tag.remove();
      $("text").focus();
    });
    tag.append(remove);
    $("attached").append(tag);
  }
}

export function submit() {
  const text = asTyped($("text").value.trim()); // "think deeply" on: as /think
  if (!text && !state.pending.length) return;
  if ($("send").disabled) return; // a reply is being written: the message waits in the box
  if (!connected()) { // kept in the box, to be sent once the page is back
    $("status").textContent = "not connected to mombot yet: try again in a moment";
    return;
  }
  const id = newId();
  if (text) showTyped(text, id);
  for (const file of state.pending) showFile(file.name, id, file.thumb);
  send({ type: "message", id, text: text.slice(0, state.maxTurnChars), files: state.pending });
  state.pending = [];
  $("attached").replaceChildren();
  $("text").value = "";
  hideCompletions();
}

// A message's id, made here so that its edits and deletion can name it (a UUID v4; made from
// getRandomValues, which, unlike randomUUID, works on a page served without TLS too).
export function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export function hideCompletions() {
  $("completions").hidden = true;
  markChoice(-1);
}

// The command the arrow keys are on (-1: none), marked for screen readers as well.
export function markChoice(index) {
  const items = [...$("completions").children];
  state.choice = index;
  items.forEach((item, n) => {
    item.classList.toggle("active", n === index);
    item.setAttribute("aria-selected", String(n === index));
  });
  if (index >= 0) {
    $("text").setAttribute("aria-activedescendant", items[index].id);
    items[index].scrollIntoView({ block: "nearest" });
  } else {
    $("text").removeAttribute("aria-activedescendant");
  }
}

export function takeCommand(name) {
  $("text").value = `/${name} `;
  hideCompletions();
  $("text").focus();
}

// Arrows move through the command list, Enter (on a marked command) or Tab takes one.
// Returns whether the key was the list's.
export function completionKey(e) {
  const items = [...$("completions").children];
  if ($("completions").hidden || !items.length) return false;
  if (e.key === "ArrowDown" || e.key === "ArrowUp") {
    const step = e.key === "ArrowDown" ? 1 : -1;
    markChoice((state.choice + step + items.length) % items.length);
  } else if ((e.key === "Enter" && !e.shiftKey && state.choice >= 0) || e.key === "Tab") {
    takeCommand(items[Math.max(state.choice, 0)].dataset.name);
  } else if (e.key === "Escape") {
    hideCompletions();
  } else {
    return false;
  }
  e.preventDefault();
  return true;
}

export function showCompletions() {
  const text = $("text").value;
  const list = $("completions");
  if (!/^[\/!]\S*$/.test(text)) return hideCompletions();
  const typed = text.slice(1).toLowerCase();
  const matches = state.commands.filter((c) => c.name.startsWith(typed));
  list.replaceChildren();
  for (const [index, command] of matches.entries()) {
    const item = document.createElement("li");
    item.id = `completion-${index}`;
    item.dataset.name = command.name;
    item.setAttribute("role", "option");
    item.textContent = command.usage;
    const help = document.createElement("span");
    help.className = "help";
    help.textContent = command.help;
    item.append(help);
    item.addEventListener("mousedown", (e) => {
      e.preventDefault();
      takeCommand(command.name);
    });
    list.append(item);
  }
  list.hidden = matches.length === 0;
  markChoice(-1);
}
