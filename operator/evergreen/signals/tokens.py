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

import re
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
#: Characters a JSON string cannot hold unescaped.
_CONTROL = re.compile("[\x00-\x1f]")
_TEXT = msgspec.json.Decoder(str)

#: Odd multipliers of the word hash (any odd numbers spread the words over 64 bits).
_WORD_FACTOR = np.uint64(0x9E3779B97F4A7C15)
_LENGTH_FACTOR = np.uint64(0xC2B2AE3D27D4EB4F)
#: Multipliers that place keys in hash-table slots; the next is tried when two keys clash.
_SLOT_FACTORS = (np.uint64(0xC2B2AE3D27D4EB4F), np.uint64(0x165667B19E3779F9), np.uint64(0xD6E8FEB86659FD93))


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
    uniform = _uniform_vector(result)
    return uniform if uniform is not None else _read(result, matrix=False)


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
    key = b"values" if matrix else b"value"
    if not _is_word(text, opens, closes, kinds == _METRIC, b"metric"):
        return None
    if not _is_word(text, opens, closes, kinds == _VALUES_KEY, key):
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
    return _bytes_at(text, after_sample + 2, b",[")


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
    _, first_of, codes = np.unique(hashes, return_index=True, return_inverse=True)
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


# --- every series with the same label names: one row of quotes per series -------------------

_PREFIX = b'[{"metric":{'
#: Bytes after the answer that rows of bytes may read into.
_PADDING = 64
#: How Prometheus begins and ends a whole instant-vector body without warnings.
_BODY_START = b'{"status":"success","data":{"resultType":"vector","result":'
_BODY_END = b"}}"


def canonical_vector(body: bytes) -> Answer | None:
    """A whole ``/api/v1/query`` body as Prometheus writes it, read without a JSON decoder.

    The reader checks every byte of such a body itself (the first series is decoded by
    msgspec, every other one must match it byte for byte outside its label values and
    sample value, and those are decoded per distinct text and parsed as numbers), so the
    body needs no separate validating pass. None: any other body (an error, warnings,
    another layout); the caller then decodes the envelope first.
    """
    if not (body.startswith(_BODY_START) and body.endswith(_BODY_END)):
        return None
    return _uniform_vector(body[len(_BODY_START) : -len(_BODY_END)], validated=False)


def _uniform_vector(result: bytes, *, validated: bool = True) -> Answer | None:
    """An instant vector whose series all carry the same label names in the same order.

    That is the answer of every ``sum by (...)`` whose labels are all set, so histogram
    answers. Each series then has the same number of quotes, and the quote positions form
    a ``(series, quotes)`` matrix. Between two variable texts (label values, the sample
    value) every series must hold exactly the bytes of the first one, which msgspec decodes:
    '{"metric":{"a":"', '","b":"', '"},"value":[<timestamp>,"' (an instant query has one
    timestamp), then '"]},' before the next series. Bytes are compared and label values
    keyed as unaligned 8-byte words; no Python runs per series.
    """
    if not result.startswith(_PREFIX) or not result.endswith(b"]}]") or b"\\" in result:
        return None  # escapes: the general reader decodes those texts
    names = _first_series(result)
    if names is None:
        return None
    labels = len(names)
    per_series = 6 + 4 * labels
    # Padding lets words and rows read past the end of the answer.
    padded = result + b" " * _PADDING
    text: Bytes = np.frombuffer(padded, dtype=np.uint8)
    words = np.ndarray((len(padded) - 7,), dtype="<u8", buffer=padded, strides=(1,))
    quotes = np.flatnonzero(text == _QUOTE)
    if quotes.size % per_series:
        return None
    count = quotes.size // per_series
    rows = quotes.reshape(count, per_series)
    # Quote columns: "metric" 0-1, label j name 2+4j..3+4j and value 4+4j..5+4j, then "value"
    # and the sample value.
    if rows[0, 0] != 2 or rows[-1, -1] != len(result) - 4:
        return None
    between = rows[:-1, -1]
    if not (rows[1:, 0] - between == 5).all() or not (text[between + 3] == _COMMA).all():
        return None
    fixed_starts = [rows[:, 0] - 1, *(rows[:, 5 + 4 * j] for j in range(labels))]
    fixed_ends = [rows[:, 4 + 4 * j] for j in range(labels)] + [rows[:, -2]]
    fixed_starts.append(rows[:, -1])
    fixed_ends.append(rows[:, -1] + 3)  # '"]}'
    for begin, end in zip(fixed_starts, fixed_ends, strict=True):
        if not _same_bytes(words, begin, end):
            return None
    columns: dict[str, LabelColumn] = {}
    for j, name in enumerate(names):
        column = _word_column(text, words, rows[:, 4 + 4 * j] + 1, rows[:, 5 + 4 * j], validated)
        if column is None:
            return None
        columns[name] = column
    value_text, special = _value_rows(text, rows[:, -2] + 1, rows[:, -1])
    return Answer(count, dict(sorted(columns.items())), value_text, special)


class _FirstSeries(msgspec.Struct):
    metric: dict[str, str]
    value: tuple[float, str]


_FIRST = msgspec.json.Decoder(_FirstSeries)


def _first_series(result: bytes) -> list[str] | None:
    """The first series' label names in written order, if it reads as a series."""
    key = result.find(b'"value":[')
    end = result.find(b"]}", key) + 2
    try:
        first = _FIRST.decode(result[1:end])
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return list(first.metric)


def _same_bytes(words: npt.NDArray[np.uint64], begin: IntArray, end: IntArray) -> bool:
    """Whether every row's bytes from ``begin`` to ``end`` are the first row's."""
    length = end - begin
    if not (length == length[0]).all():
        return False
    size = int(length[0])
    # 8-byte words at 0, 8, 16, ... and one ending at the last byte (they may overlap).
    offsets = [*range(0, max(size - 8, 0) + 1, 8), max(size - 8, 0)] if size else []
    for offset in dict.fromkeys(offsets):
        read = words[begin + offset]
        if size < 8:
            read = read & np.uint64((1 << (8 * size)) - 1)
        if not (read == read[0]).all():
            return False
    return True


def _word_column(
    text: Bytes, words: npt.NDArray[np.uint64], starts: IntArray, ends: IntArray, validated: bool
) -> LabelColumn | None:
    """A label's column from the spans of its values (no escapes in them).

    A value is keyed by the 8-byte words from its first byte up to and including its closing
    quote, so equal keys are equal texts; the bytes after the quote (the next label) may
    split one text over two keys, which are merged once the texts are decoded.
    """
    lengths = ends - starts
    count = (int(lengths.max()) + 1 + 7) // 8  # the closing quote included
    parts = [words[starts + 8 * k] for k in range(count)]
    if count == 1:
        keys = parts[0]
    else:
        keys = np.zeros(starts.size, dtype=np.uint64)
        for part in parts:
            keys = (keys ^ part) * _WORD_FACTOR
    representative = _first_of_key(keys)
    if count > 1 and not all((part == part[representative]).all() for part in parts):
        return None  # two texts with one hash: exact, but rare enough for the general reader
    seen = np.zeros(starts.size, dtype=bool)
    seen[representative] = True
    firsts = np.flatnonzero(seen)
    code_of_row = np.cumsum(seen, dtype=np.intp) - 1
    try:
        decoded = [
            text[start:end].tobytes().decode("utf-8")
            for start, end in zip(starts[firsts].tolist(), ends[firsts].tolist(), strict=True)
        ]
    except UnicodeDecodeError:
        return None
    if not validated and any(_CONTROL.search(text) for text in decoded):
        return None  # a raw control character is not JSON: let the validating path say so
    codes = code_of_row[representative]
    texts = list(dict.fromkeys(map(sys.intern, decoded)))
    if len(texts) != len(decoded):
        merged = np.array([texts.index(text) for text in decoded], dtype=np.intp)
        codes = merged[codes]
    return LabelColumn(codes, tuple(texts))


def _first_of_key(keys: npt.NDArray[np.uint64]) -> IntArray:
    """For each row, a row with the same key: a hash table in numpy (a sort if slots clash)."""
    bits = max(4, int(keys.size * 4).bit_length())
    rows = np.arange(keys.size)
    for factor in _SLOT_FACTORS:
        slots = ((keys * factor) >> np.uint64(64 - bits)).astype(np.intp)
        table = np.empty(1 << bits, dtype=np.intp)
        table[slots] = rows
        first: IntArray = table[slots]
        if (keys[first] == keys).all():
            return first
    _, index, inverse = np.unique(keys, return_index=True, return_inverse=True)
    found: IntArray = index[inverse.reshape(-1)]
    return found


def _value_rows(text: Bytes, starts: IntArray, ends: IntArray) -> tuple[bytes, npt.NDArray[np.int8]]:
    """Sample values as one JSON array text (a blank-padded row per value) and the specials."""
    lengths = ends - starts
    width = int(lengths.max()) + 1
    rows: Bytes = np.lib.stride_tricks.sliding_window_view(text, width)[starts]
    rows[np.arange(width) >= lengths[:, np.newaxis]] = ord(" ")
    rows[:, -1] = _COMMA
    head = rows[:, 0]
    special = np.zeros(starts.size, dtype=np.int8)
    special[(head == ord("N")) & (lengths == 3)] = 1
    special[(head == ord("+")) & (lengths == 4)] = 2
    special[(head == ord("-")) & (lengths == 4) & (rows[:, 1] == ord("I"))] = 3
    if special.any():
        for code, word in ((1, b"NaN"), (2, b"+Inf"), (3, b"-Inf")):
            marked = np.flatnonzero(special == code)
            exact = (rows[marked, : len(word)] == np.frombuffer(word, dtype=np.uint8)).all(axis=1)
            special[marked[~exact]] = 0  # not what Prometheus writes: msgspec will refuse it
        replaced = special > 0
        rows[replaced, 0] = ord("0")
        rows[replaced, 1:-1] = ord(" ")
    return b"[" + rows.reshape(-1)[:-1].tobytes() + b"]", special
