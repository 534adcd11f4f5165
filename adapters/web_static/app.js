// mombot's chat page. Every HTML fragment it inserts was rendered and sanitized by the
// server (Markdown → HTML, raw HTML escaped, nh3), and the page's Content-Security-Policy
// forbids inline scripts; text from the user is inserted as text, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  socket: null, channel: "", pending: [], commands: [], maxBytes: 0, maxFiles: 10, lastReply: null,
  shown: null, // the channel whose conversation the log shows
  choice: -1, // the command marked in the list shown after "/"
  channels: [], // the bot's web channels, most recently active first (/api/channels)
  maxTurnChars: Infinity, // how much of a message the bot keeps
};

function channelFromHash() {
  const match = /channel=([A-Za-z0-9_-]{1,64})/.exec(location.hash);
  return match ? match[1] : "main";
}

// The bot's web channels (those with a history), the one open now, and "main".
function knownChannels() {
  return Array.from(new Set([state.channel, ...state.channels, "main"]));
}

async function fetchChannels() {
  const response = await fetch("/api/channels");
  if (response.ok) state.channels = await response.json();
  showChannels();
}

function showChannels() {
  const select = $("channels");
  select.replaceChildren();
  for (const name of knownChannels()) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    option.selected = name === state.channel;
    select.append(option);
  }
}

function bubble(kind, who) {
  const div = document.createElement("div");
  div.className = `msg ${kind}`;
  if (who) {
    const label = document.createElement("div");
    label.className = "who";
    label.textContent = who;
    div.append(label);
  }
  const body = document.createElement("div");
  body.className = "body";
  div.append(body);
  $("log").append(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

function setHtml(div, html) {
  const body = div.querySelector(".body");
  body.innerHTML = html; // sanitized by the server
  for (const pre of body.querySelectorAll("pre")) decorateCode(pre);
  $("log").scrollTop = $("log").scrollHeight;
}

// A code block's language label (shown by CSS from data-lang) and its copy button. Neither
// adds text of its own, so copying a reply copies only what it says.
function decorateCode(pre) {
  const code = pre.querySelector("code");
  const language = /language-(\S+)/.exec(code ? code.className : "");
  if (language) pre.dataset.lang = language[1];
  pre.append(copyButton("copy code", () => (code || pre).textContent));
}

function copyButton(label, text) {
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

const replies = new Map(); // message id → its bubble

function onEvent(event) {
  switch (event.event) {
    case "message": {
      const div = bubble("bot", event.author);
      addReplyTools(div);
      div.dataset.id = event.id;
      setHtml(div, event.html);
      replies.set(event.id, div);
      state.lastReply = div;
      break;
    }
    case "edit": {
      const div = replies.get(event.id);
      if (div) setHtml(div, event.html);
      break;
    }
    case "image": {
      const div = bubble("bot image", "");
      const img = document.createElement("img");
      img.src = event.src; // a data: URL of the PNG the server drew
      img.alt = "generated image";
      setHtml(div, event.html);
      div.append(img);
      replies.set(event.id, div);
      break;
    }
    case "reasoning": {
      const div = state.lastReply || bubble("bot", "");
      const details = document.createElement("details");
      details.className = "reasoning";
      details.innerHTML = "<summary>reasoning</summary>" + event.html;
      div.append(details);
      break;
    }
    case "status":
      $("status").textContent = event.text;
      break;
    case "error":
      setHtml(bubble("bot error", ""), event.html);
      break;
    case "details":
      if (state.lastReply) state.lastReply.append(detailsPanel(event));
      break;
    case "confirm":
      confirmControls(event);
      break;
    case "edited":
    case "deleted":
      onChange(event);
      break;
    case "done":
      $("status").textContent = "";
      writing(false);
      announce();
      break;
  }
}

function detailsPanel(event) {
  const details = document.createElement("details");
  details.className = "how";
  const summary = document.createElement("summary");
  summary.textContent = `how this reply was made (${event.proposals.length} proposals, ${event.calls.length} calls)`;
  details.append(summary);
  for (const p of event.proposals) {
    const div = document.createElement("div");
    div.className = p.error ? "proposal failed" : "proposal";
    const head = document.createElement("strong");
    head.textContent = `${p.character} (${p.seconds} s)`;
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

function confirmControls(event) {
  const div = replies.get(event.id) || bubble("bot", "");
  setHtml(div, event.html);
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

// While a reply is being written: no sending (the next message waits in the box), and a
// stop button in place of it.
function writing(on) {
  $("send").disabled = on;
  $("stop").hidden = !on;
}

function send(payload) {
  if (connected()) {
    state.socket.send(JSON.stringify(payload));
    writing(true);
  }
}

// The connection dropped (mombot restarted, the network went away): open the channel again,
// waiting longer after each failed try.
function reconnectSoon(delay = 1000, attempt = 1) {
  $("status").textContent = `connection to mombot lost: reconnecting (try ${attempt})…`;
  writing(false);
  setTimeout(async () => {
    try {
      await openChannel(state.channel);
    } catch {
      reconnectSoon(Math.min(delay * 2, 10000), attempt + 1);
    }
  }, delay);
}

async function openChannel(name) {
  state.channel = name;
  if (location.hash !== `#channel=${name}`) location.hash = `channel=${name}`;
  showChannels();
  if (state.socket) { // closed by us: its close event finds it replaced, and is ignored
    const old = state.socket;
    state.socket = null;
    old.close();
  }
  // Another channel's conversation goes at once; this channel's stays on the page until its
  // history has come (while the bot is away, a failed fetch leaves it there).
  if (state.shown !== name) clearLog();
  const response = await fetch(`/api/history?channel=${encodeURIComponent(name)}`);
  if (response.status === 401) return askForToken();
  const turns = await response.json();
  if (state.channel !== name) return; // another channel was opened meanwhile
  clearLog();
  state.shown = name;
  for (const turn of turns) {
    if (turn.role !== "user") {
      const div = bubble("bot", turn.author);
      addReplyTools(div);
      setHtml(div, turn.html);
      continue;
    }
    // your message as you typed it, then its files, as it was shown when it was sent
    if (turn.text) showTyped(turn.text, turn.id);
    for (const name of turn.files) showFile(name, turn.id);
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws?channel=${encodeURIComponent(name)}`);
  socket.addEventListener("message", (m) => onEvent(JSON.parse(m.data)));
  socket.addEventListener("open", () => {
    $("status").textContent = "";
    document.body.dataset.ready = name;
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket) return; // replaced by another channel's
    delete document.body.dataset.ready;
    reconnectSoon();
  });
  state.socket = socket;
}

// Screen readers hear a reply once it is finished, not each of its edits while it streams.
function announce() {
  const last = [...$("log").querySelectorAll(".msg.bot .body")].pop();
  if (last) $("announce").textContent = last.innerText.slice(0, 500);
}

// The toggle: light or dark regardless of the system's setting, remembered in this browser.
function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  $("theme").setAttribute("aria-pressed", String(theme === "dark"));
  localStorage.setItem("mombot-theme", theme);
}

function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  setTheme(dark ? "light" : "dark");
}

function clearLog() {
  $("log").replaceChildren();
  replies.clear();
  state.lastReply = null;
  state.shown = null;
}

function askForToken() {
  const address = new URLSearchParams(location.search);
  if (address.has("token")) { // a wrong one: say so, and keep it out of the history
    $("token-wrong").hidden = false;
    history.replaceState(null, "", location.pathname + location.hash);
  }
  $("token-form").hidden = false;
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.href = `/?token=${encodeURIComponent($("token").value)}${location.hash}`;
  });
}

function readFile(file) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve({
      name: file.name, type: file.type || "application/octet-stream",
      data: String(reader.result).split(",")[1] || "",
    });
    reader.readAsDataURL(file);
  });
}

function notice(text) {
  bubble("bot error", "").querySelector(".body").textContent = text; // said by the page itself
}

async function attach(files) {
  for (const file of files) {
    if (state.pending.length >= state.maxFiles) {
      notice(`At most ${state.maxFiles} files go with one message: ${file.name} was not attached.`);
      continue;
    }
    // Over the limit: sent without its bytes, and the bot says it is too large.
    const read = file.size > state.maxBytes
      ? { name: file.name, type: file.type || "application/octet-stream", size: file.size, data: "" }
      : await readFile(file);
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

function connected() {
  return state.socket !== null && state.socket.readyState === WebSocket.OPEN;
}

function submit() {
  const text = $("text").value.trim();
  if (!text && !state.pending.length) return;
  if ($("send").disabled) return; // a reply is being written: the message waits in the box
  if (!connected()) { // kept in the box, to be sent once the page is back
    $("status").textContent = "not connected to mombot yet: try again in a moment";
    return;
  }
  const id = newId();
  if (text) showTyped(text, id);
  for (const file of state.pending) showFile(file.name, id);
  send({ type: "message", id, text: text.slice(0, state.maxTurnChars), files: state.pending });
  state.pending = [];
  $("attached").replaceChildren();
  $("text").value = "";
  hideCompletions();
}

// Your message as the bot keeps it: its first maxTurnChars characters, and a note of the rest.
// A message's id, made here so that its edits and deletion can name it (a UUID v4; made from
// getRandomValues, which, unlike randomUUID, works on a page served without TLS too).
function newId() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function showFile(name, id) {
  const div = bubble("user", "you");
  div.classList.add("file");
  div.querySelector(".body").textContent = `📎 ${name}`;
  if (id) div.dataset.source = id;
}

function showTyped(text, id) {
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
function addMineTools(div, id) {
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

function change(payload) {
  if (connected()) state.socket.send(JSON.stringify(payload));
}

function editMine(div, id) {
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
function onChange(event) {
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

function addReplyTools(div) {
  const tools = document.createElement("div");
  tools.className = "tools";
  const body = div.querySelector(".body");
  tools.append(copyButton("copy reply", () => body.innerText.trim()));
  div.append(tools);
}

function hideCompletions() {
  $("completions").hidden = true;
  markChoice(-1);
}

// The command the arrow keys are on (-1: none), marked for screen readers as well.
function markChoice(index) {
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

function takeCommand(name) {
  $("text").value = `/${name} `;
  hideCompletions();
  $("text").focus();
}

// Arrows move through the command list, Enter (on a marked command) or Tab takes one.
// Returns whether the key was the list's.
function completionKey(e) {
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

function showCompletions() {
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

async function start() {
  const theme = localStorage.getItem("mombot-theme");
  if (theme) setTheme(theme);
  $("theme").addEventListener("click", toggleTheme);
  $("composer").addEventListener("submit", (e) => { e.preventDefault(); submit(); });
  $("text").addEventListener("keydown", (e) => {
    if (completionKey(e)) return;
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); submit(); }
  });
  $("text").addEventListener("input", showCompletions);
  $("text").addEventListener("paste", (e) => {
    if (e.clipboardData.files.length) { e.preventDefault(); attach(e.clipboardData.files); }
  });
  $("attach").addEventListener("click", () => $("file").click());
  $("stop").addEventListener("click", () => change({ type: "stop" }));
  $("file").addEventListener("change", (e) => {
    attach([...e.target.files]); // a copy: clearing the input empties its live FileList
    e.target.value = "";
  });
  document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
  document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    document.body.classList.remove("dragging");
    attach(e.dataTransfer.files);
  });
  $("channels").addEventListener("change", (e) => openChannel(e.target.value));
  $("new-channel").addEventListener("submit", (e) => {
    e.preventDefault();
    const name = $("new-channel-name").value.trim();
    if (/^[A-Za-z0-9_-]{1,64}$/.test(name)) { $("new-channel-name").value = ""; openChannel(name); }
  });
  window.addEventListener("hashchange", () => {
    if (channelFromHash() !== state.channel) openChannel(channelFromHash());
  });
  const setup = await fetch("/api/setup");
  if (setup.status === 401) return askForToken();
  const {
    commands, max_attachment_bytes: maxBytes, max_files: maxFiles, max_turn_chars: maxTurnChars,
  } = await setup.json();
  state.maxTurnChars = maxTurnChars;
  state.commands = commands;
  state.maxBytes = maxBytes;
  state.maxFiles = maxFiles;
  await openChannel(channelFromHash());
  await fetchChannels();
}

start();
