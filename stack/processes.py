"""Small helpers for starting the service's processes on this machine and waiting for them.

Kept free of torch so that the load benchmark and the tests import them cheaply.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    url: str, proc: subprocess.Popen, timeout: float = 60.0, log: Path | None = None
) -> None:
    """Poll ``GET /ready`` until 200; fail at once if the server process exits (with the tail
    of ``log`` in the message when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = f":\n{log.read_text()[-3000:]}" if log else "; see its log"
            raise RuntimeError(f"the server exited with code {proc.returncode}{tail}")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"the server at {url} was not ready within {timeout:.0f} s")


def make_token(url: str, admin: str, role: str, name: str) -> str:
    r = httpx.post(
        f"{url}/api/v1/tokens",
        json={"role": role, "name": name},
        headers={"Authorization": f"Bearer {admin}"},
        timeout=10,
    )
    r.raise_for_status()
    return str(r.json()["token"])


def child_env(env: dict[str, str], **token: str) -> dict[str, str]:
    """The environment of a worker or oracle: its token in the variable its CLI reads (never on
    the command line, where ``ps`` shows it), and not the server's admin token."""
    child = {k: v for k, v in env.items() if k != "ADAMCU_ADMIN_TOKEN"}
    return child | token


def stop_all(procs: list[subprocess.Popen]) -> None:
    """Terminate the still running ones, last started first; kill what ignores it for 20 s."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


class ProgressTail:
    """The progress lines (``trainer.loop.progress``) a child has logged since the last call: the
    launcher reads the child's log file from where it stopped, never rereading it."""

    def __init__(self, path: Path, mark: str = " progress ") -> None:
        self.path, self.mark, self.pos = path, mark, 0

    def new(self) -> list[str]:
        try:
            with self.path.open("rb") as f:
                f.seek(self.pos)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1  # a line still being written waits for the next call
        self.pos += end
        lines = chunk[:end].decode("utf-8", "replace").splitlines()
        return [line[line.index(self.mark) + 1 :] for line in lines if self.mark in line]
