"""Drives `sonde view` in Debian's headless Chromium through Playwright
(the system browser; Playwright downloads none). Called by tests/view.rs
and by `cargo xtask bench` with one JSON argument:

  url       the viewer's base URL
  tag       a name for screenshots (single, ab, live, bench)
  shots     the directory screenshots go to
  sections  the section ids to open, in order (default: every section
            the viewer lists)
  spike     optional {section, chart, from, to}: offsets (s) of an
            injected burst whose column must hold the chart's highest ink
  brush     optional [from, to]: select that range, expect its table
  query     optional PromQL for the query box
  live      true: wait for the page to refresh itself from a live agent
  banner    true: wait for the page to say the agent is unreachable
  bench     true: print timings (ms) instead of checking pictures

Checks, for every section: the page reaches its ready state, no console
error or page error, every chart canvas has ink (non-background pixels),
and no request goes anywhere but the viewer. Exits 1 naming what failed.
"""

import json
import sys
import time
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--metrics-recording-only",
    "--no-default-browser-check", "--disable-features=Translate,OptimizationHints,MediaRouter",
]

# Canvas ink per chart: how many pixels differ from white, and the
# fraction of them in the plot area.
INK = """() => {
  const out = {};
  const dpr = window.devicePixelRatio || 1;
  for (const [id, ch] of window.sonde.charts) {
    const cv = ch.base;
    const d = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
    const a = ch.area;
    let ink = 0;
    // Data only: colored pixels inside the plot (grid, labels and
    // shading are grey).
    for (let y = Math.ceil(a.t * dpr); y < Math.floor(a.b * dpr); y++) {
      for (let x = Math.ceil(a.l * dpr); x < Math.floor(a.r * dpr); x++) {
        const i = (y * cv.width + x) * 4;
        const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
        if (d[i + 3] > 0 && mx - mn > 40) ink++;
      }
    }
    out[id] = { ink, pixels: cv.width * cv.height };
  }
  return out;
}"""

# For a line chart: per device-pixel column of the plot, the topmost
# colored (saturated) pixel; grid lines, labels and shading are grey.
TOPS = """(id) => {
  const ch = window.sonde.charts.get(id);
  const dpr = window.devicePixelRatio || 1;
  const cv = ch.base;
  const d = ch.base.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
  const a = ch.area;
  const tops = [];
  for (let x = Math.ceil(a.l * dpr); x < Math.floor(a.r * dpr); x++) {
    let top = null;
    for (let y = Math.ceil(a.t * dpr); y < Math.floor(a.b * dpr); y++) {
      const i = (y * cv.width + x) * 4;
      const mx = Math.max(d[i], d[i + 1], d[i + 2]), mn = Math.min(d[i], d[i + 1], d[i + 2]);
      if (d[i + 3] > 0 && mx - mn > 40) { top = y; break; }
    }
    tops.push([x / dpr, top]);
  }
  return { tops, height: (a.b - a.t), bottom: a.b, colw: (a.r - a.l) / ch.cols.n };
}"""


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def wait(page, fn, arg=None, timeout=60.0):
    """Polls `fn` in the page until truthy. (Playwright's
    wait_for_function evaluates strings, which the page's CSP refuses.)"""
    deadline = time.monotonic() + timeout
    while True:
        if page.evaluate(fn, arg):
            return
        if time.monotonic() > deadline:
            fail(f"timed out waiting for {fn}: the page says " + page.inner_text("body")[:300])
        time.sleep(0.02)


def main():
    a = json.loads(sys.argv[1])
    base = a["url"].rstrip("/")
    origin = urlparse(base)
    errors, requests = [], []
    report = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append("page error: " + str(e)))
        page.on("request", lambda r: requests.append(r.url))

        def open_section(hash_, ready_section):
            started = time.monotonic()
            page.evaluate("h => { location.hash = h; }", hash_)
            wait(page, "s => document.body.dataset.state !== 'loading' && document.body.dataset.section === s",
                 ready_section)
            return (time.monotonic() - started) * 1000

        def first_chart(pg):
            started = time.monotonic()
            pg.goto(base + "/#overview")
            wait(pg, "() => document.body.dataset.state !== 'loading' && document.body.dataset.section === 'overview'")
            return round((time.monotonic() - started) * 1000)

        loads = [first_chart(page)]
        if a.get("bench"):
            # The machine is shared and small: the median of three loads,
            # each in a fresh tab.
            for _ in range(2):
                tab = browser.new_page(viewport={"width": 1400, "height": 900})
                loads.append(first_chart(tab))
                tab.close()
        report["first_chart_ms"] = sorted(loads)[len(loads) // 2]
        report["first_chart_loads_ms"] = loads
        sections = a.get("sections") or page.evaluate("() => window.sonde.info.sections.map(s => s.id)")
        for sec in sections:
            ms = open_section(sec, sec)
            state = page.evaluate("document.body.dataset.state")
            if state != "ready":
                fail(f"{a['tag']}: section {sec} ended in state {state}: " + page.inner_text("main")[:400])
            ink = page.evaluate(INK)
            page.screenshot(path=f"{a['shots']}/{a['tag']}-{sec}.png", full_page=True)
            blank = [c for c, v in ink.items() if v["ink"] < 50]
            if not ink:
                fail(f"{a['tag']}: section {sec} has no charts")
            if blank and not a.get("bench"):
                fail(f"{a['tag']}: section {sec}: blank canvases {blank}")
            report[sec] = {"ms": round(ms), "charts": len(ink)}
            if a.get("ab"):
                legends = page.evaluate(
                    "() => [...document.querySelectorAll('.legend')].map(l => l.textContent)")
                if not any("A " in t and "B " in t for t in legends):
                    fail(f"ab: section {sec}: no chart shows both A and B: {legends[:3]}")

        if a.get("live"):
            # The page follows the agent by itself, then stops following
            # so the checks below see one drawing.
            renders = page.evaluate("() => window.sonde.renders")
            wait(page, "n => window.sonde.renders >= n + 2", renders, 30)
            polls = page.evaluate("() => window.sonde.info.sources[0].live.polls")
            wait(page, "n => window.sonde.info.sources[0].live.polls >= n + 2", polls, 30)
            report["live_polls"] = page.evaluate("() => window.sonde.info.sources[0].live.polls")
            page.evaluate("() => { document.getElementById('follow').checked = false; }")

        spike = a.get("spike")
        if spike:
            open_section(spike["section"], spike["section"])
            t = page.evaluate(TOPS, spike["chart"])
            x0 = page.evaluate("([id, o]) => window.sonde.charts.get(id).x(o)", [spike["chart"], spike["from"]])
            x1 = page.evaluate("([id, o]) => window.sonde.charts.get(id).x(o)", [spike["chart"], spike["to"]])
            # The burst's columns: those holding its first and last rows.
            x0, x1 = x0 - t["colw"] - 2, x1 + t["colw"] + 2
            inked = [(x, y) for x, y in t["tops"] if y is not None]
            if not inked:
                fail("spike chart has no colored pixels")
            highest = min(y for _, y in inked)
            at = [x for x, y in inked if y <= highest + 1]
            ys = sorted(y for _, y in inked)
            median = ys[len(ys) // 2]
            dpr = page.evaluate("window.devicePixelRatio || 1")
            if not all(x0 <= x <= x1 for x in at):
                fail(f"the highest ink is at x {at[:5]}, not in the burst's columns {x0:.0f}..{x1:.0f}")
            if (median - highest) / dpr < 0.3 * t["height"]:
                fail(f"the burst's column is not a spike: top {highest}, median {median}, height {t['height']}")
            report["spike"] = {"x": [round(x0), round(x1)], "top": highest, "median_top": median}
            page.screenshot(path=f"{a['shots']}/{a['tag']}-spike.png", full_page=True)

        if a.get("brush"):
            f, t = a["brush"]
            page.evaluate("([f, t]) => window.sonde.select(f, t)", [f, t])
            wait(page, "() => !document.getElementById('panel').hidden && document.querySelectorAll('#panel table').length === 2")
            rows = page.evaluate("() => document.querySelectorAll('#panel table tr').length")
            if rows < 4:
                fail(f"the range table has {rows} rows")
            report["brush_rows"] = rows
            page.screenshot(path=f"{a['shots']}/{a['tag']}-range.png", full_page=False)
            page.click("#panel button:has-text('Close')")

        # Hovering a heatmap column shows that column's distribution.
        if not a.get("bench"):
            open_section("scheduler", "scheduler")
            box = page.locator("[data-chart=runqueue] canvas.overlay").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
            tip = page.inner_text("#tip")
            if "p99" not in tip or "events/s" not in tip:
                fail(f"hovering the run-queue heatmap shows {tip!r}")
            page.screenshot(path=f"{a['shots']}/{a['tag']}-hover.png")
            page.mouse.move(0, 0)

        if a.get("query"):
            q = a["query"]
            page.evaluate("q => { location.hash = 'query?' + new URLSearchParams({expr: q}); }", q)
            wait(page, "() => document.body.dataset.section === 'query' && document.body.dataset.state === 'ready' && window.sonde.charts.size === 1")
            ink = page.evaluate(INK)
            if ink["query"]["ink"] < 50:
                fail("the query's chart is blank")
            page.screenshot(path=f"{a['shots']}/{a['tag']}-query.png", full_page=True)
            # A bad query says why, in the page.
            page.evaluate("() => { location.hash = 'query?expr=' + encodeURIComponent('rate(nope[1m]'); }")
            wait(page, "() => document.querySelector('.qmsg.error') !== null")
            report["bad_query"] = page.inner_text(".qmsg.error")[:120]
            # 400 from the API: Chromium logs it as a failed resource.
            errors[:] = [e for e in errors if "400 (Bad Request)" not in e]

        if a.get("banner"):
            wait(page, "() => document.getElementById('status').className === 'bad'", None, 30)
            report["banner"] = page.inner_text("#status")[:160]
            page.screenshot(path=f"{a['shots']}/{a['tag']}-banner.png")

        # An unknown section is a clear page, not a blank one.
        page.evaluate("() => { location.hash = 'nosuchsection'; }")
        wait(page, "() => document.body.dataset.state === 'error'")
        text = page.inner_text("main")
        if "Unknown section" not in text or "overview" not in text.lower():
            fail(f"unknown section page says {text[:200]!r}")
        page.screenshot(path=f"{a['shots']}/{a['tag']}-unknown.png")
        browser.close()

    if errors:
        fail(f"{a['tag']}: console errors: {errors[:5]}")
    away = [u for u in requests if urlparse(u).netloc != origin.netloc]
    if away:
        fail(f"{a['tag']}: requests left the viewer: {away[:5]}")
    report["requests"] = len(requests)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
