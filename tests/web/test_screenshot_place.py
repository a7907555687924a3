"""The browser tests leave the checkout as they found it: their screenshots go where git
ignores them unless ADAMCU_SCREENSHOTS names the README's folder (a stop's CI rewrote
docs/screenshots/*.png on every run)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from web_support import ROOT, SCREENSHOTS


@pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout"
)
def test_screenshots_go_where_git_ignores_them() -> None:
    if "ADAMCU_SCREENSHOTS" in os.environ:
        pytest.skip("ADAMCU_SCREENSHOTS is set: this run refreshes the pictures on purpose")
    probe = SCREENSHOTS / "annotate-1280x720.png"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(probe)], cwd=ROOT, check=False
    ).returncode
    assert ignored == 0, f"{probe} is not ignored by git: a test run would change the checkout"
