"""Labels as columns: for each label name, a code per series into the label's distinct texts.

A histogram answer holds thousands of series but a few dozen distinct label texts; code
arrays let everything downstream work in numpy and per distinct text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from evergreen.analysis.series import BoolArray, IntArray

#: The code of a series that lacks a label (Prometheus leaves empty labels out).
ABSENT = -1


@dataclass(frozen=True, eq=False)
class LabelColumn:
    """One label over the series of an answer: per series a code into ``texts`` (-1: absent).

    ``texts`` are distinct; their order carries no meaning.
    """

    codes: IntArray
    texts: tuple[str, ...]

    def take(self, rows: IntArray | BoolArray) -> LabelColumn:
        """The column of a subset of the series (texts kept, codes selected)."""
        return LabelColumn(self.codes[rows], self.texts)

    def text_of(self, row: int) -> str | None:
        code = int(self.codes[row])
        return self.texts[code] if code >= 0 else None


#: The labels of an answer's series, one column per label name.
LabelColumns = Mapping[str, LabelColumn]
