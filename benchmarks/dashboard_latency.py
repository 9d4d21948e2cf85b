"""How fast does the dashboard answer a slider change? Prints two figures (a script, not a timed test).

1. server: Streamlit script rerun after a slider change, measured with streamlit.testing AppTest
   (the whole What-if page: closed form over every stage count, figure, tables; AppTest's own
   element-tree bookkeeping included, so it is an upper bound of the server's share).
2. browser: end-to-end in headless Chromium, from the key press on the stages slider to the chart
   holding the new data, timed inside the page with performance.now() (Selenium's polling is not
   counted). Needs /usr/bin/chromium and /usr/bin/chromedriver (scripts/setup.sh --test).

    .venv/bin/python benchmarks/dashboard_latency.py [--changes 20]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# In-page timer: a capturing keydown listener stamps t0; a requestAnimationFrame poller stamps t1 when
# the chosen-configuration marker of the speedup chart moves (the chart has re-rendered with new data).
ARM_JS = """
window.__spd = {t0: null, t1: null};
const xNow = () => { const g = document.querySelector('.js-plotly-plot');
  if (!g || !g.data) return null; const t = g.data.find(t => t.name === 'chosen SPD configuration');
  return t ? Array.from(t.x)[0] : null; };
const old = xNow();
document.addEventListener('keydown', () => { if (window.__spd.t0 === null) window.__spd.t0 = performance.now(); },
  {capture: true, once: true});
const poll = () => { const x = xNow();
  if (x !== null && x !== old && window.__spd.t0 !== null) { requestAnimationFrame(() => { window.__spd.t1 = performance.now(); }); }
  else requestAnimationFrame(poll); };
requestAnimationFrame(poll);
"""


def server_side(changes: int) -> list[float]:
    from streamlit.testing.v1 import AppTest

    root = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(root / "app" / "main.py"), default_timeout=60)
    at.run()
    out = []
    for i in range(changes):
        # alternate slider and value so that each run is a cache miss (a new scenario), the slow case
        key, value = ("stages", 3 + i % 12) if i % 2 == 0 else ("hop_ms", 0.05 + 0.01 * i)
        at.slider(key=key).set_value(value)
        t = time.perf_counter()
        at.run()
        out.append((time.perf_counter() - t) * 1000)
        if at.exception or at.error:
            raise RuntimeError(f"page failed: {at.exception or at.error}")
    return out


def browser(changes: int) -> list[float]:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from app.browser import chrome
    from app.serve import running_dashboard

    chart_ready = ("const g=document.querySelector('.js-plotly-plot'); return !!(g && g.data && "
                   "g.data.some(t => t.name === 'chosen SPD configuration'))")
    out = []
    with running_dashboard() as url, chrome() as d:
        d.get(url)
        WebDriverWait(d, 90).until(lambda d: d.execute_script(chart_ready))
        slider = d.find_element(By.CSS_SELECTOR, 'input[type="range"][aria-label="Pipeline stages n"]')
        for i in range(changes):
            d.execute_script("arguments[0].focus()", slider)
            d.execute_script(ARM_JS)
            key = Keys.ARROW_RIGHT if (i // 6) % 2 == 0 else Keys.ARROW_LEFT
            ActionChains(d).send_keys(key).perform()
            WebDriverWait(d, 30, poll_frequency=0.02).until(lambda d: d.execute_script("return window.__spd.t1 !== null"))
            out.append(d.execute_script("return window.__spd.t1 - window.__spd.t0"))
            time.sleep(0.3)  # let the frontend settle so runs do not overlap
    return out


def _report(name: str, xs: list[float]) -> None:
    xs = sorted(xs)
    p90 = xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]
    print(f"{name:52s} median {statistics.median(xs):6.0f} ms   p90 {p90:6.0f} ms   max {xs[-1]:6.0f} ms   ({len(xs)} changes)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=20, help="slider changes per measurement (default 20)")
    ap.add_argument("--skip-browser", action="store_true")
    args = ap.parse_args()
    _report("server: What-if rerun after a slider change (AppTest)", server_side(args.changes))
    from app.browser import available

    if args.skip_browser or not available():
        print("browser: skipped" + ("" if args.skip_browser else " (no /usr/bin/chromium or /usr/bin/chromedriver)"))
    else:
        _report("browser: key press -> chart re-rendered (Chromium)", browser(args.changes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
