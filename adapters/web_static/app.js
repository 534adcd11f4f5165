// The page's start: wires the controls to the modules that do the work.
import { $, state } from "./state.js";
import { wireControls } from "./controls.js";
import { channelFromHash, fetchChannels, openChannel, askForToken, change } from "./connection.js";
import { attach, submit, completionKey, showCompletions } from "./composer.js";

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

async function start() {
  const theme = localStorage.getItem("mombot-theme");
  if (theme) setTheme(theme);
  $("theme").addEventListener("click", toggleTheme);
  wireControls();
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
    avatars,
  } = await setup.json();
  state.maxTurnChars = maxTurnChars;
  state.avatars = avatars;
  state.commands = commands;
  state.maxBytes = maxBytes;
  state.maxFiles = maxFiles;
  await openChannel(channelFromHash());
  await fetchChannels();
}
start();
