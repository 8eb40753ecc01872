// The series chart view: #/chart?metric=m&label=k%3Dv&range=24h. One chart per series the
// filters match (cursors synced), the range buttons, and the anomalies of the range as a table.

import { get } from "./api.js";
import { fill, h, section, timeEl } from "./dom.js";
import {
  duration,
  labelFilters,
  labelText,
  matchersSelect,
  num,
  parseFilters,
  sameLabels,
  seriesLabelsOfAlert,
  seriesText,
  time,
} from "./format.js";
import { chartLink, RANGES, rangeOf, seriesLink } from "./route.js";

// uPlot is evaluated only when a chart is shown, and while the chart's data is on its way: the
// overview never pays for it, and the first chart doesn't wait for data *and then* for uPlot.
let plotModule = null;
const loadPlot = () => (plotModule ??= import("./plot.js"));

const POINTS = 1000;
const MAX_CHARTS = 20;
const MAX_ROWS = 200;

export class ChartView {
  constructor(root, params) {
    this.root = root;
    this.alive = true;
    this.metric = params.get("metric") || "";
    this.labels = parseFilters(params.getAll("label"));
    this.range = rangeOf(params);
    this.plots = new Map();
    this.scheme = matchMedia("(prefers-color-scheme: dark)");
    this.onScheme = () => this.plots.forEach((p) => p.rebuild());
    this.scheme.addEventListener("change", this.onScheme);
    this.render();
  }

  render() {
    document.title = `${this.metric || "Chart"} · infrawatch`;
    if (!this.metric) {
      fill(
        this.root,
        h("h1", {}, "Chart"),
        h(
          "p",
          {},
          "No metric in the link. ",
          h("a", { href: seriesLink("") }, "Browse the series"),
          ".",
        ),
      );
      return;
    }
    this.buttons = RANGES.map((r) =>
      h(
        "button",
        {
          type: "button",
          class: "range",
          "data-range": r,
          "aria-pressed": String(r === this.range),
        },
        r,
      ),
    );
    for (const b of this.buttons) {
      b.addEventListener("click", () => {
        location.hash = chartLink(this.metric, this.labels, b.dataset.range);
      });
    }
    const filters = labelText(this.labels);
    this.meta = h("p", { class: "muted meta" }, "Loading…");
    this.charts = h("div", { class: "charts" });
    this.table = h("div");
    fill(
      this.root,
      h(
        "div",
        { class: "chart-head" },
        h(
          "h1",
          {},
          h("code", {}, this.metric),
          filters ? h("span", { class: "labels" }, ` {${filters}}`) : null,
        ),
        h("div", { class: "ranges", role: "group", "aria-label": "Time range" }, this.buttons),
      ),
      this.meta,
      (this.key = h(
        "ul",
        { class: "key", "aria-label": "Chart key" },
        h("li", { class: "key-line" }, "value"),
        h("li", { class: "key-env", hidden: true }, "min–max per step"),
        h("li", { class: "key-band", hidden: true }, "expected band"),
        h("li", { class: "key-threshold", hidden: true }, "threshold"),
        h("li", { class: "key-alert", hidden: true }, "alert (firing → resolved)"),
        h("li", { class: "key-marker", hidden: true }, "anomaly: hover or focus for the evidence"),
      )),
      this.charts,
      this.table,
    );
  }

  /** Same metric and labels, other range: keep the page, fetch the new range. */
  update(params) {
    if (params.get("metric") !== this.metric) return false;
    if (!sameLabels(parseFilters(params.getAll("label")), this.labels)) return false;
    this.range = rangeOf(params);
    for (const b of this.buttons || [])
      b.setAttribute("aria-pressed", String(b.dataset.range === this.range));
    return true;
  }

  async refresh() {
    if (!this.metric) return;
    const range = this.range;
    const label = labelFilters(this.labels);
    const [samples, anomalies, alerts, { Plot }] = await Promise.all([
      get("samples", { metric: this.metric, label, since: range, points: POINTS }),
      get("anomalies", { metric: this.metric, label, since: range, limit: 1000 }),
      get("alerts"),
      loadPlot(),
    ]);
    if (!this.alive || range !== this.range) return;
    this.Plot = Plot;
    this.show(samples, anomalies, alerts);
  }

  show(samples, anomalies, alerts) {
    const all = samples.series;
    const shown = all.slice(0, MAX_CHARTS);
    const step = samples.step_seconds ? `, ${duration(samples.step_seconds)} steps` : "";
    fill(
      this.meta,
      `${all.length} series · ${samples.resolution} data${step} · `,
      timeEl(samples.since, time(samples.since)),
      " – ",
      timeEl(samples.until, time(samples.until)),
      all.length > shown.length ? ` · showing the first ${shown.length}: add labels to narrow` : "",
    );
    const ours = alerts.filter((a) => a.metric === samples.metric);
    const keep = new Set();
    for (const s of shown) {
      const key = JSON.stringify(labelFilters(s.labels));
      keep.add(key);
      const model = {
        series: s,
        resolution: samples.resolution,
        since: samples.since,
        until: samples.until,
        // The contract's thresholds are per metric; one that names its rule's label matchers
        // is drawn only on the series the rule watches (cpu_high watches the total, not cpu=0).
        thresholds: samples.thresholds.filter(
          (t) => !t.labels || matchersSelect(t.labels, s.labels),
        ),
        bands: samples.bands.filter((b) => sameLabels(b.labels, s.labels)),
        anomalies: anomalies
          .filter((a) => sameLabels(a.labels, s.labels))
          .sort((a, b) => a.ts - b.ts),
        alerts: ours.filter((a) => sameLabels(seriesLabelsOfAlert(a.labels), s.labels)),
      };
      const existing = this.plots.get(key);
      if (existing) {
        existing.update(model, this.shownRange !== this.range);
        fill(existing.caption, ...this.caption(samples.metric, model));
      } else {
        this.addPlot(key, samples.metric, model);
      }
    }
    for (const [key, plot] of this.plots) {
      if (!keep.has(key)) {
        plot.destroy();
        plot.figure.remove();
        this.plots.delete(key);
      }
    }
    if (shown.length === 0) {
      this.charts.replaceChildren(
        h("p", { class: "empty" }, "No data for this series in this range."),
      );
    } else {
      this.charts.querySelector(".empty")?.remove();
    }
    fill(this.table, this.anomalyTable(anomalies));
    this.shownRange = this.range;
    // The key names only what these charts draw.
    const models = [...this.plots.values()].map((p) => p.model);
    const present = {
      "key-env": samples.resolution !== "raw",
      "key-band": models.some((m) => m.bands.length),
      "key-threshold": models.some((m) => m.thresholds.length),
      "key-alert": models.some((m) => m.alerts.length),
      "key-marker": models.some((m) => m.anomalies.length),
    };
    for (const [cls, shown] of Object.entries(present))
      this.key.querySelector(`.${cls}`).hidden = !shown;
  }

  addPlot(key, metric, model) {
    const caption = h("figcaption", {}, ...this.caption(metric, model));
    const box = h("div", { class: "plot" });
    const figure = h(
      "figure",
      { class: "chart", "data-series": labelText(model.series.labels) },
      caption,
      box,
    );
    this.charts.append(figure);
    const plot = new this.Plot(box, model);
    plot.figure = figure;
    plot.caption = caption;
    this.plots.set(key, plot);
  }

  caption(metric, model) {
    const parts = [h("span", { class: "series-name" }, seriesText(metric, model.series.labels))];
    for (const b of model.bands)
      parts.push(h("span", { class: "band-text" }, `expected (${b.detector}): ${b.text}`));
    for (const t of model.thresholds) {
      parts.push(
        h(
          "span",
          { class: `threshold-text sev-${t.severity}` },
          `${t.rule} (${t.severity}) ${t.op} ${num(t.level)}`,
        ),
      );
    }
    const firing = model.alerts.filter((a) => a.state === "firing");
    if (firing.length)
      parts.push(h("span", { class: "badge sev-critical" }, `${firing.length} firing`));
    return parts;
  }

  anomalyTable(anomalies) {
    const rows = [...anomalies].sort((a, b) => b.ts - a.ts).slice(0, MAX_ROWS);
    if (rows.length === 0)
      return section("Anomalies in this range", 0, h("p", { class: "empty" }, "None."));
    return section(
      "Anomalies in this range",
      anomalies.length,
      h(
        "table",
        { class: "list" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Time", "Series", "Detector", "Severity", "Value", "Evidence"].map((c) =>
              h("th", { scope: "col" }, c),
            ),
          ),
        ),
        h(
          "tbody",
          {},
          rows.map((a) =>
            h(
              "tr",
              {},
              h("td", { class: "nowrap" }, timeEl(a.ts, time(a.ts))),
              h("td", {}, h("code", {}, labelText(a.labels) || a.metric)),
              h("td", {}, a.detector),
              h("td", {}, h("span", { class: `badge sev-${a.severity}` }, a.severity)),
              h("td", { class: "num" }, num(a.value)),
              h("td", {}, a.summary),
            ),
          ),
        ),
      ),
    );
  }

  destroy() {
    this.alive = false;
    this.scheme.removeEventListener("change", this.onScheme);
    for (const plot of this.plots.values()) plot.destroy();
    this.plots.clear();
  }
}
