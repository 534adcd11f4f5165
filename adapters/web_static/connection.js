// The channel's connection to mombot: its history, its WebSocket, reconnecting, the channel
// list, and the token prompt.
import { $, state } from "./state.js";
import { onEvent, clearLog, unanswered } from "./conversation.js";
import { loadControls } from "./controls.js";

export function channelFromHash() {
  const match = /channel=([A-Za-z0-9_-]{1,64})/.exec(location.hash);
  return match ? match[1] : "main";
}

// The bot's web channels (those with a history), the one open now, and "main".
export function knownChannels() {
  return Array.from(new Set([state.channel, ...state.channels, "main"]));
}

export async function fetchChannels() {
  const response = await fetch("/api/channels");
  if (response.ok) state.channels = await response.json();
  showChannels();
}

export function showChannels() {
  const select = $("channels");
  select.replaceChildren();
  for (const name of knownChannels()) {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    option.selected = name === state.channel;
    select.append(option);
  }
}

// While a reply is being written: no sending (the next message waits in the box), and a
// stop button in place of it.
export function writing(on) {
  $("send").disabled = on;
  $("stop").hidden = !on;
}

export function send(payload) {
  if (connected()) {
    state.socket.send(JSON.stringify(payload));
    writing(true);
  }
}

// The connection dropped (mombot restarted, the network went away): open the channel again,
// waiting longer after each failed try.
export function reconnectSoon(delay = 1000, attempt = 1) {
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

export async function openChannel(name) {
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
  const { events, busy } = await response.json();
  if (state.channel !== name) return; // another channel was opened meanwhile
  clearLog();
  state.shown = name;
  for (const event of events) onEvent(event, true); // as it was shown, live
  if (!$("controls").hidden) loadControls(); // this channel's
  const last = events[events.length - 1];
  if (!busy && last && last.event === "user" && !/^[/!]/.test(last.text)) unanswered();
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

export function askForToken() {
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

export function connected() {
  return state.socket !== null && state.socket.readyState === WebSocket.OPEN;
}

export function change(payload) {
  if (connected()) state.socket.send(JSON.stringify(payload));
}
