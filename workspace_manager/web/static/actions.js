// wsm actions: reload a location, start/stop a schedule or sensor, cancel a run, launch a
// job. Every write is a JSON POST to /api/ carrying the page's CSRF token (X-WSM-CSRF);
// errors are shown in the nearest role=alert element.
(function () {
  "use strict";
  var body = document.body;

  function token() {
    var meta = document.querySelector('meta[name="wsm-csrf"]');
    return meta ? meta.getAttribute("content") : "";
  }
  // Off loopback a write needs the API token (`wsm up --api-token-env VAR`): asked for at the
  // first 401, kept for this tab only (sessionStorage), sent as `Authorization: Bearer`.
  var TOKEN_KEY = "wsm-api-token";
  function apiToken() {
    try { return window.sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
  }
  function post(url, payload, contentType, asked) {
    var headers = { "Content-Type": contentType || "application/json", "X-WSM-CSRF": token(), Accept: "application/json" };
    var bearer = apiToken();
    if (bearer) headers.Authorization = "Bearer " + bearer;
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: headers,
      body: contentType ? payload : JSON.stringify(payload || {})
    }).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        return { ok: r.ok, status: r.status, data: data, text: text };
      });
    }).then(function (res) {
      if (res.status !== 401 || asked) return res;
      var given = window.prompt(
        (bearer ? "That API token was refused. " : "") +
        "Writes from this address need the manager's API token (wsm up --api-token-env):");
      if (!given) return res;
      try { window.sessionStorage.setItem(TOKEN_KEY, given.trim()); } catch (e) { return res; }
      return post(url, payload, contentType, true);
    });
  }
  function message(res) {
    var d = res.data;
    if (d && d.error) return typeof d.error === "string" ? d.error : d.error.message || String(res.status);
    return "the manager answered " + res.status + (res.text ? ": " + res.text.slice(0, 200) : "");
  }
  function alertFor(el) {
    var form = el && el.closest && el.closest("form");
    var box = form && form.querySelector('[role="alert"]');
    return box || document.querySelector('main [role="alert"]');
  }
  function showError(el, text) {
    var box = alertFor(el);
    if (!box) { window.alert(text); return; }
    box.textContent = text;
    box.hidden = false;
  }
  function clearError(el) {
    var box = alertFor(el);
    if (box) { box.textContent = ""; box.hidden = true; }
  }
  function busy(button, on) { if (button) button.disabled = on; }
  function enc(s) { return encodeURIComponent(s); }

  function act(button, url, done) {
    clearError(button);
    busy(button, true);
    return post(url, {}).then(function (res) {
      busy(button, false);
      if (!res.ok) { showError(button, message(res)); return; }
      if (done) done(res.data);
    }, function (err) {
      busy(button, false);
      showError(button, "the request failed: " + err);
    });
  }

  function setInstigator(row, status, doc) {
    if (!row) return;
    if (window.wsmLive) window.wsmLive.setNextTick(row, doc);
    row.dataset.status = status;
    var b = row.querySelector(".status");
    if (b) { b.textContent = status; b.className = "status status-" + status.toLowerCase(); }
    var start = row.querySelector('button[data-action="start"]');
    var stop = row.querySelector('button[data-action="stop"]');
    if (start) start.hidden = status === "RUNNING";
    if (stop) stop.hidden = status !== "RUNNING";
    var shown = status === "RUNNING" ? stop : start;
    if (shown) shown.focus();
  }

  var launcher = null;
  var actions = {
    reload: function (button) {
      var row = button.closest("tr[data-location]");
      var name = row ? row.dataset.location : body.dataset.locationName;
      var label = button.dataset.label || button.textContent;
      button.dataset.label = label;
      button.textContent = "Reloading…";
      var done = false;
      act(button, "/api/locations/" + enc(name) + "/reload", function (result) {
        // a 200 can still say the new code did not load: "failed" (the previous process
        // still serves) or "broken" (nothing serves); the page's rows cannot show that
        var failed = result && result.failed && result.failed[name];
        var broken = result && result.broken && result.broken[name];
        if (failed) showError(button, "Reload of " + name + " failed; it still serves its previous code: " + failed);
        else if (broken) showError(button, name + " did not load: " + broken);
        else done = true;
      }).then(function () {
        // a reload that changed nothing visible still says it happened, for 2 s
        button.textContent = done ? "Reloaded ✓" : label;
        if (done) setTimeout(function () { button.textContent = label; }, 2000);
      });
    },
    start: function (button) { toggle(button, "start"); },
    stop: function (button) { toggle(button, "stop"); },
    cancel: function (button) {
      act(button, "/api/runs/" + enc(body.dataset.runId) + "/cancel", function (run) {
        var holder = document.querySelector("[data-run-status]");
        // the live stream may already have shown the end (CANCELED): never step back from it
        var shown = holder && holder.getAttribute("data-run-status");
        var final = { SUCCESS: 1, FAILURE: 1, CANCELED: 1 };
        if (holder && run && run.status && !final[shown]) {
          holder.setAttribute("data-run-status", run.status);
          var b = holder.querySelector(".status");
          if (b) { b.textContent = run.status; b.className = "status status-" + run.status.toLowerCase(); }
        }
      });
    },
    launch: function (button) {
      var form = document.getElementById("launch");
      if (!form) return;
      launcher = button;
      if (form.elements.job.value !== (button.dataset.job || "")) clearLaunch(form);
      form.elements.job.value = button.dataset.job || "";
      form.elements.repository.value = button.dataset.repository || "";
      var title = form.querySelector("[data-launch-job]");
      if (title) title.textContent = button.dataset.job || "";
      clearError(form.querySelector("button[type=submit]"));
      form.hidden = false;
      if (form.scrollIntoView) form.scrollIntoView({ block: "nearest" });
      form.elements.run_config.focus();
    },
    "launch-cancel": function () {
      var form = document.getElementById("launch");
      if (form) form.hidden = true;
      if (launcher) launcher.focus();
    }
  };

  // Another job's form starts empty: a config or tags typed for one job never ride along
  // silently with the next one's launch.
  function clearLaunch(form) {
    ["run_config", "tags"].forEach(function (name) {
      if (form.elements[name]) form.elements[name].value = "";
    });
  }
  // Back to this page from the run it launched (the browser's page cache keeps the form as
  // it was): the form is closed and empty again.
  window.addEventListener("pageshow", function (ev) {
    var form = document.getElementById("launch");
    if (ev.persisted && form) { clearLaunch(form); form.elements.job.value = ""; form.hidden = true; }
  });

  function toggle(button, verb) {
    var row = button.closest("tr");
    var name = body.dataset.locationName + ":" + button.dataset.name;
    act(button, "/api/" + button.dataset.kind + "s/" + enc(name) + "/" + verb, function (result) {
      setInstigator(row, (result && result.status) || (verb === "start" ? "RUNNING" : "STOPPED"), result);
    });
  }

  // Tags: a JSON object of strings, or KEY=VALUE lines (blank lines and # comments skipped).
  function parseTags(text) {
    var t = text.trim();
    if (!t) return {};
    if (t.charAt(0) === "{") {
      var obj;
      try { obj = JSON.parse(t); } catch (e) { throw new Error("tags: not valid JSON: " + e.message); }
      if (!obj || typeof obj !== "object" || Array.isArray(obj)) throw new Error("tags: must be a JSON object");
      Object.keys(obj).forEach(function (k) {
        if (typeof obj[k] !== "string") throw new Error("tags." + k + ": a tag's value must be a string");
      });
      return obj;
    }
    var out = {};
    t.split(/\r?\n/).forEach(function (line, i) {
      var l = line.trim();
      if (!l || l.charAt(0) === "#") return;
      var at = l.indexOf("=");
      if (at <= 0) throw new Error("tags: line " + (i + 1) + ": expected KEY=VALUE");
      out[l.slice(0, at).trim()] = l.slice(at + 1).trim();
    });
    return out;
  }

  function launch(form) {
    var submit = form.querySelector("button[type=submit]");
    clearError(submit);
    var tags;
    try { tags = parseTags(form.elements.tags.value); } catch (e) { showError(submit, e.message); return; }
    busy(submit, true);
    post("/ui/config/check", form.elements.run_config.value, "text/plain; charset=utf-8").then(function (res) {
      if (!res.ok) throw new Error("Run config: " + message(res));
      var payload = {
        location: form.dataset.location,
        job: form.elements.job.value,
        run_config: res.data.config,
        tags: tags
      };
      if (form.elements.repository.value) payload.repository = form.elements.repository.value;
      return post("/api/runs", payload);
    }).then(function (res) {
      if (!res.ok) throw new Error(message(res));
      window.location.assign("/runs/" + enc(res.data.run_id));
    }).catch(function (e) {
      busy(submit, false);
      showError(submit, e.message || String(e));
    });
  }

  document.addEventListener("click", function (ev) {
    var button = ev.target.closest && ev.target.closest("button[data-action]");
    if (!button || button.disabled) return;
    var fn = actions[button.dataset.action];
    if (fn) { ev.preventDefault(); fn(button); }
  });
  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    if (form && form.id === "launch") { ev.preventDefault(); launch(form); }
    if (form && form.id === "run-filters") {
      // leave empty filters out of the address (the form still works without this script)
      Array.prototype.forEach.call(form.elements, function (el) {
        if (el.name && !el.value) el.disabled = true;
      });
      setTimeout(function () {
        Array.prototype.forEach.call(form.elements, function (el) { el.disabled = false; });
      }, 0);
    }
  });
  document.addEventListener("keydown", function (ev) {
    var form = document.getElementById("launch");
    if (ev.key === "Escape" && form && !form.hidden && form.contains(document.activeElement)) actions["launch-cancel"]();
  });
})();
