// The operator's dashboard: polls /api/fleet every refresh_s (the grid, the figures, the leader,
// the budget, alerts, incidents, restarts) and /api/history for the charts (uPlot). Every text
// that comes from Redis goes into the page as text, never as HTML.
(() => {
  "use strict";

  const { TileGrid } = window.shardmonGrid;
  const { parseRanges, paletteColour, formatDuration, formatTime, element, renderIncidents } =
    window.shardmonCommon;
  const $ = (id) => document.getElementById(id);
  //: Groups of the grid: by node while there are at most this many, else by host, else none.
  const MAX_GROUPS = 100;
  //: How often each span's history is read again, in seconds.
  const HISTORY_EVERY = { hour: 15, day: 300, month: 300 };
  //: A line with this many points or fewer shows each as a dot.
  const SPARSE_POINTS = 40;

  const state = {
    fleet: null,
    legend: {},
    span: "hour",
    history: null,
    updates: 0,
    historyUpdates: 0,
    shardCache: new Map(),
    charts: {},
  };
  window.shardmon = state;

  function text(id, value) {
    $(id).textContent = value;
  }

  function tag(words, tone) {
    const badge = element("span", words, "tag");
    badge.style.setProperty("--swatch", paletteColour(tone));
    return badge;
  }

  function percent(value) {
    return value == null ? "-" : `${value.toFixed(1)}%`;
  }

  function toneOfPercent(value, thresholds, critical) {
    if (value == null) return "unknown";
    if (value > critical) return "offline";
    return value >= thresholds.warn ? "degraded" : "up";
  }

  async function getJSON(url) {
    try {
      return await window.shardmonCommon.getJSON(url);
    } catch (error) {
      if (error.status === 401) window.location.reload(); // the page asks for the token
      throw error;
    }
  }

  function showError(message) {
    const banner = $("error");
    banner.hidden = !message;
    banner.textContent = message || "";
    $("live-dot").className = message ? "dot bad" : "dot ok";
  }

  // -- the grid ------------------------------------------------------------------------------

  function groupsOf(fleet) {
    const nodes = fleet.nodes.map((node) => ({ node: node.node, shards: parseRanges(node.shards) }));
    const placed = new Uint8Array(fleet.states.length);
    for (const node of nodes) for (const shard of node.shards) placed[shard] = 1;
    const unplaced = [];
    placed.forEach((isPlaced, shard) => { if (!isPlaced) unplaced.push(shard); });
    if (unplaced.length) nodes.push({ node: null, shards: unplaced }); // no node reported them
    if (nodes.length <= MAX_GROUPS) {
      return nodes.map((node) => ({
        label: `${node.node === null ? "never seen" : node.node} (${node.shards.length})`,
        shards: node.shards,
      }));
    }
    const hosts = new Map();
    for (const node of nodes) {
      const host = node.node === null ? "never seen" : node.node.replace(/:\d+$/, "");
      if (!hosts.has(host)) hosts.set(host, { label: host, shards: [], processes: 0 });
      const group = hosts.get(host);
      group.shards.push(...node.shards);
      group.processes += 1;
    }
    if (hosts.size <= MAX_GROUPS) {
      return [...hosts.values()].map((group) => ({
        label: `${group.label} (${group.shards.length} in ${group.processes} processes)`,
        shards: group.shards.sort((a, b) => a - b),
      }));
    }
    const all = [];
    for (let shard = 0; shard < fleet.states.length; shard++) all.push(shard);
    return [{ label: "", shards: all }];
  }

  function describeShard(shard) {
    const fleet = state.fleet;
    const code = fleet ? fleet.states[shard] : ".";
    const node = fleet && fleet.nodes.find((group) => parseRanges(group.shards).includes(shard));
    const lines = [`Shard ${shard}: ${(state.legend[code] || {}).label || "unknown"}`];
    if (node && node.node) lines.push(`node ${node.node}`);
    return lines.join("\n");
  }

  async function shardDetails(shard, tooltip) {
    const cached = state.shardCache.get(shard);
    let details = cached && Date.now() - cached.at < 3000 ? cached.details : null;
    if (!details) {
      try {
        details = await getJSON(`/api/shard/${shard}`);
        state.shardCache.set(shard, { at: Date.now(), details });
      } catch (error) {
        details = { error: error.message };
      }
    }
    if (tooltip.dataset.shard !== String(shard)) return; // the pointer moved on
    const lines = [describeShard(shard)];
    if (details.error) {
      lines.push(details.error);
    } else if (details.cpu != null) {
      lines.push(
        `gateway ${details.gateway} · latency ${details.latency_ms == null ? "-" : `${Math.round(details.latency_ms)} ms`}`,
        `CPU ${percent(details.cpu)} · memory ${percent(details.memory)} (${Math.round(details.memory_used_mb)} of ${Math.round(details.memory_total_mb)} MB)`,
        `servers ${details.guilds.toLocaleString()} · users ${details.users.toLocaleString()}`,
        `up ${details.started_at ? formatDuration(state.fleet.now - details.started_at) : "-"} · last sample ${formatDuration(details.sample_age_s)} ago`,
        `IDENTIFYs ${details.identifies_24h} · RESUMEs ${details.resumes_24h} in 24 h`,
      );
      if (details.disconnects_1h != null) {
        lines.push(`disconnects ${details.disconnects_1h} · stalls ${details.stalls_1h} in 1 h`);
      }
    } else {
      lines.push("no sample from this shard");
    }
    tooltip.textContent = lines.join("\n");
  }

  const grid = new TileGrid($("grid"), $("tooltip"), describeShard, shardDetails);
  state.grid = grid;

  function renderLegend(fleet) {
    const legend = $("legend");
    legend.replaceChildren();
    const counts = {};
    for (const code of fleet.states) counts[code] = (counts[code] || 0) + 1;
    for (const entry of fleet.legend) {
      if (!counts[entry.code]) continue;
      const item = element("span", `${entry.label}: ${counts[entry.code].toLocaleString()}`);
      item.style.setProperty("--swatch", paletteColour(entry.tone));
      legend.append(item);
    }
  }

  // -- the figures ---------------------------------------------------------------------------

  function renderCards(fleet) {
    const summary = fleet.summary, thresholds = fleet.thresholds;
    text("shards-up", `${summary.up.toLocaleString()} / ${fleet.shard_count.toLocaleString()}`);
    text("shards-detail", `${summary.disconnected} disconnected · ${summary.offline} offline`);
    text("guilds", summary.guilds.toLocaleString());
    text("users", `${summary.users.toLocaleString()} users`);
    for (const [id, spread, critical] of [
      ["memory", summary.memory, thresholds.memory],
      ["cpu", summary.cpu, thresholds.cpu],
    ]) {
      text(id, percent(spread && spread.average));
      $(id).style.color = paletteColour(toneOfPercent(spread && spread.average, thresholds, critical));
      text(`${id}-detail`, spread ? `peak ${percent(spread.peak)} · low ${percent(spread.low)} · alert above ${critical}%` : "no sample");
    }
    const latency = summary.latency_ms;
    text("latency", latency ? `${Math.round(latency.average)} ms` : "-");
    text("latency-detail", latency ? `peak ${Math.round(latency.peak)} ms · low ${Math.round(latency.low)} ms` : "not measured");
    const leader = fleet.leader;
    text("leader", leader.node || "none");
    text("leader-detail", `epoch ${leader.epoch}${leader.node ? ` · lease ${(leader.lease_ms / 1000).toFixed(1)} s left` : ""}`);
    const budget = fleet.budget;
    text("budget", budget ? `${budget.remaining.toLocaleString()} / ${budget.total.toLocaleString()}` : "unknown");
    text("budget-detail", budget ? budget.line : "the leader reads it with the bot's token");
    const bar = $("budget-bar");
    bar.style.width = budget ? `${(100 * budget.remaining) / budget.total}%` : "0";
    bar.style.background = paletteColour(budget && budget.remaining / budget.total < 0.25 ? "offline" : "up");
  }

  function when(ts) {
    const item = element("span", `${formatDuration(state.fleet.now - ts)} ago`, "when");
    item.title = formatTime(ts);
    return item;
  }

  function renderAlerts(fleet) {
    const list = $("alerts");
    list.replaceChildren();
    for (const alert of fleet.alerts.slice(0, 30)) {
      const item = element("li");
      item.append(when(alert.ts));
      const shards = alert.shards.length ? ` · shard${alert.shards.length > 1 ? "s" : ""} ${alert.shards.join(", ")}` : "";
      item.append(tag(alert.kind === "resolved" ? "resolved" : "alert", alert.kind === "resolved" ? "up" : "offline"));
    item.append(element("strong", alert.title));
      item.append(element("div", `${alert.rule}${shards} · epoch ${alert.epoch} · ${alert.node}${alert.delivered ? "" : " · not delivered"}`, "muted small"));
      if (alert.body) {
        const details = element("details");
        details.append(element("summary", "message"), element("pre", alert.body));
        item.append(details);
      }
      list.append(item);
    }
    if (!fleet.alerts.length) list.append(element("li", "No alert yet.", "muted"));
  }

  function renderRestarts(fleet) {
    const list = $("restarts");
    list.replaceChildren();
    const tones = { crash: "offline", manual: "degraded", scheduled: "degraded" };
    for (const restart of fleet.restarts) {
      const item = element("li");
      item.append(when(restart.ts));
      item.append(tag(restart.type, tones[restart.type] || "unknown"));
    item.append(element("strong", `shard${restart.shards.length > 1 ? "s" : ""} ${restart.shards.join(", ")}`));
      item.append(element("div", `version ${restart.version} · ${restart.node}`, "muted small"));
      if (restart.error) item.append(element("div", restart.error, "small"));
      if (restart.traceback) {
        const details = element("details");
        details.append(element("summary", "traceback"), element("pre", restart.traceback));
        item.append(details);
      } else if (restart.error && !fleet.token_holder) {
        item.append(element("div", "The traceback is shown to the holder of the dashboard's token.", "muted small"));
      }
      list.append(item);
    }
    if (!fleet.restarts.length) list.append(element("li", "No restart recorded.", "muted"));
  }

  function renderSupervisors(fleet) {
    const list = $("supervisors");
    list.replaceChildren();
    const tones = { running: "up", backoff: "degraded", held: "disconnected", paused: "offline" };
    for (const supervisor of fleet.supervisors) {
      const item = element("li");
      item.append(tag(supervisor.state, tones[supervisor.state] || "unknown"));
      item.append(element("span", supervisor.words, "small"));
      list.append(item);
    }
    if (!fleet.supervisors.length) {
      list.append(element("li", "No shard runs under shardmon run.", "muted"));
    }
  }

  function render(fleet) {
    state.fleet = fleet;
    state.legend = Object.fromEntries(fleet.legend.map((entry) => [entry.code, entry]));
    document.title = `${fleet.name} · shardmon`;
    text("title", fleet.name);
    text("deployment", `deployment ${fleet.deployment}`);
    const judged = fleet.judged_at == null ? "judged by this page" : `judged ${formatDuration(fleet.now - fleet.judged_at)} ago by the leader`;
    text("live", `live · ${judged} · every ${fleet.refresh_s} s`);
    const stale = $("stale");
    stale.hidden = fleet.judged_at != null;
    stale.textContent = "No leader has judged the fleet lately (no monitor runs, or none may lead): this page reads every shard itself.";
    renderCards(fleet);
    renderLegend(fleet);
    const tones = Object.fromEntries(fleet.legend.map((entry) => [entry.code, paletteColour(entry.tone)]));
    grid.update(fleet.states, groupsOf(fleet), (code) => tones[code] || tones["."]);
    text("grid-note", `${fleet.shard_count.toLocaleString()} shards, ${fleet.nodes.length} nodes · hover or tap a tile`);
    renderAlerts(fleet);
    renderIncidents($("incidents"), fleet.incidents);
    renderRestarts(fleet);
    renderSupervisors(fleet);
    const skipped = Object.entries(fleet.skipped);
    text("skipped", skipped.length ? `values in Redis that did not parse, skipped: ${skipped.map(([key, n]) => `${key} ${n}`).join(", ")}` : "");
    if (state.updates === 0) performance.mark("shardmon-first-render"); // for the benchmark
    state.updates += 1;
  }

  // -- the charts ----------------------------------------------------------------------------

  function markerPlugin(marks) {
    // Vertical lines at `marks().times`, a horizontal one at `marks().level`.
    return {
      hooks: {
        draw: (u) => {
          const { times = [], level = null, colour } = marks();
          const ctx = u.ctx, { left, top, width, height } = u.bbox;
          ctx.save();
          ctx.lineWidth = 2 * (window.devicePixelRatio || 1);
          ctx.strokeStyle = colour;
          ctx.setLineDash([6, 4]);
          for (const ts of times) {
            const x = u.valToPos(ts, "x", true);
            if (x < left || x > left + width) continue;
            ctx.beginPath();
            ctx.moveTo(x, top);
            ctx.lineTo(x, top + height);
            ctx.stroke();
          }
          if (level != null) {
            const y = u.valToPos(level, "y", true);
            if (y >= top && y <= top + height) {
              ctx.beginPath();
              ctx.moveTo(left, y);
              ctx.lineTo(left + width, y);
              ctx.stroke();
            }
          }
          ctx.restore();
        },
      },
    };
  }

  /** Dots on a line with few points: a young fleet's hour has a minute or two of data. */
  function sparse(u, seriesIdx) {
    return u.data[seriesIdx].filter((value) => value != null).length <= SPARSE_POINTS;
  }

  function newChart(id, unit, kind, marks) {
    const container = $(id);
    const series = kind === "bars"
      ? [{}, { label: "restarts", fill: paletteColour("accent"), stroke: paletteColour("accent"), paths: uPlot.paths.bars({ size: [0.8, 30] }), points: { show: false } }]
      : [
        {},
        { label: "average", stroke: paletteColour("accent"), width: 2, points: { show: sparse, size: 6 } },
        { label: "peak", stroke: paletteColour("offline"), width: 1, dash: [5, 4], points: { show: sparse } },
        { label: "low", stroke: paletteColour("up"), width: 1, dash: [5, 4], points: { show: sparse } },
      ];
    const options = {
      width: Math.max(280, container.clientWidth),
      height: 200,
      series,
      scales: { x: { time: true }, y: kind === "bars" ? { range: (u, min, max) => [0, Math.max(1, max)] } : {} },
      axes: [{}, { values: (u, values) => values.map((v) => `${v}${unit}`), size: 56 }],
      plugins: [markerPlugin(marks)],
      legend: { live: true },
    };
    const data = series.map(() => []);
    return new uPlot(options, data, container);
  }

  function setupCharts() {
    const threshold = (name) => () => ({ level: state.fleet ? state.fleet.thresholds[name] : null, colour: paletteColour("disconnected") });
    state.charts = {
      memory: newChart("chart-memory", "%", "lines", threshold("memory")),
      cpu: newChart("chart-cpu", "%", "lines", threshold("cpu")),
      latency: newChart("chart-latency", "", "lines", () => ({})),
      restarts: newChart("chart-restarts", "", "bars", () => ({
        times: state.history ? state.history.storms.map((storm) => storm.ts) : [],
        colour: paletteColour("offline"),
      })),
    };
    window.addEventListener("resize", () => {
      for (const [name, chart] of Object.entries(state.charts)) {
        chart.setSize({ width: Math.max(280, $(`chart-${name}`).clientWidth), height: 200 });
      }
    });
  }

  function renderHistory(history) {
    state.history = history;
    const c = history.columns;
    for (const figure of ["memory", "cpu", "latency"]) {
      const name = figure === "latency" ? "latency_ms" : figure;
      state.charts[figure].setData([c.t, c[`${name}_avg`], c[`${name}_peak`], c[`${name}_low`]]);
    }
    state.charts.restarts.setData([c.t, c.restarts]);
    state.historyUpdates += 1;
  }

  async function pollHistory() {
    const span = state.span;
    try {
      const history = await getJSON(`/api/history?span=${span}`);
      if (span === state.span) renderHistory(history);
    } catch (error) {
      showError(error.message);
    }
    clearTimeout(state.historyTimer);
    state.historyTimer = setTimeout(pollHistory, HISTORY_EVERY[state.span] * 1000);
  }

  for (const button of document.querySelectorAll("#spans button")) {
    button.addEventListener("click", () => {
      state.span = button.dataset.span;
      for (const other of document.querySelectorAll("#spans button")) {
        other.setAttribute("aria-pressed", String(other === button));
      }
      pollHistory();
    });
  }

  // -- the loop ------------------------------------------------------------------------------

  async function poll() {
    let every = state.fleet ? state.fleet.refresh_s : 5;
    try {
      const fleet = await getJSON("/api/fleet");
      render(fleet);
      showError(null);
      every = fleet.refresh_s;
    } catch (error) {
      showError(`${error.message}. The page tries again in ${every} s.`);
      text("live", "not updating");
    }
    setTimeout(poll, every * 1000);
  }

  setupCharts();
  poll();
  pollHistory();
})();
