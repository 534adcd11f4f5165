// mombot's chat page, as JavaScript modules (no build step, no framework, nothing from a CDN).
// Every HTML fragment the page inserts was rendered and sanitized by the server (Markdown →
// HTML, raw HTML escaped, nh3), and the page's Content-Security-Policy forbids inline
// scripts; text from the user is inserted as text, never as HTML.
//
// state.js: what the page knows, shared by the other modules.
export const $ = (id) => document.getElementById(id);

export const state = {
  socket: null, channel: "", pending: [], commands: [], maxBytes: 0, maxFiles: 10,
  shown: null, // the channel whose conversation the log shows
  choice: -1, // the command marked in the list shown after "/"
  channels: [], // the bot's web channels, most recently active first (/api/channels)
  maxTurnChars: Infinity, // how much of a message the bot keeps
  avatars: {}, // character name → its picture's address (a card's)
  lastReply: null, // the bubble the next panel or reasoning goes under
  latest: null, // the latest reply a character wrote: regenerate and ‹ › apply to it
};
