"""Probes of a forget-set attribute on frozen pooled hidden states (docs/metrics.md §9.2, §9.4).

- k-NN transfer accuracy: `KNeighborsClassifier(n_neighbors=5, metric="cosine")` fit on one
  half of the items and scored on the other (a stratified split, seeded), as UUEF [code].
- [proposal] a logistic-regression linear probe, stratified k-fold cross-validated (5 folds,
  fewer when a class has fewer items).
Classes with fewer than two items are dropped: they can be neither split nor predicted.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np


def _usable(x: np.ndarray, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    counts = Counter(labels)
    keep = np.array([counts[label] >= 2 for label in labels], dtype=bool)
    return np.asarray(x)[keep], np.asarray(labels)[keep]


def knn_probe(x: np.ndarray, labels: Sequence[str], k: int = 5, seed: int = 0) -> tuple[float | None, int]:
    """(test accuracy, n test items) of a cosine k-NN fit on a stratified half; None when
    fewer than two classes have two items."""
    from sklearn.model_selection import train_test_split
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _usable(x, labels)
    if len(set(y)) < 2:
        return None, 0
    n_classes = len(set(y))
    test_size = max(n_classes, len(y) // 2)
    if len(y) - test_size < n_classes:
        return None, 0
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, stratify=y, random_state=seed)
    clf = KNeighborsClassifier(n_neighbors=min(k, len(y_tr)), metric="cosine").fit(x_tr, y_tr)
    return float((clf.predict(x_te) == y_te).mean()), len(y_te)


def logreg_probe(x: np.ndarray, labels: Sequence[str], folds: int = 5, seed: int = 0) -> tuple[float | None, int]:
    """(mean cross-validated accuracy, n items) of a standardised logistic-regression probe."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _usable(x, labels)
    if len(set(y)) < 2:
        return None, 0
    n_splits = min(folds, min(Counter(y).values()))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    return float(cross_val_score(clf, x, y, cv=cv).mean()), len(y)
