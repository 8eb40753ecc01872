// Runs a task now and then every `period` seconds, one run at a time, and not at all while the
// tab is hidden: nobody looking means no requests, so the agent does no work for the page.
// <html data-refresh="running|paused"> says which, for people and tests.

export class Refresher {
  constructor(task) {
    this.task = task;
    this.period = 10;
    this.timer = null;
    this.running = false;
    this.again = false;
    this.stopped = true;
    this.onVisibility = () => this.visibilityChanged();
  }

  start() {
    this.stopped = false;
    document.addEventListener("visibilitychange", this.onVisibility);
    this.visibilityChanged();
  }

  stop() {
    this.stopped = true;
    document.removeEventListener("visibilitychange", this.onVisibility);
    clearTimeout(this.timer);
    this.timer = null;
  }

  /** Run the task now (say after navigation) and restart the period from here. */
  now() {
    clearTimeout(this.timer);
    this.timer = null;
    return this.run();
  }

  visibilityChanged() {
    const visible = document.visibilityState !== "hidden";
    document.documentElement.dataset.refresh = visible ? "running" : "paused";
    if (!visible) {
      clearTimeout(this.timer);
      this.timer = null;
    } else if (!this.timer && !this.running) {
      this.run(); // back in view: show fresh data at once
    }
  }

  async run() {
    if (this.stopped) return;
    if (this.running) {
      this.again = true; // asked while a run is under way (a navigation): run once more after it
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        await this.task();
      } while (this.again && !this.stopped);
    } finally {
      this.running = false;
      this.schedule();
    }
  }

  schedule() {
    if (this.stopped || this.timer || document.visibilityState === "hidden") return;
    const ms = Math.max(1, Number(this.period) || 10) * 1000;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.run();
    }, ms);
  }
}
