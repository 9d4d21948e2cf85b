"""Start the dashboard as a subprocess on a free loopback port (browser test, screenshots, latency
benchmark). Uses the very command `spd dashboard` runs (app.launch.streamlit_command)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .launch import streamlit_command, streamlit_env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Poll Streamlit's health endpoint until the server answers (or fail with its log)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dashboard exited with status {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"dashboard did not answer on {url} within {timeout_s:.0f} s")


@contextmanager
def running_dashboard(log_path: str | Path | None = None, timeout_s: float = 60.0) -> Iterator[str]:
    """Serve the dashboard on 127.0.0.1:<free port>; yields its URL and stops it (SIGTERM, then kill)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(streamlit_command(port, "127.0.0.1", sys.executable), env=streamlit_env(),
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc, timeout_s)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log_path:
            log.close()
