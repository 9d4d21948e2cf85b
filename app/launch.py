"""`spd dashboard`: start the Streamlit what-if dashboard.

Execs ``python -m streamlit run app/main.py`` with server settings passed as flags rather than a
``.streamlit/config.toml``: Streamlit only reads that file from the current directory or the user's
home, so flags are the one way that works wherever `spd` is started from. Serves on 127.0.0.1 by
default (a lab tool, not a public service); no telemetry, no browser auto-open.
"""
from __future__ import annotations

import argparse
import ipaddress
import os
import shlex
import sys
from pathlib import Path

from sim.errors import InputError

ENTRY = Path(__file__).resolve().parent / "main.py"
DEFAULT_PORT = 8501
DEFAULT_HOST = "127.0.0.1"

# Flags every start uses (the browser test and the screenshot script start the app through
# `streamlit_command` too, so they see exactly what a user sees).
SERVER_FLAGS = {
    "server.headless": "true",
    "server.fileWatcherType": "none",  # no reload-on-save polling: a user runs it, not a developer
    "server.runOnSave": "false",
    "browser.gatherUsageStats": "false",
    "global.developmentMode": "false",
    "client.toolbarMode": "minimal",
    "client.showErrorDetails": "false",  # the pages show their own st.error for bad input
    "theme.base": "light",
    "theme.primaryColor": "#C2410C",
    "theme.font": "sans serif",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}, this machine only; 0.0.0.0 exposes it to the network)")
    parser.add_argument("--dry-run", action="store_true", help="print the streamlit command instead of running it")


def streamlit_command(port: int = DEFAULT_PORT, host: str = DEFAULT_HOST, python: str | None = None) -> list[str]:
    """The argv that serves the dashboard (validated host and port)."""
    if not 1 <= int(port) <= 65535:
        raise InputError(f"--port: must lie in 1..65535, got {port}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise InputError(f"--host: expected an IP address such as 127.0.0.1, got {host!r}") from None
    flags = dict(SERVER_FLAGS, **{"server.port": str(int(port)), "server.address": host})
    return [python or sys.executable, "-m", "streamlit", "run", str(ENTRY), *[f"--{k}={v}" for k, v in flags.items()]]


def streamlit_env(base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    # The app imports `sim` and `app` from this checkout even when started from another directory.
    root = str(ENTRY.parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run(args: argparse.Namespace) -> int:
    cmd = streamlit_command(args.port, args.host)
    if args.dry_run:
        print(shlex.join(cmd))
        return 0
    print(f"spd dashboard: serving on http://{args.host}:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    os.execve(cmd[0], cmd, streamlit_env())
    return 0  # not reached
