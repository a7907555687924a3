"""``scripts/val_ablation.py``: its studies change only the switch they name, and a bad
``--size`` is refused before anything is generated."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from trainer.config import TrainConfig
from trainer.strategies import configure

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "val_ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("val_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pseudo_off_turns_off_one_rule_of_each_strategy(ablation):
    base = TrainConfig()
    runs = dict(ablation.plan("pseudo-off", base, [], (1,), (0.001,)))
    full, cap = runs["full/no-pseudo"], runs["mcu-cap/true-only"]
    want_full = configure(base, "full", budget_rate=0.001, seed=1)
    want_cap = configure(base, "mcu-cap", budget_rate=0.001, seed=1)
    assert want_full.pseudo_labels and not full.pseudo_labels
    assert full.replace(pseudo_labels=True) == want_full
    assert want_cap.cap_pseudo_below_rate > 0 and cap.cap_pseudo_below_rate == 0
    assert cap.replace(cap_pseudo_below_rate=want_cap.cap_pseudo_below_rate) == want_cap


def test_full_pseudo_rows_share_seed_and_budget(ablation):
    runs = ablation.plan("full-pseudo", TrainConfig(), [], (0, 2), (0.017,))
    assert [n for n, _ in runs] == ["full", "full/no-pseudo", "full/low0.2", "random"] * 2
    assert {(c.seed, c.budget_rate) for _, c in runs} == {(0, 0.017), (2, 0.017)}
    low = dict(runs[:4])["full/low0.2"]
    assert low.pi_low_quantile == 0.2 and low.strategy == "full"


def test_a_bad_size_is_refused_before_the_work_folder(ablation, tmp_path, capsys):
    work = tmp_path / "work"
    with pytest.raises(SystemExit) as exc:
        ablation.main(["pseudo-off", "--size", "256", "--work", str(work)])
    assert exc.value.code == 2
    assert "--size wants HEIGHTxWIDTH like 256x512" in capsys.readouterr().err
    assert not work.exists()


def test_cap_rule_reads_mcu_caps_rule_beside_pixelpick(ablation):
    runs = dict(ablation.plan("cap-rule", TrainConfig(), [], (0,), (0.001,)))
    assert list(runs) == ["mcu-cap", "mcu-cap/true-only", "pixelpick"]
    assert runs["mcu-cap"] == configure(TrainConfig(), "mcu-cap", budget_rate=0.001, seed=0)
    assert runs["mcu-cap/true-only"].cap_pseudo_below_rate == 0.0
    assert runs["pixelpick"].strategy == "pixelpick"
