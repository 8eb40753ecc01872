// Text for numbers, times, durations and labels. Pure functions, no DOM.

const SI = [
  [1e12, "T"],
  [1e9, "G"],
  [1e6, "M"],
  [1e3, "k"],
];

/** A value in at most ~4 significant digits: 0.213, 15.2, 1.25k, 3.4M. */
export function num(value) {
  if (value == null || !Number.isFinite(value)) return "–";
  const abs = Math.abs(value);
  if (abs === 0) return "0";
  for (const [scale, suffix] of SI) {
    if (abs >= scale) return `${trim((value / scale).toPrecision(3))}${suffix}`;
  }
  if (abs >= 100) return String(Math.round(value));
  if (abs >= 0.001) return trim(value.toPrecision(3));
  return value.toExponential(1);
}

function trim(text) {
  return text.includes("e") || !text.includes(".") ? text : text.replace(/\.?0+$/, "");
}

/** A duration in seconds as "45 s", "12 min", "3 h 5 min", "17 d". */
export function duration(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, seconds);
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) {
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    return m ? `${h} h ${m} min` : `${h} h`;
  }
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  return h ? `${d} d ${h} h` : `${d} d`;
}

const pad = (n) => String(n).padStart(2, "0");

/**
 * An epoch-seconds time in the viewer's zone as "2026-01-02 15:04:05". Built by hand: a tab's
 * first Intl object loads ICU's locale data, which costs more than drawing the first chart.
 */
export function time(epochSeconds) {
  if (epochSeconds == null || !Number.isFinite(epochSeconds)) return "–";
  const d = new Date(epochSeconds * 1000);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  return `${day} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** An epoch-seconds time as RFC 3339 (for <time datetime>). */
export function isoTime(epochSeconds) {
  return new Date(epochSeconds * 1000).toISOString();
}

/** Labels {k: v} as `k="v", …` sorted by key; "" when there are none. */
export function labelText(labels) {
  return Object.keys(labels || {})
    .sort()
    .map((k) => `${k}="${labels[k]}"`)
    .join(", ");
}

/** A series as `metric{k="v"}` (Prometheus' notation). */
export function seriesText(metric, labels) {
  const text = labelText(labels);
  return text ? `${metric}{${text}}` : metric;
}

/** Labels {k: v} as the API's repeatable `k=v` filters, sorted by key. */
export function labelFilters(labels) {
  return Object.keys(labels || {})
    .sort()
    .map((k) => `${k}=${labels[k]}`);
}

/** `k=v` filters back into {k: v}; entries without "=" are ignored. */
export function parseFilters(filters) {
  const labels = {};
  for (const item of filters) {
    const at = item.indexOf("=");
    if (at > 0) labels[item.slice(0, at)] = item.slice(at + 1);
  }
  return labels;
}

/** Whether every label of `want` has the same value in `have`. */
export function labelsMatch(want, have) {
  return Object.keys(want || {}).every((k) => have && have[k] === want[k]);
}

/**
 * Whether a rule's label matchers select a series' labels: exact values, "" meaning the label
 * is absent (infrawatch/detect/match.py, as in Prometheus).
 */
export function matchersSelect(matchers, labels) {
  return Object.entries(matchers || {}).every(([k, v]) => (labels?.[k] ?? "") === v);
}

/** Whether two label sets are equal. */
export function sameLabels(a, b) {
  const ka = Object.keys(a || {});
  return ka.length === Object.keys(b || {}).length && labelsMatch(a, b);
}

// Labels an alert sets itself; a series label with one of these names travels as exported_<name>
// (infrawatch/alerting/fingerprint.py).
const RESERVED = new Set(["alertname", "metric", "severity"]);

/** The series labels inside an alert's labels (the inverse of series_alert_labels). */
export function seriesLabelsOfAlert(labels) {
  const out = {};
  for (const [key, value] of Object.entries(labels || {})) {
    if (RESERVED.has(key)) continue;
    const original = key.startsWith("exported_") ? key.slice("exported_".length) : key;
    out[RESERVED.has(original) ? original : key] = value;
  }
  return out;
}
