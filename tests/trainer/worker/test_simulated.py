"""The in-memory service counts the budget by the server's rule
(``server.schemas_budget.budget_out``)."""

from __future__ import annotations

from server.schemas import GROUPS
from server.schemas_budget import budget_out
from trainer.worker.simulated import MemoryService


def test_the_rule_counts_reserved_answered_skipped_and_withdrawn() -> None:
    rows = [("high", "pending", None, 2), ("high", "leased", None, 1)]
    rows += [("high", "answered", None, 4), ("medium", "answered", None, 3)]
    rows += [("medium", "skipped", None, 3), ("medium", "skipped", "cant_tell", 2)]
    rows += [("high", "withdrawn", None, 6)]
    b = budget_out(20, rows)
    assert (b.expected, b.reserved, b.answered, b.skipped, b.withdrawn) == (20, 3, 7, 5, 6)
    assert b.cant_tell == 2
    assert b.remaining == 10 and set(b.groups) == set(GROUPS)
    assert (b.groups["high"].reserved, b.groups["high"].answered) == (3, 4)
    assert b.groups["medium"].answered == 3 and b.groups["random"].answered == 0
    # the server passes its counters (the run row's): they, not the rows' sums, are spent
    assert budget_out(20, rows, spent=(1, 2)).remaining == 17


def test_the_memory_service_reports_the_servers_budget() -> None:
    svc = MemoryService()
    svc.create_run(budget_rate=0.5, target_pixels=20)  # M_e = 10
    svc.register_images(1, [("a", None)])
    qs = [{"image_id": 1, "y": 0, "x": x, "group": "high", "score": 0.5} for x in range(4)]
    ids = svc.post_queries(1, qs)
    (first, second) = svc.claim("p", 2)
    svc.answer("p", first["id"], 3)
    svc.skip("p", second["id"])
    svc.withdraw(1, ids[2:3])
    b = svc.budget(1)  # the JSON of the server's BudgetOut, every field and group in it
    assert (b["reserved"], b["answered"], b["skipped"], b["withdrawn"]) == (1, 1, 1, 1)
    assert b["expected"] == 10 and b["remaining"] == 8 and set(b["groups"]) == set(GROUPS)
    assert b["groups"]["high"] == {
        "reserved": 1,
        "answered": 1,
        "answered_seconds": 0.0,
        "skipped_seconds": 0.0,
        "spent_seconds": 0.0,
    }
