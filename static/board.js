// The live parking board: a snapshot over the websocket, then one message per change.
// Each change redraws only its own space, so keyboard focus and screen-reader position
// survive other calls coming and going. Reconnects by itself; shows a banner while the
// link (or a PBX) is down, and asks for a fresh snapshot when it is back.
(function () {
  "use strict";
  const root = document.getElementById("board");
  const banner = document.getElementById("banner");
  const status = document.getElementById("board-status");
  const phone = document.getElementById("my-phone");
  const tenant = root.dataset.tenant;
  const canAct = root.dataset.canAct === "1";
  // Lots bigger than this show their occupied spaces only (a grid of thousands helps nobody).
  const FULL_GRID_LIMIT = 300;
  const PHONE_KEY = "parkweb-device";

  let lots = new Map();      // lot id -> lot, with .calls: Map space -> call
  let health = new Map();    // server id -> {connected, synced}
  let skew = 0;              // server clock minus this browser's clock, in ms
  let socket;
  let retry = 500;

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

  function announce(text, isError) {
    status.textContent = text;
    status.classList.toggle("bad", Boolean(isError));
  }

  function caller(call) {
    return `${call.caller_id_name || ""} ${call.caller_id_num || ""}`.trim() || "unknown caller";
  }

  // --- actions --------------------------------------------------------------------------

  function act(lot, space, action, body) {
    const url = `/api/v1/tenants/${tenant}/lots/${lot.slug}/parked-calls/${space}/${action}/`;
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      body: JSON.stringify(body || {}),
    }).then(async response => {
      if (response.ok) {
        announce(action === "retrieve" ? `Ringing ${body.device} for space ${space}.`
                                       : `Hanging up the call in space ${space}.`);
        return;
      }
      let detail = `the server answered ${response.status}`;
      try { detail = Object.values(await response.json()).flat().join(" ") || detail; } catch (e) { /* not JSON */ }
      announce(`Space ${space}: ${detail}`, true);
    }).catch(() => announce(`Space ${space}: the server could not be reached.`, true));
  }

  function retrieve(lot, space) {
    const device = phone.value.trim();
    if (!device) {
      announce("Enter your phone (like PJSIP/alice) first, then press Retrieve again.", true);
      phone.focus();
      return;
    }
    localStorage.setItem(PHONE_KEY, device);
    act(lot, space, "retrieve", {device});
  }

  function hangup(lot, space, call) {
    if (confirm(`Hang up ${caller(call)} in space ${space}?`)) act(lot, space, "hangup");
  }

  // --- drawing --------------------------------------------------------------------------

  function fillSpace(item, lot, space) {
    const call = lot.calls.get(space);
    item.className = call ? "space busy" : "space free";
    item.replaceChildren(el("span", {"class": "number"}, String(space)));
    if (!call) {
      item.append(el("span", {"class": "state"}, "free"));
      return;
    }
    item.append(el("span", {"class": "who"}, caller(call)));
    if (call.parker) item.append(el("span", {"class": "parker"}, "by " + call.parker));
    item.append(el("span", {"class": "parked", "data-since": call.parked_at}));
    if (call.timeout_at) item.append(el("span", {"class": "countdown", "data-until": call.timeout_at}));
    if (canAct) {
      const pick = el("button", {"type": "button", "class": "retrieve",
                                 "aria-label": `Retrieve space ${space} to my phone`}, "Retrieve");
      pick.addEventListener("click", () => retrieve(lot, space));
      const hang = el("button", {"type": "button", "class": "hangup secondary",
                                 "aria-label": `Hang up the call in space ${space}`}, "Hang up");
      hang.addEventListener("click", () => hangup(lot, space, call));
      const actions = el("span", {"class": "actions"});
      actions.append(pick, hang);
      item.append(actions);
    }
    tickWithin(item);
  }

  function spaceItem(lot, space) {
    const item = el("li", {"data-space": String(space), "tabindex": "-1"});
    fillSpace(item, lot, space);
    return item;
  }

  function fullGrid(lot) {
    return lot.last_space - lot.first_space < FULL_GRID_LIMIT;
  }

  function drawSummary(lot) {
    const section = lot.node;
    const size = lot.last_space - lot.first_space + 1;
    const server = health.get(lot.server);
    const up = server && server.connected;
    section.querySelector(".occupancy").textContent = `${lot.calls.size} of ${size} spaces busy`;
    const pbx = section.querySelector(".pbx");
    pbx.textContent = up ? "PBX connected" : "PBX disconnected";
    pbx.className = "pbx " + (up ? "ok" : "bad");
  }

  function drawLot(lot) {
    const section = el("section", {"class": "lot", "data-lot": lot.asterisk_name,
                                   "aria-labelledby": `lot-${lot.id}`});
    const head = el("div", {"class": "lot-head"});
    head.append(el("h2", {"id": `lot-${lot.id}`}, lot.name),
                el("span", {"class": "hint"}, `park on ${lot.parkext || "(no park extension)"} in ${lot.context}` +
                                              (lot.enabled ? "" : " · disabled")),
                el("span", {"class": "occupancy"}), el("span", {"class": "pbx"}));
    const grid = el("ol", {"class": "spaces", "aria-label": `Spaces of ${lot.name}`});
    if (fullGrid(lot)) {
      for (let space = lot.first_space; space <= lot.last_space; space++) grid.append(spaceItem(lot, space));
    } else {
      head.append(el("p", {"class": "hint"},
        `${lot.first_space}-${lot.last_space}: too many spaces to draw, so only busy ones are shown.`));
      [...lot.calls.keys()].sort((a, b) => a - b).forEach(space => grid.append(spaceItem(lot, space)));
    }
    section.append(head, grid);
    lot.node = section;
    drawSummary(lot);
    return section;
  }

  function drawAll() {
    const focused = document.activeElement && root.contains(document.activeElement)
      ? document.activeElement.closest("li[data-space]") : null;
    const keep = focused && [focused.closest("section").dataset.lot, focused.dataset.space];
    root.replaceChildren(...[...lots.values()].map(drawLot));
    if (!lots.size) root.append(el("p", {}, "No parking lots yet."));
    if (keep) {
      const again = root.querySelector(`section[data-lot="${keep[0]}"] li[data-space="${keep[1]}"]`);
      if (again) (again.querySelector("button") || again).focus();
    }
    drawBanner();
  }

  // Redraw one space; focus inside it stays on the same kind of button, or on the space.
  function drawSpace(lot, space) {
    const grid = lot.node.querySelector("ol.spaces");
    let item = grid.querySelector(`li[data-space="${space}"]`);
    const hadFocus = item && item.contains(document.activeElement);
    const focusedClass = hadFocus && document.activeElement.classList[0];
    if (!item && lot.calls.has(space)) {  // a big lot: insert the space in order
      item = spaceItem(lot, space);
      const after = [...grid.children].find(li => Number(li.dataset.space) > space);
      grid.insertBefore(item, after || null);
    } else if (item && !lot.calls.has(space) && !fullGrid(lot)) {
      item.remove();
      item = null;
    } else if (item) {
      fillSpace(item, lot, space);
    }
    if (hadFocus) {
      const target = item && (item.querySelector(`button.${focusedClass}`) || item);
      (target || grid.closest("section")).focus();
    }
    drawSummary(lot);
  }

  function drawBanner() {
    const down = [...health.values()].some(h => !h.connected);
    if (socket && socket.readyState !== WebSocket.OPEN) return;  // the link banner wins
    banner.hidden = !down;
    banner.textContent = down ? "A PBX is disconnected: its spaces may be out of date." : "";
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
    lots = new Map(message.lots.map(lot => [lot.id, {
      ...lot, calls: new Map(lot.calls.map(call => [call.space, call])),
    }]));
    drawAll();
  }

  function applyCall(type, call) {
    const lot = lots.get(call.lot);
    if (!lot) return;
    const current = lot.calls.get(call.space);
    if (call.ended_at) {
      if (!current || current.id !== call.id) return;  // already replaced (a swap)
      lot.calls.delete(call.space);
      announce(`Space ${call.space} in ${lot.name} is free (${type.replace("_", " ")}).`);
    } else {
      lot.calls.set(call.space, call);
      announce(`${caller(call)} parked in space ${call.space} of ${lot.name}.`);
    }
    drawSpace(lot, call.space);
  }

  function apply(message) {
    if (message.type === "snapshot") {
      loadSnapshot(message);
    } else if (message.type === "health") {
      health.set(message.server, message);
      lots.forEach(lot => { if (lot.server === message.server) drawSummary(lot); });
      drawBanner();
      // Back in touch with the PBX: what happened meanwhile is in a fresh snapshot.
      if (message.connected && message.synced) socket.send(JSON.stringify({type: "resync"}));
    } else if (message.call) {
      applyCall(message.type, message.call);
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/t/${tenant}/parking/`);
    socket.onopen = () => { retry = 500; };
    socket.onmessage = event => apply(JSON.parse(event.data));
    socket.onclose = () => {
      banner.hidden = false;
      banner.textContent = "Live updates are disconnected; reconnecting...";
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 5000);
    };
  }

  if (phone) phone.value = localStorage.getItem(PHONE_KEY) || "";
  window.parkwebBoard = {drop: () => socket.close()};  // lets tests (and people) cut the link
  setInterval(() => tickWithin(root), 1000);
  connect();
})();
