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

source.addEventListener("open", () => say("live", "live"));
source.addEventListener("line", (event) => {
  line.innerHTML = event.data;
  say("live", `live · ${new Date().toLocaleTimeString()}`);
});
source.addEventListener("logout", () => {
  source.close();
  window.location.assign(`${prefix}/login`);
});
source.addEventListener("error", () => say("offline", "reconnecting…"));
