"""A `blindstore` command whose reader went away (`blindstore ... | head`) ends quietly.

SIGPIPE is no longer reset to its default (that killed `serve` and `dev` when a client went
away, issue 9 item 1): the commands must then handle the broken pipe themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BLINDSTORE = str(Path(sys.executable).parent / "blindstore")


def test_output_to_a_closed_pipe_ends_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        done = subprocess.run(
            [BLINDSTORE, "--help"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode != 0
    assert done.stderr == "", done.stderr
