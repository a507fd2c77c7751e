"""Reference histograms kept in a ConfigMap (for example the training set's distributions).

The ConfigMap key holds JSON::

    {"histograms": [
      {"feature": "amount", "labels": {"segment": "ios"},
       "buckets": {"10": 120, "100": 560, "+Inf": 1000}}
    ]}

``buckets`` are cumulative counts by upper bound, exactly like Prometheus ``_bucket`` series;
``feature`` is omitted for prediction histograms; ``labels`` carries the segment labels.
They become the same samples a baseline query would return, so one code path compares them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from evergreen.errors import SpecError
from evergreen.signals.samples import Sample


def parse_reference(text: str, *, feature_label: str | None, field: str) -> list[Sample]:
    """Parse reference histograms; errors name ``field`` (the ConfigMap reference)."""
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError as error:
        raise SpecError(field, f"reference histograms are not valid JSON: {error}") from error
    histograms = document.get("histograms") if isinstance(document, dict) else None
    if not isinstance(histograms, list) or not histograms:
        raise SpecError(field, 'reference histograms need a non-empty "histograms" list')
    samples: list[Sample] = []
    for index, entry in enumerate(histograms):
        where = f"histograms[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("buckets"), dict):
            raise SpecError(field, f'{where} needs a "buckets" object of upper bound -> cumulative count')
        labels = entry.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise SpecError(field, f"{where}.labels must map label names to strings")
        base = dict(labels)
        if feature_label is not None:
            feature = entry.get("feature")
            if not isinstance(feature, str) or not feature:
                raise SpecError(field, f'{where} needs a "feature" name')
            base[feature_label] = feature
        for bound, count in entry["buckets"].items():
            try:
                value = float(count)
                float(bound)
            except (TypeError, ValueError) as error:
                raise SpecError(field, f"{where}.buckets[{bound!r}] is not numeric") from error
            if math.isnan(value) or value < 0:
                raise SpecError(field, f"{where}.buckets[{bound!r}] must be a count >= 0")
            samples.append(Sample({**base, "le": str(bound)}, value))
    return samples
