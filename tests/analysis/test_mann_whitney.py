"""The Mann-Whitney U test against independent oracles: the exact p-value by enumerating every assignment
of ranks (itertools, no recursion shared with the code), the normal approximation by its textbook formula
written out here, and published worked examples."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from upgrader.analysis.mann_whitney import mann_whitney_u


def brute_force_p(x: list[float], y: list[float], alternative: str) -> float:
    """P(U >= u) / P(U <= u) over every way of choosing which len(x) of the pooled values are "x"."""
    pooled = [*x, *y]

    def u_of(chosen: tuple[int, ...]) -> float:
        xs = [pooled[i] for i in chosen]
        ys = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in xs for b in ys)

    observed = u_of(tuple(range(len(x))))
    all_u = [u_of(c) for c in itertools.combinations(range(len(pooled)), len(x))]
    greater = sum(u >= observed for u in all_u) / len(all_u)
    less = sum(u <= observed for u in all_u) / len(all_u)
    return {"greater": greater, "less": less, "two-sided": min(1.0, 2 * min(greater, less))}[alternative]


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("seed", range(6))
def test_the_exact_p_value_is_the_share_of_rank_assignments_at_least_as_extreme(seed, alternative):
    rng = random.Random(seed)
    x = [rng.random() + 0.2 for _ in range(rng.randint(3, 7))]
    y = [rng.random() for _ in range(rng.randint(3, 7))]
    result = mann_whitney_u(x, y, alternative)
    assert result.method == "exact"
    assert result.u == sum(1 for a in x for b in y if a > b)
    assert result.p_value == pytest.approx(brute_force_p(x, y, alternative), abs=1e-12)


def test_a_textbook_case_all_of_x_above_all_of_y():
    # n = m = 4, complete separation: P(U >= 16) = 1 / C(8, 4) = 1/70.
    result = mann_whitney_u([5, 6, 7, 8], [1, 2, 3, 4], "greater")
    assert (result.u, result.method) == (16, "exact")
    assert result.p_value == pytest.approx(1 / 70)
    assert mann_whitney_u([5, 6, 7, 8], [1, 2, 3, 4], "two-sided").p_value == pytest.approx(2 / 70)


def test_ties_use_average_ranks_and_the_tie_corrected_normal_approximation():
    x = [1, 2, 2, 3, 3, 3, 4, 5]
    y = [1, 1, 2, 2, 2, 3, 3, 4]
    result = mann_whitney_u(x, y, "greater")
    assert result.method == "asymptotic"
    # U by counting pairs (ties one half), the variance with the tie correction, continuity 0.5: by hand.
    u = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)
    pooled = sorted(x + y)
    ties = [pooled.count(v) for v in sorted(set(pooled))]
    n1, n2, n = len(x), len(y), len(x) + len(y)
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - sum(t**3 - t for t in ties) / (n * (n - 1))))
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    assert result.u == u == 41.5
    assert result.p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)), rel=1e-12)
    assert 0.15 < result.p_value < 0.3  # x sits a little higher: a shift, not a significant one


def test_the_normal_approximation_is_close_to_the_permutation_distribution_for_larger_samples():
    rng = random.Random(7)
    x = [rng.gauss(0.4, 1) for _ in range(30)]
    y = [rng.gauss(0, 1) for _ in range(30)]
    asymptotic = mann_whitney_u(x, y, "greater")
    assert asymptotic.method == "asymptotic"
    u = asymptotic.u
    pooled = x + y
    hits = 0
    shuffler = random.Random(8)
    for _ in range(4000):
        shuffler.shuffle(pooled)
        hits += sum(1 for a in pooled[:30] for b in pooled[30:] if a > b) >= u
    assert asymptotic.p_value == pytest.approx(hits / 4000, abs=0.02)


def test_identical_samples_tell_nothing_apart():
    result = mann_whitney_u([1.0] * 5, [1.0] * 6, "greater")
    assert result.p_value == 1.0


def test_an_empty_sample_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        mann_whitney_u([], [1.0])
