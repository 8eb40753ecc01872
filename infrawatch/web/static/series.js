// The series browser (#/series?match=glob&label=k%3Dv): filter by name glob and labels, with
// the last value and a sparkline of the last hour per series.

import { get } from "./api.js";
import { fill, h, section, sparkline } from "./dom.js";
import { duration, labelText, num } from "./format.js";
import { chartLink, seriesLink } from "./route.js";

const LIMIT = 500;

export class SeriesView {
  constructor(root, params) {
    this.root = root;
    this.alive = true;
    document.title = "Series · infrawatch";
    this.match = h("input", {
      id: "f-match",
      name: "match",
      type: "search",
      placeholder: "system.cpu.*",
      autocomplete: "off",
      spellcheck: "false",
    });
    this.labels = h("input", {
      id: "f-labels",
      name: "labels",
      type: "search",
      placeholder: "device=sda direction=read",
      autocomplete: "off",
      spellcheck: "false",
      "aria-describedby": "f-labels-help",
    });
    const form = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter series" },
      h("div", { class: "field" }, h("label", { for: "f-match" }, "Name (glob)"), this.match),
      h(
        "div",
        { class: "field" },
        h("label", { for: "f-labels" }, "Labels"),
        this.labels,
        h("small", { id: "f-labels-help", class: "muted" }, "k=v, separated by spaces"),
      ),
      h("button", { type: "submit" }, "Filter"),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const filters = this.labels.value.split(/[\s,]+/).filter((f) => f.includes("="));
      location.hash = seriesLink(this.match.value.trim(), filters);
    });
    this.results = h("div", {}, h("p", { class: "muted" }, "Loading…"));
    fill(root, h("h1", {}, "Series"), form, this.results);
    this.update(params);
  }

  /** New filters from the URL: keep the form (and its focus), fetch again. */
  update(params) {
    this.params = { match: params.get("match") || "", label: params.getAll("label") };
    this.match.value = this.params.match;
    this.labels.value = this.params.label.join(" ");
    this.last = null;
    return true;
  }

  async refresh(statusPromise) {
    const params = this.params;
    const [series, status] = await Promise.all([
      get("series", { ...params, limit: LIMIT }),
      statusPromise?.catch(() => null), // app.js reports a status failure; ages fall back to ours
    ]);
    if (!this.alive || params !== this.params) return;
    this.now = status?.now ?? Date.now() / 1000;
    const key = JSON.stringify([series, Math.round(this.now)]);
    if (key === this.last) return;
    this.last = key;
    const focused = document.activeElement?.getAttribute("href");
    fill(this.results, this.table(series));
    if (focused) this.results.querySelector(`a[href="${CSS.escape(focused)}"]`)?.focus();
  }

  table(series) {
    const count = series.length >= LIMIT ? `${LIMIT}+` : series.length;
    if (series.length === 0) {
      return section(
        "Matching series",
        0,
        h("p", { class: "empty" }, "No series match these filters."),
      );
    }
    return section(
      "Matching series",
      count,
      h(
        "table",
        { class: "list series-table" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Series", "Last", "Age", "Score", "Last hour"].map((c) =>
              h("th", { scope: "col" }, c),
            ),
          ),
        ),
        h(
          "tbody",
          {},
          series.map((s) => {
            const age = s.last ? this.now - s.last.ts : null;
            return h(
              "tr",
              { class: s.anomalous ? "anomalous" : null },
              h(
                "td",
                {},
                h("a", { href: chartLink(s.metric, s.labels) }, s.metric),
                s.anomalous ? h("span", { class: "badge sev-warning" }, "anomalous") : null,
                labelText(s.labels) ? h("div", { class: "labels" }, labelText(s.labels)) : null,
              ),
              h("td", { class: "num" }, s.last ? num(s.last.value) : "–"),
              h("td", { class: "num" }, age == null ? "–" : duration(age)),
              h("td", { class: "num" }, num(s.score)),
              h("td", { class: "spark-cell" }, sparkline(s.spark, `${s.metric}, last hour`)),
            );
          }),
        ),
      ),
    );
  }

  destroy() {
    this.alive = false;
  }
}
