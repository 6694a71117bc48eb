// The public status page: polls /api/status (shards up, average latency, the grid's states,
// incidents) and asks /api/find which shard serves a server. It knows nothing more: no node,
// figure or error reaches it.
(() => {
  "use strict";

  const { TileGrid } = window.shardmonGrid;
  const { paletteColour, formatDuration, element, renderIncidents } = window.shardmonCommon;
  const $ = (id) => document.getElementById(id);
  const WORDS = { up: "up", degraded: "degraded", down: "down", unknown: "not reporting" };
  const state = { status: null, updates: 0, found: null };
  window.shardmon = state;

  function describe(shard) {
    const code = state.status ? state.status.states[shard] : ".";
    return `Shard ${shard}: ${WORDS[state.publicOf[code]] || "unknown"}`;
  }

  const grid = new TileGrid($("grid"), $("tooltip"), describe);
  state.grid = grid;

  const UNAVAILABLE = "The status is unavailable right now.";
  const getJSON = (url) => window.shardmonCommon.getJSON(url, UNAVAILABLE);

  function overall(status) {
    const { up, degraded, down } = status.up;
    const total = status.shard_count;
    if (down === 0 && degraded === 0 && up === total) return ["up", "All shards operational"];
    if (down === 0) return ["degraded", `${degraded + (total - up - degraded)} of ${total} shards degraded or not reporting`];
    if (down * 2 >= total) return ["down", `Major outage: ${down} of ${total} shards down`];
    return ["degraded", `Partial outage: ${down} of ${total} shards down`];
  }

  function render(status) {
    state.status = status;
    state.publicOf = Object.fromEntries(status.legend.map((entry) => [entry.code, entry.state]));
    document.title = `${status.name} status`;
    $("title").textContent = `${status.name} status`;
    const [tone, words] = overall(status);
    $("overall").textContent = words;
    $("overall").className = `overall ${tone}`;
    const latency = status.latency_ms == null ? "" : ` · average latency ${status.latency_ms} ms`;
    $("counts").textContent = `${status.up.up.toLocaleString()} of ${status.shard_count.toLocaleString()} shards up${latency}`;
    const colours = {};
    for (const entry of status.legend) colours[entry.code] = paletteColour(entry.state);
    const legend = $("legend");
    legend.replaceChildren();
    for (const [name, count] of Object.entries(status.up)) {
      if (!count) continue;
      const item = element("span", `${WORDS[name]}: ${count.toLocaleString()}`);
      item.style.setProperty("--swatch", paletteColour(name));
      legend.append(item);
    }
    const all = [];
    for (let shard = 0; shard < status.states.length; shard++) all.push(shard);
    grid.update(status.states, [{ label: "", shards: all }], (code) => colours[code] || colours["."]);
    renderIncidents($("incidents"), status.incidents);
    const judged = status.judged_at == null ? "" : ` · checked ${formatDuration(status.now - status.judged_at)} ago`;
    $("live").textContent = `live${judged}`;
    $("live-dot").className = "dot ok";
    $("error").hidden = true;
    if (state.updates === 0) performance.mark("shardmon-first-render"); // for the benchmark
    state.updates += 1;
  }

  async function poll() {
    let every = state.status ? state.status.refresh_s : 5;
    try {
      const status = await getJSON("/api/status");
      render(status);
      every = status.refresh_s;
    } catch (error) {
      $("error").hidden = false;
      $("error").textContent = error.message;
      $("live-dot").className = "dot bad";
    }
    setTimeout(poll, every * 1000);
  }

  $("find").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = $("find-result");
    const server = $("server").value.trim();
    try {
      const found = await getJSON(`/api/find?server=${encodeURIComponent(server)}`);
      state.found = found;
      const latency = found.latency_ms == null ? "" : `, latency ${found.latency_ms} ms`;
      const since = found.since == null ? "" : `, running for ${formatDuration(Date.now() / 1000 - found.since)}`;
      result.textContent = `Server ${found.server} is on shard ${found.shard} of ${found.shard_count}: ${WORDS[found.state]}${latency}${since}.`;
      grid.highlight(found.shard);
    } catch (error) {
      state.found = null;
      result.textContent = error.message;
    }
  });

  poll();
})();
