"""Shared check of a report's audio players: load the page in headless Chromium and read back every player's state."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

# the page script the check adds to a copy of the report: once every player has read its sound (or failed), it
# writes each one's readyState, duration and error code into the DOM, which --dump-dom then prints
PROBE = """<script>
function report() {
  var players = Array.prototype.slice.call(document.querySelectorAll("audio"));
  var done = players.every(function (a) { return a.readyState >= 1 || a.error; });
  if (!done) { setTimeout(report, 50); return; }
  var out = document.createElement("pre"); out.id = "audio-probe";
  out.textContent = JSON.stringify(players.map(function (a) {
    return {ready: a.readyState, duration: a.duration, error: a.error ? a.error.code : null,
            expected: parseFloat(a.dataset.seconds)};
  }));
  document.body.appendChild(out);
}
report();
</script></body>"""


def chromium_players(page: str, folder: Path) -> list[dict]:
    """Each ``<audio>`` element of the HTML ``page`` as headless Chromium loaded it: {ready, duration, error,
    expected} (expected: the player's data-seconds). Skips the test where no Chromium is installed."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if chromium is None:
        pytest.skip("no Chromium on this machine (apt-get install chromium)")
    probe = folder / "probe.html"
    probe.write_text(page.replace("</body>", PROBE))
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy="
                          "no-user-gesture-required", "--virtual-time-budget=20000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'<pre id="audio-probe">(.*?)</pre>', dom, re.S)
    assert found, "the page's probe never ran"
    return json.loads(found.group(1).replace("&quot;", '"'))
