"""Headless Debian Chromium driven by Selenium, for the browser test, screenshots and the latency
benchmark. Uses /usr/bin/chromium and /usr/bin/chromedriver explicitly, so Selenium Manager never
tries to download a browser or driver (no network beyond loopback)."""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator

CHROMIUM = os.environ.get("SPD_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SPD_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars")


def available() -> bool:
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


@contextmanager
def chrome(width: int = 1280, height: int = 800) -> Iterator["object"]:
    """A headless Chromium WebDriver with a fresh profile directory (removed afterwards)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="spd-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.add_argument(f"--window-size={width},{height}")
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
