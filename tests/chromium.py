"""Headless Chromium (Debian's ``chromium``) for tests: screenshots and what a page showed.

:func:`inspect` opens a copy of a page with a probe added: a script first in ``<head>``
records every error event (script errors, images that fail to load) and ``console.error``
call; a script at the end of ``<body>`` writes, on ``load``, those errors and each image's
natural and rendered size into the DOM, which ``--dump-dom`` prints. Chromium's own log
(``--enable-logging=stderr``) is searched for console messages too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
_HEAD_PROBE = """<script>window.__errors = [];
window.addEventListener("error", (e) => window.__errors.push(String(e.message || e.type)), true);
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push(args.join(" ")); __consoleError(...args); };
</script>"""
_BODY_PROBE = """<script>window.addEventListener("load", () => {
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    errors: window.__errors,
    images: [...document.images].map((img) => {
      const box = img.getBoundingClientRect();
      return {alt: img.alt, natural: [img.naturalWidth, img.naturalHeight],
              rendered: [box.width, box.height]};
    }),
  });
  document.body.appendChild(out);
});</script>"""
_PROBE_OUT = '<pre id="probe">'


def _binary() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        raise RuntimeError("chromium not found: install the Debian package 'chromium'")
    return binary


def _run(page: Path, *flags: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        return subprocess.run(
            [_binary(), *_FLAGS, f"--user-data-dir={profile}", *flags, page.resolve().as_uri()],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            stdin=subprocess.DEVNULL,
        )


def screenshot(page: Path, out: Path, width: int, height: int) -> None:
    """Render ``page`` at ``width`` x ``height`` CSS pixels into the PNG ``out``."""
    done = _run(page, f"--screenshot={out}", f"--window-size={width},{height}")
    if not out.is_file():
        raise RuntimeError(f"chromium wrote no screenshot: {done.stderr[-2000:]}")


def inspect(page: Path, width: int = 1100, height: int = 900) -> dict[str, Any]:
    """What ``page`` showed: ``errors`` (page and console), ``images`` (``alt``,
    ``natural`` and ``rendered`` sizes) and ``console`` (Chromium's console log lines)."""
    text = page.read_text(encoding="utf-8")
    probed = text.replace("<head>", "<head>" + _HEAD_PROBE, 1).replace(
        "</body>", _BODY_PROBE + "</body>", 1
    )
    with tempfile.TemporaryDirectory(prefix="probe-") as tmp:
        copy = Path(tmp) / page.name
        copy.write_text(probed, encoding="utf-8")
        done = _run(
            copy,
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=10000",
            f"--window-size={width},{height}",
            "--dump-dom",
        )
    start = done.stdout.find(_PROBE_OUT)
    if start < 0:
        raise RuntimeError(f"the probe did not run: {done.stderr[-2000:]}")
    raw = done.stdout[start + len(_PROBE_OUT) : done.stdout.index("</pre>", start)]
    found = json.loads(raw.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    found["console"] = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return found
