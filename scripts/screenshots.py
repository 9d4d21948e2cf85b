"""Screenshots of every dashboard page for the README: starts `spd dashboard` on a free loopback port,
opens each page in headless Chromium at 1280x800 and saves docs/img/dashboard_<page>.png (palette
PNG, under 300 KB each).

    .venv/bin/python scripts/screenshots.py [--out docs/img]
"""
from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# url path -> (file stem, CSS selector that must be present once the page has drawn, charts expected)
PAGES = {
    "": ("whatif", ".js-plotly-plot", 1),
    "timeline": ("timeline", ".js-plotly-plot", 1),
    "calibration": ("calibration", '[data-testid="stMetric"]', 2),
    "published": ("published", '[data-testid="stDataFrame"]', 0),
}
MAX_BYTES = 300_000


def wait_drawn(driver, selector: str, charts: int, timeout_s: float = 90.0) -> None:
    """Until the page's script run is over (no running indicator) and its charts have data."""
    js = ("return !document.querySelector('[data-testid=\"stStatusWidget\"]') && "
          f"document.querySelectorAll('{selector}').length > 0 && "
          f"Array.from(document.querySelectorAll('.js-plotly-plot')).filter(g => g.data && g.data.length).length >= {charts}")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if driver.execute_script(js):
            time.sleep(1.0)  # last paint (fonts, plotly transitions)
            return
        time.sleep(0.25)
    raise TimeoutError(f"page did not finish drawing within {timeout_s:.0f} s ({selector})")


def save_png(png: bytes, path: Path) -> int:
    """Palette-quantise (the UI is flat colours) so each image stays well under 300 KB."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    data = buf.getvalue()
    path.write_bytes(data)
    return len(data)


def main() -> int:
    from app.browser import available, chrome
    from app.serve import running_dashboard

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"), help="output folder (default docs/img)")
    args = ap.parse_args()
    if not available():
        print("screenshots: needs /usr/bin/chromium and /usr/bin/chromedriver (bash scripts/setup.sh --test)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with running_dashboard() as url, chrome(1280, 800) as driver:
        # the window size includes browser chrome; pin the viewport itself to 1280x800
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 800, "deviceScaleFactor": 1, "mobile": False})
        for path, (stem, selector, charts) in PAGES.items():
            driver.get(f"{url}/{path}")
            wait_drawn(driver, selector, charts)
            size = save_png(driver.get_screenshot_as_png(), out / f"dashboard_{stem}.png")
            print(f"{out / f'dashboard_{stem}.png'}: {size / 1000:.0f} KB" + ("  (over 300 KB!)" if size > MAX_BYTES else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
