"""Open every page of a built book in headless Chromium and fail on what a reader would see broken.

    python book/check_browser.py [_build/html] [--screenshot page.png]

For each page, through the DevTools protocol: the page must load; no JavaScript
exception, console error or failed request (offline, a CDN request fails and is
reported); every image decoded (``naturalWidth > 0``); no raw TeX delimiters
left in the text once MathJax has finished; no unresolved glue; every table
cell legible in light and in dark mode (text against its background, WCAG's
4.5:1 contrast); glued values in the text's weight; no table cut by pandas
("...") and no result table's cell in view longer than 160 characters. Chromium is
Debian's ``chromium`` package (``apt-get install chromium``); the script says so
if it is missing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PAGE_CHECK = r"""
(() => {
  const broken = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).map(i => i.src);
  const body = (document.body || document.documentElement).cloneNode(true);
  body.querySelectorAll("pre, code, script, style, mjx-container, .MathJax, textarea").forEach(e => e.remove());
  const text = body.textContent;
  const tex = text.match(/\\\(|\\\)|\\\[|\\\]|\$\$|\\mathcal|\\frac/g) || [];
  const glue = text.match(/\{glue:?[a-z]*\}|\?\?\?/g) || [];
  // A table wider than the text column must scroll inside it, never run past its edge.
  const column = document.querySelector("article.bd-article, main") || document.body;
  const edge = column.getBoundingClientRect().right + 1;
  const scrolls = e => ["auto", "scroll"].includes(getComputedStyle(e).overflowX);
  const wide = [...column.querySelectorAll("table")].filter(t => {
    for (let e = t.parentElement; e && e !== column; e = e.parentElement) { if (scrolls(e)) return false; }
    return t.getBoundingClientRect().right > edge;
  }).map(t => (t.querySelector("th, td") || t).textContent.trim().slice(0, 40));
  // Glued values read as text, not shouted (MyST-NB's own CSS sets them bold).
  const bold = [...column.querySelectorAll("span.pasted-text")].filter(
    e => Number(getComputedStyle(e).fontWeight) >= 600 && !e.closest("th, strong, b")).map(e => e.textContent.slice(0, 40));
  // A table of results a reader sees whole: no cell pandas cut ("..."), and none in view (not folded away
  // in a closed toggle) of a paragraph's length. Hand-written tables of prose (the method page) are exempt.
  const seen = c => c.checkVisibility ? c.checkVisibility({visibilityProperty: true, contentVisibilityAuto: true})
                                      : c.getClientRects().length > 0;
  const shown = [...column.querySelectorAll("table.dataframe td, table.dataframe th")].filter(seen);
  const cut = shown.filter(c => ["...", "…"].includes(c.textContent.trim())).length;
  const long = shown.filter(c => c.textContent.trim().length > LONG_CELL).map(c => c.textContent.trim().slice(0, 40));
  return JSON.stringify({broken, tex: tex.slice(0, 5), glue: glue.slice(0, 5), wide: wide.slice(0, 3), bold: bold.slice(0, 3),
                         cut, long: long.slice(0, 3), math: document.querySelectorAll("mjx-container").length});
})()
""".replace("LONG_CELL", "160")  # characters: past that, a table cell is a paragraph (put it on demand)


# The worst text/background contrast among a page's table cells (WCAG 2 relative luminance), in the theme's
# mode ``MODE``: the first opaque background up the tree is what the text sits on.
CONTRAST_CHECK = r"""
(() => {
  document.documentElement.dataset.theme = MODE;
  document.documentElement.dataset.mode = MODE;
  const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => [r, g, b].map(v => v / 255).map(v => v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4)
                                       .reduce((a, v, i) => a + v * [0.2126, 0.7152, 0.0722][i], 0);
  const backdrop = e => {
    for (; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length >= 3 && (c.length < 4 || c[3] > 0.5)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  let worst = null;
  for (const cell of [...document.querySelectorAll("article table td, article table th")].slice(0, 400)) {
    if (!cell.textContent.trim()) continue;
    const [a, b] = [lum(rgb(getComputedStyle(cell).color)), lum(backdrop(cell))];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (worst === null || ratio < worst.ratio) worst = {ratio, text: cell.textContent.trim().slice(0, 30)};
  }
  return JSON.stringify(worst);
})()
"""
MIN_CONTRAST = 4.5  # WCAG 2 AA for body text


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        if path := shutil.which(name):
            return path
    raise SystemExit("check_browser: no Chromium found; install Debian's package: apt-get install chromium")


class Page:
    """One DevTools websocket session on a page target."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 60, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)
        raise TimeoutError(method)

    def wait_for(self, event: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(e.get("method") == event for e in self.events):
                return
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)

    def evaluate(self, expression: str, await_promise: bool = False):
        result = self.call("Runtime.evaluate", expression=expression, awaitPromise=await_promise, returnByValue=True)
        return result.get("result", {}).get("value")

    def errors(self) -> list[str]:
        found = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.exceptionThrown":
                d = params["exceptionDetails"]
                found.append(f"JavaScript exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry']['source']} error: {params['entry']['text']} {params['entry'].get('url', '')}")
            elif method == "Runtime.consoleAPICalled" and params["type"] == "error":
                found.append("console error: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        return found


def redirect_target(page: Path) -> Path | None:
    """The file a meta-refresh page (Jupyter Book's index.html) sends the reader to, if it is one."""
    import re

    found = re.search(r'http-equiv="refresh"[^>]*url=([^"\s>]+)', page.read_text(errors="ignore"), flags=re.I)
    return (page.parent / found.group(1)).resolve() if found else None


def check_page(browser_port: int, url: str, screenshot: Path | None = None) -> list[str]:
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{browser_port}/json/new?about:blank",
                                                       method="PUT"), timeout=30) as r:
        target = json.load(r)
    page = Page(target["webSocketDebuggerUrl"])
    try:
        for domain in ("Page", "Runtime", "Log"):
            page.call(f"{domain}.enable")
        page.call("Page.navigate", url=url)
        page.wait_for("Page.loadEventFired")
        # MathJax 3 typesets after load; wait for it where the page loads it
        page.evaluate("window.MathJax && MathJax.startup && MathJax.startup.promise ? "
                      "MathJax.startup.promise.then(() => true) : true", await_promise=True)
        report = json.loads(page.evaluate(PAGE_CHECK))
        problems = page.errors()
        problems += [f"image did not load: {src}" for src in report["broken"]]
        if report["tex"]:
            problems.append(f"raw TeX left in the text: {report['tex']}")
        if report["glue"]:
            problems.append(f"unresolved glue: {report['glue']}")
        if report["wide"]:
            problems.append(f"table runs past the text column: {report['wide']}")
        if report["bold"]:
            problems.append(f"glued text drawn bold: {report['bold']}")
        if report["cut"]:
            problems.append(f"{report['cut']} table cell(s) cut by pandas ('...'): lay the table out so it fits")
        if report["long"]:
            problems.append(f"result table cell(s) of more than 160 characters in view (give a short word, the "
                            f"detail on demand): {report['long']}")
        for mode in ("light", "dark"):
            worst = json.loads(page.evaluate(CONTRAST_CHECK.replace("MODE", json.dumps(mode))))
            if worst is not None and worst["ratio"] < MIN_CONTRAST:
                problems.append(f"in {mode} mode, table text {worst['text']!r} has contrast {worst['ratio']:.1f}:1 "
                                f"against its background (at least {MIN_CONTRAST}:1)")
        page.evaluate(CONTRAST_CHECK.replace("MODE", json.dumps("light")))
        if screenshot is not None:
            import base64

            page.call("Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1, mobile=False)
            page.evaluate("window.scrollTo(0, document.body.scrollHeight * 0.55)")
            time.sleep(0.5)
            data = page.call("Page.captureScreenshot", format="png")["data"]
            screenshot.write_bytes(base64.b64decode(data))
        return problems
    finally:
        page.ws.close()
        urllib.request.urlopen(f"http://127.0.0.1:{browser_port}/json/close/{target['id']}", timeout=10).close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument("--screenshot", type=Path, default=None, help="save a PNG of one page (--screenshot-page)")
    parser.add_argument("--screenshot-page", default="notebooks/03_scalograms.html",
                        help="the page to photograph, relative to the build (default: the scalograms chapter)")
    args = parser.parse_args(argv)
    html = args.html.resolve()
    pages = sorted(p for p in html.rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts
                   and p.name not in ("genindex.html", "search.html"))
    if not pages:
        print(f"check_browser: no built pages under {html}; build the book first (make book)", file=sys.stderr)
        return 2
    chromium = find_chromium()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 "--disable-extensions", "--window-size=1280,1600", "--remote-debugging-port=0",
                                 f"--user-data-dir={profile}",
                                 "--allow-file-access-from-files", "about:blank"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.is_file() or not port_file.read_text().strip():
                if time.monotonic() > deadline or proc.poll() is not None:
                    print("check_browser: Chromium did not start", file=sys.stderr)
                    return 2
                time.sleep(0.1)
            port = int(port_file.read_text().split()[0])
            failures = {}
            photographed = html / args.screenshot_page if (html / args.screenshot_page).is_file() else pages[0]
            for page in pages:
                if (target := redirect_target(page)) is not None:
                    problems = [] if target.is_file() else [f"redirects to a missing page: {target}"]
                else:
                    problems = check_page(port, page.as_uri(), args.screenshot if page == photographed else None)
                if problems:
                    failures[page.relative_to(html)] = problems
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    for page, problems in failures.items():
        for problem in problems:
            print(f"{page}: {problem}")
    print(f"check_browser: {len(pages)} pages, {len(failures)} with problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
