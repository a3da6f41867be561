// wsm live updates: follows /api/events (server-sent events) and updates the page in place.
// Sets document.body.dataset.live = "open" while the stream is open. No framework, no build.
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page;
  if (!page || !window.EventSource) return;

  var FINAL = { SUCCESS: 1, FAILURE: 1, CANCELED: 1 };
  var MAX_LINES = 20000; // log lines kept on a run page (the API has them all)
  var source = null;
  var retryTimer = null;
  var retryDelay = 1000; // doubled after each failed reconnect, up to 30 s
  var countsTimer = null;

  function esc(text) { return window.CSS && CSS.escape ? CSS.escape(text) : String(text).replace(/["\\]/g, "\\$&"); }
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function flag(text) { var f = $("[data-live-flag]"); if (f) f.textContent = text; }

  function pad(n) { return n < 10 ? "0" + n : "" + n; }
  function utc(ts) {
    if (typeof ts !== "number") return "";
    var d = new Date(ts * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) + " " +
      pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds()) + " UTC";
  }
  function duration(s) {
    if (typeof s !== "number" || !isFinite(s)) return "";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 60) return s.toFixed(1) + " s";
    var m = Math.floor(s / 60), sec = Math.floor(s % 60);
    if (m < 60) return m + " min " + sec + " s";
    var h = Math.floor(m / 60); m = m % 60;
    if (h < 48) return h + " h " + m + " min";
    return Math.floor(h / 24) + " d " + (h % 24) + " h";
  }
  function size(n) {
    if (typeof n !== "number" || !isFinite(n)) return "";
    var units = ["B", "KiB", "MiB", "GiB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
  }
  function badge(el, kind, word) {
    if (!el) return;
    el.textContent = word;
    el.className = kind + " " + kind + "-" + String(word).toLowerCase();
  }
  function setField(root, name, text) {
    $all('[data-field="' + name + '"]', root).forEach(function (el) { el.textContent = text; });
  }

  function eventsUrl() {
    if (page === "run") {
      return "/api/events?run=" + encodeURIComponent(body.dataset.runId) +
        "&after=" + encodeURIComponent(body.dataset.after || "0");
    }
    if (page === "overview") return "/api/events?kinds=location,run";
    if (page === "runs") return "/api/events?kinds=run";
    return "/api/events";
  }

  // -- locations ---------------------------------------------------------------------------
  function onLocation(d) {
    $all('tr[data-location="' + esc(d.name) + '"]').forEach(function (row) {
      row.dataset.state = d.state;
      badge($(".state", row), "state", d.state);
      var root = page === "location" ? document.getElementById("main") : row;
      setField(root, "python", d.python || "");
      setField(root, "environment", d.environment || "");
      setField(root, "restarts", String(d.restarts == null ? "" : d.restarts));
      setField(root, "uptime", duration(d.uptime_seconds));
      setField(root, "rss", size(d.rss_bytes));
      if (page === "location") setField(root, "pid", d.pid == null ? "—" : String(d.pid));
      var cell = $('[data-field="error"]', root);
      if (cell) {
        cell.textContent = "";
        if (d.error) {
          var span = document.createElement("span");
          span.className = "error-text";
          span.textContent = d.error;
          cell.appendChild(span);
        }
        if (d.traceback) {
          var det = document.createElement("details");
          det.className = "traceback";
          var sum = document.createElement("summary");
          sum.textContent = "Traceback";
          var pre = document.createElement("pre");
          pre.textContent = d.traceback;
          det.appendChild(sum); det.appendChild(pre);
          cell.appendChild(det);
        }
      }
    });
  }

  // -- runs --------------------------------------------------------------------------------
  function onRun(d) {
    var rows = $all('tr[data-run="' + esc(d.run_id) + '"]');
    rows.forEach(function (row) {
      row.dataset.status = d.status;
      badge($(".status", row), "status", d.status);
      setField(row, "duration", duration(d.duration_seconds));
      setField(row, "error", d.error || "");
    });
    if (page === "run" && d.run_id === body.dataset.runId) updateRunPage(d);
    if (page === "runs" && !rows.length && matchesFilters(d)) {
      var note = $("[data-new-runs]");
      if (note) note.hidden = false;
    }
    if (page === "overview" || page === "location") refreshCountsSoon();
  }
  function matchesFilters(d) {
    if (/[?&]before=/.test(location.search)) return false;
    var st = body.dataset.filterStatus, loc = body.dataset.filterLocation, job = body.dataset.filterJob;
    if (st && st.split(",").indexOf(d.status) < 0) return false;
    if (loc && loc !== d.location) return false;
    if (job && job !== d.job) return false;
    return true;
  }
  function updateRunPage(d) {
    var holder = $("[data-run-status]");
    if (holder) {
      holder.setAttribute("data-run-status", d.status);
      badge($(".status", holder), "status", d.status);
    }
    setField(document, "duration", duration(d.duration_seconds) || "—");
    if (d.ended_at) setField(document, "ended_at", utc(d.ended_at));
    if (d.pid) setField(document, "pid", String(d.pid));
    var history = $("#history ol");
    var last = history && history.lastElementChild;
    if (history && (!last || last.dataset.status !== d.status)) {
      var li = document.createElement("li");
      li.dataset.status = d.status;
      li.appendChild(document.createTextNode(utc(d.updated_at) + " "));
      var b = document.createElement("span");
      badge(b, "status", d.status);
      li.appendChild(b);
      history.appendChild(li);
    }
    if (FINAL[d.status]) {
      body.dataset.final = "true";
      $all('button[data-action="cancel"]').forEach(function (b) { b.remove(); });
    }
  }
  // The counts of runs in progress and failed per location: re-read (one small JSON
  // answer) at most every 2 s after run events, and not while the page is hidden.
  var countsDue = false;
  function refreshCountsSoon() {
    countsDue = true;
    if (countsTimer || document.hidden) return;
    countsTimer = setTimeout(function () {
      countsTimer = null;
      countsDue = false;
      fetch("/ui/counts", { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (counts) {
          $all("[data-count]").forEach(function (el) {
            var row = el.closest("tr[data-location]");
            var name = row ? row.dataset.location : body.dataset.locationName;
            var c = counts[name] || {};
            el.textContent = String(c[el.dataset.count] || 0);
          });
        }).catch(function () {});
    }, 2000);
  }
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && countsDue) refreshCountsSoon();
  });

  // -- logs --------------------------------------------------------------------------------
  function onLog(d) {
    if (page !== "run" || d.run_id !== body.dataset.runId) return;
    var after = parseInt(body.dataset.after || "0", 10);
    if (d.seq <= after) return; // already shown (a reconnect may send it again)
    var list = document.getElementById("log");
    if (!list) return;
    var stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    var li = document.createElement("li");
    li.dataset.seq = String(d.seq);
    li.dataset.stream = d.stream || "";
    var t = document.createElement("time");
    t.textContent = utc(d.time).slice(11, 19);
    var s = document.createElement("span");
    s.className = "stream";
    s.textContent = d.level || d.stream || "";
    var x = document.createElement("span");
    x.className = "text";
    x.textContent = d.text;
    li.appendChild(t); li.appendChild(document.createTextNode(" "));
    li.appendChild(s); li.appendChild(document.createTextNode(" "));
    li.appendChild(x);
    list.appendChild(li);
    // a run printing without end must not grow the page without end: keep the latest lines
    while (list.children.length > MAX_LINES) list.removeChild(list.firstElementChild);
    body.dataset.after = String(d.seq);
    var empty = $("[data-log-empty]");
    if (empty) empty.hidden = true;
    if (stick) list.scrollTop = list.scrollHeight;
  }

  // -- schedules, sensors, ticks -----------------------------------------------------------
  function instigatorRow(kind, name) {
    if (kind !== "schedule" && kind !== "sensor") return null;
    return $("tr[data-" + kind + '="' + esc(name) + '"]');
  }
  function onInstigator(d) {
    if (page !== "location" || d.location !== body.dataset.locationName) return;
    var row = instigatorRow(d.kind, d.name);
    if (!row) return;
    row.dataset.status = d.status;
    badge($(".status", row), "status", d.status);
    var start = $('button[data-action="start"]', row), stop = $('button[data-action="stop"]', row);
    if (start) start.hidden = d.status === "RUNNING";
    if (stop) stop.hidden = d.status !== "RUNNING";
  }
  function onTick(d) {
    if (page !== "location" || d.location !== body.dataset.locationName) return;
    var row = instigatorRow(d.kind, d.name);
    if (!row) return;
    var cell = $(".ticks-cell", row);
    if (!cell) return;
    var list = $(".ticks", cell);
    if (!list) {
      list = document.createElement("ul");
      list.className = "ticks";
      list.dataset.field = "ticks";
      cell.textContent = "";
      cell.appendChild(list);
    }
    var li = d.tick_id ? $('li[data-tick-id="' + d.tick_id + '"]', list) : null;
    if (!li) {
      li = document.createElement("li");
      if (d.tick_id) li.dataset.tickId = String(d.tick_id);
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 5) list.removeChild(list.lastChild);
    }
    li.textContent = "";
    var b = document.createElement("span");
    badge(b, "tick", d.status);
    li.appendChild(b);
    var words = " " + utc(d.tick_time);
    if (d.skip_reason) words += ": " + d.skip_reason;
    if (d.error) words += ": " + d.error;
    if (d.run_ids && d.run_ids.length) words += " → " + d.run_ids.map(function (r) { return r.slice(0, 8); }).join(", ");
    li.appendChild(document.createTextNode(words));
  }

  // -- resync: the stream fell behind; read the page again ---------------------------------
  function fetchPage() {
    return fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) { return new DOMParser().parseFromString(html, "text/html"); });
  }
  function resync() {
    fetchPage().then(function (doc) {
      var fresh = doc.getElementById("main");
      var main = document.getElementById("main");
      if (fresh && main) main.innerHTML = fresh.innerHTML;
      ["after", "final"].forEach(function (k) {
        if (doc.body.dataset[k] !== undefined) body.dataset[k] = doc.body.dataset[k];
      });
      connect();
    }).catch(function () { connect(); });
  }

  // -- the stream ----------------------------------------------------------------------------
  function handler(fn) {
    return function (ev) {
      var d;
      try { d = JSON.parse(ev.data); } catch (e) { return; }
      try { fn(d); } catch (e) { if (window.console) console.error("wsm live:", e); }
    };
  }
  function connect() {
    if (source) source.close();
    clearTimeout(retryTimer);
    source = new EventSource(eventsUrl());
    source.onopen = function () { body.dataset.live = "open"; flag("Live"); retryDelay = 1000; };
    source.onerror = function () {
      body.dataset.live = "closed";
      flag("Reconnecting…");
      if (source.readyState === EventSource.CLOSED) {
        retryTimer = setTimeout(connect, retryDelay);
        retryDelay = Math.min(retryDelay * 2, 30000);
      }
    };
    source.addEventListener("location", handler(onLocation));
    source.addEventListener("run", handler(onRun));
    source.addEventListener("log", handler(onLog));
    source.addEventListener("instigator", handler(onInstigator));
    source.addEventListener("tick", handler(onTick));
    source.addEventListener("resync", function () { source.close(); resync(); });
  }
  window.wsmLive = { reconnect: connect, resync: resync };
  window.addEventListener("pagehide", function () { if (source) source.close(); });
  connect();
})();
