"""Reading the ``data.result`` array of a Prometheus answer with numpy, not object by object.

Prometheus writes every answer the same way: compact JSON, each series as
``{"metric":{"name":"value",...},"value":[t,"v"]}`` (``"values":[[t,"v"],...]`` in a range
answer). Every string of that text is a label name, a label value, one of the two keys, or a
sample value, and which one it is shows in the byte before and after its quotes. So the
quote positions (one vectorised comparison over the body) give every token; their kinds,
checked against the only order the layout allows, prove that the text is laid out that way;
label texts are then factorised per distinct text (hashed and compared as 8-byte words), and
all values are parsed in one call. Python runs per distinct label text, never per sample.

Anything else (whitespace, another key order, a quote inside a label value, a field this
module does not know) returns ``None``: the caller decodes that answer object by object.
The envelope has been decoded by msgspec before, so the text is known to be valid JSON.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import msgspec
import numpy as np
import numpy.typing as npt

from evergreen.analysis.columns import ABSENT, LabelColumn
from evergreen.analysis.series import FloatArray, IntArray

Bytes = npt.NDArray[np.uint8]

# Token kinds, by the bytes around a string's quotes.
_METRIC, _LABEL_NAME, _LABEL_VALUE, _VALUES_KEY, _SAMPLE = 1, 2, 3, 4, 5
_KINDS = 6

_QUOTE, _COLON, _COMMA, _BACKSLASH = ord('"'), ord(":"), ord(","), ord("\\")
_OPEN_OBJECT, _CLOSE_OBJECT, _OPEN_ARRAY, _CLOSE_ARRAY = ord("{"), ord("}"), ord("["), ord("]")

#: Bytes a JSON number is written with.
_NUMBER_BYTES = np.zeros(256, dtype=bool)
_NUMBER_BYTES[np.frombuffer(b"0123456789.eE+-", dtype=np.uint8)] = True

_FLOATS = msgspec.json.Decoder(list[float])
_TEXT = msgspec.json.Decoder(str)

#: Odd multipliers of the word hash (any odd numbers spread the words over 64 bits).
_WORD_FACTOR = np.uint64(0x9E3779B97F4A7C15)
_LENGTH_FACTOR = np.uint64(0xC2B2AE3D27D4EB4F)


@dataclass(frozen=True, eq=False)
class Answer:
    """The series of an answer as label columns, and the texts of their values."""

    series: int
    columns: dict[str, LabelColumn]
    #: Every sample value as a JSON array text of numbers (NaN, ±Inf as 0: see ``special``).
    value_text: bytes
    #: Per sample: 0 a number, 1 NaN, 2 +Inf, 3 -Inf (Prometheus writes those as strings).
    special: npt.NDArray[np.int8]
    #: Range answers only: every point's timestamp as a JSON array text, and its series.
    stamp_text: bytes | None = None
    series_of_point: IntArray | None = None

    def values(self) -> FloatArray | None:
        """The sample values, or None when one is not a number."""
        try:
            parsed = np.array(_FLOATS.decode(self.value_text), dtype=np.float64)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None
        if parsed.size != self.special.size:
            return None
        if self.special.any():
            parsed[self.special == 1] = np.nan
            parsed[self.special == 2] = np.inf
            parsed[self.special == 3] = -np.inf
        return parsed

    def stamps(self) -> FloatArray | None:
        """The timestamps of a range answer's points, or None when one is not a number."""
        if self.stamp_text is None:
            return None
        try:
            return np.array(_FLOATS.decode(self.stamp_text), dtype=np.float64)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None


def vector(result: bytes) -> Answer | None:
    """An instant vector's ``result`` array, or None when it is not laid out as expected."""
    return _read(result, matrix=False)


def matrix(result: bytes) -> Answer | None:
    """A range answer's ``result`` array, or None when it is not laid out as expected."""
    return _read(result, matrix=True)


def _read(result: bytes, *, matrix: bool) -> Answer | None:
    if result == b"[]":
        empty = np.zeros(0, dtype=np.int8)
        return Answer(
            0, {}, b"[]", empty, b"[]" if matrix else None, np.zeros(0, dtype=np.intp) if matrix else None
        )
    # Two bytes of padding so that looking past the last quote stays inside the array.
    text: Bytes = np.frombuffer(result + b"\0\0", dtype=np.uint8)
    quotes = np.flatnonzero(text == _QUOTE)
    if quotes.size % 2 or quotes.size == 0 or quotes[0] == 0:
        return None
    if (text[quotes - 1] == _BACKSLASH).any():
        return None  # an escaped quote inside a label value: the general decoder reads it
    opens, closes = quotes[0::2], quotes[1::2]
    kinds = _kinds(text, opens, closes)
    if kinds is None or not _ordered(kinds, matrix) or not _separated(text, kinds, opens, closes, matrix):
        return None
    if opens[0] != 2 or closes[-1] != len(result) - (5 if matrix else 4):
        return None  # '[{"metric"...' at the start, '..."]}]' (or '"]]}]') at the end
    if not (_is_word(text, opens, closes, kinds == _METRIC, b"metric")
            and _is_word(text, opens, closes, kinds == _VALUES_KEY, b"values" if matrix else b"value")):  # fmt: skip
        return None

    series_of_token = np.cumsum(kinds == _METRIC) - 1
    count = int(series_of_token[-1]) + 1
    names = kinds == _LABEL_NAME
    columns = _columns(text, opens[names] + 1, closes[names], opens[kinds == _LABEL_VALUE] + 1,
                       closes[kinds == _LABEL_VALUE], series_of_token[names], count)  # fmt: skip
    if columns is None:
        return None
    samples = kinds == _SAMPLE
    value_text, special = _number_array(text, opens[samples] + 1, closes[samples])
    if value_text is None:
        return None
    if not matrix:
        # Each sample is '[t,"v"]' after '"value":': its timestamp must be a number too.
        key_ends = closes[np.flatnonzero(samples) - 1]
        if _number_text(text, key_ends + 3, opens[samples] - 1) is None:
            return None
        return Answer(count, columns, value_text, special)
    # Each point is '[t,"v"]': its timestamp runs from after the '[' to before the ','.
    stamp_starts = closes[np.flatnonzero(samples) - 1] + 4
    stamp_text = _number_text(text, stamp_starts, opens[samples] - 1)
    if stamp_text is None:
        return None
    return Answer(count, columns, value_text, special, stamp_text, series_of_token[samples])


def _kinds(text: Bytes, opens: IntArray, closes: IntArray) -> npt.NDArray[np.int8] | None:
    """The kind of every string token, or None when one fits no kind."""
    before, after, next_after = text[opens - 1], text[closes + 1], text[closes + 2]
    key = after == _COLON
    kinds = np.zeros(opens.size, dtype=np.int8)
    kinds[key & (next_after == _OPEN_OBJECT)] = _METRIC
    kinds[key & (next_after == _QUOTE)] = _LABEL_NAME
    kinds[key & (next_after == _OPEN_ARRAY)] = _VALUES_KEY
    kinds[(before == _COLON) & ((after == _COMMA) | (after == _CLOSE_OBJECT))] = _LABEL_VALUE
    kinds[(before == _COMMA) & (after == _CLOSE_ARRAY)] = _SAMPLE
    return None if (kinds == 0).any() else kinds


def _transitions(matrix: bool) -> npt.NDArray[np.bool_]:
    allowed = np.zeros((_KINDS, _KINDS), dtype=bool)
    for first, second in [
        (_METRIC, _LABEL_NAME),
        (_METRIC, _VALUES_KEY),
        (_LABEL_NAME, _LABEL_VALUE),
        (_LABEL_VALUE, _LABEL_NAME),
        (_LABEL_VALUE, _VALUES_KEY),
        (_VALUES_KEY, _SAMPLE),
        (_SAMPLE, _METRIC),
    ]:
        allowed[first, second] = True
    allowed[_SAMPLE, _SAMPLE] = matrix
    return allowed


_ALLOWED = {False: _transitions(False), True: _transitions(True)}


def _ordered(kinds: npt.NDArray[np.int8], matrix: bool) -> bool:
    """Kinds follow ``(metric (name value)* key sample)*`` (``sample+`` in a range answer)."""
    if kinds[0] != _METRIC or kinds[-1] != _SAMPLE:
        return False
    return bool(_ALLOWED[matrix][kinds[:-1], kinds[1:]].all())


def _separated(
    text: Bytes, kinds: npt.NDArray[np.int8], opens: IntArray, closes: IntArray, matrix: bool
) -> bool:
    """Every byte between two tokens is what the layout puts there, nothing more.

    With the kinds known, the bytes just around each token are already checked; what is
    left is the length of each gap and the bytes a kind does not check (``},`` after the
    last label, ``]},{`` between series, a timestamp's digits).
    """
    gaps = opens[1:] - closes[:-1] - 1
    first, second = kinds[:-1], kinds[1:]
    expected = np.zeros(gaps.size, dtype=np.intp)
    expected[(first == _METRIC) & (second == _LABEL_NAME)] = 2  # :{
    expected[(first == _METRIC) & (second == _VALUES_KEY)] = 4  # :{},
    expected[(first == _LABEL_NAME) | ((first == _LABEL_VALUE) & (second == _LABEL_NAME))] = 1  # : and ,
    expected[(first == _LABEL_VALUE) & (second == _VALUES_KEY)] = 2  # },
    expected[(first == _SAMPLE) & (second == _METRIC)] = 5 if matrix else 4  # ]},{ or ]]},{
    fixed = expected > 0
    if not np.array_equal(gaps[fixed], expected[fixed]):
        return False
    ends = closes[:-1]
    empty_metric = ends[(first == _METRIC) & (second == _VALUES_KEY)]
    last_label = ends[(first == _LABEL_VALUE) & (second == _VALUES_KEY)]
    next_series = ends[(first == _SAMPLE) & (second == _METRIC)]
    tail = b"]]},{" if matrix else b"]},{"
    checks = [
        _bytes_at(text, empty_metric + 3, b"},"),
        _bytes_at(text, last_label + 1, b"},"),
        _bytes_at(text, next_series + 1, tail),
        # A label value must be followed by ',' when another label follows.
        (text[ends[(first == _LABEL_VALUE) & (second == _LABEL_NAME)] + 1] == _COMMA).all(),
    ]
    if not all(checks):
        return False
    # Before a sample: ':[' + timestamp + ',' after the key ('[[' in a range answer), and
    # '],[' + timestamp + ',' after another sample.
    to_sample = second == _SAMPLE
    after_key = ends[to_sample & (first == _VALUES_KEY)]
    if matrix and not (text[after_key + 3] == _OPEN_ARRAY).all():
        return False
    after_sample = ends[to_sample & (first == _SAMPLE)]
    if after_sample.size and not _bytes_at(text, after_sample + 2, b",["):
        return False
    return True


def _bytes_at(text: Bytes, starts: IntArray, expected: bytes) -> bool:
    """Whether ``expected`` is written at every one of ``starts``."""
    if starts.size == 0:
        return True
    window = text[starts[:, np.newaxis] + np.arange(len(expected))]
    return bool((window == np.frombuffer(expected, dtype=np.uint8)).all())


def _is_word(
    text: Bytes, opens: IntArray, closes: IntArray, which: npt.NDArray[np.bool_], word: bytes
) -> bool:
    starts, ends = opens[which] + 1, closes[which]
    return bool((ends - starts == len(word)).all()) and _bytes_at(text, starts, word)


def _spans(text: Bytes, starts: IntArray, ends: IntArray) -> tuple[Bytes, IntArray]:
    """The bytes of every span, concatenated, and where each span starts in them."""
    lengths = ends - starts
    offsets = np.zeros(lengths.size + 1, dtype=np.intp)
    np.cumsum(lengths, out=offsets[1:])
    index = np.arange(offsets[-1], dtype=np.intp) + np.repeat(starts - offsets[:-1], lengths)
    return text[index], offsets


def _number_text(text: Bytes, starts: IntArray, ends: IntArray) -> bytes | None:
    """The spans as one JSON array of numbers, or None when a span holds another byte."""
    joined, offsets = _spans(text, starts, ends)
    if not _NUMBER_BYTES[joined].all() or (offsets[1:] == offsets[:-1]).any():
        return None
    with_commas = np.insert(joined, offsets[1:-1], _COMMA)
    return b"[" + with_commas.tobytes() + b"]"


def _number_array(text: Bytes, starts: IntArray, ends: IntArray) -> tuple[bytes | None, npt.NDArray[np.int8]]:
    """Sample value texts as a JSON array; NaN and ±Inf (not JSON numbers) set aside as 0."""
    lengths = ends - starts
    first = text[starts]
    special = np.zeros(starts.size, dtype=np.int8)
    nan = (lengths == 3) & _bytes_mask(text, starts, b"NaN")
    plus = (lengths == 4) & _bytes_mask(text, starts, b"+Inf")
    minus = (lengths == 4) & (first == ord("-")) & _bytes_mask(text, starts, b"-Inf")
    special[nan], special[plus], special[minus] = 1, 2, 3
    if not special.any():
        return _number_text(text, starts, ends), special
    # Point a special value at a '0' of its own text? It has none: use a one-byte '0' buffer.
    zero = text.size
    padded = np.append(text, np.uint8(ord("0")))
    normal = special == 0
    starts = np.where(normal, starts, zero)
    ends = np.where(normal, ends, zero + 1)
    return _number_text(padded, starts, ends), special


def _bytes_mask(text: Bytes, starts: IntArray, expected: bytes) -> npt.NDArray[np.bool_]:
    limit = text.size - len(expected)
    safe = np.minimum(starts, limit)
    window = text[safe[:, np.newaxis] + np.arange(len(expected))]
    matches: npt.NDArray[np.bool_] = (window == np.frombuffer(expected, dtype=np.uint8)).all(axis=1)
    return matches


def _columns(
    text: Bytes,
    name_starts: IntArray,
    name_ends: IntArray,
    value_starts: IntArray,
    value_ends: IntArray,
    series_of_label: IntArray,
    count: int,
) -> dict[str, LabelColumn] | None:
    """One column per label name: per series the code of its value text (-1: absent)."""
    if name_starts.size == 0:
        return {}
    name_codes, name_texts = _factorise(text, name_starts, name_ends, None)
    if name_texts is None:
        return None
    value_codes, value_texts = _factorise(text, value_starts, value_ends, name_codes)
    if value_texts is None:
        return None
    columns: dict[str, LabelColumn] = {}
    for code, name in enumerate(name_texts):
        rows = np.flatnonzero(name_codes == code)
        series = series_of_label[rows]
        if name in columns or (np.bincount(series, minlength=count) > 1).any():
            return None  # a name written twice in one series: let the general decoder judge
        global_codes = value_codes[rows]
        used = np.zeros(len(value_texts), dtype=bool)
        used[global_codes] = True
        local = np.cumsum(used, dtype=np.intp) - 1
        codes = np.full(count, ABSENT, dtype=np.intp)
        codes[series] = local[global_codes]
        columns[name] = LabelColumn(codes, tuple(value_texts[i] for i in np.flatnonzero(used).tolist()))
    return dict(sorted(columns.items()))


def _factorise(
    text: Bytes, starts: IntArray, ends: IntArray, groups: IntArray | None
) -> tuple[IntArray, list[str] | None]:
    """Codes of equal (group, text) spans, and each code's decoded text (None: undecodable).

    Spans are hashed by their 8-byte words and length; spans that share a hash are then
    compared byte for byte with the first of them, so a hash collision can never merge two
    texts (it sends the answer to the general decoder instead).
    """
    lengths = ends - starts
    words_per_span = (lengths + 7) // 8
    word_offsets = np.zeros(lengths.size + 1, dtype=np.intp)
    np.cumsum(words_per_span, out=word_offsets[1:])
    padded = np.zeros(int(word_offsets[-1]) * 8, dtype=np.uint8)
    joined, offsets = _spans(text, starts, ends)
    # Byte k of span i goes to its word area, zero-padded to a multiple of 8.
    padded[np.arange(joined.size) + np.repeat(word_offsets[:-1] * 8 - offsets[:-1], lengths)] = joined
    words = padded.view("<u8")
    hashes = np.zeros(lengths.size, dtype=np.uint64)
    if words.size:
        position = np.arange(words.size) - np.repeat(word_offsets[:-1], words_per_span)
        mixed = (words ^ position.astype(np.uint64)) * _WORD_FACTOR
        filled = words_per_span > 0
        hashes[filled] = np.add.reduceat(mixed, word_offsets[:-1][filled])
    hashes = hashes + lengths.astype(np.uint64) * _LENGTH_FACTOR
    if groups is not None:
        hashes = hashes ^ (groups.astype(np.uint64) * _WORD_FACTOR)
    distinct, first_of, codes = np.unique(hashes, return_index=True, return_inverse=True)
    codes = codes.reshape(-1)
    representative = first_of[codes]
    # Exactness: same length, same group, same words as the representative.
    if not np.array_equal(lengths, lengths[representative]):
        return codes, None
    if groups is not None and not np.array_equal(groups, groups[representative]):
        return codes, None
    if words.size:
        own = np.arange(words.size)
        theirs = own - np.repeat(word_offsets[:-1] - word_offsets[:-1][representative], words_per_span)
        if not np.array_equal(words, words[theirs]):
            return codes, None
    texts = []
    for index in first_of.tolist():
        try:
            decoded = _TEXT.decode(text[starts[index] - 1 : ends[index] + 1].tobytes())
        except msgspec.DecodeError:
            return codes, None
        texts.append(sys.intern(decoded))
    if len(set(texts)) != len(texts):
        return codes, None  # one text written two ways (escaped and not): rare, read generally
    return codes, texts
