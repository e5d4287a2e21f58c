"""The Mann-Whitney U test (Wilcoxon rank-sum), as Kayenta judges a canary: rank-based, so an outlier
customer weighs no more than any other, and no distribution is assumed.

Ties get their average rank. The p-value is exact (the distribution of U counted by recursion) when there
are no ties and both samples are small; otherwise the normal approximation with the tie correction of the
variance and a continuity correction of 0.5 (the textbook method, and scipy.stats.mannwhitneyu's
`method="asymptotic"`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

Alternative = Literal["greater", "less", "two-sided"]
EXACT_MAX = 25  # both samples at most this large and no ties: the exact distribution


@dataclass(frozen=True, slots=True)
class MannWhitney:
    u: float  # U of the first sample: the number of pairs (x, y) with x > y, ties counting one half
    p_value: float
    method: Literal["exact", "asymptotic"]
    n_x: int
    n_y: int


def mann_whitney_u(x: Sequence[float], y: Sequence[float], alternative: Alternative = "greater") -> MannWhitney:
    """Test whether `x` tends to be greater than `y` ("greater"), smaller ("less") or either ("two-sided")."""
    n_x, n_y = len(x), len(y)
    if n_x == 0 or n_y == 0:
        raise ValueError("each sample needs at least one value")
    ranks, tie_sizes = _ranks([*x, *y])
    u = sum(ranks[:n_x]) - n_x * (n_x + 1) / 2
    ties = any(t > 1 for t in tie_sizes)
    if not ties and n_x <= EXACT_MAX and n_y <= EXACT_MAX:
        return MannWhitney(u, _exact_p(round(u), n_x, n_y, alternative), "exact", n_x, n_y)
    return MannWhitney(u, _asymptotic_p(u, n_x, n_y, tie_sizes, alternative), "asymptotic", n_x, n_y)


def _ranks(values: list[float]) -> tuple[list[float], list[int]]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    tie_sizes: list[int] = []
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        average = (start + end) / 2 + 1
        for k in range(start, end + 1):
            ranks[order[k]] = average
        tie_sizes.append(end - start + 1)
        start = end + 1
    return ranks, tie_sizes


@cache
def _counts(n_x: int, n_y: int) -> tuple[int, ...]:
    """How many of the C(n_x + n_y, n_x) orderings give U = 0, 1, ..., n_x * n_y."""
    if n_x == 0 or n_y == 0:
        return (1,)
    # f(m, n, u) = f(m - 1, n, u - n) + f(m, n - 1, u): the largest value is from x (beats all n of y) or from y.
    with_x = _counts(n_x - 1, n_y)
    with_y = _counts(n_x, n_y - 1)
    size = n_x * n_y + 1
    return tuple(
        (with_x[u - n_y] if 0 <= u - n_y < len(with_x) else 0) + (with_y[u] if u < len(with_y) else 0)
        for u in range(size)
    )


def _exact_p(u: int, n_x: int, n_y: int, alternative: Alternative) -> float:
    counts = _counts(n_x, n_y)
    total = math.comb(n_x + n_y, n_x)
    greater = sum(counts[u:]) / total  # P(U >= u)
    less = sum(counts[: u + 1]) / total  # P(U <= u)
    if alternative == "greater":
        return greater
    if alternative == "less":
        return less
    return min(1.0, 2 * min(greater, less))


def _asymptotic_p(u: float, n_x: int, n_y: int, tie_sizes: list[int], alternative: Alternative) -> float:
    n = n_x + n_y
    mean = n_x * n_y / 2
    tie_term = sum(t**3 - t for t in tie_sizes) / (n * (n - 1)) if n > 1 else 0.0
    variance = n_x * n_y / 12 * ((n + 1) - tie_term)
    if variance <= 0:  # every value equal: nothing tells the samples apart
        return 1.0
    sd = math.sqrt(variance)
    if alternative == "greater":
        return _upper_tail((u - mean - 0.5) / sd)
    if alternative == "less":
        return _upper_tail((mean - u - 0.5) / sd)
    return min(1.0, 2 * _upper_tail((abs(u - mean) - 0.5) / sd))


def _upper_tail(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))
