// The live parking board: a snapshot over the websocket, then one message per change.
// Reconnects by itself; shows a banner while the link (or the PBX) is down.
(function () {
  "use strict";
  const root = document.getElementById("board");
  const banner = document.getElementById("banner");
  const tenant = root.dataset.tenant;
  const canAct = root.dataset.canAct === "1";
  let lots = [];
  let health = {};
  let retry = 500;

  function csrf() {
    const match = document.cookie.match(/(?:^|; )csrftoken=([^;]+)/);
    return match ? decodeURIComponent(match[1]) : "";
  }

  function seconds(from) {
    return Math.max(0, Math.round((Date.now() - Date.parse(from)) / 1000));
  }

  function clock(total) {
    const m = Math.floor(total / 60), s = total % 60;
    return m + ":" + String(s).padStart(2, "0");
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function act(lot, space, action, body) {
    return fetch(`/api/v1/tenants/${tenant}/lots/${lot.slug}/parked-calls/${space}/${action}/`, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": csrf()},
      body: JSON.stringify(body || {}),
    }).then(r => r.ok ? null : r.json().then(e => alert(Object.values(e).flat().join(" "))));
  }

  function render() {
    root.replaceChildren();
    const down = Object.values(health).some(h => !h.connected);
    if (down) { banner.hidden = false; banner.textContent = "The PBX is disconnected: the board may be out of date."; }
    for (const lot of lots) {
      const section = el("section", {"class": "lot", "data-lot": lot.asterisk_name});
      section.append(el("h2", {}, `${lot.name} (park on ${lot.parkext || "-"})`));
      const grid = el("ol", {"class": "spaces"});
      const bySpace = Object.fromEntries(lot.calls.map(c => [c.space, c]));
      for (let space = lot.first_space; space <= lot.last_space && space < lot.first_space + 200; space++) {
        const call = bySpace[space];
        const item = el("li", {"class": call ? "space busy" : "space free", "data-space": String(space)});
        item.append(el("span", {"class": "number"}, String(space)));
        if (call) {
          item.append(el("span", {"class": "who"}, `${call.caller_id_name || ""} ${call.caller_id_num || ""}`.trim() || "unknown caller"));
          item.append(el("span", {"class": "parker"}, call.parker ? "by " + call.parker : ""));
          item.append(el("span", {"class": "parked", "data-since": call.parked_at}, ""));
          if (call.timeout_at) item.append(el("span", {"class": "countdown", "data-until": call.timeout_at}, ""));
          if (canAct) {
            const pick = el("button", {"type": "button", "class": "retrieve"}, "Retrieve to my phone");
            pick.addEventListener("click", () => {
              const device = prompt("Your phone (like PJSIP/alice):", localStorage.getItem("parkweb-device") || "");
              if (device) { localStorage.setItem("parkweb-device", device); act(lot, space, "retrieve", {device}); }
            });
            const hang = el("button", {"type": "button", "class": "hangup"}, "Hang up");
            hang.addEventListener("click", () => { if (confirm("Hang up this call?")) act(lot, space, "hangup"); });
            item.append(pick, hang);
          }
        }
        grid.append(item);
      }
      section.append(grid);
      root.append(section);
    }
    tick();
  }

  function tick() {
    root.querySelectorAll("[data-since]").forEach(n => { n.textContent = "parked " + clock(seconds(n.dataset.since)); });
    root.querySelectorAll("[data-until]").forEach(n => {
      const left = Math.max(0, Math.round((Date.parse(n.dataset.until) - Date.now()) / 1000));
      n.textContent = "back in " + clock(left);
    });
  }

  function apply(message) {
    if (message.type === "snapshot") {
      lots = message.lots;
      health = Object.fromEntries(message.health.map(h => [h.server, h]));
      banner.hidden = true;
    } else if (message.type === "health") {
      health[message.server] = message;
      if (message.connected && message.synced) { banner.hidden = true; socket.send(JSON.stringify({type: "resync"})); return; }
    } else if (message.call) {
      const lot = lots.find(l => l.id === message.call.lot);
      if (!lot) return;
      lot.calls = lot.calls.filter(c => c.id !== message.call.id);
      if (message.type === "parked") lot.calls.push(message.call);
    }
    render();
  }

  let socket;
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
  window.parkwebBoard = {drop: () => socket.close()};  // lets tests (and people) cut the link
  setInterval(tick, 1000);
  connect();
})();
