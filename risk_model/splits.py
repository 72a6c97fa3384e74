"""Splitters whose folds are whole cohorts, with scikit-learn's CV contract.

`ForwardCohortSplit` is the backtest: train on every cohort before Y, test on Y.
For cross-validation over whole cohorts scikit-learn's `LeaveOneGroupOut` and
`GroupKFold` already exist; `cohort_folds` picks between them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from sklearn.model_selection import GroupKFold, LeaveOneGroupOut


class ForwardCohortSplit:
    """Expanding-window splits over ordered cohorts: train on cohorts < Y, test on Y.

    One split for every cohort that has at least `min_train_cohorts` predecessors.
    """

    def __init__(self, *, order: Callable[[str], tuple] | None = None, min_train_cohorts: int = 1) -> None:
        if min_train_cohorts < 1:
            raise ValueError(f"min_train_cohorts must be >= 1, got min_train_cohorts={min_train_cohorts}.")
        self.order = order
        self.min_train_cohorts = min_train_cohorts

    def _cohorts(self, groups: Sequence) -> list:
        if groups is None:
            raise ValueError("The 'groups' parameter should not be None: pass the cohort of each row.")
        return sorted(set(np.asarray(groups).tolist()), key=self.order)

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return max(0, len(self._cohorts(groups)) - self.min_train_cohorts)

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        cohorts = self._cohorts(groups)
        if len(cohorts) <= self.min_train_cohorts:
            raise ValueError(
                f"Cannot backtest with min_train_cohorts={self.min_train_cohorts} "
                f"and only {len(cohorts)} cohort(s): {cohorts}."
            )
        g = np.asarray(groups)
        for i in range(self.min_train_cohorts, len(cohorts)):
            yield np.flatnonzero(np.isin(g, cohorts[:i])), np.flatnonzero(g == cohorts[i])


def cohort_folds(groups: Sequence | np.ndarray, max_folds: int = 10):
    """Leave-one-cohort-out up to `max_folds` cohorts, else GroupKFold with `max_folds` folds."""
    n = len(set(np.asarray(groups).tolist()))
    if n < 2:
        raise ValueError(f"Cannot cross-validate by cohort with {n} cohort: need at least 2.")
    return LeaveOneGroupOut() if n <= max_folds else GroupKFold(n_splits=max_folds)
