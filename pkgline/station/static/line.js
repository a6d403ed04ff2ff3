// The line page's live updates: the server sends the rendered line (an HTML fragment it
// made from the service layer) whenever it changes; this swaps it in. Nothing else.
const line = document.getElementById("line");
const live = document.getElementById("live");
const prefix = document.querySelector("a.brand").getAttribute("href").replace(/\/$/, "");
const source = new EventSource(`${prefix}/line/events`);

function say(state, text) {
  live.dataset.state = state;
  live.textContent = text;
}

source.addEventListener("line", (event) => {
  // Each event's id is its fragment's fingerprint: the first after a (re)connection is the
  // line as it is now, swapped in only when it differs from what the page shows.
  if (event.lastEventId !== line.dataset.version) {
    line.innerHTML = event.data;
    line.dataset.version = event.lastEventId;
  }
  // UTC, as every time the station shows (not the panel's zone nor its 12-hour clock)
  say("live", `live · ${new Date().toISOString().slice(11, 19)} UTC`);
});
source.addEventListener("logout", () => {
  source.close();
  window.location.assign(`${prefix}/login`);
});
source.addEventListener("error", () => say("offline", "reconnecting…"));
