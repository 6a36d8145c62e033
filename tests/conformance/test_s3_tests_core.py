"""ceph/s3-tests, core subset, against the installed `blindstore dev`: the S3 regression gate.

The suite and its runner live beside the project (`../shared/conformance`, see its README); the
runner makes its own virtualenv. Every test listed in `core-expected-pass.txt` must pass (the
runner's `S3TESTS_EXPECT_PASS` gate) and the gateway must still be the same live process at the
end: no test may fail because the gateway died. Adding a test to the list when a feature lands is
deliberate; removing one is a regression.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from blindstore.devtools.openbao import free_port

HERE = Path(__file__).parent
EXPECTED = HERE / "core-expected-pass.txt"
BLINDSTORE = str(Path(sys.executable).parent / "blindstore")


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "blindstore dev exited during startup"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("blindstore dev did not start listening")


def _conformance_dir() -> Path:
    """`../shared/conformance` next to the checkout (the workplace's layout), or $S3TESTS_HOME."""
    candidates = [
        os.environ.get("S3TESTS_HOME", ""),
        str(HERE.parents[2] / "shared" / "conformance"),
        "/work/shared/conformance",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "run.sh").is_file():
            return Path(candidate)
    raise AssertionError(f"ceph/s3-tests runner not found in {candidates}; set S3TESTS_HOME")


def test_s3_tests_core_subset_passes_and_the_gateway_survives(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "dev"
    log = (tmp_path / "dev.log").open("wb")
    dev = subprocess.Popen(
        [BLINDSTORE, "dev", "--port", str(port), "--data-dir", str(data_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, dev, timeout=120)
        deadline = time.monotonic() + 30
        while not (data_dir / "dev.json").exists():
            assert time.monotonic() < deadline, "dev.json was not written"
            time.sleep(0.2)
        creds = json.loads((data_dir / "dev.json").read_text(encoding="utf-8"))
        out = tmp_path / "s3tests"
        env = {
            **os.environ,
            "SUBSET": "core",
            "S3TESTS_PORT": str(port),
            "S3TESTS_MAIN_ACCESS_KEY": creds["access_key"],
            "S3TESTS_MAIN_SECRET_KEY": creds["secret_key"],
            "S3TESTS_ALT_ACCESS_KEY": creds["alt_access_key"],
            "S3TESTS_ALT_SECRET_KEY": creds["alt_secret_key"],
            "S3TESTS_OUT": str(out),
            "S3TESTS_EXPECT_PASS": str(EXPECTED),
            "S3TESTS_TEST_TIMEOUT": "60",
        }
        env.pop("PYTHONPATH", None)
        run = subprocess.run(
            ["bash", str(_conformance_dir() / "run.sh")],
            check=False,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
        summary = run.stdout.strip().splitlines()[-1:] + run.stderr.strip().splitlines()[-15:]
        assert dev.poll() is None, "the gateway died during ceph/s3-tests:\n" + "\n".join(summary)
        assert run.returncode == 0, "\n".join(summary)
    finally:
        dev.terminate()
        try:
            dev.wait(30)
        except subprocess.TimeoutExpired:
            dev.kill()
        log.close()
