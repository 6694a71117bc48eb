// The tile grid of the dashboard and of the status page: one canvas for every shard (5,000
// tiles are 5,000 rectangles, not 5,000 DOM elements with listeners), in groups with a label
// (the dashboard's nodes), coloured by state. One listener finds the tile under the pointer.
(() => {
  "use strict";

  const { paletteColour } = window.shardmonCommon;
  const LABEL_FONT = "11px system-ui, sans-serif";

  class TileGrid {
    /**
     * @param {HTMLCanvasElement} canvas
     * @param {HTMLElement} tooltip  shown beside the tile under the pointer
     * @param {(shard: number) => string} describe  the tooltip's first lines for a shard
     * @param {(shard: number, tooltip: HTMLElement) => void} [more]  fills in more, later
     */
    constructor(canvas, tooltip, describe, more) {
      this.canvas = canvas;
      this.tooltip = tooltip;
      this.describe = describe;
      this.more = more;
      this.states = "";
      this.groups = [];
      this.blocks = [];
      this.highlighted = null;
      this.renders = 0;
      this.colourOf = () => "#999";
      canvas.addEventListener("mousemove", (event) => this.point(event));
      canvas.addEventListener("click", (event) => this.point(event));
      canvas.addEventListener("mouseleave", () => { this.tooltip.hidden = true; });
      window.addEventListener("resize", () => this.draw());
    }

    /** Show `states` (a character a shard) in `groups` ([{label, shards}]), coloured by
     * `colourOf(code)`. */
    update(states, groups, colourOf) {
      this.states = states;
      this.groups = groups;
      this.colourOf = colourOf;
      this.draw();
    }

    labelWidth(label) {
      const ctx = this.canvas.getContext("2d");
      ctx.font = LABEL_FONT;
      return ctx.measureText(label).width;
    }

    tileSize() {
      const n = this.states.length;
      if (n <= 100) return [26, 3];
      if (n <= 600) return [15, 2];
      if (n <= 2500) return [10, 1];
      return [7, 1];
    }

    layout(width) {
      const [size, gap] = this.tileSize();
      const step = size + gap, labelled = this.groups.some((group) => group.label);
      const labelHeight = labelled ? 15 : 0, groupGap = labelled ? 14 : 0;
      const maxCols = Math.max(1, Math.floor((width + gap) / step));
      const blocks = [];
      let x = 0, y = 0, lineHeight = 0;
      for (const group of this.groups) {
        const cols = Math.min(group.shards.length, maxCols) || 1;
        const rows = Math.ceil(group.shards.length / cols);
        const labelWidth = group.label ? Math.min(width, this.labelWidth(group.label) + 6) : 0;
      const blockWidth = Math.max(cols * step - gap, labelWidth);
        const blockHeight = labelHeight + rows * step;
        if (x > 0 && x + blockWidth > width) {
          x = 0;
          y += lineHeight + 8;
          lineHeight = 0;
        }
        blocks.push({ group, x, y, cols, rows, width: blockWidth, top: y + labelHeight });
        x += blockWidth + groupGap;
        lineHeight = Math.max(lineHeight, blockHeight);
      }
      return { blocks, size, step, height: y + lineHeight + 2 };
    }

    draw() {
      const width = Math.max(120, this.canvas.parentElement.clientWidth);
      const { blocks, size, step, height } = this.layout(width);
      const ratio = window.devicePixelRatio || 1;
      this.canvas.width = Math.round(width * ratio);
      this.canvas.height = Math.round(height * ratio);
      this.canvas.style.height = `${height}px`;
      const ctx = this.canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.clearRect(0, 0, width, height);
      // One path a colour: a fill per state, not per tile.
      const paths = new Map();
      for (const block of blocks) {
        block.group.shards.forEach((shard, i) => {
          const colour = this.colourOf(this.states[shard] || ".");
          if (!paths.has(colour)) paths.set(colour, new Path2D());
          const x = block.x + (i % block.cols) * step, y = block.top + Math.floor(i / block.cols) * step;
          paths.get(colour).rect(x, y, size, size);
        });
      }
      for (const [colour, path] of paths) {
        ctx.fillStyle = colour;
        ctx.fill(path);
      }
      ctx.fillStyle = paletteColour("muted");
      ctx.font = LABEL_FONT;
      for (const block of blocks) {
        if (!block.group.label) continue;
        ctx.save();
        ctx.beginPath();
        ctx.rect(block.x, block.y, block.width, 15);
        ctx.clip();
        ctx.fillText(block.group.label, block.x, block.y + 11);
        ctx.restore();
      }
      this.blocks = blocks;
      this.size = size;
      this.step = step;
      if (this.highlighted != null) this.outline(this.highlighted);
      this.renders += 1;
    }

    /** The shard whose tile is at (x, y) in CSS pixels of the canvas, or null. */
    tileAt(x, y) {
      for (const block of this.blocks) {
        const col = Math.floor((x - block.x) / this.step), row = Math.floor((y - block.top) / this.step);
        if (col < 0 || col >= block.cols || row < 0 || row >= block.rows) continue;
        if (x - block.x - col * this.step > this.size || y - block.top - row * this.step > this.size) {
          return null; // in the gap between tiles
        }
        const shard = block.group.shards[row * block.cols + col];
        return shard === undefined ? null : shard;
      }
      return null;
    }

    /** The centre of a shard's tile in CSS pixels of the canvas, or null. */
    centre(shard) {
      for (const block of this.blocks) {
        const i = block.group.shards.indexOf(shard);
        if (i < 0) continue;
        return {
          x: block.x + (i % block.cols) * this.step + this.size / 2,
          y: block.top + Math.floor(i / block.cols) * this.step + this.size / 2,
        };
      }
      return null;
    }

    /** The colour drawn at a shard's tile, as "rgb(r, g, b)" (what a test compares). */
    colourAt(shard) {
      const point = this.centre(shard);
      if (!point) return null;
      const ratio = window.devicePixelRatio || 1;
      const [r, g, b] = this.canvas.getContext("2d")
        .getImageData(Math.floor(point.x * ratio), Math.floor(point.y * ratio), 1, 1).data;
      return `rgb(${r}, ${g}, ${b})`;
    }

    /** Mark one shard's tile (find my shard) and keep it marked across updates. */
    highlight(shard) {
      this.highlighted = shard;
      this.draw();
      const point = this.centre(shard);
      if (point) {
        this.canvas.scrollIntoView({ block: "nearest" });
        this.show(shard, point.x, point.y);
      }
    }

    outline(shard) {
      const point = this.centre(shard);
      if (!point) return;
      const ctx = this.canvas.getContext("2d"), half = this.size / 2 + 1;
      ctx.lineWidth = 2;
      ctx.strokeStyle = "#1d2330";
      ctx.strokeRect(point.x - half, point.y - half, half * 2, half * 2);
    }

    point(event) {
      const box = this.canvas.getBoundingClientRect();
      const x = event.clientX - box.left, y = event.clientY - box.top;
      const shard = this.tileAt(x, y);
      if (shard == null) {
        this.tooltip.hidden = true;
        return;
      }
      this.show(shard, x, y);
    }

    show(shard, x, y) {
      const tip = this.tooltip;
      if (tip.dataset.shard !== String(shard) || tip.hidden) {
        tip.dataset.shard = String(shard);
        tip.textContent = this.describe(shard);
        if (this.more) this.more(shard, tip);
      }
      tip.hidden = false;
      const wrap = this.canvas.parentElement.clientWidth;
      tip.style.left = `${Math.min(x + 14, Math.max(0, wrap - 260))}px`;
      tip.style.top = `${y + 14}px`;
    }
  }

  window.shardmonGrid = { TileGrid };
})();
