// Hash routing: the URL holds the view and its parameters, so a link opens the same view.
//   #/                                   overview
//   #/series?match=system.*&label=k%3Dv  series browser
//   #/chart?metric=m&label=k%3Dv&range=24h

import { labelFilters } from "./format.js";

export const RANGES = ["1h", "6h", "24h", "7d", "30d"];
export const DEFAULT_RANGE = "24h";
const RANGE_SECONDS = { "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800, "30d": 2592000 };

/** The current route: {view, params: URLSearchParams}. */
export function current() {
  const hash = location.hash.replace(/^#/, "");
  const [path, query = ""] = hash.split("?", 2);
  const view = path.replace(/^\/+|\/+$/g, "") || "overview";
  return { view, params: new URLSearchParams(query) };
}

function link(view, entries) {
  const query = new URLSearchParams(entries.filter(([, v]) => v != null && v !== ""));
  const text = query.toString();
  return `#/${view}${text ? `?${text}` : ""}`;
}

/** The deep link of a chart: metric, labels {k: v} and range. */
export function chartLink(metric, labels, range = DEFAULT_RANGE) {
  return link("chart", [
    ["metric", metric],
    ...labelFilters(labels).map((f) => ["label", f]),
    ["range", range],
  ]);
}

/** The link of the series browser with a name glob and `k=v` filters. */
export function seriesLink(match, filters = []) {
  return link("series", [["match", match], ...filters.map((f) => ["label", f])]);
}

/** A range name from the URL, or the default when it is not one of RANGES. */
export function rangeOf(params) {
  const range = params.get("range");
  return RANGES.includes(range) ? range : DEFAULT_RANGE;
}

/** The smallest range that shows `ageSeconds` of history with some context before it. */
export function rangeFor(ageSeconds) {
  return RANGES.find((r) => RANGE_SECONDS[r] >= ageSeconds * 1.5) || RANGES[RANGES.length - 1];
}
