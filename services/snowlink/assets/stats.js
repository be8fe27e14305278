// The stats page of one link, /{code}+. Served by Snowlink itself; it talks
// to this service only. Public links are read without a key; an owner's key
// (stats:read) is kept in sessionStorage, this tab only, and sent as a
// bearer token. Every value from the API goes into the page as text.
"use strict";

(function () {
  const body = document.body;
  const code = body.dataset.code;
  const isPublic = body.dataset.public === "true";
  const KEY_ITEM = "snowlink.statsKey";
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const state = { range: "7d", by: "day", since: null, until: null, key: sessionStorage.getItem(KEY_ITEM) };
  let qrUrl = null;
  let loadSeq = 0;

  function apiBase() {
    const c = encodeURIComponent(code);
    return state.key ? `/api/v1/links/${c}` : `/api/v1/public/links/${c}`;
  }

  function headers() {
    return state.key ? { Authorization: `Bearer ${state.key}` } : {};
  }

  function rangeQuery() {
    const q = new URLSearchParams();
    if (state.range === "custom") {
      if (state.since) q.set("since", state.since);
      if (state.until) {
        // The picker's end day is inclusive: ask for clicks before the next midnight.
        const end = new Date(`${state.until}T00:00:00Z`);
        end.setUTCDate(end.getUTCDate() + 1);
        q.set("until", end.toISOString().slice(0, 10));
      }
    } else {
      q.set("since", state.range);
    }
    return q;
  }

  function showError(message) {
    const el = $("error");
    el.textContent = message;
    el.hidden = !message;
  }

  async function apiError(response) {
    try {
      const doc = await response.json();
      if (doc && doc.error && doc.error.message) return `${doc.error.message} (${doc.error.code})`;
    } catch (_) { /* not JSON */ }
    return `the service answered ${response.status}`;
  }

  const number = new Intl.NumberFormat("en");

  function setPressed(groupId, attr, value) {
    for (const b of $(groupId).querySelectorAll("button")) {
      b.setAttribute("aria-pressed", String(b.dataset[attr] === value));
    }
  }

  function bucketLabel(iso, by) {
    return by === "hour" ? `${iso.slice(5, 10)} ${iso.slice(11, 16)}` : iso.slice(0, 10);
  }

  function renderChart(series, by) {
    const box = $("chart");
    box.replaceChildren();
    const width = 800, height = 240, left = 44, bottom = 24, top = 10;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Clicks per ${by}`);
    svg.dataset.buckets = String(series.length);
    svg.dataset.by = by;
    const max = Math.max(1, ...series.map((p) => p.clicks));
    const plotW = width - left - 8, plotH = height - top - bottom;
    const line = (x1, y1, x2, y2) => {
      const l = document.createElementNS(SVG, "line");
      l.setAttribute("x1", x1); l.setAttribute("y1", y1); l.setAttribute("x2", x2); l.setAttribute("y2", y2);
      l.setAttribute("class", "axis");
      svg.appendChild(l);
    };
    const text = (x, y, s, anchor) => {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", x); t.setAttribute("y", y);
      t.setAttribute("text-anchor", anchor || "start");
      t.textContent = s;
      svg.appendChild(t);
    };
    line(left, top + plotH, left + plotW, top + plotH);
    line(left, top, left + plotW, top);
    text(left - 6, top + 10, number.format(max), "end");
    text(left - 6, top + plotH, "0", "end");
    if (series.length === 0) {
      text(left + plotW / 2, top + plotH / 2, "No clicks in this range", "middle");
    }
    const step = series.length ? plotW / series.length : 0;
    series.forEach((p, i) => {
      const h = (p.clicks / max) * plotH;
      const r = document.createElementNS(SVG, "rect");
      r.setAttribute("class", "bar");
      r.setAttribute("x", (left + i * step + step * 0.1).toFixed(2));
      r.setAttribute("width", Math.max(0.5, step * 0.8).toFixed(2));
      r.setAttribute("y", (top + plotH - h).toFixed(2));
      r.setAttribute("height", h.toFixed(2));
      const title = document.createElementNS(SVG, "title");
      title.textContent = `${bucketLabel(p.bucket, by)}: ${number.format(p.clicks)} clicks`;
      r.appendChild(title);
      svg.appendChild(r);
    });
    if (series.length) {
      text(left, height - 6, bucketLabel(series[0].bucket, by), "start");
      text(left + plotW, height - 6, bucketLabel(series[series.length - 1].bucket, by), "end");
    }
    box.appendChild(svg);
  }

  function renderBars(id, rows, total) {
    const list = $(id);
    list.replaceChildren();
    if (!rows.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "No clicks";
      list.appendChild(li);
      return;
    }
    for (const row of rows) {
      const li = document.createElement("li");
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = `${total ? (100 * row.clicks) / total : 0}%`;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = row.value;
      name.title = row.value;
      const count = document.createElement("span");
      count.className = "count";
      count.textContent = number.format(row.clicks);
      count.title = `${number.format(row.unique_visitors)} unique visitors`;
      li.append(fill, name, count);
      list.appendChild(li);
    }
  }

  function render(stats) {
    $("total-clicks").textContent = number.format(stats.clicks);
    $("total-clicks").dataset.value = String(stats.clicks);
    $("unique-visitors").textContent = number.format(stats.unique_visitors);
    $("unique-visitors").dataset.value = String(stats.unique_visitors);
    $("bot-clicks").textContent = number.format(stats.bot_clicks);
    $("bot-clicks").dataset.value = String(stats.bot_clicks);
    const from = stats.since ? stats.since.slice(0, 16).replace("T", " ") : "the first click";
    const to = stats.until ? stats.until.slice(0, 16).replace("T", " ") : "now";
    $("range-label").textContent = `${from} to ${to}, per ${state.by}`;
    renderChart(stats.series, state.by);
    for (const id of ["referrers", "countries", "browsers", "os", "devices"]) {
      renderBars(id, stats[id], stats.clicks);
    }
  }

  async function loadQr() {
    const img = $("qr");
    const path = `${apiBase()}/qr?format=svg&size=192`;
    if (!state.key) {
      img.src = path;
      img.hidden = false;
      return;
    }
    const response = await fetch(path, { headers: headers() });
    if (!response.ok) { img.hidden = true; return; } // a key without links:read
    if (qrUrl) URL.revokeObjectURL(qrUrl);
    qrUrl = URL.createObjectURL(await response.blob());
    img.src = qrUrl;
    img.hidden = false;
  }

  async function load() {
    const seq = ++loadSeq;
    setPressed("range-picker", "range", state.range);
    setPressed("bucket-switch", "by", state.by);
    $("custom-range").hidden = state.range !== "custom";
    const q = rangeQuery();
    $("csv").href = `${apiBase()}/clicks.csv?${q}`;
    q.set("by", state.by);
    body.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(`${apiBase()}/stats?${q}`, { headers: headers() });
      if (seq !== loadSeq) return; // a newer choice is on its way
      if (!response.ok) {
        showError(await apiError(response));
        if (response.status === 401 || response.status === 403 || response.status === 404) {
          $("stats").hidden = !isPublic || Boolean(state.key);
        }
        return;
      }
      const stats = await response.json();
      if (seq !== loadSeq) return;
      showError("");
      $("stats").hidden = false;
      $("locked").hidden = true;
      render(stats);
    } catch (e) {
      showError(`The statistics could not be loaded: ${e.message}`);
    } finally {
      if (seq === loadSeq) body.removeAttribute("aria-busy");
    }
  }

  // The CSV of an owner's link needs the key, which a plain link cannot send.
  $("csv").addEventListener("click", async (event) => {
    if (!state.key) return;
    event.preventDefault();
    const response = await fetch($("csv").href, { headers: headers() });
    if (!response.ok) { showError(await apiError(response)); return; }
    const url = URL.createObjectURL(await response.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = `${code}-clicks.csv`;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  });

  $("range-picker").addEventListener("click", (event) => {
    const range = event.target.dataset && event.target.dataset.range;
    if (!range) return;
    state.range = range;
    if (range === "custom") {
      const today = new Date().toISOString().slice(0, 10);
      $("custom-until").value = $("custom-until").value || today;
      if (!$("custom-since").value) {
        const d = new Date(); d.setUTCDate(d.getUTCDate() - 13);
        $("custom-since").value = d.toISOString().slice(0, 10);
      }
      setPressed("range-picker", "range", "custom");
      $("custom-range").hidden = false;
      return;
    }
    state.by = range === "24h" ? "hour" : "day";
    load();
  });

  $("custom-apply").addEventListener("click", () => {
    state.since = $("custom-since").value || null;
    state.until = $("custom-until").value || null;
    if (state.since && state.until && state.since > state.until) {
      showError("The first day must not be after the last.");
      return;
    }
    load();
  });

  $("bucket-switch").addEventListener("click", (event) => {
    const by = event.target.dataset && event.target.dataset.by;
    if (!by) return;
    state.by = by;
    load();
  });

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    state.key = key;
    sessionStorage.setItem(KEY_ITEM, key);
    $("key-input").value = "";
    keyChanged();
  });

  $("forget-key").addEventListener("click", () => {
    state.key = null;
    sessionStorage.removeItem(KEY_ITEM);
    keyChanged();
  });

  function keyChanged() {
    $("forget-key").hidden = !state.key;
    $("key-input").hidden = Boolean(state.key);
    $("key-form").querySelector("button[type=submit]").hidden = Boolean(state.key);
    $("key-form").querySelector("label").hidden = Boolean(state.key);
    if (!isPublic && !state.key) {
      $("stats").hidden = true;
      $("locked").hidden = false;
      $("qr").hidden = true;
      showError("");
      return;
    }
    loadQr().catch(() => { $("qr").hidden = true; });
    load();
  }

  if (!body.dataset.url) $("target-url").hidden = true;
  if (isPublic) $("key-form").querySelector("label").textContent =
    "Owner? An API key with stats:read shows this link's statistics with your key's access. It stays in this browser tab only.";
  keyChanged();
})();
