"""`adamcu bench --help` names every preset `adamcu bench` runs (the `seconds` preset was
missing from the help while the command ran it)."""

from __future__ import annotations

from stack.cli import PRESET_HELP, build_parser
from trainer.bench.presets import PRESETS


def test_bench_help_names_every_preset_and_no_other() -> None:
    assert sorted(PRESET_HELP.split(" | ")) == sorted(PRESETS)


def test_bench_help_is_what_the_parser_prints(capsys) -> None:
    try:
        build_parser().parse_args(["bench", "--help"])
    except SystemExit as done:
        assert done.code == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in PRESETS)
