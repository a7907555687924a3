"""What the main job and the local stack print: the summary, and commands that work as printed.

Every command printed here names its executable by a path that exists (the console script next
to this interpreter, not a bare ``adamcu-server`` that is on PATH only in an activated venv)
and carries the real URL and tokens; ``tests/e2e/test_printed_commands.py`` runs them.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any


def say(*args: Any) -> None:
    print(*args, flush=True)  # the main job's console is often a pipe (CI, tee)


def console_script(name: str) -> str:
    """The path of console script ``name`` beside this interpreter (the venv's bin/), or
    ``python -m`` of its module where the script is not installed."""
    script = Path(sys.executable).parent / name
    if script.is_file():
        return shlex.quote(str(script.absolute()))
    module = {"adamcu-server": "server.main", "adamcu-migrate": "server.migrate"}[name]
    return f"{shlex.quote(sys.executable)} -m {module}"


def dashboard_command(db: Path, token: str, port: int = 8000) -> str:
    """A shell line that serves a finished loop's SQLite database again, and where to look."""
    url = f"sqlite:///{db.resolve()}"
    return (
        f"ADAMCU_ENVIRONMENT=development ADAMCU_DATABASE_URL={shlex.quote(url)} "
        f"{console_script('adamcu-server')} --port {port}, then open "
        f"http://127.0.0.1:{port}/dashboard.html?token={token}"
    )


def budget_line(b: dict[str, Any]) -> str:
    """Answered, reserved, and the two kinds of given-up queries apart: a person's skip (of
    them, those the person could not tell), and what finishing the run released (counted in
    ``skipped`` by servers before ``released``)."""
    cant = f" ({b['cant_tell']} could not tell the class)" if b.get("cant_tell") else ""
    return (
        f"budget: {b['answered']} of {b['expected']} pixels answered "
        f"({100 * b['answered'] / max(1, b['expected']):.0f}%), {b['reserved']} still reserved, "
        f"{b.get('skipped', 0)} skipped by annotators{cant}, {b.get('released', 0)} released "
        f"when the run finished"
    )


def print_summary(s: dict[str, Any], out: Path, log=say) -> None:
    log(budget_line(s["budget"]))
    log(
        f"target-test mIoU: {s['test_miou_before']:.1f} before adaptation (source only) -> "
        f"{s['test_miou_after']:.1f} after ({s['strategy']}, {s['labeled_pixels']} labeled "
        f"pixels)"
    )
    log(f"took {s['seconds'] / 60:.1f} min; full report: {out / 'report.json'}, logs in {out}")
    if "dashboard_token" in s and (out / "adamcu.db").is_file():
        log(f"dashboard again: {dashboard_command(out / 'adamcu.db', s['dashboard_token'])}")


def session_lines(
    url: str, run_id: int, admin: str, person: str, viewer: str, out: Path, data: Path
) -> list[str]:
    """What a person's session prints once its run is open: the pages, the README's session
    commands with this server's URL and admin token filled in (each on a line of its own,
    indented, to copy), and where the data and logs are."""
    auth = f"-H \"Authorization: Bearer {admin}\" -H 'Content-Type: application/json'"
    person_json = """'{"role": "annotator", "name": "bob"}'"""
    return [
        f"run {run_id} is open at {url}",
        f"label (one person's page): {url}/?token={person}",
        f"dashboard: {url}/dashboard.html?token={viewer}",
        f"a token for one more person (open {url}/?token=THE_TOKEN it returns):",
        f"  curl -s -X POST {url}/api/v1/tokens {auth} -d {person_json}",
        "end the session early (the worker keeps the best model and stops):",
        f'  curl -s -X PATCH {url}/api/v1/runs/{run_id} {auth} -d \'{{"status": "finished"}}\'',
        "the README's session commands, after pasting this in the same shell:",
        f"  URL={url} ADMIN={admin}",
        f"data: {data.resolve()}; logs: {out.resolve()}/server.log and worker.log; the worker's "
        f"checkpoints and summary.json: {(out / 'worker').resolve()}",
    ]
