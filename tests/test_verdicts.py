"""scaling.verdicts: the five words and their thresholds, case by case."""

import math

import pytest

from scaling.verdicts import WORDS, Verdict, aic_verdict, peak_verdict, sign_verdict


@pytest.mark.parametrize(
    "claim, lo, hi, word",
    [
        (">0", 0.01, 0.05, "supported"),
        (">0", -0.05, -0.01, "contradicted"),
        (">0", -0.01, 0.05, "inconclusive"),
        ("<0", -0.05, -0.01, "supported"),
        ("<0", 0.01, 0.05, "contradicted"),
        ("=0", 0.01, 0.05, "contradicted"),
        ("=0", -0.5, 0.5, "inconclusive"),
    ],
)
def test_sign_verdicts(claim, lo, hi, word):
    assert sign_verdict("gamma", (lo + hi) / 2, lo, hi, claim=claim).word == word


def test_no_effect_is_supported_only_by_a_narrow_interval():
    assert sign_verdict("lam", 0.0, -0.01, 0.02, claim="=0", effect=0.05).word == "supported"
    assert sign_verdict("lam", 0.0, -0.01, 0.08, claim="=0", effect=0.05).word == "inconclusive"


def test_unidentified_and_untestable_override_the_interval():
    v = sign_verdict("gamma", 1.0, 0.5, 1.0, claim=">0", unidentified="gamma sits on its bound")
    assert (v.word, v.reason) == ("undetermined", "gamma sits on its bound")
    assert sign_verdict("lam", math.nan, math.nan, math.nan, claim="=0", untestable="one top_k").word == "not testable"
    assert sign_verdict("gamma", 0.1, math.nan, math.nan, claim=">0").word == "undetermined"


def test_aic_threshold_is_two():
    assert aic_verdict(2.0, claim_model="moe", other_model="active").word == "supported"
    assert aic_verdict(1.84, claim_model="moe", other_model="active").word == "inconclusive"
    assert aic_verdict(-3.0, claim_model="moe", other_model="active").word == "contradicted"
    assert str(aic_verdict(1.84, claim_model="moe", other_model="active")).startswith("inconclusive: ΔAIC(active − moe) = 1.84")


def test_peak_outside_the_sampled_range_is_not_testable():
    v = peak_verdict("TPP", 0.94, 0.0, 1.67, claimed=20, sampled=(0.19, 6.1))
    assert v.word == "not testable" and "[10, 40]" in v.reason


def test_peak_verdicts_inside_the_range():
    assert peak_verdict("TPP", 19.7, 18.8, 20.5, claimed=20, sampled=(1, 100)).word == "supported"
    assert peak_verdict("TPP", 60, 50, 70, claimed=20, sampled=(1, 100)).word == "contradicted"
    assert peak_verdict("TPP", 30, 15, 70, claimed=20, sampled=(1, 100)).word == "inconclusive"
    assert peak_verdict("TPP", 30, 15, 300, claimed=20, sampled=(1, 100)).word == "undetermined"


def test_only_the_five_words():
    assert WORDS == ("supported", "contradicted", "inconclusive", "not testable", "undetermined")
    with pytest.raises(ValueError):
        Verdict("agrees", "")
