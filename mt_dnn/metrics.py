"""GLUE's metrics, computed here with numpy, each always a finite number.

MT-DNN scores GLUE tasks with accuracy, F1, Matthews correlation, Pearson, Spearman and AUC
(its ``metric_meta``); a task definition lists them and the first picks the best epoch.
They are written here rather than taken from scikit-learn (not a dependency) and checked in
tests against hand-worked examples and ``scipy.stats``.

Degenerate inputs get a defined value instead of NaN, because a NaN in the first metric would
make an epoch unrankable and a table unreadable:
- F1 with no positive prediction and no positive gold label: 0.0 (scikit-learn's default);
- MCC when the predictions (or the gold labels) are all one class: 0.0 (scikit-learn's value:
  a constant predictor carries no information about the labels);
- Pearson/Spearman when the predictions (or the gold scores) are constant: 0.0. The
  correlation is undefined there (zero variance; scipy returns NaN with a warning); a constant
  prediction orders nothing, so it is reported as "no correlation", which keeps model
  selection and the multi-task mean finite and ranks such an epoch below any that tracks the
  scores;
- AUC when the gold labels hold one class only: 0.5 (undefined; chance level).
All values are fractions (accuracy 0.85, not 85).
"""

from __future__ import annotations

import numpy as np

CLASSIFICATION_METRICS = ("accuracy", "f1", "mcc", "auc")
REGRESSION_METRICS = ("pearson", "spearman")
BINARY_ONLY = ("f1", "auc")  # of the positive class: the task's second label
ALL_METRICS = CLASSIFICATION_METRICS + REGRESSION_METRICS


def accuracy(*, predictions: np.ndarray, gold: np.ndarray) -> float:
    predictions, gold = np.asarray(predictions), np.asarray(gold)
    return float((predictions == gold).mean()) if len(gold) else 0.0


def _confusion(predictions: np.ndarray, gold: np.ndarray, positive: int) -> tuple[int, int, int, int]:
    predicted, actual = np.asarray(predictions) == positive, np.asarray(gold) == positive
    tp = int(np.sum(predicted & actual))
    fp = int(np.sum(predicted & ~actual))
    fn = int(np.sum(~predicted & actual))
    tn = int(np.sum(~predicted & ~actual))
    return tp, fp, fn, tn


def f1(*, predictions: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """F1 of the ``positive`` class: 2TP / (2TP + FP + FN)."""
    tp, fp, fn, _ = _confusion(predictions, gold, positive)
    denominator = 2 * tp + fp + fn
    return 2 * tp / denominator if denominator else 0.0


def mcc(*, predictions: np.ndarray, gold: np.ndarray) -> float:
    """Matthews correlation, multi-class form (Gorodkin's R_K), as scikit-learn computes it.

    For two classes it is (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)).
    """
    predictions, gold = np.asarray(predictions), np.asarray(gold)
    classes = np.union1d(predictions, gold)
    index = {c: i for i, c in enumerate(classes.tolist())}
    table = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for g, p in zip(gold.tolist(), predictions.tolist()):
        table[index[g], index[p]] += 1
    t_k, p_k = table.sum(axis=1), table.sum(axis=0)
    c, s = np.trace(table), table.sum()
    numerator = c * s - np.dot(t_k, p_k)
    denominator = np.sqrt((s * s - np.dot(p_k, p_k)) * (s * s - np.dot(t_k, t_k)))
    return float(numerator / denominator) if denominator > 0 else 0.0


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties given their average rank (scipy's ``rankdata(method='average')``)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_values = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start:end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def pearson(*, predictions: np.ndarray, gold: np.ndarray) -> float:
    x = np.asarray(predictions, dtype=np.float64)
    y = np.asarray(gold, dtype=np.float64)
    dx, dy = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.dot(dx, dx) * np.dot(dy, dy))
    if not denominator > 0:  # a constant prediction or constant gold: see the module docstring
        return 0.0
    return float(np.clip(np.dot(dx, dy) / denominator, -1.0, 1.0))


def spearman(*, predictions: np.ndarray, gold: np.ndarray) -> float:
    return pearson(predictions=_ranks(predictions), gold=_ranks(gold))


def auc(*, scores: np.ndarray, gold: np.ndarray, positive: int = 1) -> float:
    """Area under the ROC curve of ``scores`` (the positive class's probability), by ranks:
    the Mann-Whitney U of the positives over n_pos · n_neg, ties counting one half."""
    scores, actual = np.asarray(scores, dtype=np.float64), np.asarray(gold) == positive
    n_pos, n_neg = int(actual.sum()), int((~actual).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = _ranks(scores)
    u = ranks[actual].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def compute_metrics(*, names: tuple[str, ...] | list[str], gold: np.ndarray, predictions: np.ndarray,
                    probabilities: np.ndarray | None = None) -> dict[str, float]:
    """Each named metric of one split. Classification: ``predictions`` are class indices and
    ``probabilities`` the softmax rows (for AUC); regression: ``predictions`` are the scores."""
    results = {}
    for name in names:
        if name == "accuracy":
            results[name] = accuracy(predictions=predictions, gold=gold)
        elif name == "f1":
            results[name] = f1(predictions=predictions, gold=gold, positive=1)
        elif name == "mcc":
            results[name] = mcc(predictions=predictions, gold=gold)
        elif name == "auc":
            if probabilities is None:
                raise ValueError("auc needs the class probabilities")
            results[name] = auc(scores=np.asarray(probabilities)[:, 1], gold=gold, positive=1)
        elif name == "pearson":
            results[name] = pearson(predictions=predictions, gold=gold)
        elif name == "spearman":
            results[name] = spearman(predictions=predictions, gold=gold)
        else:
            raise ValueError(f"unknown metric {name!r} (known: {', '.join(ALL_METRICS)})")
    return results
