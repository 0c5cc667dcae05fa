// hrwsi dashboard: keep the page's live sections current.
// The server sends a "change" event (server-sent events, fed by the database's notifications)
// naming the channels that moved; when one of them is among this page's data-channels (or the
// change carries a tick and the page shows clock-driven figures), the page asks its own URL for
// its live sections (header X-HRWSI-Fragments) and swaps them in. No polling, no reload.
// While the server's listener has lost the database ("database" event, and in "hello" and "alive"),
// no change can arrive: the page says that what it shows may be out of date, and catches up when
// it is back. While the database can be read but no notification can come (the dashboard waits for the database to
// take writes, or a standby refuses LISTEN: "database" with live false), the page says it is not live and asks for
// its live sections every few seconds until it is live again. A page the database could not be read for (503, data-retry) asks for itself again
// every few seconds and reloads when the database answers.
(() => {
  "use strict";
  const body = document.body;
  const channels = new Set((body.dataset.channels || "").split(/\s+/).filter(Boolean));
  const wantsTick = body.dataset.tick === "1";
  const retryS = Number(body.dataset.retry || 0);
  const live = document.getElementById("live");
  const HELLO_MS = 5000;   // a stream that has not said hello by then is opened again
  const SILENT_MS = 12000; // the server says "alive" every 5 s: silence this long is a dead stream
  const REOPEN_MS = 2000;  // a stream the browser gave up on (an error answer) is opened again
  const AWAY = "database unreachable · may be out of date";
  let inFlight = false;
  let again = false;
  let connectedOnce = false;
  let updates = 0;
  let databaseUp = true;
  let pollS = 5;            // how often a page that is not live refreshes itself (the server's poll_s)
  let polling = null;       // the interval that refreshes it meanwhile; null: live (or the database away)

  function show(state, text) {
    if (!live) return;
    live.hidden = false;
    live.className = "live " + state;
    live.textContent = text;
  }

  // A section the user is selecting text in (or pressing a button on) is not replaced under them: on a busy
  // installation the overview changed every half second and a selection vanished before it could be copied. It
  // is brought up to date once the selection is let go. A scrolled log or chart keeps its scroll position (it
  // went back to its start at every update: the plan's chart every 5 s), a log read to its end follows it.
  const shown = new Map();  // each section's HTML as last received
  const SCROLLERS = "pre.log, .gantt-wrap";
  let waiting = false;      // a section was left out of the last update: it is fetched again once free
  let pressed = null;       // the element a mouse button is held down on

  function inUse(section) {
    if (pressed && section.contains(pressed)) return true;
    const selection = window.getSelection();
    if (!selection || selection.isCollapsed || !selection.rangeCount) return false;
    return section.contains(selection.anchorNode) || section.contains(selection.focusNode)
      || selection.getRangeAt(0).intersectsNode(section);
  }

  function scrollsOf(section) {
    return Array.from(section.querySelectorAll(SCROLLERS), (element) => ({
      left: element.scrollLeft, top: element.scrollTop,
      atEnd: element.scrollTop > 0 && element.scrollHeight - element.scrollTop - element.clientHeight < 2,
    }));
  }

  function restoreScrolls(section, scrolled) {
    const now = section.querySelectorAll(SCROLLERS);
    scrolled.forEach((was, index) => {
      const element = now[index];
      if (!element) return;
      element.scrollLeft = was.left;
      element.scrollTop = was.atEnd ? element.scrollHeight : was.top;
    });
  }

  function whenFree() {
    if (!waiting || Array.from(document.querySelectorAll("[data-live]")).some(inUse)) return;
    waiting = false;
    refresh();
  }

  document.addEventListener("pointerdown", (event) => { pressed = event.target; });
  document.addEventListener("pointerup", () => { pressed = null; setTimeout(whenFree, 0); });
  document.addEventListener("pointercancel", () => { pressed = null; setTimeout(whenFree, 0); });
  document.addEventListener("selectionchange", whenFree);

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
      // (503: this dashboard's answer while the database is away, which a refresh may meet before
      // the stream says so)
      if (!response.ok) {
        show("bad", databaseUp && response.status !== 503 ? "update failed (" + response.status + ")" : AWAY);
        return;
      }
      const parts = await response.json();
      for (const [name, html] of Object.entries(parts)) {
        const section = document.querySelector('[data-live="' + name + '"]');
        if (!section || shown.get(name) === html) continue;  // (unchanged: left as it is, selection and all)
        if (inUse(section)) { waiting = true; continue; }
        const scrolled = scrollsOf(section);
        section.innerHTML = html;
        shown.set(name, html);
        restoreScrolls(section, scrolled);
      }
      updates += 1;
      body.dataset.updates = String(updates);
      if (polling) show("warn", notLive() + " · updated " + clock());
      else if (databaseUp) show("ok", "live · updated " + clock());
    } catch (error) {
      show("bad", databaseUp ? "update failed" : AWAY);
    } finally {
      inFlight = false;
      if (again) { again = false; setTimeout(refresh, 250); }
    }
  }

  function notLive() {
    return "not live · refreshed every " + pollS + " s";
  }

  function poll(on) {
    if (on && !polling) polling = setInterval(refresh, pollS * 1000);
    if (!on && polling) { clearInterval(polling); polling = null; }
  }

  // The listener lost (false) or has (true) the database; null: the server does not know yet. With up and live
  // false: the database can be read, but no notification comes: the page polls.
  function database(up, live) {
    if (up === true && live === false) {
      databaseUp = true;
      if (!polling) {
        body.dataset.database = "polled";
        show("warn", notLive());
        poll(true);
        refresh();
      }
      return;
    }
    if (up === false) {
      poll(false);
      databaseUp = false;
      body.dataset.database = "away";
      show("bad", AWAY);
    } else if (up === true && (!databaseUp || polling)) {
      poll(false);
      databaseUp = true;
      body.dataset.database = "up";
      show("ok", "live");  // (the server sends a change on every channel next: the page catches up)
    }
  }

  document.addEventListener("submit", (event) => {
    const button = event.submitter;
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) event.preventDefault();
  });

  if (retryS > 0) {
    // (a fetch, not a <meta> refresh: it reloads only once the page can be read, and the CSP allows it)
    show("bad", "database unreachable · trying again every " + retryS + " s");
    setInterval(async () => {
      try {
        const response = await fetch(location.pathname + location.search, {
          headers: { "X-HRWSI-Fragments": "1" }, credentials: "same-origin", cache: "no-store",
        });
        if (response.status !== 503) location.reload();
      } catch (error) { /* the dashboard itself is away: try again */ }
    }, retryS * 1000);
    return;
  }
  if (!channels.size || !window.EventSource) { if (live) live.hidden = true; return; }

  let events = null;
  let heard = 0;        // when the stream last said anything (or was opened)
  let greeted = false;  // whether this stream said hello

  function heardFrom(event) {
    heard = Date.now();
    return event.data ? JSON.parse(event.data) : {};
  }

  function open() {
    if (events) events.close();
    events = new EventSource("/events");
    heard = Date.now();
    greeted = false;
    events.addEventListener("hello", (event) => {
      const data = heardFrom(event);
      greeted = true;
      if (data.poll_s) pollS = data.poll_s;
      if (data.database !== false) show(data.live === false ? "warn" : "ok", data.live === false ? notLive() : "live");
      database(data.database, data.live);
      if (connectedOnce) refresh();  // back after a disconnection: catch up on what was missed
      connectedOnce = true;
    });
    events.addEventListener("alive", (event) => { const data = heardFrom(event); database(data.database, data.live); });
    events.addEventListener("database", (event) => { const data = heardFrom(event); database(data.up, data.live); });
    events.addEventListener("change", (event) => {
      const change = heardFrom(event);
      if (change.channels.some((c) => channels.has(c)) || (change.tick && wantsTick)) refresh();
    });
    events.onerror = () => {
      show("bad", "reconnecting…");
      greeted = false;
      heard = Date.now();
      // The browser tries again by itself after a lost connection, but never after an error answer
      // (a proxy's 502 while the dashboard restarts): then it is this script's to do.
      if (events.readyState === EventSource.CLOSED) {
        setTimeout(() => { if (events.readyState === EventSource.CLOSED) open(); }, REOPEN_MS);
      }
    };
  }

  // A stream that never says hello, or falls silent, is opened again: an overview reloaded during an
  // outage stayed on "connecting…" for 18 s after the database came back (found by exploratory testing).
  setInterval(() => {
    if (Date.now() - heard > (greeted ? SILENT_MS : HELLO_MS)) open();
  }, 1000);
  open();
})();
