// DOM building. Text always goes in as text nodes (metric names and labels come from scraped
// targets, so never innerHTML), and never a style attribute: the CSP forbids inline style.

const SVG_NS = "http://www.w3.org/2000/svg";

/**
 * An element: h("a", {href: "#/", class: "x"}, "text", child…). Attribute values of null or
 * false are left out, true sets an empty attribute; children may be strings, nodes or arrays.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (name === "style") throw new Error("inline style is blocked by the page's CSP");
    if (name.startsWith("on")) throw new Error("inline handlers are blocked by the page's CSP");
    el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children) {
    if (child == null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace everything inside `el` with `children`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A section with a heading and content; `count` (if given) follows the title. */
export function section(title, count, ...children) {
  const id = `s-${title.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`;
  return h(
    "section",
    { class: "panel", "aria-labelledby": id },
    h("h2", { id }, title, count == null ? null : h("span", { class: "count" }, String(count))),
    ...children,
  );
}

/**
 * A sparkline as inline SVG: a polyline per run of non-null values, scaled to the box. Its
 * accessible name says the range it shows.
 */
export function sparkline(values, label) {
  const svg = document.createElementNS(SVG_NS, "svg");
  const width = 100;
  const height = 24;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("class", "spark");
  svg.setAttribute("role", "img");
  const finite = (values || []).filter((v) => v != null && Number.isFinite(v));
  if (finite.length === 0) {
    svg.setAttribute("aria-label", `${label}: no data`);
    return svg;
  }
  let lo = Math.min(...finite);
  let hi = Math.max(...finite);
  svg.setAttribute("aria-label", `${label}: ${lo.toPrecision(3)} to ${hi.toPrecision(3)}`);
  if (hi === lo) {
    hi += 1;
    lo -= 1;
  }
  const n = values.length;
  const x = (i) => (n === 1 ? width / 2 : (i / (n - 1)) * width).toFixed(1);
  const y = (v) => (height - 2 - ((v - lo) / (hi - lo)) * (height - 4)).toFixed(1);
  let run = [];
  const flush = () => {
    if (run.length === 1) run.push(run[0]); // a lone point still shows as a dot-sized line
    if (run.length) {
      const line = document.createElementNS(SVG_NS, "polyline");
      line.setAttribute("points", run.join(" "));
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(line);
    }
    run = [];
  };
  values.forEach((v, i) => {
    if (v == null || !Number.isFinite(v)) flush();
    else run.push(`${x(i)},${y(v)}`);
  });
  flush();
  return svg;
}

/** A <time> element showing `text` for an epoch-seconds instant. */
export function timeEl(epochSeconds, text) {
  const iso = new Date(epochSeconds * 1000).toISOString();
  return h("time", { datetime: iso }, text);
}
