// The overview (#/): firing alerts with their evidence, active silences and what they mute,
// what is anomalous now, producers and sinks. The status header itself is drawn by app.js on every view.

import { get } from "./api.js";
import { fill, h, section, sparkline, timeEl } from "./dom.js";
import { duration, labelText, num, seriesLabelsOfAlert, seriesText, time } from "./format.js";
import { chartLink, rangeFor } from "./route.js";

const ANOMALOUS_LIMIT = 50; // the API ranks anomalous series first, so the top 50 hold them

export class OverviewView {
  constructor(root) {
    this.root = root;
    this.alive = true;
    this.last = null;
    document.title = "Overview · infrawatch";
    fill(
      root,
      h("h1", { class: "visually-hidden" }, "Overview"),
      h("p", { class: "muted" }, "Loading…"),
    );
  }

  update() {
    return true; // the overview has no parameters
  }

  async refresh(statusPromise) {
    const [status, alerts, series, silences] = await Promise.all([
      statusPromise,
      get("alerts", { state: "firing" }),
      get("series", { limit: ANOMALOUS_LIMIT }),
      // An agent without /api/v1/silences (older) still gets the rest of the overview.
      get("silences").catch(() => null),
    ]);
    if (!this.alive) return;
    const anomalous = series.filter((s) => s.anomalous);
    // Redraw only on change, so a refresh neither flickers nor moves keyboard focus.
    const key = JSON.stringify([alerts, anomalous, status.producers, status.sinks, silences]);
    if (key === this.last) return;
    this.last = key;
    const focused = document.activeElement?.getAttribute("href");
    fill(
      this.root,
      h("h1", { class: "visually-hidden" }, "Overview"),
      h(
        "div",
        { class: "grid" },
        this.alerts(alerts, status.now),
        silences ? this.silences(silences) : null,
        this.anomalous(anomalous),
        this.producers(status.producers),
        this.sinks(status.sinks),
      ),
    );
    if (focused) this.root.querySelector(`a[href="${CSS.escape(focused)}"]`)?.focus();
  }

  alerts(alerts, now) {
    const firing = alerts.filter((a) => a.state === "firing");
    if (firing.length === 0) {
      return section("Firing alerts", 0, h("p", { class: "empty" }, "No alerts firing."));
    }
    return section(
      "Firing alerts",
      firing.length,
      h(
        "ul",
        { class: "alerts" },
        firing.map((a) => {
          const labels = seriesLabelsOfAlert(a.labels);
          const age = now - a.starts_at;
          const link = chartLink(a.metric, labels, rangeFor(age));
          return h(
            "li",
            { class: `alert sev-${a.severity}` },
            h(
              "div",
              { class: "alert-head" },
              h("span", { class: `badge sev-${a.severity}` }, a.severity),
              h("strong", { class: "alertname" }, a.alertname),
              silencedBadge(a),
              a.flapping ? h("span", { class: "badge muted-badge" }, "flapping") : null,
              h("a", { href: link, class: "chart-link" }, "Open chart"),
            ),
            h("p", { class: "summary" }, a.summary),
            h(
              "p",
              { class: "alert-meta" },
              h("code", {}, seriesText(a.metric, labels)),
              " · firing since ",
              timeEl(a.starts_at, time(a.starts_at)),
              ` (${duration(age)})`,
            ),
          );
        }),
      ),
    );
  }

  silences(silences) {
    const active = silences.filter((s) => s.state === "active");
    return section(
      "Silences",
      active.length,
      table(
        ["Silence", "Matchers", "By", "Comment", "Until", "Mutes"],
        active.map((s) => [
          h("code", { title: s.id }, shortId(s.id)),
          h("code", {}, s.matchers.join(" ")),
          s.created_by,
          s.comment || "–",
          s.ends_at == null ? "no end" : timeEl(s.ends_at, time(s.ends_at)),
          s.mutes.length ? s.mutes.map((a) => a.alertname).join(", ") : "nothing firing",
        ]),
        "No active silences.",
      ),
    );
  }

  anomalous(series) {
    if (series.length === 0) {
      return section(
        "Anomalous now",
        0,
        h("p", { class: "empty" }, "Nothing anomalous right now."),
      );
    }
    return section(
      "Anomalous now",
      series.length,
      h(
        "table",
        { class: "list" },
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            ["Series", "Score", "Last", "Last hour"].map((c) => h("th", { scope: "col" }, c)),
          ),
        ),
        h(
          "tbody",
          {},
          series.map((s) =>
            h(
              "tr",
              {},
              h(
                "td",
                {},
                h("a", { href: chartLink(s.metric, s.labels) }, s.metric),
                labelText(s.labels) ? h("div", { class: "labels" }, labelText(s.labels)) : null,
              ),
              h("td", { class: "num" }, detectorScores(s)),
              h("td", { class: "num" }, s.last ? num(s.last.value) : "–"),
              h("td", { class: "spark-cell" }, sparkline(s.spark, `${s.metric}, last hour`)),
            ),
          ),
        ),
      ),
    );
  }

  producers(producers) {
    return section(
      "Producers",
      producers.length,
      table(
        ["Producer", "Health", "Interval", "Last tick", "Failures in a row", "Collected", "Errors"],
        producers.map((p) => [
          p.name,
          h("span", { class: `badge ${p.ok ? "ok" : "sev-critical"}` }, p.ok ? "ok" : "stale"),
          duration(p.interval_seconds),
          p.seconds_since_tick == null ? "never" : `${duration(p.seconds_since_tick)} ago`,
          num(p.consecutive_failures),
          num(p.collected),
          num(p.errors),
        ]),
        "No producers.",
      ),
    );
  }

  sinks(sinks) {
    return section(
      "Sinks",
      sinks.length,
      table(
        ["Sink", "Type", "Sent", "Failed", "Pending", "Rate limited", "Gone"],
        sinks.map((s) => [
          s.name,
          s.type,
          num(s.sent),
          num(s.failed),
          num(s.pending),
          num(s.rate_limited),
          gone(s.gone),
        ]),
        "No sinks: alerts go to the log.",
      ),
    );
  }

  destroy() {
    this.alive = false;
  }
}

// Runtime silences have uuid ids: the first 8 characters are enough to tell them apart (and
// `infrawatch silence expire` takes them); config ones (`config-1`) are short already.
function shortId(id) {
  return id.startsWith("config-") ? id : id.slice(0, 8);
}

function silencedBadge(a) {
  if (a.silenced_by) {
    return h("span", { class: "badge muted-badge", title: a.silenced_by },
      `silenced by ${shortId(a.silenced_by)}`);
  }
  return a.silenced ? h("span", { class: "badge muted-badge" }, "silenced") : null;
}

// `gone` is a flag (the receiver said the webhook no longer exists) or a count of such answers.
function gone(value) {
  if (value === true || (typeof value === "number" && value > 0)) {
    return h("span", { class: "badge sev-critical" }, value === true ? "gone" : num(value));
  }
  return value === false ? "no" : num(value);
}

function detectorScores(s) {
  const parts = Object.entries(s.detectors || {})
    .filter(([, d]) => d.anomalous)
    .map(([name]) => name);
  return h(
    "span",
    {},
    h("strong", {}, num(s.score)),
    parts.length ? h("div", { class: "labels" }, parts.join(", ")) : null,
  );
}

function table(columns, rows, empty) {
  if (rows.length === 0) return h("p", { class: "empty" }, empty);
  return h(
    "table",
    { class: "list" },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        columns.map((c) => h("th", { scope: "col" }, c)),
      ),
    ),
    h(
      "tbody",
      {},
      rows.map((cells) =>
        h(
          "tr",
          {},
          cells.map((c, i) => h(i === 0 ? "th" : "td", i === 0 ? { scope: "row" } : {}, c)),
        ),
      ),
    ),
  );
}
