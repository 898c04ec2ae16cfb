// pifleet dashboard: the little the pages do in the browser besides htmx. No inline script anywhere (the pages
// run under a Content-Security-Policy without 'unsafe-inline'): every handler is attached here, by delegation,
// so parts that htmx swaps in later work too.
//
// - A board page's command forms (form.command) send POST /api/devices/NAME/commands as JSON
//   {"capability", "command", "params"} with the page's CSRF token, show the answer beside the button, and a
//   refusal at its field (the problem document's `field`, e.g. "params.position").
// - A slider shows its value in its <output>.
"use strict";

(function () {
  function csrf() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }

  function value(input) {
    var type = input.dataset.type;
    if (type === "boolean") return input.checked;
    var text = input.value;
    if (text === "" && input.hasAttribute("data-optional")) return undefined;
    if (type === "number") return Number(text);
    if (type === "integer") return parseInt(text, 10);
    if (type === "list" || type === "object") {
      try { return JSON.parse(text); } catch (e) { return text; }  // the master names the field if it is wrong
    }
    return text;
  }

  function clearErrors(form) {
    form.querySelectorAll(".field-error").forEach(function (el) { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
  }

  function showAtField(form, field, text) {
    var slot = field && form.querySelector('.field-error[data-field="' + CSS.escape(field) + '"]');
    if (!slot) return false;
    slot.textContent = text;
    var input = slot.parentElement.querySelector("input, select");
    if (input) input.setAttribute("aria-invalid", "true");
    return true;
  }

  function summary(body) {
    if (!body || typeof body !== "object") return String(body);
    var result = body.result !== undefined ? body.result : body;
    return JSON.stringify(result);
  }

  async function sendCommand(form) {
    var holder = form.closest("[data-device]");
    var out = form.querySelector(".command-result");
    var button = form.querySelector("button[type=submit]");
    var params = {};
    form.querySelectorAll("[name]").forEach(function (input) {
      var v = value(input);
      if (v !== undefined) params[input.name] = v;
    });
    var body = {capability: form.dataset.capability, command: form.dataset.command, params: params};
    clearErrors(form);
    out.className = "command-result muted";
    out.textContent = "sending…";
    button.disabled = true;
    try {
      var response = await fetch("/api/devices/" + encodeURIComponent(holder.dataset.device) + "/commands", {
        method: "POST",
        headers: {"Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrf()},
        body: JSON.stringify(body),
        credentials: "same-origin",
      });
      var answer = null;
      try { answer = await response.json(); } catch (e) { answer = null; }
      if (response.status === 401) { window.location.href = "/login?next=" + encodeURIComponent(location.pathname); return; }
      if (response.status === 200) {
        out.className = "command-result ok";
        out.textContent = "done: " + summary(answer);
      } else if (response.status === 202) {
        out.className = "command-result muted";
        out.textContent = "running… (it finishes on its own; see the executions below)";
      } else {
        var detail = (answer && (answer.detail || answer.title)) || ("HTTP " + response.status);
        var shown = answer && showAtField(form, answer.field, detail);
        out.className = "command-result error";
        out.textContent = shown ? "refused" : detail;
      }
      out.dataset.status = String(response.status);
    } catch (e) {
      out.className = "command-result error";
      out.textContent = "not sent: " + e;
    } finally {
      button.disabled = false;
    }
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches && form.matches("form.command")) {
      event.preventDefault();
      sendCommand(form);
    }
  });

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (input.type === "range" && input.id) {
      var out = document.querySelector('output[for="' + CSS.escape(input.id) + '"]');
      if (out) out.textContent = input.value + (out.dataset.unit || "");
    }
  });
})();
