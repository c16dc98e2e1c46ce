"""Headless Chromium, offline: load a saved page from a file:// URL with the network cut off.

Used by the browser test and by ``docs/make_gallery.py``; no Python dependency beyond the standard
library. The network is cut by sending every request to a dead proxy and resolving every host name
to nothing; the page itself records ``performance.getEntriesByType("resource")`` into ``data-resources``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

OFFLINE_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--virtual-time-budget=5000",
)


def find_chromium() -> Optional[str]:
    """Path of a Chromium/Chrome binary (``$CHROMIUM`` first), or ``None``."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("no Chromium found (install Debian's 'chromium' package or set $CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="hb-chromium-") as profile:
        cmd = [exe, *OFFLINE_FLAGS, f"--user-data-dir={profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def dump_dom(page: str | Path, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``)."""
    proc = _run(["--dump-dom", Path(page).resolve().as_uri()], timeout)
    if proc.returncode != 0 or not proc.stdout:
        raise RuntimeError(f"chromium --dump-dom failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


def screenshot(page: str | Path, png: str | Path, size: tuple[int, int] = (1100, 1400), timeout: float = 60) -> Path:
    """A PNG screenshot of the page at ``size`` (width, height) pixels."""
    png = Path(png).resolve()
    png.parent.mkdir(parents=True, exist_ok=True)
    proc = _run([f"--screenshot={png}", f"--window-size={size[0]},{size[1]}", Path(page).resolve().as_uri()], timeout)
    if proc.returncode != 0 or not png.is_file():
        raise RuntimeError(f"chromium --screenshot failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return png
