// pifleet dashboard: the board page's live log panel (dashboard/templates/_device_logs.html). No inline script:
// the page runs under a Content-Security-Policy without 'unsafe-inline'.
//
// The page already holds one event stream (htmx's sse extension, <body sse-connect="/api/events">). Rather than
// open a second one (a browser gives a site only 6 connections: three board tabs would use them all), this file
// asks the extension to open that stream with ?logs=NAME: the master then also sends the board's log batches on it
// as `logs` events, {"device", "lines": [{"seq", "time", "line"}]}. Lines are numbered without gaps, so a batch the
// stream lost is read back from GET /api/devices/NAME/logs; so is everything each time the stream (re)opens.
"use strict";

(function () {
  var panel = document.querySelector("[data-log-device]");
  if (!panel) return;
  var name = panel.dataset.logDevice;
  var list = panel.querySelector(".log-lines");
  var state = panel.querySelector(".log-state");
  var api = "/api/devices/" + encodeURIComponent(name) + "/logs";
  var MAX_SHOWN = 1000;  // lines kept on the page; the rest stay on the master
  var lastSeq = null;
  var lastTime = null;
  var pending = null;  // batches that came while reading back: shown after what was read

  function clock(iso) {
    var d = new Date(iso);
    var ms = String(d.getMilliseconds()).padStart(3, "0");
    return d.toLocaleTimeString([], {hour12: false}) + "." + ms;
  }

  function atBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 24;
  }

  // Show lines after the last one shown; false if `strict` and they do not follow it (a batch was lost).
  function add(lines, strict) {
    var follow = atBottom();
    for (var i = 0; i < lines.length; i++) {
      var l = lines[i];
      if (lastSeq !== null && l.seq <= lastSeq) continue;
      if (strict && lastSeq !== null && l.seq !== lastSeq + 1) return false;
      var li = document.createElement("li");
      li.dataset.seq = l.seq;
      var time = document.createElement("time");
      time.dateTime = l.time;
      time.title = new Date(l.time).toLocaleString();
      time.textContent = clock(l.time);
      var text = document.createElement("span");
      text.className = "log-text";
      text.textContent = l.line;
      li.append(time, " ", text);
      list.appendChild(li);
      lastSeq = l.seq;
      lastTime = l.time;
    }
    while (list.children.length > MAX_SHOWN) list.removeChild(list.firstChild);
    if (list.children.length) state.hidden = true;
    if (follow) list.scrollTop = list.scrollHeight;
    return true;
  }

  async function readBack() {
    if (pending !== null) return;  // already reading
    pending = [];
    var query = lastTime === null
      ? "?limit=" + (panel.dataset.logLimit || "200")
      : "?limit=10000&since=" + encodeURIComponent(lastTime);  // the last instant again: shown lines are skipped
    try {
      var response = await fetch(api + query, {headers: {"Accept": "application/json"}, credentials: "same-origin"});
      if (response.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
      if (response.ok) {
        add(await response.json(), false);
      } else {
        state.textContent = "The log could not be read (" + response.status + ").";
        state.hidden = false;
      }
    } catch (e) {
      // the master is away: the stream reconnects, and reads back again when it opens
    } finally {
      var later = pending;
      pending = null;
      for (var i = 0; i < later.length; i++) add(later[i], false);
    }
  }

  function listen(source) {
    source.addEventListener("hello", readBack);
    source.addEventListener("logs", function (event) {
      var batch;
      try { batch = JSON.parse(event.data); } catch (e) { return; }
      if (pending !== null) { pending.push(batch.lines); return; }
      if (!add(batch.lines, true)) readBack();
    });
    return source;
  }

  function withLogs(url) {
    return url + (url.indexOf("?") < 0 ? "?" : "&") + "logs=" + encodeURIComponent(name);
  }

  if (window.htmx && document.body.hasAttribute("sse-connect")) {
    // the extension opens its stream when htmx processes the page (at DOMContentLoaded, after this deferred file)
    // and again after a cut, each time through htmx.createEventSource
    window.htmx.createEventSource = function (url) {
      return listen(new EventSource(withLogs(url), {withCredentials: true}));
    };
  } else {
    listen(new EventSource(withLogs("/api/events"), {withCredentials: true}));
  }
})();
