// The conversation on the page: bubbles, the bot's events as they come (live, or replayed
// after a reload), and the tools under each message.
import { $, state } from "./state.js";
import { writing, send, change } from "./connection.js";
import { newId } from "./composer.js";
import { loadControls } from "./controls.js";
import {
  addExtra, addVersion, chosen, editVersion, firstVersion, markLatest, versionTools,
} from "./versions.js";

export function bubble(kind, who) {
  const div = document.createElement("div");
  div.className = `msg ${kind}`;
  if (who) {
    const label = document.createElement("div");
    label.className = "who";
    showAuthor(label, who);
    div.append(label);
  }
  const body = document.createElement("div");
  body.className = "body";
  div.append(body);
  $("log").append(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

// The author's name, with their picture where the character has one (a card's).
export function showAuthor(label, who) {
  label.textContent = who;
  if (!state.avatars[who]) return;
  const img = document.createElement("img");
  img.className = "avatar";
  img.src = state.avatars[who];
  img.alt = ""; // the name beside it says who it is
  label.prepend(img);
}

export function setHtml(div, html) {
  const body = div.querySelector(".body");
  body.innerHTML = html; // sanitized by the server
  for (const pre of body.querySelectorAll("pre")) decorateCode(pre);
  $("log").scrollTop = $("log").scrollHeight;
}

// A code block's language label (shown by CSS from data-lang) and its copy button. Neither
// adds text of its own, so copying a reply copies only what it says.
export function decorateCode(pre) {
  const code = pre.querySelector("code");
  const language = /language-(\S+)/.exec(code ? code.className : "");
  if (language) pre.dataset.lang = language[1];
  pre.append(copyButton("copy code", () => (code || pre).textContent));
}

export function copyButton(label, text) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "copy";
  button.setAttribute("aria-label", label);
  button.addEventListener("click", async () => {
    await navigator.clipboard.writeText(text());
    button.classList.add("done"); // "copied" for a moment (CSS)
    setTimeout(() => button.classList.remove("done"), 1500);
  });
  return button;
}

export const replies = new Map(); // message id → its bubble

// One event from the bot: live from the socket, or `replayed` from the channel's record
// when the page opens it (the same code shows both, so a reload shows what was shown).
export function onEvent(event, replayed = false) {
  switch (event.event) {
    case "user":
      showYours(event);
      break;
    case "message": {
      const earlier = event.alternative_of && replies.get(event.alternative_of);
      if (earlier) { // the last message answered again: a new version of its reply
        addVersion(earlier, event);
        replies.set(event.id, earlier);
        state.lastReply = earlier;
        break;
      }
      const div = bubble("bot", event.author);
      addReplyTools(div, Boolean(event.author));
      div.dataset.id = event.id;
      setHtml(div, event.html);
      replies.set(event.id, div);
      state.lastReply = div;
      if (event.author) {
        firstVersion(div, event);
        markLatest(div);
      }
      if (event.interrupted) interrupted(div);
      break;
    }
    case "edit": {
      const div = replies.get(event.id);
      if (div) editVersion(div, event.id, event.html);
      break;
    }
    case "image": {
      const div = bubble("bot image", "");
      setHtml(div, event.html);
      if (event.src) {
        const img = document.createElement("img");
        img.src = event.src; // a data: URL of the PNG the server drew
        img.alt = "generated image";
        div.append(img);
      }
      replies.set(event.id, div);
      break;
    }
    case "reasoning": {
      const details = document.createElement("details");
      details.className = "reasoning";
      details.innerHTML = "<summary>reasoning</summary>" + event.html;
      addExtra(state.lastReply || bubble("bot", ""), details);
      break;
    }
    case "status":
      $("status").textContent = event.text;
      break;
    case "error":
      setHtml(bubble("bot error", ""), event.html);
      break;
    case "details":
      if (state.lastReply) addExtra(state.lastReply, detailsPanel(event));
      break;
    case "confirm":
      confirmControls(event);
      break;
    case "chosen": {
      const div = replies.get(event.of);
      if (div) chosen(div, event.of);
      break;
    }
    case "edited":
    case "deleted":
      onChange(event);
      break;
    case "done":
      if (replayed) break;
      $("status").textContent = "";
      writing(false);
      announce();
      if (!$("controls").hidden) loadControls(); // a command may have changed them
      break;
  }
}

// A reply that a restart cut off: what was written stays, marked; ↻ answers again.
function interrupted(div) {
  const note = document.createElement("div");
  note.className = "note interrupted";
  note.textContent = "⚠ Interrupted: mombot stopped before this reply was finished.";
  div.insertBefore(note, div.querySelector(".tools"));
}

// Your last message has no reply and none is being written (mombot stopped before it
// began one): say so, with a way to ask again.
export function unanswered() {
  const div = bubble("bot error", "");
  div.querySelector(".body").textContent = "⚠ Interrupted: mombot stopped before it answered this.";
  const retry = document.createElement("button");
  retry.type = "button";
  retry.textContent = "answer it now";
  retry.addEventListener("click", () => {
    div.remove();
    send({ type: "regenerate", id: newId() });
  });
  div.append(retry);
}

// Your message, as another tab (or the record) shows it; the tab it was typed in has it.
function showYours(event) {
  const known = [...$("log").querySelectorAll(".msg.user")].some((d) => d.dataset.source === event.id);
  if (known && event.id) return;
  if (event.text) showTyped(event.text, event.id);
  for (const file of event.files) showFile(file.name, event.id, file.thumb);
}

export function detailsPanel(event) {
  const details = document.createElement("details");
  details.className = "how";
  const summary = document.createElement("summary");
  summary.textContent = `how this reply was made (${event.proposals.length} proposals, ${event.calls.length} calls)`;
  details.append(summary);
  for (const p of event.proposals) {
    const div = document.createElement("div");
    div.className = p.error ? "proposal failed" : "proposal";
    const head = document.createElement("strong");
    showAuthor(head, p.character); // the member's name, and its picture where it has one
    head.append(` (${p.seconds} s)`);
    div.append(head);
    const body = document.createElement("div");
    if (p.error) body.textContent = `failed: ${p.error}`;
    else body.innerHTML = p.html; // sanitized by the server
    div.append(body);
    details.append(div);
  }
  const table = document.createElement("table");
  const head = table.insertRow();
  for (const title of ["call", "model", "prompt tokens", "reply tokens", "seconds"]) {
    const th = document.createElement("th");
    th.textContent = title;
    head.append(th);
  }
  for (const c of event.calls) {
    const row = table.insertRow();
    for (const value of [c.stage, c.model, c.prompt_tokens, c.completion_tokens, c.seconds]) {
      row.insertCell().textContent = String(value);
    }
  }
  details.append(table);
  return details;
}

export function confirmControls(event) {
  const div = replies.get(event.of) || bubble("bot", "");
  setHtml(div, event.html);
  if (event.answered) return; // shown again after a reload: its question is settled
  const bar = document.createElement("div");
  bar.className = "confirm";
  const answer = (text) => { bar.remove(); send({ type: "answer", text }); };
  const buttons = [
    ["Draw it", () => answer("yes")],
    ["Edit", () => {
      const edited = prompt("Edit the prompt", event.prompt);
      if (edited) answer(edited);
    }],
    ["Cancel", () => answer("no")],
  ];
  for (const [label, action] of buttons) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = label;
    button.addEventListener("click", action);
    bar.append(button);
  }
  div.append(bar);
}

// Screen readers hear a reply once it is finished, not each of its edits while it streams.
export function announce() {
  const last = [...$("log").querySelectorAll(".msg.bot .body")].pop();
  if (last) $("announce").textContent = last.innerText.slice(0, 500);
}

export function clearLog() {
  $("log").replaceChildren();
  replies.clear();
  state.lastReply = null;
  state.latest = null;
  state.shown = null;
}

export function notice(text) {
  bubble("bot error", "").querySelector(".body").textContent = text; // said by the page itself
}

export function showFile(name, id, thumb = "") {
  markLatest(null); // the reply before your message is no longer the one to regenerate
  const div = bubble("user", "you");
  div.classList.add("file");
  div.querySelector(".body").textContent = `📎 ${name}`;
  if (thumb) { // a data: URL of a small JPEG (the page made it; the server checked it)
    const img = document.createElement("img");
    img.className = "thumb";
    img.src = thumb;
    img.alt = name;
    div.append(img);
  }
  if (id) div.dataset.source = id;
}

// Your message as the bot keeps it: its first maxTurnChars characters, and a note of the rest.
export function showTyped(text, id) {
  if (!/^[/!]/.test(text)) markLatest(null); // a command leaves the last reply the latest
  const div = bubble("user", "you");
  if (id) {
    div.dataset.source = id;
    addMineTools(div, id);
  }
  div.querySelector(".body").textContent = text.slice(0, state.maxTurnChars);
  const left = text.length - state.maxTurnChars;
  if (left > 0) {
    const note = document.createElement("div");
    note.className = "note";
    const kept = state.maxTurnChars.toLocaleString("en");
    note.textContent = `Only the first ${kept} characters were kept; ${left.toLocaleString("en")} were not.`;
    div.append(note);
  }
}

// Edit and delete under your own message: the same changes as on Discord or Matrix.
export function addMineTools(div, id) {
  const tools = document.createElement("div");
  tools.className = "tools";
  for (const [label, action] of [["edit", () => editMine(div, id)], ["delete", () => change({ type: "delete", id })]]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "mine"; // its label is drawn by CSS: the message's text stays its own
    button.setAttribute("aria-label", label);
    button.addEventListener("click", action);
    tools.append(button);
  }
  div.append(tools);
}

export function editMine(div, id) {
  const body = div.querySelector(".body");
  const editor = document.createElement("textarea");
  editor.value = body.textContent;
  editor.setAttribute("aria-label", "edit your message");
  editor.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && editor.value.trim()) {
      e.preventDefault();
      change({ type: "edit", id, text: editor.value.trim() });
    }
    if (e.key === "Escape") editor.replaceWith(body);
  });
  body.replaceWith(editor);
  editor.focus();
}

// Another tab's (or this one's) edit or deletion, applied by the bot: shown in every tab.
export function onChange(event) {
  for (const div of $("log").querySelectorAll(".msg.user")) {
    if (div.dataset.source !== event.id) continue;
    if (event.event === "deleted") {
      div.remove();
      continue;
    }
    if (div.classList.contains("file")) continue; // an edit changes the text, not the files
    const editor = div.querySelector("textarea");
    const body = div.querySelector(".body") || document.createElement("div");
    body.className = "body";
    if (editor) editor.replaceWith(body);
    body.textContent = event.text;
  }
}

// Copy under every reply; regenerate and ‹ › under the latest one a character wrote.
export function addReplyTools(div, authored = true) {
  const tools = document.createElement("div");
  tools.className = "tools";
  const body = div.querySelector(".body");
  tools.append(copyButton("copy reply", () => body.innerText.trim()));
  if (authored) tools.append(...versionTools(div));
  div.append(tools);
}
