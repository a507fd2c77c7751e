"""Reference histograms from a ConfigMap become the same samples a baseline query returns."""

from __future__ import annotations

import json

import pytest

from evergreen.errors import SpecError
from evergreen.signals.reference import parse_reference

FIELD = "spec.drift.baseline.configMap"


def test_reference_histograms_become_bucket_samples() -> None:
    text = json.dumps(
        {"histograms": [{"feature": "amount", "labels": {"segment": "ios"}, "buckets": {"10": 5, "+Inf": 9}}]}
    )
    samples = parse_reference(text, feature_label="feature", field=FIELD)
    assert [(dict(s.labels), s.value) for s in samples] == [
        ({"segment": "ios", "feature": "amount", "le": "10"}, 5.0),
        ({"segment": "ios", "feature": "amount", "le": "+Inf"}, 9.0),
    ]


def test_prediction_references_need_no_feature() -> None:
    text = json.dumps({"histograms": [{"buckets": {"0.5": 1, "+Inf": 2}}]})
    assert len(parse_reference(text, feature_label=None, field=FIELD)) == 2


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ("not json", "not valid JSON"),
        ("{}", "non-empty"),
        ('{"histograms": [{"feature": "a"}]}', "buckets"),
        ('{"histograms": [{"buckets": {"1": 2}}]}', "feature"),
        ('{"histograms": [{"feature": "a", "buckets": {"x": 2}}]}', "not numeric"),
        ('{"histograms": [{"feature": "a", "buckets": {"1": -2}}]}', ">= 0"),
    ],
)
def test_bad_references_name_the_configmap(document: str, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_reference(document, feature_label="feature", field=FIELD)
    assert caught.value.field == FIELD and words in caught.value.message
