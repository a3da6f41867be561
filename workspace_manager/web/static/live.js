// wsm live updates: follows the manager's events and updates the page in place.
// Over a WebSocket (/api/events/ws): a browser holds at most 6 HTTP/1.1 connections per
// host, and an EventSource holds one for as long as the page is open, so a 7th tab would
// never load; a WebSocket is not counted against that limit. EventSource (/api/events)
// only where there is no WebSocket. Sets document.body.dataset.live = "open" while the
// stream is open. No framework, no build.
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page;
  if (!page || !(window.WebSocket || window.EventSource)) return;

  var FINAL = { SUCCESS: 1, FAILURE: 1, CANCELED: 1 };
  // a run's status only moves forward: QUEUED < STARTING < STARTED < CANCELING < final
  var RANK = { NOT_STARTED: 0, QUEUED: 0, STARTING: 1, STARTED: 2, CANCELING: 3, SUCCESS: 4, FAILURE: 4, CANCELED: 4 };
  function rank(status) { return RANK[status] == null ? -1 : RANK[status]; }
  // a run document older than what is shown (a re-read answered after a newer event) is stale
  function staleRun(shown, status) {
    return !!shown && (FINAL[shown] || rank(status) < rank(shown));
  }
  var MAX_LINES = 20000; // log lines kept on a run page (the API has them all)
  var source = null; // the open WebSocket or EventSource
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

  function socketUrl() {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
      eventsUrl().replace("/api/events", "/api/events/ws");
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
  // The time of a location document's last transition: a re-read's document older than
  // the one shown (its answer came after a newer event) is not applied. The stream's own
  // events come in order and always apply (a wall clock stepped back cannot hold them).
  var locationAt = {};
  function lastTransitionAt(d) {
    var ts = d.transitions;
    var t = ts && ts.length ? ts[ts.length - 1].at : null;
    return typeof t === "number" ? t : null;
  }
  function onLocation(d, reread) {
    var at = lastTransitionAt(d);
    if (reread && at != null && locationAt[d.name] != null && at < locationAt[d.name]) return;
    if (at != null) locationAt[d.name] = at;
    $all('tr[data-location="' + esc(d.name) + '"]').forEach(function (row) {
      row.dataset.state = d.state;
      badge($(".state", row), "state", d.state);
      var root = page === "location" ? document.getElementById("main") : row;
      setField(root, "python", d.python || "");
      setField(root, "environment", d.environment || "");
      setField(root, "restarts", String(d.restarts == null ? "" : d.restarts));
      // an event's uptime is that of its moment: kept as the time it started, so the
      // shown uptime goes on counting (it said "1 ms" long after a ready event)
      if (typeof d.uptime_seconds === "number") row.dataset.upSince = String(Date.now() / 1000 - d.uptime_seconds);
      else delete row.dataset.upSince;
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
        if (cell.tagName === "DD") {  // a location page's facts: the pair shows only with an error
          cell.hidden = !(d.error || d.traceback);
          var label = cell.previousElementSibling;
          if (label && label.tagName === "DT") label.hidden = cell.hidden;
        }
      }
    });
    if (page === "overview") updateManagerStatus();
  }
  // Every 2 s (not while hidden), the uptime of each row a live event set, from now.
  setInterval(function () {
    if (document.hidden) return;
    var now = Date.now() / 1000;
    $all("tr[data-location][data-up-since]").forEach(function (row) {
      var root = page === "location" ? document.getElementById("main") : row;
      setField(root, "uptime", duration(Math.max(now - parseFloat(row.dataset.upSince), 0)));
    });
  }, 2000);
  // The overview's "Manager: WORD" from the rows' states, as the server renders it
  // (http/view.py ManagerView.overall_status).
  var IN_PROGRESS = { building: 1, starting: 1 }, BROKEN = { error: 1, failed: 1, backoff: 1 };
  function updateManagerStatus() {
    var holder = $("[data-manager-status]");
    if (!holder) return;
    var allReady = true, progress = false, broken = false;
    $all("tr[data-location]").forEach(function (row) {
      var st = row.dataset.state;
      if (st !== "ready") allReady = false;
      if (IN_PROGRESS[st]) progress = true;
      if (BROKEN[st]) broken = true;
    });
    var word = allReady ? "ok" : (progress && !broken ? "starting" : "degraded");
    holder.setAttribute("data-manager-status", word);
    badge($(".state", holder), "state", word);
  }
  // What the events change, read again when the stream opens: what changed between the
  // page's render (or the lost stream) and this stream's start came in no event.
  function reread() {
    if (page === "run") {
      getJson("/api/runs/" + encodeURIComponent(body.dataset.runId)).then(mergeRun).catch(function () {});
    } else if (page === "overview" || page === "location") {
      getJson("/api/locations").then(function (doc) {
        (doc.items || []).forEach(function (d) {
          try { onLocation(d, true); } catch (e) { if (window.console) console.error("wsm live:", e); }
        });
      }).catch(function () {});
    }
  }
  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); });
  }

  // -- runs --------------------------------------------------------------------------------
  function onRun(d) {
    var rows = $all('tr[data-run="' + esc(d.run_id) + '"]');
    rows.forEach(function (row) {
      if (staleRun(row.dataset.status, d.status)) return;
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
    if (holder && staleRun(holder.getAttribute("data-run-status"), d.status)) return;
    if (holder) {
      holder.setAttribute("data-run-status", d.status);
      badge($(".status", holder), "status", d.status);
    }
    setField(document, "duration", duration(d.duration_seconds) || "—");
    if (d.ended_at) setField(document, "ended_at", utc(d.ended_at));
    if (d.pid) setField(document, "pid", String(d.pid));
    var history = $("#history ol");
    var shown = history ? $all("li", history).map(function (li) { return li.dataset.status; }) : [];
    if (history && shown.indexOf(d.status) < 0) history.appendChild(historyItem(d.status, d.updated_at, ""));
    if (FINAL[d.status]) {
      body.dataset.final = "true";
      $all('button[data-action="cancel"]').forEach(function (b) { b.remove(); });
    }
  }
  function historyItem(status, time, message) {
    var li = document.createElement("li");
    li.dataset.status = status;
    li.appendChild(document.createTextNode(utc(time) + " "));
    var b = document.createElement("span");
    badge(b, "status", status);
    li.appendChild(b);
    if (message) {
      var m = document.createElement("span");
      m.className = "message";
      m.textContent = message;
      li.appendChild(document.createTextNode(" "));
      li.appendChild(m);
    }
    return li;
  }
  // The run as GET /api/runs/ID gives it: its stored history (in order) comes first, then
  // the entries the stream added that it does not have yet (newer); its status only forward.
  function mergeRun(run) {
    var history = $("#history ol");
    if (history && run.events) {
      var stored = run.events.map(function (e) { return e.status; });
      var extra = $all("li", history).filter(function (li) { return stored.indexOf(li.dataset.status) < 0; });
      var frag = document.createDocumentFragment();
      run.events.forEach(function (e) { frag.appendChild(historyItem(e.status, e.time, e.message)); });
      extra.forEach(function (li) { frag.appendChild(li); });
      history.textContent = "";
      history.appendChild(frag);
    }
    updateRunPage(run);
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
  // Lines are appended in batches, once per animation frame: reading the list's scroll
  // position after each line forced a layout per line (a 5,000-line log froze the tab for
  // 20-80 s). rAF does not run in a hidden tab, so a timer flushes there.
  var pendingLines = [];
  var queuedSeq = 0; // the last seq queued (not yet in body.dataset.after)
  var flushFrame = null, flushTimer = null;
  function onLog(d) {
    if (page !== "run" || d.run_id !== body.dataset.runId) return;
    var after = Math.max(parseInt(body.dataset.after || "0", 10), queuedSeq);
    if (d.seq <= after) return; // already shown (a reconnect may send it again)
    pendingLines.push(d);
    queuedSeq = d.seq;
    if (flushFrame == null && window.requestAnimationFrame) flushFrame = requestAnimationFrame(flushLines);
    if (flushTimer == null) flushTimer = setTimeout(flushLines, 250);
  }
  function dropPendingLines() {
    pendingLines = [];
    queuedSeq = 0;
    if (flushFrame != null && window.cancelAnimationFrame) cancelAnimationFrame(flushFrame);
    clearTimeout(flushTimer);
    flushFrame = flushTimer = null;
  }
  function logItem(d) {
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
    return li;
  }
  function flushLines() {
    var batch = pendingLines;
    dropPendingLines();
    var list = document.getElementById("log");
    if (!batch.length || !list) return;
    var lastSeq = batch[batch.length - 1].seq;
    // a run printing without end must not grow the page without end: keep the latest lines
    if (batch.length > MAX_LINES) batch = batch.slice(batch.length - MAX_LINES);
    var stick = list.scrollTop + list.clientHeight >= list.scrollHeight - 4; // one layout a batch
    var frag = document.createDocumentFragment();
    batch.forEach(function (d) { frag.appendChild(logItem(d)); });
    list.appendChild(frag);
    var extra = list.children.length - MAX_LINES;
    while (extra-- > 0) list.removeChild(list.firstElementChild);
    body.dataset.after = String(lastSeq);
    var empty = $("[data-log-empty]");
    if (empty) empty.hidden = true;
    if (stick) list.scrollTop = list.scrollHeight;
  }

  // -- schedules, sensors, ticks -----------------------------------------------------------
  function instigatorRow(kind, name) {
    if (kind !== "schedule" && kind !== "sensor") return null;
    return $("tr[data-" + kind + '="' + esc(name) + '"]');
  }
  // A schedule's "Next tick" cell from a document carrying `next_tick` (unix time or null):
  // an instigator change, a tick, or the API's answer to Start/Stop (actions.js).
  function setNextTick(row, doc) {
    var cell = row && row.querySelector('[data-field="next_tick"]');
    if (!cell || !doc || !("next_tick" in doc)) return;
    cell.textContent = "";
    var el;
    if (doc.next_tick) {
      el = document.createElement("time");
      el.setAttribute("datetime", new Date(doc.next_tick * 1000).toISOString().replace(/\.\d+Z$/, "Z"));
      el.textContent = utc(doc.next_tick);
    } else {
      el = document.createElement("span");
      el.className = "muted";
      el.textContent = "—";
    }
    cell.appendChild(el);
  }
  function onInstigator(d) {
    if (page !== "location" || d.location !== body.dataset.locationName) return;
    var row = instigatorRow(d.kind, d.name);
    if (!row) return;
    setNextTick(row, d);
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
    setNextTick(row, d);
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
      if (fresh && main) { dropPendingLines(); main.innerHTML = fresh.innerHTML; }
      ["after", "final"].forEach(function (k) {
        if (doc.body.dataset[k] !== undefined) body.dataset[k] = doc.body.dataset[k];
      });
      connect();
    }).catch(function () { connect(); });
  }

  // -- the stream ----------------------------------------------------------------------------
  var HANDLERS = { location: onLocation, run: onRun, log: onLog, instigator: onInstigator, tick: onTick };
  function dispatch(kind, d) {
    var fn = HANDLERS[kind];
    if (!fn) return;
    try { fn(d); } catch (e) { if (window.console) console.error("wsm live:", e); }
  }
  function opened() { body.dataset.live = "open"; flag("Live"); retryDelay = 1000; reread(); }
  function lost() { body.dataset.live = "closed"; flag("Reconnecting…"); }
  function retry(fn) {
    clearTimeout(retryTimer);
    retryTimer = setTimeout(fn, retryDelay);
    retryDelay = Math.min(retryDelay * 2, 30000);
  }
  function drop() {
    var s = source;
    source = null; // first: a socket's close event then knows it was meant
    if (s) s.close();
  }
  function connect() {
    drop();
    clearTimeout(retryTimer);
    if (window.WebSocket) connectSocket(); else connectSource();
  }
  function connectSocket() {
    var sock = new WebSocket(socketUrl());
    source = sock;
    sock.onopen = function () { if (source === sock) opened(); };
    sock.onmessage = function (ev) {
      if (source !== sock) return;
      var m;
      try { m = JSON.parse(ev.data); } catch (e) { return; }
      if (m.event === "resync") { drop(); resync(); return; }
      dispatch(m.event, m.data);
    };
    sock.onclose = function () {
      if (source !== sock) return; // closed on purpose (resync, pagehide)
      source = null;
      lost();
      // the events of the gap are gone: re-read the page, then reconnect from its last seq
      retry(resync);
    };
  }
  function connectSource() {
    var es = new EventSource(eventsUrl());
    source = es;
    es.onopen = opened;
    es.onerror = function () {
      lost();
      if (es.readyState === EventSource.CLOSED && source === es) retry(connect);
    };
    Object.keys(HANDLERS).forEach(function (kind) {
      es.addEventListener(kind, function (ev) {
        var d;
        try { d = JSON.parse(ev.data); } catch (e) { return; }
        dispatch(kind, d);
      });
    });
    es.addEventListener("resync", function () { drop(); resync(); });
  }
  window.wsmLive = {
    setNextTick: setNextTick,
    reconnect: connect,
    resync: resync,
    transport: function () { return source ? (window.WebSocket && source instanceof WebSocket ? "websocket" : "eventsource") : null; }
  };
  window.addEventListener("pagehide", function () { drop(); });
  window.addEventListener("pageshow", function (ev) { if (ev.persisted) resync(); });
  connect();
})();
