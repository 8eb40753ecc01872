"""`infrawatch check | head`: a reader that stops early is not an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_check_into_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFRAWATCH_")}
    env["HOME"] = str(tmp_path)
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # the reader is gone before the first line, like `| head -0`
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "infrawatch", "check"],
            stdout=write_fd,
            stderr=subprocess.PIPE,
            env=env,
            timeout=30,
            check=False,
        )
    finally:
        os.close(write_fd)
    assert "Traceback" not in proc.stderr.decode(), proc.stderr.decode()
    assert proc.returncode == 0
