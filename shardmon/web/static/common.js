// What both pages share: ranges of shards, the palette, durations and times in words, and the
// incidents list. Text from the server always goes in as text, never as HTML.
(() => {
  "use strict";

  /** "0-3,8" -> [0, 1, 2, 3, 8]. */
  function parseRanges(text) {
    const shards = [];
    for (const part of String(text || "").split(",")) {
      const [low, high] = part.split("-").map(Number);
      if (!Number.isInteger(low)) continue;
      const last = Number.isInteger(high) ? high : low;
      for (let shard = low; shard <= last; shard++) shards.push(shard);
    }
    return shards;
  }

  /** A CSS colour of the page's palette: `--up`, `--offline`... */
  function paletteColour(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(`--${name}`).trim() || "#999";
  }

  /** "3h 5m", "42s": a duration in words, as shardmon's CLI says it. */
  function formatDuration(seconds) {
    seconds = Math.max(0, Math.round(seconds));
    const days = Math.floor(seconds / 86400), hours = Math.floor(seconds % 86400 / 3600);
    const minutes = Math.floor(seconds % 3600 / 60);
    if (days) return `${days}d ${hours}h`;
    if (hours) return `${hours}h ${minutes}m`;
    if (minutes) return `${minutes}m`;
    return `${seconds}s`;
  }

  /** A fleet time (epoch seconds) as this browser's local date and time. */
  function formatTime(ts) {
    return ts == null ? "-" : new Date(ts * 1000).toLocaleString();
  }

  /** A new element holding `content` as text. */
  function element(tag, content, className) {
    const node = document.createElement(tag);
    if (content != null) node.textContent = content;
    if (className) node.className = className;
    return node;
  }

  /** The incidents (outages and restart storms, in words) into `list`. */
  function renderIncidents(list, incidents) {
    list.replaceChildren();
    for (const incident of incidents) {
      const item = element("li");
      const many = incident.shards.length > 1 ? "s" : "";
      const shards = incident.shards.length ? ` · shard${many} ${incident.shards.join(", ")}` : "";
      let lasted = "";
      if (incident.lasted_s != null) {
        const took = formatDuration(incident.lasted_s);
        lasted = incident.ongoing ? ` · going on for ${took}` : ` · lasted ${took}`;
      }
      const badge = element("span", incident.ongoing ? "ongoing" : "resolved", "tag");
      badge.style.setProperty("--swatch", paletteColour(incident.ongoing ? "offline" : "up"));
      item.append(badge, element("strong", incident.title));
      item.append(element("div", `${formatTime(incident.started)}${lasted}${shards}`, "muted small"));
      list.append(item);
    }
    if (!incidents.length) list.append(element("li", "No incident lately.", "muted"));
  }

  /** GET `url` as JSON; an answer that is not 2xx throws an Error with its `status` and the
   * server's words (`unavailable` where it gave none). */
  async function getJSON(url, unavailable) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    let payload = null;
    try {
      payload = await response.json();
    } catch (error) {
      payload = null;
    }
    if (!response.ok) {
      const failure = new Error((payload && payload.error) || unavailable || `HTTP ${response.status}`);
      failure.status = response.status;
      throw failure;
    }
    return payload;
  }

  window.shardmonCommon = {
    parseRanges, paletteColour, formatDuration, formatTime, element, renderIncidents, getJSON,
  };
})();
