// Klaxon live updates: when the server's event stream says the incidents
// changed, fetch the fresh fragment of this page and swap it in. Without
// JavaScript the pages work the same, only without live updates.
(function () {
  "use strict";
  var el = document.querySelector("[data-live]");
  if (!el || !window.EventSource || !window.fetch) return;
  var busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(el.getAttribute("data-live"), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) { el.innerHTML = html; })
      .catch(function () {})
      .then(function () { busy = false; if (again) { again = false; refresh(); } });
  }
  var src = new EventSource(el.getAttribute("data-events"));
  src.addEventListener("change", function (e) {
    el.setAttribute("data-version", e.data);
    refresh();
  });
  src.addEventListener("signedout", function () { src.close(); });
})();
