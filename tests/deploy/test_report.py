"""The loop's summary line keeps a person's skips, can't-tell skips and released queries apart."""

from stack.report import budget_line


def test_the_budget_line_names_every_kind_of_given_up_query() -> None:
    b = {"expected": 200, "answered": 150, "reserved": 4, "skipped": 7, "cant_tell": 3}
    assert budget_line(b | {"released": 26}) == (
        "budget: 150 of 200 pixels answered (75%), 4 still reserved, 7 skipped by annotators "
        "(3 could not tell the class), 26 released when the run finished"
    )
    plain = budget_line(b | {"cant_tell": 0})  # an older server: no released, no can't tell
    assert plain.endswith("7 skipped by annotators, 0 released when the run finished")
