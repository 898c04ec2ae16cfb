// pifleet dashboard: the board page's live state (dashboard/templates/_device_live.html). No inline script: the
// page runs under a Content-Security-Policy without 'unsafe-inline'.
//
// The master sends each change of a capability's state on the page's one event stream (htmx's sse extension,
// <body sse-connect="/api/events">) as a `state` event, {"device", "capability", "values", "at"}: a blind reports
// its position every half second while it moves. The values are written into the panel in place (no request);
// a value the panel has no place for yet (a capability's first report) has the panel drawn again by the master, and
// so does every (re)opening of the stream, which may have missed changes.
"use strict";

(function () {
  var panel = document.querySelector("[data-live-device]");
  if (!panel || !window.htmx) return;
  var name = panel.dataset.liveDevice;
  var url = "/ui/devices/" + encodeURIComponent(name) + "/live";

  function text(value, item) {
    if (value === null || value === undefined) return item.dataset.null || "unknown";  // "idle": a blind standing
    if (value === true) return "yes";
    if (value === false) return "no";
    if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(2);
    if (typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function redraw() {
    window.htmx.ajax("GET", url, {target: "#device-live", swap: "outerHTML"});
  }

  function show(report) {
    var live = document.getElementById("device-live");
    var keys = Object.keys(report.values);
    for (var i = 0; i < keys.length; i++) {
      var item = live.querySelector('[data-state="' + CSS.escape(report.capability + "." + keys[i]) + '"]');
      if (!item) { redraw(); return; }
      var value = report.values[keys[i]];
      item.querySelector(".state-value").textContent = text(value, item);
      var meter = item.querySelector("meter");
      if (meter && typeof value === "number") meter.value = value;
    }
    var at = live.querySelector('[data-state-at="' + CSS.escape(report.capability) + '"] time');
    if (at) {
      at.dateTime = report.at;
      at.textContent = new Date(report.at).toLocaleTimeString([], {hour12: false});
    }
  }

  function listen(source) {
    source.addEventListener("hello", redraw);
    source.addEventListener("state", function (event) {
      var report;
      try { report = JSON.parse(event.data); } catch (e) { return; }
      if (report.device === name) show(report);
    });
    return source;
  }

  // the extension opens its stream when htmx processes the page, after the deferred files (device-logs.js may have
  // wrapped the opener before: keep what it does)
  var open = window.htmx.createEventSource || function (u) { return new EventSource(u, {withCredentials: true}); };
  window.htmx.createEventSource = function (u) { return listen(open(u)); };
})();
