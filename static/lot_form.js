// The lot form: a refused form focuses its error summary (each error links to its field),
// and a deployment still being applied is followed until it is live or refused.
(function () {
  "use strict";
  const errors = document.getElementById("form-errors");
  if (errors) errors.focus();

  const note = document.getElementById("deployment");
  if (!note) return;
  const lot = note.dataset.lot;        // the lot's Asterisk name
  const server = note.dataset.server;  // the name of the lot's server

  function follow() {
    if (!["pending", "running"].some(s => note.classList.contains(s))) return;
    fetch(`/api/v1/deployments/${note.dataset.id}/?wait=10`, {credentials: "same-origin"})
      .then(r => r.json()).then(d => {
        note.className = "deploy " + d.status;
        const setAside = (d.set_aside || []).some(e => e.lot === lot);
        if (d.status === "ok" && setAside) location.reload();  // live, but not this lot: the page says why
        else if (d.status === "ok") note.textContent = `Live on ${server} at ${new Date(d.finished_at).toLocaleTimeString()}.`;
        else if (d.status === "failed" || d.status === "rolled_back") location.reload();  // the page says why
        else follow();
      }).catch(() => setTimeout(follow, 2000));
  }
  follow();
})();
