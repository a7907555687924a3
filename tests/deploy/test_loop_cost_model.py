"""``adamcu loop --cost-model`` and ``scripts/stack.sh --cost-model`` hand the cost model to
every simulated oracle they start (issue 24): the command line each oracle gets, and that the
oracle's own parser takes it."""

from __future__ import annotations

import subprocess

import pytest

from oracle.cli import parse_args as oracle_parse_args
from stack import local, loop


def _oracle_flags(opts: loop.LoopOptions, tmp_path, monkeypatch) -> list[str]:
    """The flags the loop starts oracle 1 of run 5 with (the process itself is ``true``)."""
    seen: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(args, **kw):
        seen.append(list(args))
        return real_popen(["true"])

    monkeypatch.setattr(loop.subprocess, "Popen", popen)
    opts.out = tmp_path
    loop._start_oracle(opts, {"PATH": "/usr/bin:/bin"}, "http://127.0.0.1:1", "t", 5, 1).wait()
    (args,) = seen
    assert args[1:3] == ["-m", "oracle"]
    return args[3:]


def test_the_loop_passes_the_cost_model_to_its_oracles(tmp_path, monkeypatch) -> None:
    opts = loop.parse_args(["--cost-model", "--cost-spread", "0.2"], loop.build_parser())
    assert (opts.cost_model, opts.cost_spread) == (True, 0.2)
    flags = _oracle_flags(opts, tmp_path, monkeypatch)
    assert flags[-3:] == ["--cost-model", "--cost-spread", "0.2"]
    cfg = oracle_parse_args([*flags, "--token", "t"])  # what the oracle makes of it
    assert cfg.cost_model and cfg.cost_spread == 0.2 and (cfg.run, cfg.seed) == (5, 1)


def test_without_the_flag_the_oracles_time_the_wall_clock(tmp_path, monkeypatch) -> None:
    opts = loop.parse_args([], loop.build_parser())
    assert not opts.cost_model
    flags = _oracle_flags(opts, tmp_path, monkeypatch)
    assert "--cost-model" not in flags and "--cost-spread" not in flags
    assert not oracle_parse_args([*flags, "--token", "t"]).cost_model


def test_the_stack_script_passes_the_cost_model_too(tmp_path, monkeypatch) -> None:
    opts = local.parse_args(["--cost-model"])
    flags = _oracle_flags(opts, tmp_path, monkeypatch)
    assert opts.cost_model and flags[-3:] == ["--cost-model", "--cost-spread", "0.0"]
    assert not local.parse_args([]).cost_model


@pytest.mark.parametrize(
    "argv", [["--cost-model", "--cost-spread", "1.0"], ["--cost-spread", "0.2"]]
)
def test_a_bad_cost_spread_is_refused_before_anything_starts(argv, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        loop.parse_args(argv, loop.build_parser())
    assert exc.value.code == 2 and "--cost-spread" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        local.parse_args(argv)
