"""What a row of the analysis arrays is: a feature measured on a segment."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import repeat
from typing import NamedTuple, TypeAlias, cast

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
IntArray: TypeAlias = npt.NDArray[np.intp]
BoolArray: TypeAlias = npt.NDArray[np.bool_]


class SeriesKey(NamedTuple):
    """Which histogram a row is: a feature, and the segment it was measured on.

    ``segment`` holds the segment labels as ``(name, value)`` pairs sorted by name; the empty
    tuple is the whole population of the feature. Keys are immutable, hashable and ordered
    (by feature, then segment, so a feature's whole population comes first). A tuple rather
    than a dataclass: keys are hashed and compared once per series per evaluation, and tuple
    hashing and ordering run in C.
    """

    feature: str
    segment: tuple[tuple[str, str], ...] = ()

    @property
    def is_population(self) -> bool:
        """True for the whole-population series of a feature."""
        return not self.segment

    @property
    def segment_text(self) -> str:
        """The segment as ``browser=firefox,country=de``; ``*`` for the whole population."""
        if not self.segment:
            return "*"
        return ",".join(f"{name}={value}" for name, value in self.segment)

    def __str__(self) -> str:
        return f"{self.feature}:{self.segment_text}"


def series_keys(
    features: Iterable[str], segments: Iterable[tuple[tuple[str, str], ...]]
) -> tuple[SeriesKey, ...]:
    """Keys of pairwise ``features`` and ``segments``, built without Python code per key.

    ``SeriesKey(feature, segment)`` runs the NamedTuple's Python ``__new__``; at hundreds of
    keys per parsed answer, ``tuple.__new__`` over the pairs is several times faster.
    """
    pairs = zip(features, segments, strict=True)
    return cast(tuple[SeriesKey, ...], tuple(map(tuple.__new__, repeat(SeriesKey), pairs)))
