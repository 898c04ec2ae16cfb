// The API reference at /schema (server/pifleet/web/schema.py): Redoc, served by the master, started on the page's
// element with the schema's URL it names. No inline script: the page runs under a Content-Security-Policy.
"use strict";

(function () {
  var el = document.getElementById("redoc-container");
  if (!el || !window.Redoc) return;
  // search runs in a worker made from a blob, which the policy does not allow
  window.Redoc.init(el.dataset.specUrl, {disableSearch: true, hideDownloadButton: false}, el);
})();
