"""Ctrl-C at any moment ends with condbench's short message and exit status 130, never a traceback: here while
torch is still being imported (the first seconds of `condbench run` and `condbench analyze`)."""
import signal
import time
from pathlib import Path

import pytest

from .test_run_safety import _cli


def torch_loading(pid: int) -> bool:
    """Whether the process has mapped torch's C++ library: its import is under way (the Python half of
    ``import torch`` follows the library)."""
    return "libtorch_cpu" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs /proc to see torch being imported")
@pytest.mark.parametrize("command, message", [
    (["run", "quickstart"], "condbench run: interrupted. "),
    (["analyze", "--model", "dit-digits"], "condbench analyze: interrupted."),
])
def test_ctrl_c_while_torch_imports_ends_with_the_short_message(tmp_path, command, message):
    out = tmp_path / "out"
    process = _cli([*command, "-o", str(out)], tmp_path)
    deadline = time.time() + 120
    while not torch_loading(process.pid):
        assert process.poll() is None and time.time() < deadline, process.communicate()[0][-3000:]
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "Traceback" not in output and message in output, output
    if command[0] == "run":
        assert f"Resume with: condbench run quickstart -o {out}" in output
