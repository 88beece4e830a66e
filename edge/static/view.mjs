// Drawing the venue: a layout computed from the event's sections (the venue has no coordinates),
// the overview canvas (every seat of the venue) and the detail canvas (one section, big enough
// to click seats). Pure drawing: the seat states come from app.mjs through `stateOf`.
//
// Layout: consecutive sections whose names start with the same word ("Lower 101", "Lower 102",
// … / "Club 201", …) form a level. A level of four or more sections is a ring around the field;
// a smaller one is a fan facing a stage at the top. Levels nest, first one innermost. In each
// section row 0 (the front row) is innermost and seats are spread evenly along the arc. Units:
// one unit = one seat pitch along the tightest arc. Rings are stretched sideways into an oval
// (ASPECT), which only spreads seats further apart.

export const PALETTE = Object.freeze({
  available: '#009e73',
  taken: '#c9c9c9',
  selected: '#000000',
  held: '#e69f00',
  bought: '#0072b2',
  friend: '#cc79a7',
});

export const LABELS = Object.freeze({
  available: 'available',
  taken: 'taken',
  selected: 'selected',
  held: 'held (yours)',
  bought: 'bought (yours)',
  friend: "a friend's",
});

// Outlines of the seats in the detail view, one per price tier (in the event's tier order). The
// tier is also in every seat's accessible name and in the price legend, so colour is never the
// only way to tell.
export const TIER_COLOURS = Object.freeze([
  '#56b4e9',
  '#d55e00',
  '#7a5195',
  '#f0e442',
  '#117733',
  '#882255',
  '#44aa99',
  '#999933',
  '#aa4499',
  '#332288',
]);

const BACKGROUND = '#ffffff';
const INK = '#333333';
const SECTION_GAP = 2; // units between neighbouring sections of a level
const RING_MIN_SECTIONS = 4;
const FAN_SPAN = (2 * Math.PI) / 3;
const MARGIN = 4; // units around the drawing
const ASPECT = 1.3; // a ring's width over its height
const STAGE = 6; // units kept above a fan for the stage

function levelKey(section) {
  const name = (section.name || section.section_id).trim();
  return name.split(/\s+/)[0].toLowerCase();
}

/** Seat coordinates for the event's `sections` (GET /v1/events/{id}). */
export function layoutVenue(sections) {
  const levels = [];
  sections.forEach((section, index) => {
    const key = levelKey(section);
    const last = levels[levels.length - 1];
    if (last && last.key === key) last.members.push(index);
    else levels.push({ key, members: [index] });
  });
  const counts = sections.map((s) => s.rows.reduce((n, row) => n + row.seats.length, 0));
  const offsets = [];
  let total = 0;
  for (const count of counts) {
    offsets.push(total);
    total += count;
  }
  const xs = new Float32Array(total);
  const ys = new Float32Array(total);
  const shapes = new Array(sections.length);
  // Room between levels for the section labels (about 10 px): a venue's drawing shrinks with
  // the square root of its seats, so the gap in units grows with it.
  const gap = Math.min(12, Math.max(4, Math.sqrt(total) / 22));
  const ring = levels.some((level) => level.members.length >= RING_MIN_SECTIONS);
  const stretch = ring ? ASPECT : 1;
  let outer = ring ? 0 : STAGE;
  for (const level of levels) {
    const full = level.members.length >= RING_MIN_SECTIONS;
    const widths = level.members.map((i) =>
      Math.max(...sections[i].rows.map((row) => row.seats.length)),
    );
    const need = widths.reduce((a, w) => a + w + SECTION_GAP, 0);
    const inner = Math.max(need / (full ? 2 * Math.PI : FAN_SPAN), outer + gap);
    // A ring goes all the way round; a fan is as wide as its seats need (one unit apart).
    const span = full ? 2 * Math.PI : need / inner;
    const depth = Math.max(...level.members.map((i) => sections[i].rows.length));
    // Full rings start with their first section centred at the top; fans are centred below
    // the stage.
    let angle = full
      ? -Math.PI / 2 - ((widths[0] + SECTION_GAP) / need) * Math.PI
      : Math.PI / 2 - span / 2;
    level.members.forEach((index, k) => {
      const share = ((widths[k] + SECTION_GAP) / need) * span;
      const step = share / (widths[k] + SECTION_GAP); // the gap is shared by both sides
      const middle = angle + share / 2;
      const rows = sections[index].rows;
      let seat = offsets[index];
      rows.forEach((row, r) => {
        const radius = inner + r + 0.5;
        const n = row.seats.length;
        for (let j = 0; j < n; j++) {
          const a = middle + (j - (n - 1) / 2) * step;
          xs[seat] = stretch * radius * Math.cos(a);
          ys[seat] = radius * Math.sin(a);
          seat++;
        }
      });
      const to = angle + share;
      shapes[index] = { inner, outer: inner + rows.length, below: outer, from: angle, to, middle };
      angle += share;
    });
    outer = inner + depth;
  }
  const extent = outer + MARGIN;
  let top = -extent;
  let bottom = extent;
  if (!ring) {
    // Fans only: the venue lies below the stage.
    top = -(STAGE + MARGIN);
    bottom = ys.reduce((low, y) => Math.max(low, y), 0) + MARGIN;
  }
  const width = 2 * stretch * extent;
  return { xs, ys, counts, offsets, shapes, ring, stretch, gap, top, bottom, width };
}

/** The whole venue, one dot per seat. */
export class Overview {
  constructor(canvas, layout, sections) {
    this.canvas = canvas;
    this.layout = layout;
    this.sections = sections;
    this.ctx = canvas.getContext('2d', { alpha: false });
    this.highlight = null;
    this.dots = null; // per seat: the device-pixel x, y of the dot's top-left corner
  }

  resize() {
    const { layout } = this;
    const ratio = window.devicePixelRatio || 1;
    const cssWidth = Math.max(200, this.canvas.clientWidth || 800);
    const width = layout.width;
    const height = layout.bottom - layout.top;
    this.scale = (cssWidth * ratio) / width;
    this.canvas.width = Math.round(width * this.scale);
    this.canvas.height = Math.round(height * this.scale);
    this.size = Math.max(1, Math.floor(this.scale * 0.75));
    this.dots = new Int32Array(2 * layout.xs.length);
    for (let i = 0; i < layout.xs.length; i++) {
      const [x, y] = this.toPixels(layout.xs[i], layout.ys[i]);
      this.dots[2 * i] = Math.round(x - this.size / 2);
      this.dots[2 * i + 1] = Math.round(y - this.size / 2);
    }
  }

  toPixels(x, y) {
    return [(x + this.layout.width / 2) * this.scale, (y - this.layout.top) * this.scale];
  }

  draw(stateOf) {
    const { ctx, layout, size, dots } = this;
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.drawField();
    const byState = {};
    for (const state of Object.keys(PALETTE)) byState[state] = [];
    layout.counts.forEach((count, s) => {
      const offset = layout.offsets[s];
      for (let i = 0; i < count; i++) byState[stateOf(s, i)].push(offset + i);
    });
    for (const [state, seats] of Object.entries(byState)) {
      ctx.fillStyle = PALETTE[state];
      for (const seat of seats) ctx.fillRect(dots[2 * seat], dots[2 * seat + 1], size, size);
    }
    this.drawLabels();
  }

  drawField() {
    const { ctx, layout } = this;
    const [cx, cy] = this.toPixels(0, 0);
    ctx.fillStyle = '#eef3ee';
    ctx.strokeStyle = '#b5c7b5';
    ctx.beginPath();
    const r = this.fieldRadius();
    if (layout.ring) ctx.ellipse(cx, cy, r * layout.stretch, r, 0, 0, 2 * Math.PI);
    else ctx.rect(cx - 10 * this.scale, cy - 5 * this.scale, 20 * this.scale, 5 * this.scale);
    ctx.fill();
    ctx.stroke();
    ctx.fillStyle = '#5b6b5b';
    ctx.font = `${Math.round(Math.max(10, 3 * this.scale))}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText(layout.ring ? 'FIELD' : 'STAGE', cx, layout.ring ? cy : cy - 2.5 * this.scale);
  }

  fieldRadius() {
    const innermost = Math.min(...this.layout.shapes.map((shape) => shape.inner));
    return Math.max(0, innermost - this.layout.gap) * this.scale;
  }

  drawLabels() {
    const { ctx, layout } = this;
    const px = Math.round(Math.min(14, Math.max(8, 2.2 * this.scale)));
    ctx.font = `${px}px system-ui, sans-serif`;
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillStyle = INK;
    // Each label goes just inside its section's front row (and the outline of a highlighted
    // section), where the level inside it (or the field) leaves room; a label that would touch
    // a seat is left out.
    const lineWidth = Math.min(2, Math.max(1, this.scale / 2)); // px
    const outline = Math.max(0.8, (lineWidth + 1) / this.scale); // units from the seats
    const clear = outline + lineWidth / this.scale; // labels keep clear of any outline
    this.sections.forEach((section, s) => {
      const shape = layout.shapes[s];
      const label = section.section_id;
      const width = ctx.measureText(label).width;
      const arc = (shape.to - shape.from) * shape.inner * this.scale;
      // The label's depth in units: on a ring, wherever it sits on the oval (so a level is
      // labelled all round or not at all); a fan's labels sit at its middle, upright.
      const radial = (layout.ring ? Math.max(px, width / layout.stretch) : px) / this.scale;
      const room = shape.inner - shape.below - 2 * clear;
      if (width > arc * 0.9 || radial > room) return;
      ctx.fillText(label, ...this.polar(shape.inner - clear - radial / 2, shape.middle));
    });
    if (this.highlight !== null) {
      const shape = layout.shapes[this.highlight];
      ctx.strokeStyle = INK;
      ctx.lineWidth = lineWidth;
      ctx.beginPath();
      const steps = 24;
      for (let k = 0; k <= steps; k++) {
        const a = shape.from + ((shape.to - shape.from) * k) / steps;
        ctx.lineTo(...this.polar(shape.inner - outline, a));
      }
      for (let k = steps; k >= 0; k--) {
        const a = shape.from + ((shape.to - shape.from) * k) / steps;
        ctx.lineTo(...this.polar(shape.outer + outline, a));
      }
      ctx.closePath();
      ctx.stroke();
    }
  }

  /** Device pixels of the point at `radius`, `angle` (the ring's oval). */
  polar(radius, angle) {
    const { stretch } = this.layout;
    return this.toPixels(stretch * radius * Math.cos(angle), radius * Math.sin(angle));
  }

  /** The section under a click (CSS pixels relative to the canvas), or null. */
  sectionAt(cssX, cssY) {
    const ratio = this.canvas.width / this.canvas.clientWidth;
    const x = ((cssX * ratio) / this.scale - this.layout.width / 2) / this.layout.stretch;
    const y = (cssY * ratio) / this.scale + this.layout.top;
    const radius = Math.hypot(x, y);
    const angle = Math.atan2(y, x);
    const found = this.layout.shapes.findIndex((shape) => {
      if (radius < shape.inner - 1 || radius > shape.outer + 1) return false;
      const turns = Math.ceil((shape.from - angle) / (2 * Math.PI));
      const a = angle + turns * 2 * Math.PI; // the same direction, at or after `from`
      return a <= shape.to;
    });
    return found < 0 ? null : found;
  }

  /** The seat's centre in CSS pixels relative to the canvas. */
  pointOf(seat) {
    const ratio = this.canvas.width / this.canvas.clientWidth;
    const half = this.size / 2;
    return [(this.dots[2 * seat] + half) / ratio, (this.dots[2 * seat + 1] + half) / ratio];
  }

  /** The state whose colour is drawn at the seat's dot (read back from the canvas). */
  drawnState(seat) {
    if (this.dots === null) return null;
    const half = Math.floor(this.size / 2);
    const x = this.dots[2 * seat] + half;
    const y = this.dots[2 * seat + 1] + half;
    const [r, g, b] = this.ctx.getImageData(x, y, 1, 1).data;
    const hex = `#${[r, g, b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
    const match = Object.entries(PALETTE).find(([, colour]) => colour === hex);
    return match ? match[0] : hex;
  }
}

/** One section, row by row, big enough to click single seats. */
export class Detail {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.section = null;
  }

  show(section, index) {
    this.section = section;
    this.index = index;
    const widest = Math.max(...section.rows.map((row) => row.seats.length));
    const cssWidth = Math.max(200, this.canvas.parentElement.clientWidth || 600);
    this.labelWidth = 36;
    this.pitch = Math.max(6, Math.min(16, Math.floor((cssWidth - this.labelWidth - 8) / widest)));
    this.widest = widest;
    const ratio = window.devicePixelRatio || 1;
    const cssHeight = section.rows.length * this.pitch + 8;
    this.canvas.style.width = `${this.labelWidth + widest * this.pitch + 8}px`;
    this.canvas.style.height = `${cssHeight}px`;
    this.canvas.width = Math.round((this.labelWidth + widest * this.pitch + 8) * ratio);
    this.canvas.height = Math.round(cssHeight * ratio);
    this.ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  }

  rowStart(row) {
    return this.labelWidth + ((this.widest - row.seats.length) * this.pitch) / 2;
  }

  /** `outlineOf(section, seat)`: the colour of the seat's price-tier outline, or null. */
  draw(stateOf, outlineOf = () => null) {
    if (this.section === null) return;
    const { ctx, pitch } = this;
    ctx.lineWidth = Math.max(1.5, pitch * 0.12);
    ctx.fillStyle = BACKGROUND;
    ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    ctx.font = `${Math.min(12, pitch)}px system-ui, sans-serif`;
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    let seat = 0;
    this.section.rows.forEach((row, r) => {
      const y = 4 + r * pitch + pitch / 2;
      ctx.fillStyle = INK;
      ctx.fillText(row.row_id, this.labelWidth - 6, y);
      const start = this.rowStart(row);
      for (let j = 0; j < row.seats.length; j++, seat++) {
        const x = start + j * pitch + pitch / 2;
        ctx.fillStyle = PALETTE[stateOf(this.index, seat)];
        ctx.beginPath();
        ctx.arc(x, y, pitch * 0.3, 0, 2 * Math.PI);
        ctx.fill();
        const outline = outlineOf(this.index, seat);
        if (outline !== null) {
          ctx.strokeStyle = outline;
          ctx.beginPath();
          ctx.arc(x, y, pitch * 0.42, 0, 2 * Math.PI);
          ctx.stroke();
        }
      }
    });
  }

  /** The centre of seat `seat` (index within the section) in CSS pixels. */
  pointOf(seat) {
    let r = 0;
    let first = 0;
    while (seat >= first + this.section.rows[r].seats.length) {
      first += this.section.rows[r].seats.length;
      r += 1;
    }
    const x = this.rowStart(this.section.rows[r]) + (seat - first + 0.5) * this.pitch;
    return [x, 4 + (r + 0.5) * this.pitch];
  }

  /** The seat index (within the section) under a click in CSS pixels, or null. */
  seatAt(cssX, cssY) {
    if (this.section === null) return null;
    const r = Math.floor((cssY - 4) / this.pitch);
    const row = this.section.rows[r];
    if (!row) return null;
    const j = Math.floor((cssX - this.rowStart(row)) / this.pitch);
    if (j < 0 || j >= row.seats.length) return null;
    let seat = j;
    for (let k = 0; k < r; k++) seat += this.section.rows[k].seats.length;
    return seat;
  }
}
