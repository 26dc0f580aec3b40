"""GLUE's metrics against hand-worked examples and scipy.stats, degenerate cases included."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from mt_dnn.metrics import accuracy, auc, compute_metrics, f1, mcc, pearson, spearman


def test_hand_worked_binary_example():
    # gold 1 1 1 0 0 0 1 0 ; pred 1 0 1 0 1 0 1 1 -> TP 3, FN 1, FP 2, TN 2
    gold = np.array([1, 1, 1, 0, 0, 0, 1, 0])
    pred = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    assert accuracy(predictions=pred, gold=gold) == 5 / 8
    assert f1(predictions=pred, gold=gold) == pytest.approx(2 * 3 / (2 * 3 + 2 + 1))  # 6/9
    assert f1(predictions=pred, gold=gold, positive=0) == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))  # class 0
    expected_mcc = (3 * 2 - 2 * 1) / math.sqrt((3 + 2) * (3 + 1) * (2 + 2) * (2 + 1))
    assert mcc(predictions=pred, gold=gold) == pytest.approx(expected_mcc)


def test_mcc_multiclass_matches_the_binary_formula_and_a_hand_value():
    # three classes, a hand-computed R_K: confusion rows gold, cols pred
    gold = np.array([0, 0, 1, 1, 2, 2])
    pred = np.array([0, 1, 1, 1, 2, 0])
    # c=4, s=6, t=(2,2,2), p=(2,3,1): (4*6 - (4+6+2)) / sqrt((36 - 14)(36 - 12))
    assert mcc(predictions=pred, gold=gold) == pytest.approx((24 - 12) / math.sqrt(22 * 24))


def test_one_class_predictions_give_defined_values_never_nan():
    gold = np.array([1, 0, 1, 1, 0])
    all_zero = np.zeros(5, dtype=int)
    all_one = np.ones(5, dtype=int)
    assert mcc(predictions=all_zero, gold=gold) == 0.0
    assert mcc(predictions=all_one, gold=gold) == 0.0
    assert f1(predictions=all_zero, gold=gold) == 0.0  # no positive predicted: TP = 0
    assert f1(predictions=all_one, gold=gold) == pytest.approx(2 * 3 / (2 * 3 + 2))
    # no positives anywhere: 0/0, reported as 0.0 (scikit-learn's zero_division default)
    assert f1(predictions=all_zero, gold=np.zeros(5, dtype=int)) == 0.0
    assert mcc(predictions=all_zero, gold=np.zeros(5, dtype=int)) == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pearson_spearman_against_scipy(seed):
    rng = np.random.default_rng(seed)
    gold = rng.uniform(0, 5, size=200).round(1)  # ties, as STS-B's scores have
    pred = gold + rng.normal(0, 1.5, size=200)
    pred[:20] = pred[20:40]  # ties in the predictions too
    assert pearson(predictions=pred, gold=gold) == pytest.approx(stats.pearsonr(pred, gold)[0], abs=1e-12)
    assert spearman(predictions=pred, gold=gold) == pytest.approx(stats.spearmanr(pred, gold)[0], abs=1e-12)


def test_constant_prediction_correlations_are_zero_where_scipy_says_nan():
    gold = np.array([0.0, 1.5, 3.0, 4.2])
    constant = np.full(4, 2.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(stats.pearsonr(constant, gold)[0])
        assert math.isnan(stats.spearmanr(constant, gold)[0])
    assert pearson(predictions=constant, gold=gold) == 0.0
    assert spearman(predictions=constant, gold=gold) == 0.0


def test_auc_against_a_hand_count_and_scipy_mann_whitney():
    gold = np.array([1, 0, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.7, 0.2, 0.1])
    # positive-negative pairs ranked right: (0.9>all 3)=3, (0.7>0.1)+(0.7 vs 0.7: half)=1.5, (0.2>0.1)=1 -> 5.5/9
    assert auc(scores=scores, gold=gold) == pytest.approx(5.5 / 9)
    u = stats.mannwhitneyu(scores[gold == 1], scores[gold == 0]).statistic
    assert auc(scores=scores, gold=gold) == pytest.approx(u / 9)
    assert auc(scores=scores, gold=np.ones(6, dtype=int)) == 0.5


def test_compute_metrics_by_name():
    gold = np.array([1, 0, 1])
    probabilities = np.array([[0.2, 0.8], [0.6, 0.4], [0.7, 0.3]])
    got = compute_metrics(names=("mcc", "accuracy", "f1", "auc"), gold=gold,
                          predictions=probabilities.argmax(1), probabilities=probabilities)
    assert list(got) == ["mcc", "accuracy", "f1", "auc"]
    assert got["accuracy"] == pytest.approx(2 / 3) and got["auc"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(names=("bleu",), gold=gold, predictions=gold)
