// One series' chart: uPlot plus what the agent knows about the series, drawn on its canvas
// (expected band, alert spans, threshold levels) and as focusable markers (anomalies, whose
// tooltip is the detector's evidence). Every chart on the page shares one cursor (cursor.sync).

import uPlot from "./vendor/uPlot.esm.js";
import { h } from "./dom.js";
import { num, time } from "./format.js";

const SYNC_KEY = "infrawatch";
const HEIGHT = 220;
const MAX_MARKERS = 300; // per chart; the table under the charts lists every anomaly

let firstChartMarked = false;
let tipIds = 0;

function palette() {
  const style = getComputedStyle(document.documentElement);
  const v = (name) => style.getPropertyValue(name).trim();
  return {
    fg: v("--fg"),
    muted: v("--muted"),
    grid: v("--grid"),
    line: v("--line"),
    env: v("--env"),
    envFill: v("--env-fill"),
    band: v("--band"),
    bandEdge: v("--band-edge"),
    firing: v("--firing-fill"),
    resolved: v("--resolved-fill"),
    warning: v("--warn"),
    critical: v("--crit"),
  };
}

/**
 * model: {series: {labels, t, v, min, max}, resolution, since, until,
 *         thresholds: [{rule, severity, level, op}], bands: [{detector, lower, upper, text}],
 *         anomalies: [{ts, value, summary, detector, rule, severity, status, score}],
 *         alerts: [{starts_at, ends_at, state, alertname, severity}]}
 */
export class Plot {
  constructor(container, model) {
    this.container = container;
    this.model = model;
    this.u = null;
    this.resize = new ResizeObserver(() => this.fit());
    this.resize.observe(container);
    this.build();
  }

  build() {
    const c = (this.colors = palette());
    const m = this.model;
    this.envelope = m.resolution !== "raw";
    const series = [
      {},
      {
        label: this.envelope ? "mean" : "value",
        stroke: c.line,
        width: 1.5,
        value: (u, v) => num(v),
      },
    ];
    if (this.envelope) {
      const edge = { stroke: c.env, width: 1, points: { show: false }, value: (u, v) => num(v) };
      series.push({ ...edge, label: "min" }, { ...edge, label: "max" });
    }
    const axis = {
      stroke: c.muted,
      grid: { stroke: c.grid, width: 1 },
      ticks: { stroke: c.grid, width: 1 },
    };
    const opts = {
      width: this.width(),
      height: HEIGHT,
      cursor: { sync: { key: SYNC_KEY, scales: ["x", null] } },
      scales: {
        x: { time: true, range: (u, lo, hi) => this.xRange(lo, hi) },
        y: { range: (u, lo, hi) => this.yRange(lo, hi) },
      },
      axes: [axis, { ...axis, size: 56, values: (u, splits) => splits.map(num) }],
      series,
      bands: this.envelope ? [{ series: [3, 2], fill: c.envFill }] : [],
      legend: { live: true },
      hooks: {
        drawClear: [(u) => this.drawBehind(u)],
        draw: [(u) => this.drawInFront(u)],
      },
    };
    this.u = new uPlot(opts, this.data(), this.container);
    this.layer = h("div", { class: "markers" });
    this.tip = h("div", { class: "tip", role: "tooltip", id: `tip-${++tipIds}`, hidden: true });
    this.u.over.append(this.layer, this.tip);
    this.makeMarkers();
    this.placeMarkers(this.u);
  }

  /** New data for the same series: keeps a zoom the user made (unless `reset`: a new range). */
  update(model, reset = false) {
    const old = this.model;
    this.model = model;
    if ((model.resolution !== "raw") !== this.envelope) {
      this.rebuild();
      return;
    }
    const x = this.u.scales.x;
    const zoomed = !reset && (x.min > old.since + 1e-6 || x.max < old.until - 1e-6);
    this.makeMarkers();
    this.u.setData(this.data(), !zoomed);
  }

  /** Build again (the colour scheme changed). */
  rebuild() {
    this.u.destroy();
    this.build();
  }

  destroy() {
    this.resize.disconnect();
    this.u?.destroy();
  }

  data() {
    const s = this.model.series;
    return this.envelope ? [s.t, s.v, s.min, s.max] : [s.t, s.v];
  }

  width() {
    return Math.max(240, this.container.clientWidth || 600);
  }

  fit() {
    if (this.u && Math.abs(this.u.width - this.width()) > 1) {
      this.u.setSize({ width: this.width(), height: HEIGHT });
    }
  }

  // The whole requested range, even where there is no data yet, unless the user zoomed in:
  // uPlot asks for the data's own extent when it auto-ranges, so that call gets [since, until].
  xRange(lo, hi) {
    const t = this.model.series.t;
    const auto = lo == null || t.length === 0 || (lo === t[0] && hi === t[t.length - 1]);
    return auto ? [this.model.since, this.model.until] : [lo, hi];
  }

  // The data plus the levels drawn over it (expected band, thresholds), so none is off-screen.
  yRange(lo, hi) {
    const values = [lo, hi];
    for (const b of this.model.bands) values.push(b.lower, b.upper);
    for (const t of this.model.thresholds) values.push(t.level);
    const finite = values.filter((v) => v != null && Number.isFinite(v));
    if (finite.length === 0) return [0, 1];
    let min = Math.min(...finite);
    let max = Math.max(...finite);
    const pad = (max - min) * 0.08 || Math.abs(max) * 0.1 || 1;
    const floor = min >= 0 && min - pad < 0 ? 0 : min - pad;
    return [floor, max + pad];
  }

  drawBehind(u) {
    if (this.model.bands.length === 0 && this.model.alerts.length === 0) return;
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    for (const band of this.model.bands) {
      const y1 = u.valToPos(band.upper, "y", true);
      const y2 = u.valToPos(band.lower, "y", true);
      ctx.fillStyle = this.colors.band;
      ctx.fillRect(left, y1, width, y2 - y1);
      ctx.strokeStyle = this.colors.bandEdge;
      ctx.lineWidth = devicePixelRatio;
      ctx.beginPath();
      ctx.moveTo(left, y1);
      ctx.lineTo(left + width, y1);
      ctx.moveTo(left, y2);
      ctx.lineTo(left + width, y2);
      ctx.stroke();
    }
    for (const alert of this.model.alerts) {
      const end =
        alert.state === "firing" || alert.ends_at == null ? this.model.until : alert.ends_at;
      const x1 = u.valToPos(alert.starts_at, "x", true);
      const x2 = u.valToPos(Math.max(end, alert.starts_at), "x", true);
      ctx.fillStyle = alert.state === "firing" ? this.colors.firing : this.colors.resolved;
      ctx.fillRect(x1, top, Math.max(x2 - x1, devicePixelRatio), height);
      ctx.fillStyle = this.colors[alert.severity] || this.colors.critical;
      ctx.fillRect(x1, top, 2 * devicePixelRatio, height);
    }
    ctx.restore();
  }

  drawInFront(u) {
    this.drawThresholds(u);
    this.placeMarkers(u);
    if (!firstChartMarked && this.model.series.t.length > 0) {
      firstChartMarked = true;
      performance.mark("first-chart"); // read by bench/page.py: time to first chart
    }
  }

  drawThresholds(u) {
    if (this.model.thresholds.length === 0) return;
    const { ctx } = u;
    const { left, top, width, height } = u.bbox;
    const ratio = devicePixelRatio;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    const fontPx = Math.round(11 * ratio);
    ctx.font = `${fontPx}px system-ui, sans-serif`;
    ctx.textAlign = "right";
    const lines = this.model.thresholds
      .map((t) => ({ t, y: Math.round(u.valToPos(t.level, "y", true)) + 0.5 }))
      .sort((a, b) => a.y - b.y);
    let taken = -Infinity; // the lowest pixel row used by a label so far (labels go top-down)
    for (const { t, y } of lines) {
      const color = this.colors[t.severity] || this.colors.critical;
      ctx.strokeStyle = color;
      ctx.lineWidth = ratio;
      ctx.setLineDash([6 * ratio, 4 * ratio]);
      ctx.beginPath();
      ctx.moveTo(left, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      ctx.fillStyle = color;
      // Above the line, unless that leaves the plot or overlaps the label above: then below.
      const aboveTop = y - 2 * ratio - fontPx;
      const below = aboveTop < top || aboveTop < taken;
      ctx.textBaseline = below ? "top" : "bottom";
      const ty = below ? y + 3 * ratio : y - 2 * ratio;
      taken = below ? ty + fontPx : ty;
      const text = `${t.rule} (${t.severity}) ${t.op} ${num(t.level)}`;
      ctx.fillText(text, left + width - 4 * ratio, ty);
    }
    ctx.restore();
  }

  makeMarkers() {
    if (!this.layer) return;
    this.hideTip();
    const anomalies = this.model.anomalies.slice(-MAX_MARKERS);
    this.markers = anomalies.map((a) => {
      const label = `${a.severity} anomaly at ${time(a.ts)}: ${a.summary}`;
      const el = h("button", {
        type: "button",
        class: `marker sev-${a.severity}`,
        "aria-label": label,
        "aria-describedby": this.tip.id,
        "data-ts": a.ts,
      });
      el.addEventListener("mouseenter", () => this.showTip(el, a));
      el.addEventListener("focus", () => this.showTip(el, a));
      el.addEventListener("mouseleave", () => this.hideTip());
      el.addEventListener("blur", () => this.hideTip());
      el.addEventListener("keydown", (e) => e.key === "Escape" && this.hideTip());
      return { el, a };
    });
    this.layer.replaceChildren(...this.markers.map((m) => m.el));
  }

  placeMarkers(u) {
    if (!this.markers?.length) return;
    // The plot's size from uPlot, not from the DOM: reading clientWidth here forces a layout.
    const w = u.bbox.width / devicePixelRatio;
    const hgt = u.bbox.height / devicePixelRatio;
    for (const { el, a } of this.markers) {
      const x = u.valToPos(a.ts, "x");
      const y = a.value == null || !Number.isFinite(a.value) ? 8 : u.valToPos(a.value, "y");
      el.hidden = !(x >= 0 && x <= w);
      // CSSOM writes, not a style attribute: allowed by the CSP.
      el.style.left = `${x}px`;
      el.style.top = `${Math.min(Math.max(y, 0), hgt)}px`;
    }
  }

  showTip(el, a) {
    const tip = this.tip;
    tip.replaceChildren(
      h("p", { class: "tip-summary" }, a.summary || "anomaly"),
      h(
        "p",
        { class: "tip-meta" },
        [...new Set([a.detector, a.rule, a.severity, a.status])].filter(Boolean).join(" · "),
      ),
      h(
        "p",
        { class: "tip-meta" },
        `${time(a.ts)} · value ${num(a.value)} · score ${num(a.score)}`,
      ),
    );
    tip.hidden = false;
    const x = parseFloat(el.style.left) || 0;
    const y = parseFloat(el.style.top) || 0;
    const flip = x > this.u.bbox.width / devicePixelRatio / 2;
    tip.classList.toggle("flip", flip);
    // Beside the marker, not over it: the spike under the marker stays in view.
    tip.style.left = `${flip ? x - 14 : x + 14}px`;
    tip.style.top = `${Math.max(0, y - 12)}px`;
  }

  hideTip() {
    if (this.tip) this.tip.hidden = true;
  }
}
