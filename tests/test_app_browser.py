"""Real browser: Debian's headless Chromium (Selenium, /usr/bin/chromedriver, no Selenium Manager
download) against `spd dashboard`'s own command on a free loopback port. Moves the stages slider with
the keyboard, waits for the chart to change, checks the new value is the closed form's, and saves
a screenshot under test-output/."""
from __future__ import annotations

from pathlib import Path

import pytest

from app import browser
from sim.closed_form import predict_scenario

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "test-output"

CHOSEN_JS = ("const g = document.querySelector('.js-plotly-plot'); if (!g || !g.data) return null; "
             "const t = g.data.find(t => t.name === 'chosen SPD configuration'); "
             "return t ? [Array.from(t.x)[0], Array.from(t.y)[0]] : null;")


@pytest.mark.skipif(not browser.available(), reason="needs /usr/bin/chromium and /usr/bin/chromedriver (scripts/setup.sh --test)")
def test_slider_moves_chart_in_real_browser():
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from app import presets, whatif_model
    from app.serve import running_dashboard

    OUT.mkdir(exist_ok=True)
    with running_dashboard(OUT / "browser_dashboard.log") as url, browser.chrome(1280, 800) as d:
        assert url.startswith("http://127.0.0.1:")
        d.get(url)
        WebDriverWait(d, 90).until(lambda d: d.execute_script(CHOSEN_JS))
        x0, _ = d.execute_script(CHOSEN_JS)
        slider = d.find_element(By.CSS_SELECTOR, 'input[type="range"][aria-label="Pipeline stages n"]')
        d.execute_script("arguments[0].focus()", slider)
        ActionChains(d).send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT).perform()
        WebDriverWait(d, 30).until(lambda d: (d.execute_script(CHOSEN_JS) or [x0])[0] == x0 + 2)
        x1, y1 = d.execute_script(CHOSEN_JS)
        d.save_screenshot(str(OUT / "browser_whatif.png"))
        assert not d.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')
    expected = next(p for p in predict_scenario(whatif_model.build_scenario(whatif_model.Knobs(**{**whatif_model.Knobs().as_dict(), **presets.knob_defaults(presets.DEFAULT_MODEL, presets.DEFAULT_HARDWARE), "stages": x1}))) if p.method == "spd")
    assert y1 == pytest.approx(expected.wallclock_speedup, rel=1e-9)
    assert (OUT / "browser_whatif.png").stat().st_size > 10_000
