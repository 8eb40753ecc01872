// The page's entry point: hash routing between the views, the status header, and one refresh
// loop at the agent's producer interval that stops while the tab is hidden.

import { get } from "./api.js";
import { ChartView } from "./chart.js";
import { fill, h } from "./dom.js";
import { duration, num } from "./format.js";
import { OverviewView } from "./overview.js";
import { Refresher } from "./refresh.js";
import { current } from "./route.js";
import { SeriesView } from "./series.js";

const VIEWS = { overview: OverviewView, series: SeriesView, chart: ChartView };

class NotFoundView {
  constructor(root) {
    document.title = "Not found · infrawatch";
    fill(
      root,
      h("h1", {}, "Not found"),
      h("p", {}, "No such view. ", h("a", { href: "#/" }, "Back to the overview"), "."),
    );
  }
  async refresh() {}
  update() {
    return false;
  }
  destroy() {}
}

const main = document.getElementById("main");
const statusEl = document.getElementById("status");
const errorEl = document.getElementById("error");
let view = null;
let viewName = null;

const refresher = new Refresher(tick);

async function tick() {
  const active = view;
  const statusPromise = get("status");
  const [status, shown] = await Promise.allSettled([statusPromise, active.refresh(statusPromise)]);
  const errors = new Set();
  if (status.status === "fulfilled") {
    renderStatus(status.value);
    refresher.period = status.value.interval_seconds;
  } else {
    errors.add(status.reason.message);
  }
  if (shown.status === "rejected" && active === view) errors.add(shown.reason.message);
  showErrors([...errors]);
}

function renderStatus(s) {
  const item = (term, value, cls) =>
    h("div", {}, h("dt", {}, term), h("dd", { class: cls }, value));
  fill(
    statusEl,
    item("Host", s.host),
    item("Version", s.version),
    item("Uptime", duration(s.uptime_seconds)),
    item("Queue", `${num(s.queue.depth)} / ${num(s.queue.capacity)}`),
    item("Dropped", num(s.dropped), s.dropped > 0 ? "warn" : null),
    item("Firing", num(s.alerts.firing), s.alerts.firing > 0 ? "crit" : null),
    s.store.open ? null : item("Store", "closed", "crit"),
  );
}

function showErrors(messages) {
  errorEl.hidden = messages.length === 0;
  fill(errorEl, ...messages.map((m) => h("p", {}, m)));
}

function route() {
  const { view: name, params } = current();
  const View = VIEWS[name] || NotFoundView;
  // Same view, other parameters (a range button, a filter): the view keeps its page.
  if (!(view && name === viewName && view.update(params))) {
    const navigated = view !== null;
    view?.destroy();
    view = new View(main, params);
    viewName = name;
    // The link that was clicked is gone: put keyboard and screen-reader focus on the new view.
    if (navigated) main.focus({ preventScroll: true });
  }
  for (const a of document.querySelectorAll("nav a[data-view]")) {
    if (a.dataset.view === name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

window.addEventListener("hashchange", () => {
  route();
  refresher.now();
});
route();
refresher.start();
