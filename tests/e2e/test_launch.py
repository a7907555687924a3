"""How ``adamcu loop`` starts its children: tokens through the environment, never argv."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from oracle.cli import parse_args as oracle_args
from stack import loop
from trainer.worker.main import parse_args as worker_args

SECRET = "s3cret-token-value"
ADMIN = "the-admin-token"


@pytest.fixture
def started(monkeypatch, tmp_path: Path) -> list[tuple[list[str], dict[str, str]]]:
    seen: list[tuple[list[str], dict[str, str]]] = []
    real_popen = subprocess.Popen

    def popen(args, env=None, **kw):
        seen.append((list(args), dict(env or {})))
        return real_popen(["true"])

    monkeypatch.setattr(loop.subprocess, "Popen", popen)
    opts = loop.LoopOptions(out=tmp_path, data=tmp_path / "data")
    env = {"PATH": "/usr/bin:/bin", "ADAMCU_ADMIN_TOKEN": ADMIN}
    loop._start_worker(opts, env, "http://127.0.0.1:1", SECRET).wait()
    loop._start_oracle(opts, env, "http://127.0.0.1:1", SECRET, 3, 0).wait()
    return seen


def test_children_get_their_token_in_the_environment_not_on_the_command_line(started) -> None:
    (worker_argv, worker_env), (oracle_argv, oracle_env) = started
    for argv in (worker_argv, oracle_argv):
        assert not any(SECRET in a for a in argv) and "--token" not in " ".join(argv)
    assert worker_env["ADAMCU_TRAINER_TOKEN"] == SECRET and oracle_env["ADAMCU_TOKEN"] == SECRET
    assert ADMIN not in worker_env.values() and ADMIN not in oracle_env.values()


def test_the_child_clis_read_the_token_from_those_variables(started, monkeypatch) -> None:
    (worker_argv, worker_env), (oracle_argv, oracle_env) = started
    monkeypatch.setenv("ADAMCU_TRAINER_TOKEN", worker_env["ADAMCU_TRAINER_TOKEN"])
    monkeypatch.setenv("ADAMCU_TOKEN", oracle_env["ADAMCU_TOKEN"])
    assert worker_args(worker_argv[3:])[1].token == SECRET
    assert oracle_args(oracle_argv[3:]).token == SECRET
