// The live parking board: a snapshot over the websocket, then one message per change.
// Each change redraws only its own space, so keyboard focus and screen-reader position
// survive other calls coming and going. Reconnects by itself; shows a banner while the
// link (or a PBX) is down, and asks for a fresh snapshot when a PBX is back.
(function () {
  "use strict";
  const root = document.getElementById("board");
  const banner = document.getElementById("banner");
  const status = document.getElementById("board-status");
  const myExtension = document.getElementById("my-extension");
  const announceBox = document.getElementById("announce");
  const lotPicker = document.getElementById("show-lot");  // only when there are several lots
  const tenant = root.dataset.tenant;
  const canAct = root.dataset.canAct === "1";
  // Lots bigger than this show their busy spaces only (a grid of thousands helps nobody).
  const FULL_GRID_LIMIT = 300;
  const ANNOUNCE_KEY = "parkweb-announce";
  const FORBIDDEN = 4403, ROLE_CHANGED = 4409;  // close codes from the server

  let lots = new Map();      // lot slug -> lot, with .calls: Map space -> call, .node: section
  let health = new Map();    // server id -> {connected, synced}
  let skew = 0;              // server clock minus this browser's clock, in ms
  let socket;
  let retry = 500;
  let holdUntil = 0;         // no reconnect before this time (see drop)

  // --- small helpers --------------------------------------------------------------------

  function csrf() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function now() { return Date.now() + skew; }

  function clock(total) {
    const h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(s).padStart(2, "0");
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function caller(call) {
    return `${call.caller_id_name || ""} ${call.caller_id_num || ""}`.trim() || "unknown caller";
  }

  // Results of the user's own actions are always said; changes on the board only when the
  // "Announce changes" box is ticked (a busy reception may want silence).
  function say(text, isError) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(isError));
  }

  function announce(text) {
    if (!announceBox || announceBox.checked) say(text);
  }

  function showBanner(text) {
    if (banner.hidden || banner.textContent !== text) {  // an alert is re-read when rewritten
      banner.textContent = text;
      banner.hidden = false;
    }
  }

  // --- actions --------------------------------------------------------------------------

  function act(lot, space, call, action, body) {
    const url = `/api/v1/tenants/${tenant}/lots/${lot.slug}/parked-calls/${space}/${action}/`;
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      // The call's id: if another call has taken the space meanwhile, nothing is done.
      body: JSON.stringify({...body, call: call.id}),
    }).then(async response => {
      if (response.ok) {
        say(action === "retrieve" ? `Ringing extension ${body.extension} for space ${space}.`
                                  : `Hanging up the call in space ${space}.`);
        return;
      }
      let detail = `the server answered ${response.status}`;
      try { detail = Object.values(await response.json()).flat().join(" ") || detail; } catch (e) { /* not JSON */ }
      say(`Space ${space}: ${detail}`, true);
    }).catch(() => say(`Space ${space}: the server could not be reached.`, true));
  }

  function retrieve(lot, space, call) {
    const extension = myExtension.value.trim();
    if (!extension) {
      say("Enter your extension (like 201) first, then press Retrieve again.", true);
      myExtension.focus();
      return;
    }
    if (extension !== myExtension.dataset.saved) remember(extension);
    act(lot, space, call, "retrieve", {extension});
  }

  // The extension is kept with the member's account (not in this browser), so every board
  // they open rings the same phone; the server checks it is one of the tenant's.
  function remember(extension) {
    fetch(`/api/v1/tenants/${tenant}/me/`, {
      method: "PATCH", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      body: JSON.stringify({extension}),
    }).then(response => { if (response.ok) myExtension.dataset.saved = extension; })
      .catch(() => { /* the retrieve itself says whether the server is there */ });
  }

  function hangup(lot, space, call) {
    if (!confirm(`Hang up ${caller(call)} in space ${space}?`)) return;
    const current = lot.calls.get(space);
    if (!current || current.id !== call.id) {
      say(`Space ${space}: that call is no longer parked there; nothing was done.`, true);
      return;
    }
    act(lot, space, call, "hangup", {});
  }

  // --- drawing --------------------------------------------------------------------------

  function fillSpace(item, lot, space) {
    const call = lot.calls.get(space);
    item.className = call ? "space busy" + (call.waiting_long ? " waiting-long" : "") : "space free";
    item.replaceChildren(el("span", {"class": "number"}, String(space)));
    if (!call) {
      item.append(el("span", {"class": "state"}, "free"));
      return;
    }
    item.append(el("span", {"class": "who"}, caller(call)));
    if (call.waiting_long) item.append(el("span", {"class": "alert"}, "waiting too long"));
    if (call.parker_dial_string) item.append(el("span", {"class": "parker"}, "by " + call.parker_dial_string));
    item.append(el("span", {"class": "parked", "data-since": call.parked_at}));
    if (call.timeout_at) item.append(el("span", {"class": "countdown", "data-until": call.timeout_at}));
    if (canAct) {
      const pick = el("button", {"type": "button", "class": "retrieve", "data-action": "retrieve",
                                 "aria-label": `Retrieve space ${space} to my phone`}, "Retrieve");
      pick.addEventListener("click", () => retrieve(lot, space, call));
      const hang = el("button", {"type": "button", "class": "hangup secondary", "data-action": "hangup",
                                 "aria-label": `Hang up the call in space ${space}`}, "Hang up");
      hang.addEventListener("click", () => hangup(lot, space, call));
      const actions = el("span", {"class": "actions"});
      actions.append(pick, hang);
      item.append(actions);
    }
    tickWithin(item);
  }

  function newSpace(lot, space) {
    const item = el("li", {"data-space": String(space), "tabindex": "-1"});
    fillSpace(item, lot, space);
    return item;
  }

  function showsEverySpace(lot) {
    return lot.last_space - lot.first_space < FULL_GRID_LIMIT;
  }

  function drawSummary(lot) {
    const size = lot.last_space - lot.first_space + 1;
    const server = health.get(lot.server);
    const up = Boolean(server && server.connected);
    lot.node.querySelector(".occupancy").textContent = `${lot.calls.size} of ${size} spaces busy`;
    const pbx = lot.node.querySelector(".pbx");
    pbx.textContent = up ? "PBX connected" : "PBX disconnected";
    pbx.className = "pbx " + (up ? "ok" : "bad");
    const alert = lot.node.querySelector(".lot-alert");
    alert.textContent = {full: "Full", almost_full: "Almost full"}[lot.alert] || "";
    alert.hidden = !lot.alert;
    lot.node.classList.toggle("full", lot.alert === "full");
    lot.node.classList.toggle("almost-full", lot.alert === "almost_full");
  }

  function drawLot(lot) {
    const section = el("section", {"class": "lot", "data-lot": lot.asterisk_name,
                                   "aria-labelledby": `lot-${lot.id}`});
    const head = el("div", {"class": "lot-head"});
    head.append(el("h2", {"id": `lot-${lot.id}`, "tabindex": "-1"}, lot.name),
                el("span", {"class": "hint"}, `park on ${lot.parkext || "(no park extension)"} in ${lot.context}` +
                                              (lot.enabled ? "" : " · disabled")),
                el("span", {"class": "occupancy"}), el("span", {"class": "lot-alert", "hidden": ""}),
                el("span", {"class": "pbx"}));
    const grid = el("ol", {"class": "spaces", "aria-label": `Spaces of ${lot.name}`});
    if (showsEverySpace(lot)) {
      for (let space = lot.first_space; space <= lot.last_space; space++) grid.append(newSpace(lot, space));
    } else {
      head.append(el("p", {"class": "hint"},
        `${lot.first_space}-${lot.last_space}: too many spaces to draw, so only busy ones are shown.`));
      [...lot.calls.keys()].sort((a, b) => a - b).forEach(space => grid.append(newSpace(lot, space)));
    }
    section.append(head, grid);
    lot.node = section;
    lot.grid = grid;
    drawSummary(lot);
    return section;
  }

  // Where focus is on the board, as {lot, space, action}, to put it back after a redraw.
  function focusedPlace() {
    const active = document.activeElement;
    const item = active && root.contains(active) ? active.closest("li[data-space]") : null;
    if (!item) return null;
    return {lot: item.closest("section").dataset.lot, space: item.dataset.space,
            action: active.dataset.action || null};
  }

  function restoreFocus(place, fallback) {
    const item = root.querySelector(`section[data-lot="${place.lot}"] li[data-space="${place.space}"]`);
    const button = item && place.action && item.querySelector(`[data-action="${place.action}"]`);
    (button || item || fallback).focus();
  }

  // One lot only, when picked: the others stay up to date, hidden.
  function showPicked() {
    const picked = lotPicker ? lotPicker.value : "";
    lots.forEach(lot => { lot.node.hidden = Boolean(picked) && lot.asterisk_name !== picked; });
  }

  function drawAll() {
    const place = focusedPlace();
    root.replaceChildren(...[...lots.values()].map(drawLot));
    showPicked();
    if (!lots.size) root.append(el("p", {}, "No parking lots yet."));
    if (place) restoreFocus(place, root.querySelector("h2") || document.getElementById("content"));
    drawBanner();
  }

  // Redraw the one space that changed, adding or removing it in a busy-only lot.
  function drawSpace(lot, space) {
    const place = focusedPlace();
    const hadFocus = place && place.lot === lot.asterisk_name && place.space === String(space);
    const item = lot.grid.querySelector(`li[data-space="${space}"]`);
    if (item && (showsEverySpace(lot) || lot.calls.has(space))) {
      fillSpace(item, lot, space);
    } else if (item) {
      item.remove();
    } else if (lot.calls.has(space)) {
      const after = [...lot.grid.children].find(li => Number(li.dataset.space) > space);
      lot.grid.insertBefore(newSpace(lot, space), after || null);
    }
    if (hadFocus) restoreFocus(place, lot.node.querySelector("h2"));
    drawSummary(lot);
  }

  function linkUp() {
    return socket && socket.readyState === WebSocket.OPEN;
  }

  function drawBanner() {
    if (!linkUp()) return;  // the link's own banner stands
    if ([...health.values()].some(h => !h.connected)) {
      showBanner("A PBX is disconnected: its spaces may be out of date.");
    } else {
      banner.hidden = true;
    }
  }

  function tickWithin(scope) {
    const at = now();
    scope.querySelectorAll("[data-since]").forEach(n => {
      n.textContent = "parked " + clock(Math.max(0, Math.round((at - Date.parse(n.dataset.since)) / 1000)));
    });
    scope.querySelectorAll("[data-until]").forEach(n => {
      const left = Math.max(0, Math.round((Date.parse(n.dataset.until) - at) / 1000));
      n.textContent = left ? "times out in " + clock(left) : "timing out";
    });
  }

  // --- messages -------------------------------------------------------------------------

  function loadSnapshot(message) {
    if (message.now) skew = Date.parse(message.now) - Date.now();
    health = new Map(message.health.map(h => [h.server, h]));
    lots = new Map(message.lots.map(lot => [lot.slug, {
      ...lot, calls: new Map(lot.calls.map(call => [call.space, call])),
    }]));
    drawAll();
  }

  function applyCall(type, call) {
    const lot = lots.get(call.lot);
    if (!lot) return;
    const tell = lot.node.hidden ? () => {} : announce;  // hidden lots change silently
    const current = lot.calls.get(call.space);
    if (type === "waiting_long") {
      if (!current || current.id !== call.id) return;  // gone meanwhile
      lot.calls.set(call.space, call);
      say(`${caller(call)} has waited more than ${lot.alert_wait_seconds} s in space ${call.space} of ${lot.name}.`);
    } else if (call.ended_at) {
      if (!current || current.id !== call.id) return;  // already replaced (a swap)
      lot.calls.delete(call.space);
      tell(`Space ${call.space} in ${lot.name} is free (${type.replace("_", " ")}).`);
    } else {
      lot.calls.set(call.space, call);
      tell(`${caller(call)} parked in space ${call.space} of ${lot.name}.`);
    }
    drawSpace(lot, call.space);
  }

  function applyHealth(message) {
    const before = health.get(message.server);
    const wasReady = Boolean(before && before.connected && before.synced);
    health.set(message.server, message);
    lots.forEach(lot => { if (lot.server === message.server) drawSummary(lot); });
    drawBanner();
    // Back in touch with a PBX: what happened meanwhile comes in a fresh snapshot.
    if (!wasReady && message.connected && message.synced) socket.send(JSON.stringify({type: "resync"}));
  }

  // A lot's alert fired or cleared: always said (that is what alerts are for).
  function applyLotAlert(message) {
    const lot = lots.get(message.lot);
    if (!lot) return;
    const before = lot.alert;
    lot.alert = message.alert;
    drawSummary(lot);
    if (message.alert === "full") say(`${lot.name} is full.`);
    else if (message.alert === "almost_full" && before !== "almost_full") {
      say(`${lot.name} is almost full: ${message.free} free space${message.free === 1 ? "" : "s"}.`);
    } else if (!message.alert && before) say(`${lot.name} has free spaces again.`);
  }

  function apply(message) {
    if (message.type === "snapshot") loadSnapshot(message);
    else if (message.type === "health") applyHealth(message);
    else if (message.type === "lot_alert") applyLotAlert(message);
    else if (message.call) applyCall(message.type, message.call);
  }

  // A refused websocket looks like a network failure to the browser, so when a reconnect
  // never opens, ask the page itself: a redirect (to log in) or a 403/404 means this
  // browser may no longer watch the board, and retrying would only hammer the server.
  function probe() {
    return fetch(location.pathname, {credentials: "same-origin", redirect: "manual", cache: "no-store"})
      .then(r => r.type !== "opaqueredirect" && r.status !== 403 && r.status !== 404, () => true);
  }

  // Asked twice, a second apart: a browser whose session was just renewed (a new
  // password) may send its old cookie once.
  async function stillAllowed() {
    if (await probe()) return true;
    await new Promise(done => setTimeout(done, 1000));
    return probe();
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    let opened = false;
    socket = new WebSocket(`${scheme}://${location.host}/ws/t/${tenant}/parking/`);
    socket.onopen = () => { opened = true; retry = 500; };
    socket.onmessage = event => apply(JSON.parse(event.data));
    socket.onclose = async event => {
      if (event.code === ROLE_CHANGED) { location.reload(); return; }
      showBanner("Live updates are disconnected; reconnecting...");
      // After FORBIDDEN try again soon: a new password gives this browser a new session.
      const wait = event.code === FORBIDDEN ? 1000 : retry;
      if (!opened && !(await stillAllowed())) {
        showBanner("You are no longer allowed to watch this board (logged out, or removed " +
                   "from this tenant). Reload the page to log in again.");
        return;
      }
      // Spread out: after a web restart every board reconnects, and not all at once.
      const spread = wait * (0.5 + Math.random());
      setTimeout(connect, Math.max(spread, holdUntil - Date.now()));
      retry = Math.min(retry * 2, 5000);
    };
  }

  if (lotPicker) {
    const wanted = new URLSearchParams(location.search).get("lot") || "";
    if ([...lotPicker.options].some(o => o.value === wanted)) lotPicker.value = wanted;
    lotPicker.addEventListener("change", () => {
      const url = new URL(location.href);
      if (lotPicker.value) url.searchParams.set("lot", lotPicker.value); else url.searchParams.delete("lot");
      history.replaceState(null, "", url);  // a bookmark or reload keeps the choice
      showPicked();
    });
  }
  if (announceBox) {
    announceBox.checked = localStorage.getItem(ANNOUNCE_KEY) !== "off";
    announceBox.addEventListener("change", () => localStorage.setItem(ANNOUNCE_KEY, announceBox.checked ? "on" : "off"));
  }
  // Cut the live link, and keep it cut for `holdMs`: lets tests (and people) see the board
  // catch up with what happened meanwhile.
  window.parkwebBoard = {drop: (holdMs = 0) => { holdUntil = Date.now() + holdMs; socket.close(); }};
  setInterval(() => tickWithin(root), 1000);
  connect();
})();
