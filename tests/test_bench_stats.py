"""The statistics and orderings the benchmarks report with (bench/common.py)."""

from bench import common
from bench.scale import exponent


def test_median_of_odd_and_even_counts():
    assert common.median([3, 1, 2]) == 2
    assert common.median([4, 1, 3, 2]) == 2.5


def test_nearest_rank_percentile():
    values = list(range(1, 101))
    assert common.percentile(values, 99) == 99
    assert common.percentile(values, 50) == 50
    assert common.percentile([7], 99) == 7
    assert common.percentile([5, 1], 99) == 5


def test_rounds_alternate_and_rotate_so_no_variant_always_runs_first():
    order = list(common.rounds(["a", "b", "c"], 6))

    assert len(order) == 18
    firsts = [order[i][1] for i in range(0, 18, 3)]
    assert firsts == ["a", "b", "c", "a", "b", "c"]
    for index in range(6):
        assert sorted(v for r, v in order if r == index) == ["a", "b", "c"]


def test_growth_exponent_is_one_for_linear_and_two_for_quadratic():
    assert round(exponent(1.0, 8.0, 512, 4096), 6) == 1.0
    assert round(exponent(1.0, 64.0, 512, 4096), 6) == 2.0


def test_a_row_shows_its_verdict_only_when_it_has_a_target():
    result = common.Result(1, "t")
    result.row("ratio", "1.20", "<= 1.15", False)
    result.row("info", "3 ms")
    assert [row.verdict for row in result.rows] == ["MISSED", ""]
