"""tune/decision.py: the statistics of a search's decision, on small fixed inputs (no Ray)."""

import math

import pytest
from scipy import stats

from tune.decision import (PAIRED, WELCH, Confirmed, decide, interval, paired,
                           paired_seeds_needed, seeds_needed, welch)

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


@pytest.mark.parametrize("a,b", [
    ([0.50, 0.52, 0.51, 0.53], [0.40, 0.41, 0.39, 0.42]),
    ([0.40, 0.45, 0.38], [0.41, 0.39, 0.44]),
    ([0.10, 0.22, 0.17, 0.09], [0.09, 0.20, 0.16, 0.09]),  # a shared seed effect
])
def test_paired_interval_is_the_t_interval_of_the_per_seed_differences(a, b):
    seeds = range(1000, 1000 + len(a))
    d = paired("a", dict(zip(seeds, a)), "b", dict(zip(seeds, b)))
    per_seed = interval([x - y for x, y in zip(a, b)])
    assert d.test == PAIRED and d.df == len(a) - 1
    assert (d.diff, d.low, d.high) == pytest.approx((per_seed.mean, per_seed.low, per_seed.high))
    assert d.separated == (stats.ttest_rel(a, b).pvalue < 0.05)


SEEDS = [1000, 1001, 1002, 1003, 1004]
# the seed moves every configuration by up to 0.12; t05 is ahead by 0.01 at every seed
SEED_EFFECT = [0.00, 0.05, 0.12, 0.03, 0.08]


def test_a_small_gain_at_every_seed_is_separated_by_pairing_where_welch_is_not():
    gain = [0.010, 0.012, 0.009, 0.011, 0.010]
    default = [0.10 + e for e in SEED_EFFECT]
    better = [x + g for x, g in zip(default, gain)]
    assert not welch("t05", interval(better), DEFAULT, interval(default)).separated
    decision = decide([Confirmed("t05 λ=0.3 w=0.4", False, better, seeds=SEEDS),
                       Confirmed(DEFAULT, True, default, seeds=SEEDS)])
    assert decision.winner == "t05 λ=0.3 w=0.4"
    (d,) = decision.differences
    assert d.test == PAIRED and d.low > 0 and d.diff == pytest.approx(sum(gain) / 5)
    assert "paired t 95% intervals of the per-seed differences" in decision.verdict
    assert "Welch" not in decision.verdict


def test_pairs_are_the_seeds_both_ran_and_fewer_than_two_fall_back_to_welch():
    default = Confirmed(DEFAULT, True, [0.10, 0.15, 0.22, 0.13], seeds=SEEDS[:4])
    # seed 1001's run failed: 3 pairs left
    partial = Confirmed("t01 a", False, [0.11, 0.23, 0.14], seeds=[1000, 1002, 1003])
    decision = decide([partial, default])
    (d,) = decision.differences
    assert d.test == PAIRED and d.df == 2
    assert d.diff == pytest.approx((0.01 + 0.01 + 0.01) / 3)
    lonely = Confirmed("t02 b", False, [0.30, 0.31], seeds=[1000, 2000])
    decision = decide([lonely, default])
    (d,) = decision.differences
    assert d.test == WELCH and "Welch's t" in decision.verdict
    without_seeds = decide([Confirmed("t03 c", False, [0.3, 0.31]), default])
    assert without_seeds.differences[0].test == WELCH


def test_seeds_needed_when_paired_follows_the_paired_size_formula():
    # z formula: (1.96 + 0.84)² · σd² / Δ² = 7.85 at Δ = σd; t quantiles at n − 1 df add two
    assert paired_seeds_needed(0.1, 0.1) == 10
    assert paired_seeds_needed(0.1, 0.1) < seeds_needed(0.1, 0.1, 0.1)
    assert paired_seeds_needed(0.0, 0.1) is None and paired_seeds_needed(1e-6, 0.1) is None
    default = [0.10 + e for e in SEED_EFFECT]
    noisy = [x + g for x, g in zip(default, [0.02, -0.01, 0.015, -0.005, 0.01])]
    decision = decide([Confirmed("t01 a", False, noisy, seeds=SEEDS),
                       Confirmed(DEFAULT, True, default, seeds=SEEDS)])
    (d,) = decision.differences
    assert decision.winner is None and decision.needed == paired_seeds_needed(d.diff, d.spread)
    assert f"about {decision.needed} seeds" in decision.verdict and "paired size" in \
        decision.verdict


def test_the_confirmation_table_gives_each_value_its_seed():
    import pandas as pd

    from tune.confirm import confirmed

    table = pd.DataFrame({
        "confirms": ["t01 a", DEFAULT, "t01 a", DEFAULT, "t01 a"],
        "seed": [1000, 1000, 1001, 1001, 1002],
        "status": ["FINISHED", "FINISHED", "FINISHED", "FINISHED", "ERROR"],
        "last_coco/segm_mAP": [0.2, 0.1, float("nan"), 0.3, 0.5],
        "boundary_AP": [0.02, 0.01, 0.03, 0.04, 0.05],
    })
    groups = {g.name: g for g in confirmed(table, "coco/segm_mAP", DEFAULT)}
    assert groups["t01 a"].by_seed() == {1000: 0.2}  # no metric at 1001; 1002 failed
    assert groups[DEFAULT].by_seed() == {1000: 0.1, 1001: 0.3} and groups[DEFAULT].is_default
