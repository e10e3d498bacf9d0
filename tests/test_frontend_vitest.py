"""The Vitest suites of frontend_example/ (the lib/ modules: retries, re-signing, resume; <S3Uploader>).

Run from pytest so that `make test` stays the one command. Needs Node.js and the pinned
npm packages of frontend_example/react (`npm ci` there, which `.ci/run` does; this test
runs it once itself when node_modules is missing). Without Node.js it skips, except
under CI=true, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from live import unavailable

REACT_DIR = Path(__file__).resolve().parents[1] / "frontend_example" / "react"
VITEST = REACT_DIR / "node_modules" / "vitest" / "vitest.mjs"


def test_vitest_suite_passes():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        unavailable("node and npm are needed to run the frontend's Vitest suite", "vitest")
    if not VITEST.exists():
        installed = subprocess.run(
            # ci, not install: a test run installs the locked versions and never rewrites package-lock.json.
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=REACT_DIR,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if installed.returncode != 0:
            unavailable(f"npm ci failed in {REACT_DIR}:\n{installed.stderr[-2000:]}", "vitest")
    env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
    result = subprocess.run(
        [node, str(VITEST), "run", "--reporter=verbose"],
        cwd=REACT_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    summary = re.search(r"Tests\s+(\d+) passed \((\d+)\)", output)
    assert summary and summary.group(1) == summary.group(2), output[-3000:]
    # The suite really covers what it is for: retries, re-signing and resuming.
    for name in ("resumes after a reload", "signs a part again after a 403", "retries a PUT after a network error"):
        assert name in output, f"missing test: {name}"
