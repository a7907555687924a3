"""Every command the README or a summary prints works as printed.

The loop's "dashboard again" hint called a bare ``adamcu-server`` (on PATH only in an activated
venv), and the README's session commands used ``127.0.0.1:8000`` and ``.env`` where
``scripts/stack.sh --human`` serves on another port with a token of its own.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from stack import loop
from stack.processes import free_port, make_token
from stack.report import dashboard_command, print_summary, session_lines

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
MACHINE_TOOLS = {"cp", "docker", "curl"}  # the machine's, not the project's
SESSION = README[README.index("### A labeling session for people") :]
SESSION = SESSION[: SESSION.index("\n## ")]
RUN = {
    "name": "s",
    "classes": [{"id": 0, "name": "road"}],
    "target_pixels": 100,
    "budget_rate": 0.1,
}


def shell_commands(markdown: str) -> list[str]:
    """The commands of the ```sh and ```bash blocks, continuation lines joined."""
    out = []
    for block in re.findall(r"```(?:sh|bash)\n(.*?)```", markdown, re.S):
        for cmd in block.replace("\\\n", " ").splitlines():
            if shlex.split(cmd, comments=True):
                out.append(cmd)
    return out


def program(cmd: str) -> list[str]:
    """The words of a command after its leading VAR=value assignments."""
    words = shlex.split(cmd, comments=True)
    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):
        words.pop(0)
    return words


def test_every_command_of_the_readme_names_something_that_exists() -> None:
    commands = shell_commands(README)
    assert len(commands) > 15
    subcommands = set()
    for cmd in commands:
        words = program(cmd)
        if not words or words[0] in MACHINE_TOOLS:
            continue
        if words[0] == "bash":
            assert (ROOT / words[1]).is_file(), cmd
        else:
            assert words[0].startswith(".venv/bin/") and (ROOT / words[0]).is_file(), cmd
            if words[0] == ".venv/bin/python":
                assert (ROOT / words[1]).is_file(), cmd
            elif words[0] == ".venv/bin/adamcu":
                subcommands.add(words[1])
    usage = subprocess.run(
        [str(ROOT / ".venv/bin/adamcu"), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert subcommands and all(sub in usage for sub in subcommands), (subcommands, usage)


def _run(script: str) -> dict:
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.slow
def test_the_session_and_summary_commands_work_as_printed(tmp_path: Path) -> None:
    opts = loop.LoopOptions(out=tmp_path, data=tmp_path / "data")
    admin = "the-admin-token"
    server, url = loop.start_server(opts, loop._loop_env(opts, admin), tmp_path)
    try:
        trainer = {"Authorization": f"Bearer {make_token(url, admin, 'trainer', 't')}"}
        runs = [httpx.post(f"{url}/api/v1/runs", json=RUN, headers=trainer) for _ in range(2)]
        assert [r.status_code for r in runs] == [201, 201]
        viewer, person = (make_token(url, admin, r, r) for r in ("viewer", "annotator"))
        lines = session_lines(url, 2, admin, person, viewer, tmp_path, opts.data)
        for page in (f"{url}/?token={person}", f"{url}/dashboard.html?token={viewer}"):
            assert any(page in line for line in lines)
            assert httpx.get(page).status_code == 200
        printed = [line.strip() for line in lines if line.startswith("  ")]
        assert printed[-1] == f"URL={url} ADMIN={admin}"
        # the README's session commands after the printed assignment, then the printed ones
        readme = [c for c in shell_commands(SESSION) if program(c)[:1] == ["curl"]]
        assert len(readme) == 3  # two tokens, and the run finished early
        for cmd in readme + printed[:-1]:
            got = _run(f"{printed[-1]}\n{cmd}")
            assert got.get("token") or got.get("status") == "finished", (cmd, got)
    finally:
        server.terminate()
        server.wait()
    # the loop's summary: its "dashboard again" command serves the finished loop's database,
    # run from another folder with no venv on PATH
    shown: list[str] = []
    summary = {
        "budget": {"answered": 1, "expected": 2, "reserved": 0, "skipped": 0, "released": 1},
        "test_miou_before": 1.0,
        "test_miou_after": 2.0,
        "strategy": "full",
        "labeled_pixels": 1,
        "seconds": 60,
        "dashboard_token": viewer,
    }
    print_summary(summary, tmp_path, log=shown.append)
    db = tmp_path / "adamcu.db"
    assert shown[-1] == f"dashboard again: {dashboard_command(db, viewer)}"
    port = 8000 if _free(8000) else free_port()  # the printed port, unless the machine's is taken
    cmd, page = dashboard_command(db, viewer, port).split(", then open ")
    assert Path(program(cmd)[0]).is_absolute() and Path(program(cmd)[0]).is_file()
    (tmp_path / "elsewhere").mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp")}
    log = (tmp_path / "again.log").open("w")
    proc = subprocess.Popen(
        cmd,
        shell=True,
        cwd=tmp_path / "elsewhere",
        env=env,
        start_new_session=True,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for(page, proc)
        got = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/runs", headers={"Authorization": f"Bearer {viewer}"}
        )
        assert [r["id"] for r in got.json()] == [2, 1]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        log.close()


def _free(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
    except httpx.TransportError:
        return True
    return False


def _wait_for(page: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the printed command exited"
        try:
            if httpx.get(page, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{page} did not answer within 60 s")
