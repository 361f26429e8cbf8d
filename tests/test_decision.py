"""tune/decision.py: the statistics of a search's decision, on small fixed inputs (no Ray)."""

import math

import pytest
from scipy import stats

from tune.decision import Confirmed, decide, interval, seeds_needed, welch

DEFAULT = "default λ=1 w=0.2 n=3"


def test_interval_is_students_t_on_the_mean():
    values = [0.40, 0.42, 0.44]
    got = interval(values)
    half = stats.t.ppf(0.975, 2) * 0.02 / math.sqrt(3)  # std of the three is 0.02
    assert (got.n, round(got.mean, 6), round(got.std, 6)) == (3, 0.42, 0.02)
    assert got.low == pytest.approx(0.42 - half) and got.high == pytest.approx(0.42 + half)
    assert math.isnan(interval([0.5]).low) and interval([float("nan")]) is None


@pytest.mark.parametrize("a,b", [
    ([0.50, 0.52, 0.51, 0.53], [0.40, 0.41, 0.39, 0.42]),  # far apart
    ([0.40, 0.45, 0.38], [0.41, 0.39, 0.44]),  # inside the noise
    ([0.30, 0.31, 0.33, 0.29, 0.35], [0.28, 0.27, 0.30]),  # unequal sizes and spreads
])
def test_welch_interval_excludes_zero_exactly_when_welchs_test_rejects(a, b):
    d = welch("a", interval(a), "b", interval(b))
    p = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert d.separated == (p < 0.05)
    assert d.low < d.diff < d.high and d.diff == pytest.approx(sum(a) / len(a) - sum(b) / len(b))


def test_a_configuration_separated_beyond_its_interval_is_the_winner():
    decision = decide([
        Confirmed("t01 λ=2 w=0.3", False, [0.50, 0.52, 0.51, 0.53], [0.30, 0.31, 0.29, 0.30]),
        Confirmed(DEFAULT, True, [0.40, 0.41, 0.39, 0.42], [0.20, 0.22, 0.21, 0.20]),
        Confirmed("t03 λ=0.5 w=0.1", False, [0.41, 0.43, 0.40, 0.45], [0.21, 0.20, 0.23, 0.22]),
    ])
    assert decision.winner == "t01 λ=2 w=0.3" and decision.leader == decision.winner
    assert all(d.separated and d.low > 0 for d in decision.differences)
    assert len(decision.differences) == 2 and decision.needed is None and decision.seeds == 4
    assert decision.verdict.startswith("winner: t01 λ=2 w=0.3") and "Welch" in decision.verdict
    assert decision.rows[0][0].name == "t01 λ=2 w=0.3"  # rows by mean metric
    assert decision.rows[0][2].mean == pytest.approx(0.30)  # boundary AP beside it


def test_one_inside_the_noise_is_not_declared_and_the_seeds_needed_are_sane():
    a, default = [0.40, 0.45, 0.38], [0.41, 0.39, 0.42]
    decision = decide([Confirmed("t02 λ=1.4 w=0.3", False, a), Confirmed(DEFAULT, True, default)])
    assert decision.winner is None
    assert "no configuration is separated from the default at 3 seeds" in decision.verdict
    # the normal-approximation size for the measured difference and stds, a lower bound
    # of the t-corrected one, which adds only a few seeds
    diff = sum(a) / 3 - sum(default) / 3
    z = (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) ** 2 * \
        (stats.tstd(a) ** 2 + stats.tstd(default) ** 2) / diff ** 2
    assert math.ceil(z) <= decision.needed <= math.ceil(z) + 3
    assert f"about {decision.needed} seeds" in decision.verdict


def test_ahead_of_the_default_but_not_of_another_is_no_winner_and_says_so():
    decision = decide([
        Confirmed("t01 a", False, [0.50, 0.52, 0.51]),
        Confirmed("t02 b", False, [0.49, 0.53, 0.50]),
        Confirmed(DEFAULT, True, [0.40, 0.41, 0.39]),
    ])
    assert decision.winner is None
    assert "ahead of the default, but" in decision.verdict and "not separated from" in \
        decision.verdict


def test_seeds_needed_follows_the_two_sample_size_formula():
    # z formula: (1.96 + 0.84)² · 2σ² / Δ² = 15.7 at Δ = σ; t quantiles add one seed
    assert seeds_needed(0.1, 0.1, 0.1) == 17
    assert seeds_needed(0.2, 0.1, 0.1) < seeds_needed(0.1, 0.1, 0.1) < seeds_needed(0.05, 0.1, 0.1)
    assert seeds_needed(0.0, 0.1, 0.1) is None  # no measured difference: nothing to size
    assert seeds_needed(1e-6, 0.1, 0.1) is None  # beyond MAX_SEEDS


def test_identical_runs_are_no_decision_and_one_seed_is_no_interval():
    flat = decide([Confirmed("t00 x", False, [0.0, 0.0]), Confirmed(DEFAULT, True, [0.0, 0.0])])
    assert flat.winner is None and flat.needed is None and "cannot be estimated" in flat.verdict
    single = decide([Confirmed("t00 x", False, [0.5]), Confirmed(DEFAULT, True, [0.1])])
    assert single.winner is None and "at least 2 seeds" in single.verdict
    with pytest.raises(ValueError):
        decide([Confirmed(DEFAULT, True, [0.1, 0.2])])
