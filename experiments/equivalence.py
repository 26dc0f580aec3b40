"""The decision rules of docs/results/glue_cpu_plan.md, as code: paired differences, TOST, Holm, verdicts.

"No significant difference" is not "the same accuracy": the GLUE head-to-head asks whether a
method is *equivalent* to a reference (MT-DNN's SMART, fine-tuning) within a margin fixed before
any run, and answers with two one-sided tests (TOST) on paired per-seed differences. Every rule
here is the one the plan document states, with the same names; the plan is the authority and
tests/test_glue_head_to_head.py checks the two agree on synthetic runs whose answer is known.

- a comparison is the per-seed difference d_s = method_s - reference_s over the seeds both have
  (points of the task's metric, x100 for MCC and correlations);
- its 95% CI is d_mean +- t(0.975, n-1) * sd(d)/sqrt(n); TOST at alpha 0.05 asks whether the 90% CI
  lies inside (-margin, +margin), as p_tost = max of the two one-sided p-values;
- the difference test is the two-sided paired t-test (p_diff);
- multiplicity: Holm's step-down adjustment within each family (the plan names the families);
- verdict: EQUIVALENT when adjusted p_tost < alpha; else BETTER / WORSE when adjusted p_diff < alpha
  with the mean difference above / below 0; else INCONCLUSIVE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import mean, stdev

from scipy import stats

MARGIN = 1.0  # points of the task metric (MCC and correlations x100): fixed in the plan before the grid
ALPHA = 0.05
EQUIVALENT, BETTER, WORSE, INCONCLUSIVE = "equivalent", "better", "worse", "inconclusive"
VERDICTS = (EQUIVALENT, BETTER, WORSE, INCONCLUSIVE)


@dataclass(frozen=True)
class PairedComparison:
    """One method against one reference over the seeds both have (differences in points)."""

    seeds: tuple[int, ...]
    differences: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return mean(self.differences)

    @property
    def sd(self) -> float | None:
        return stdev(self.differences) if self.n >= 2 else None

    @property
    def se(self) -> float | None:
        return None if self.sd is None else self.sd / math.sqrt(self.n)

    def interval(self, *, level: float = 0.95) -> tuple[float, float] | None:
        """The t interval of the mean difference; None with fewer than 2 seeds."""
        if self.se is None:
            return None
        half = float(stats.t.ppf(0.5 + level / 2, self.n - 1)) * self.se
        return self.mean - half, self.mean + half

    def p_difference(self) -> float | None:
        """Two-sided paired t-test of mean difference 0; None with < 2 seeds. No spread: 0 or 1 exactly."""
        if self.se is None:
            return None
        if self.se == 0:
            return 1.0 if self.mean == 0 else 0.0
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.n - 1))

    def p_tost(self, *, margin: float = MARGIN) -> float | None:
        """Two one-sided tests of |mean difference| >= margin: the larger of the two p-values."""
        if self.se is None:
            return None
        if self.se == 0:
            return 0.0 if abs(self.mean) < margin else 1.0
        df = self.n - 1
        p_lower = stats.t.sf((self.mean + margin) / self.se, df)  # H0: mean <= -margin
        p_upper = stats.t.cdf((self.mean - margin) / self.se, df)  # H0: mean >= +margin
        return float(max(p_lower, p_upper))


def paired(*, values: dict[int, float], reference: dict[int, float]) -> PairedComparison:
    common = tuple(sorted(set(values) & set(reference)))
    return PairedComparison(seeds=common, differences=tuple(values[s] - reference[s] for s in common))


def pooled(*, per_task: list[PairedComparison]) -> PairedComparison:
    """Per seed, the mean over tasks of the paired differences; only seeds every task has."""
    if not per_task:
        return PairedComparison((), ())
    common = set(per_task[0].seeds)
    for comparison in per_task[1:]:
        common &= set(comparison.seeds)
    seeds = tuple(sorted(common))
    lookup = [dict(zip(c.seeds, c.differences)) for c in per_task]
    return PairedComparison(seeds=seeds, differences=tuple(mean(d[s] for d in lookup) for s in seeds))


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values (None stays None and does not count toward the family size)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    m = len(indexed)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def verdict(*, mean_difference: float | None, p_tost_adjusted: float | None, p_difference_adjusted: float | None,
            alpha: float = ALPHA) -> str:
    """The plan's rule: equivalence first, then a difference, else inconclusive."""
    if p_tost_adjusted is not None and p_tost_adjusted < alpha:
        return EQUIVALENT
    if p_difference_adjusted is not None and p_difference_adjusted < alpha and mean_difference:
        return BETTER if mean_difference > 0 else WORSE
    return INCONCLUSIVE


@dataclass(frozen=True)
class Decision:
    """A comparison with its tests, Holm-adjusted within its family, and its verdict."""

    key: tuple  # (method, reference, task) with task "pooled" for the pooled comparison
    comparison: PairedComparison
    p_tost: float | None
    p_difference: float | None
    p_tost_adjusted: float | None
    p_difference_adjusted: float | None
    verdict: str


def decide(*, comparisons: dict[tuple, PairedComparison], margin: float = MARGIN, alpha: float = ALPHA) -> dict[tuple, Decision]:
    """Verdicts for one family of comparisons: Holm over the family, separately for TOST and difference tests."""
    keys = list(comparisons)
    tost = [comparisons[k].p_tost(margin=margin) for k in keys]
    diff = [comparisons[k].p_difference() for k in keys]
    tost_adj, diff_adj = holm(tost), holm(diff)
    out = {}
    for key, pt, pd, pta, pda in zip(keys, tost, diff, tost_adj, diff_adj):
        comparison = comparisons[key]
        mean_difference = comparison.mean if comparison.n else None
        out[key] = Decision(key, comparison, pt, pd, pta, pda,
                            verdict(mean_difference=mean_difference, p_tost_adjusted=pta, p_difference_adjusted=pda,
                                    alpha=alpha))
    return out
