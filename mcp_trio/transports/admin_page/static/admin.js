// mcp-trio operator page. Hand-written, no build step, no library; served as /admin/assets/admin.js.
//
// The page holds no data of its own: this script asks GET /admin/overview every few seconds and
// draws it. Rates and recent latencies come from the difference of two answers (the server's
// counters are cumulative and stamped with its monotonic clock), so the server keeps no history.
// Text from the server is only ever set with textContent, never parsed as HTML.
//
// Authentication: when the server answers 401/403, the page asks for a token with the admin
// scope, keeps it in this tab's sessionStorage and sends it as "Authorization: Bearer" on each
// fetch. Actions (POST) carry the X-Mcp-Trio-Admin header, which a cross-site form cannot send.
"use strict";

(function () {
  const TOKEN_KEY = "mcp-trio-admin-token";
  const ACTION_HEADER = "X-Mcp-Trio-Admin";
  const HISTORY = 90;            // samples kept for the charts
  const MAX_SERIES = 6;          // tools drawn, the busiest in the window
  const COLORS = ["#2f6fde", "#e8590c", "#2b8a3e", "#ae3ec9", "#c92a2a", "#1098ad"];
  const refreshMs = clamp(Number(new URLSearchParams(location.search).get("refresh")) || 2000, 250, 60000);

  const $ = (id) => document.getElementById(id);
  let history = [];              // [{t, tools: {name: {calls, finished, sum}}, requests}]
  let paused = false;
  let timer = null;
  let inFlight = false;
  let refreshes = 0;
  let memoryToken = null;        // where the token lives when sessionStorage is disabled

  function clamp(x, lo, hi) { return Math.min(hi, Math.max(lo, x)); }

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
  }

  function setToken(value) {
    try {
      if (value) sessionStorage.setItem(TOKEN_KEY, value); else sessionStorage.removeItem(TOKEN_KEY);
    } catch (e) { /* storage disabled: the token lives only as long as this page */ }
    memoryToken = value || null;
  }

  // -- talking to the server ---------------------------------------------------------------
  async function api(method, path) {
    const headers = { "Accept": "application/json" };
    const credential = token() || memoryToken;
    if (credential) headers["Authorization"] = "Bearer " + credential;
    if (method !== "GET") headers[ACTION_HEADER] = "1";
    const response = await fetch(path, { method, headers, credentials: "omit", cache: "no-store", redirect: "error" });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { status: response.status, body };
  }

  async function refresh() {
    if (inFlight) return;
    inFlight = true;
    try {
      const answer = await api("GET", "/admin/overview");
      if (answer.status === 200) {
        signedIn();
        draw(answer.body);
        refreshes += 1;
        document.body.dataset.refreshes = String(refreshes);
      } else if (answer.status === 401 || answer.status === 403) {
        askForToken(answer);
      } else {
        problem("The server answered " + answer.status + ": " + errorOf(answer));
      }
    } catch (e) {
      problem("Cannot reach the server (" + e.message + "); retrying.");
    } finally {
      inFlight = false;
      schedule();
    }
  }

  function schedule() {
    clearTimeout(timer);
    if (!paused && !document.hidden && document.body.dataset.state !== "signin") timer = setTimeout(refresh, refreshMs);
  }

  function errorOf(answer) {
    return (answer.body && answer.body.error) || "no details";
  }

  async function act(method, path, describe) {
    let answer;
    try {
      answer = await api(method, path);
    } catch (e) {
      say("Cannot reach the server: " + e.message, true);
      return;
    }
    if (answer.status === 200) say(describe(answer.body), false);
    else if (answer.status === 401) askForToken(answer);
    else say(answer.status + " " + errorOf(answer), true);
    refresh();
  }

  // -- signing in --------------------------------------------------------------------------
  function askForToken(answer) {
    const had = token() || memoryToken;
    document.body.dataset.state = "signin";
    status("sign in", "");
    $("dashboard").hidden = true;
    $("sign-in").hidden = false;
    $("sign-out").hidden = !had;
    let why = "This server authenticates its callers: give a token (JWT, opaque token or API key) with the admin scope.";
    if (answer.status === 403 && had) why = "That token was accepted, but it lacks the admin scope: give one that has it.";
    else if (answer.status === 403) why = "Refused: " + errorOf(answer);
    else if (had) why = "That token was refused (unknown, expired or revoked): give another.";
    $("sign-in-why").textContent = why;
    if (had) setToken(null);
    $("token").focus();
  }

  function signedIn() {
    if (document.body.dataset.state !== "live") {
      $("sign-in").hidden = true;
      $("dashboard").hidden = false;
      $("sign-out").hidden = !(token() || memoryToken);
      $("message").hidden = true;
    }
    document.body.dataset.state = "live";
    status(paused ? "paused" : "live", paused ? "paused" : "live");
  }

  function problem(text) {
    status("error", "error");
    say(text, true);
  }

  function status(text, kind) {
    const pill = $("status");
    pill.textContent = text;
    pill.className = "pill " + kind;
  }

  function say(text, isError) {
    const box = $("message");
    box.textContent = text;
    box.className = isError ? "message error" : "message";
    box.hidden = false;
  }

  // -- drawing -----------------------------------------------------------------------------
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node[key] = value;
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function fill(tbody, rows, empty, columns) {
    tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colSpan: columns, class: "muted" }, empty))]));
  }

  function fmt(n, digits) {
    if (n === null || n === undefined || Number.isNaN(n)) return "–";
    return Number(n).toLocaleString(undefined, { maximumFractionDigits: digits === undefined ? 0 : digits });
  }

  function ago(unix) {
    if (!unix) return "never";
    const seconds = Math.max(0, Date.now() / 1000 - unix);
    if (seconds < 60) return Math.round(seconds) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    return new Date(unix * 1000).toLocaleString();
  }

  function duration(seconds) {
    const s = Math.floor(seconds);
    const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
  }

  function remember(data) {
    const tools = {};
    for (const tool of data.tools) {
      const s = tool.stats;
      tools[tool.name] = { calls: s.calls, finished: s.calls - s.running, sum: s.latency_seconds_sum };
    }
    history.push({ t: data.time, tools, requests: data.requests.total });
    if (history.length > HISTORY) history = history.slice(history.length - HISTORY);
  }

  // Per-interval rates and mean latencies, by tool, over the kept history.
  function series() {
    const out = {};
    for (let i = 1; i < history.length; i++) {
      const a = history[i - 1], b = history[i];
      const dt = b.t - a.t;
      if (!(dt > 0)) continue;
      for (const [name, now] of Object.entries(b.tools)) {
        const before = a.tools[name] || { calls: 0, finished: 0, sum: 0 };
        const s = out[name] || (out[name] = { rate: [], latency: [], total: 0 });
        const calls = Math.max(0, now.calls - before.calls);
        const finished = now.finished - before.finished;
        s.rate.push({ t: b.t, v: calls / dt });
        s.latency.push({ t: b.t, v: finished > 0 ? ((now.sum - before.sum) / finished) * 1000 : null });
        s.total += calls;
      }
    }
    return out;
  }

  function lastRequestRate() {
    if (history.length < 2) return null;
    const a = history[history.length - 2], b = history[history.length - 1];
    return b.t > a.t ? (b.requests - a.requests) / (b.t - a.t) : null;
  }

  function draw(data) {
    remember(data);
    const all = series();
    $("server-name").textContent = data.server.name + " " + data.server.version;
    $("uptime").textContent = "up " + duration(data.server.uptime_seconds) + (data.server.shutting_down ? " · shutting down" : "");
    drawTiles(data);
    drawTools(data, all);
    drawTags(data);
    drawSessions(data.sessions);
    drawMethods(data.requests);
    drawPlugins(data.plugins);
    drawSettings(data.settings);
    drawCharts(all);
  }

  function drawTiles(data) {
    $("t-sessions").textContent = fmt(data.sessions.total);
    $("t-in-flight").textContent = fmt(data.sessions.in_flight);
    $("t-rps").textContent = fmt(lastRequestRate(), 1);
    $("t-requests").textContent = fmt(data.requests.total);
    $("t-tool-errors").textContent = fmt(data.requests.tool_errors);
    $("t-errors").textContent = fmt(data.requests.errors);
    $("t-rate-limited").textContent = fmt(data.requests.rate_limited);
    $("t-overloaded").textContent = fmt(data.requests.overloaded);
    $("t-refused").textContent = fmt(data.requests.connections_refused);
  }

  function drawTools(data, all) {
    const rows = data.tools.map((tool) => {
      const s = tool.stats;
      const recent = all[tool.name];
      const rate = recent && recent.rate.length ? recent.rate[recent.rate.length - 1].v : null;
      const state = tool.enabled
        ? el("span", { class: "state-on" }, "on")
        : el("span", { class: "state-off" }, "off: " + tool.disabled_by);
      const button = el("button", {
        type: "button", class: tool.enabled ? "off" : "on",
        "data-action": tool.enabled ? "disable" : "enable", "data-tool": tool.name,
        title: (tool.enabled ? "Switch off " : "Switch on ") + tool.name,
      }, tool.enabled ? "Disable" : "Enable");
      return el("tr", { class: tool.enabled ? "" : "off", "data-tool": tool.name },
        el("td", {}, el("code", {}, tool.name), tool.deprecated ? el("span", { class: "muted small" }, " deprecated") : null),
        el("td", { class: "state" }, state),
        el("td", {}, ...tool.tags.map((t) => el("span", { class: "tag" }, t))),
        el("td", {}, tool.plugin || "–"),
        el("td", { class: "num calls" }, fmt(s.calls)),
        el("td", { class: "num errors" + (s.errors ? " error-text" : "") }, fmt(s.errors)),
        el("td", { class: "num" }, fmt(s.timeouts)),
        el("td", { class: "num rate" }, fmt(rate, 1)),
        el("td", { class: "num" }, s.latency_seconds_mean === null ? "–" : fmt(s.latency_seconds_mean * 1000, 2)),
        el("td", { class: "muted" }, ago(s.last_used)),
        el("td", {}, button));
    });
    fill($("tools").tBodies[0], rows, "No tools registered.", 11);
  }

  function drawTags(data) {
    const items = data.tags.map((tag) => el("li", { "data-tag": tag.tag },
      el("span", { class: "tag" }, tag.tag),
      el("span", { class: "muted small" }, tag.tools.length ? tag.tools.join(", ") : "no tools yet"),
      el("button", {
        type: "button", class: tag.enabled ? "off" : "on",
        "data-action": tag.enabled ? "disable" : "enable", "data-tag": tag.tag,
      }, tag.enabled ? "Disable tag" : "Enable tag")));
    $("tags").replaceChildren(...(items.length ? items : [el("li", { class: "muted" }, "No tags.")]));
  }

  function drawSessions(sessions) {
    fill($("session-counts").tBodies[0], sessions.by_transport.map((row) => el("tr", {},
      el("td", {}, row.transport), el("td", {}, row.era), el("td", {}, row.version || "–"),
      el("td", { class: "num" }, fmt(row.count)))), "No live sessions.", 4);
    $("listen-streams").textContent = "Open subscriptions/listen streams (2026-07-28): " + sessions.listen_streams.total +
      " (" + sessions.listen_streams.stateless_http + " over stateless HTTP, which has no sessions).";
    $("sessions-summary").textContent = "Sessions one by one (" + sessions.listed.length +
      (sessions.total > sessions.listed.length ? " of " + sessions.total + ", the first " + sessions.listed_max : "") + ")";
    fill($("sessions").tBodies[0], sessions.listed.map((s) => el("tr", {},
      el("td", {}, el("code", {}, s.id)), el("td", {}, s.transport), el("td", {}, s.version || s.era),
      el("td", {}, s.client || "–"), el("td", {}, s.principal || "–"), el("td", {}, s.peer || "–"),
      el("td", { class: "num" }, fmt(s.in_flight)))), "No live sessions.", 7);
  }

  function drawMethods(requests) {
    fill($("methods").tBodies[0], requests.by_method.map((m) => el("tr", {},
      el("td", {}, el("code", {}, m.method)), el("td", { class: "num" }, fmt(m.ok)),
      el("td", { class: "num" + (m.error ? " error-text" : "") }, fmt(m.error)),
      el("td", { class: "num" }, fmt(m.cancelled)), el("td", { class: "num" }, fmt(m.shutdown)))), "No requests yet.", 5);
  }

  function drawPlugins(plugins) {
    const dirs = plugins.directories.length ? "Directories: " + plugins.directories.join(", ") : "No plugin directories.";
    $("plugin-dirs").textContent = dirs + (plugins.entry_points ? " Installed packages too." : "") +
      (plugins.watching ? " Watched: edits reload by themselves." : "");
    const open = new Set(Array.from(document.querySelectorAll("#plugins details[open]")).map((d) => d.dataset.plugin));
    fill($("plugins").tBodies[0], plugins.plugins.map((p) => {
      let error = el("span", { class: "muted" }, "–");
      if (p.error) {
        error = el("details", { "data-plugin": p.name, open: open.has(p.name) },
          el("summary", { class: "error-text" }, p.error), p.traceback ? el("pre", {}, p.traceback) : null);
      }
      return el("tr", { "data-plugin": p.name },
        el("td", {}, el("code", {}, p.name)),
        el("td", { class: p.loaded ? "state-on" : "state-off" }, p.loaded ? "loaded" : "failed"),
        el("td", {}, p.version || "–"), el("td", {}, p.tools.join(", ") || "–"),
        el("td", { class: "num" }, fmt(p.loads)), el("td", { class: "num" }, fmt(p.failures)), el("td", { class: "last-error" }, error));
    }), "No plugins.", 7);
    $("reload").disabled = !plugins.directories.length && !plugins.entry_points;
  }

  function drawSettings(settings) {
    const groups = [["Transport", settings.transport], ["Limits", settings.limits],
      ["Rate limits", settings.rate_limits], ["Authentication", settings.auth]];
    $("settings").replaceChildren(...groups.map(([title, values]) => {
      const list = el("dl", {});
      for (const [key, value] of Object.entries(values || {})) {
        list.append(el("dt", {}, key.replace(/_/g, " ")), el("dd", { "data-setting": key }, withUnit(key, value)));
      }
      return el("div", {}, el("h3", {}, title), list);
    }));
  }

  function withUnit(key, value) {
    if (typeof value !== "number") return show(value);
    if (/(timeout|period|deadline|interval|seconds)$/.test(key)) return value + " s";
    if (/size$/.test(key) && value >= 1024) {
      const units = ["B", "KiB", "MiB", "GiB"];
      let n = value, i = 0;
      while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
      return (Math.round(n * 10) / 10) + " " + units[i];
    }
    return String(value);
  }

  function show(value) {
    if (value === null || value === undefined) return "none";
    if (Array.isArray(value)) return value.length ? value.join(", ") : "none";
    if (typeof value === "object") {
      const parts = Object.entries(value).map(([k, v]) => k.replace(/_/g, " ") + ": " + show(v));
      return parts.length ? parts.join("; ") : "none";
    }
    return String(value);
  }

  // -- charts (canvas, by hand) ------------------------------------------------------------
  function drawCharts(all) {
    const busiest = Object.entries(all).sort((a, b) => b[1].total - a[1].total || (a[0] < b[0] ? -1 : 1))
      .slice(0, MAX_SERIES).filter(([, s]) => s.total > 0);
    const t1 = history.length ? history[history.length - 1].t : 0;
    const t0 = Math.max(history.length ? history[0].t : 0, t1 - (HISTORY - 1) * refreshMs / 1000);
    plot($("chart-rate"), busiest.map(([name, s], i) => ({ name, color: COLORS[i], points: s.rate })), t0, t1, "/s");
    plot($("chart-latency"), busiest.map(([name, s], i) => ({ name, color: COLORS[i], points: s.latency })), t0, t1, " ms");
    $("legend").replaceChildren(...busiest.map(([name], i) => el("li", {},
      el("span", { class: "swatch" }), name)));
    // The swatch colour is set through the CSSOM (allowed by the CSP, unlike a style attribute).
    Array.from($("legend").querySelectorAll(".swatch")).forEach((s, i) => { s.style.background = COLORS[i]; });
  }

  function niceMax(x) {
    if (!(x > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(x)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= x) return m * p;
    return 10 * p;
  }

  function plot(canvas, lines, t0, t1, unit) {
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth || 400, height = canvas.clientHeight || 180;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const g = canvas.getContext("2d");
    g.setTransform(ratio, 0, 0, ratio, 0, 0);
    g.clearRect(0, 0, width, height);
    let max = 0, points = 0;
    for (const line of lines) for (const p of line.points) if (p.v !== null && p.t >= t0) { max = Math.max(max, p.v); points++; }
    max = niceMax(max);
    g.font = "11px system-ui, sans-serif";
    const labels = [0, 1, 2, 3, 4].map((i) => String(Number((max * i / 4).toPrecision(3))) + unit);
    const left = Math.ceil(Math.max(...labels.map((l) => g.measureText(l).width))) + 10, right = 8, top = 8, bottom = 20;
    const w = width - left - right, h = height - top - bottom;
    g.fillStyle = "#667085";
    g.strokeStyle = "#e3e6eb";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const y = top + h - (h * i) / 4;
      g.beginPath(); g.moveTo(left, Math.round(y) + 0.5); g.lineTo(left + w, Math.round(y) + 0.5); g.stroke();
      g.textAlign = "right"; g.textBaseline = "middle";
      g.fillText(labels[i], left - 6, y);
    }
    const span = Math.max(t1 - t0, 1e-9);
    g.textAlign = "left"; g.textBaseline = "alphabetic";
    g.fillText("−" + Math.round(span) + " s", left, height - 4);
    g.textAlign = "right";
    g.fillText("now", left + w, height - 4);
    if (!points) {
      g.textAlign = "center"; g.textBaseline = "middle";
      g.fillText("waiting for tool calls…", left + w / 2, top + h / 2);
    }
    g.lineWidth = 2;
    g.lineJoin = "round";
    for (const line of lines) {
      g.strokeStyle = g.fillStyle = line.color;
      g.beginPath();
      let pen = false;
      const dots = [];
      for (const p of line.points) {
        if (p.t < t0 || p.v === null) { pen = false; continue; }
        const x = left + ((p.t - t0) / span) * w, y = top + h - (p.v / max) * h;
        if (pen) g.lineTo(x, y); else g.moveTo(x, y);
        pen = true;
        dots.push([x, y]);
      }
      g.stroke();
      for (const [x, y] of dots) { g.beginPath(); g.arc(x, y, 2, 0, 2 * Math.PI); g.fill(); }
    }
    canvas.dataset.points = String(points);
  }

  // -- events ------------------------------------------------------------------------------
  function onClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    button.disabled = true;
    if (button.dataset.tool !== undefined) {
      const name = button.dataset.tool;
      act("POST", "/admin/tools/" + encodeURIComponent(name) + "/" + action, (r) =>
        "Tool " + r.tool + ": " + (r.enabled ? "enabled" : "disabled (" + r.disabled_by + ")") +
        (r.changed.length ? "; clients were told the tool list changed." : "; nothing changed."));
    } else if (button.dataset.tag !== undefined) {
      const tag = button.dataset.tag;
      act("POST", "/admin/tags/" + encodeURIComponent(tag) + "/" + action, (r) =>
        "Tag " + r.tag + ": " + (r.enabled ? "enabled" : "disabled") + " (" + (r.tools.join(", ") || "no tools yet") + ")" +
        (r.changed.length ? "; changed: " + r.changed.join(", ") + "." : "; nothing changed."));
    }
  }

  function onReload() {
    $("reload").disabled = true;
    act("POST", "/admin/reload", (r) => {
      const parts = [];
      if (r.loaded.length) parts.push("loaded " + r.loaded.join(", "));
      if (r.unchanged.length) parts.push("unchanged " + r.unchanged.join(", "));
      if (r.removed.length) parts.push("removed " + r.removed.join(", "));
      for (const [name, error] of Object.entries(r.failed)) parts.push("failed " + name + ": " + error);
      return "Reloaded plugins: " + (parts.join("; ") || "none found") + ".";
    });
  }

  function onSignIn(event) {
    event.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (!value) return;
    setToken(value);
    document.body.dataset.state = "loading";
    refresh();
  }

  function onSignOut() {
    setToken(null);
    history = [];
    askForToken({ status: 401, body: null });
    $("sign-out").hidden = true;
    $("sign-in-why").textContent = "Signed out: the token was forgotten by this tab.";
  }

  function onPause() {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    status(paused ? "paused" : "live", paused ? "paused" : "live");
    if (!paused) refresh(); else clearTimeout(timer);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("dashboard").addEventListener("click", onClick);
    $("reload").addEventListener("click", onReload);
    $("sign-in-form").addEventListener("submit", onSignIn);
    $("sign-out").addEventListener("click", onSignOut);
    $("pause").addEventListener("click", onPause);
    // A hidden tab stops asking; it catches up when shown again.
    document.addEventListener("visibilitychange", () => { if (!document.hidden && !paused) refresh(); });
    refresh();
  });
})();
