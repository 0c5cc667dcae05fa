// hrwsi dashboard: keep the page's live sections current.
// The server sends a "change" event (server-sent events, fed by the database's notifications)
// naming the channels that moved; when one of them is among this page's data-channels (or the
// change carries a tick and the page shows clock-driven figures), the page asks its own URL for
// its live sections (header X-HRWSI-Fragments) and swaps them in. No polling, no reload.
(() => {
  "use strict";
  const body = document.body;
  const channels = new Set((body.dataset.channels || "").split(/\s+/).filter(Boolean));
  const wantsTick = body.dataset.tick === "1";
  const live = document.getElementById("live");
  let inFlight = false;
  let again = false;
  let connectedOnce = false;
  let updates = 0;

  function show(state, text) {
    if (!live) return;
    live.className = "live " + state;
    live.textContent = text;
  }

  function clock() {
    return new Date().toISOString().slice(11, 19) + "Z";
  }

  async function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    try {
      const response = await fetch(location.pathname + location.search, {
        headers: { "X-HRWSI-Fragments": "1" }, credentials: "same-origin", cache: "no-store",
      });
      if (!response.ok) { show("bad", "update failed (" + response.status + ")"); return; }
      const parts = await response.json();
      for (const [name, html] of Object.entries(parts)) {
        const section = document.querySelector('[data-live="' + name + '"]');
        if (section) section.innerHTML = html;
      }
      updates += 1;
      body.dataset.updates = String(updates);
      show("ok", "live · updated " + clock());
    } catch (error) {
      show("bad", "update failed");
    } finally {
      inFlight = false;
      if (again) { again = false; setTimeout(refresh, 250); }
    }
  }

  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });

  if (!channels.size || !window.EventSource) { if (live) live.hidden = true; return; }
  const events = new EventSource("/events");
  events.addEventListener("hello", () => {
    show("ok", "live");
    if (connectedOnce) refresh();  // back after a disconnection: catch up on what was missed
    connectedOnce = true;
  });
  events.addEventListener("change", (event) => {
    const change = JSON.parse(event.data);
    if (change.channels.some((c) => channels.has(c)) || (change.tick && wantsTick)) refresh();
  });
  events.onerror = () => show("bad", "reconnecting…");
})();
