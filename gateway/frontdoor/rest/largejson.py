"""Large JSON inference bodies, read without stalling the event loop or bloating memory.

A JSON body (or a binary-extension body's JSON header) of `LARGE_JSON` bytes
or more is read in three steps, so that what can be refused is refused before
its data is parsed, and no single step takes more than a few milliseconds:

1. `scan` finds the `"data"` values that are arrays of scalars (numbers,
   true/false, null, strings; nested to any depth) or a single string, with
   regular expressions run over windows of `WINDOW` bytes, yielding to the
   event loop between windows.
2. The rest of the document, each such value replaced by a placeholder (an
   object keyed by a random token: a client cannot write one), is parsed at
   once: it must be small (`HEADER_LIMIT`). The caller checks everything it
   says (names, datatypes, shapes, sizes, the model's inputs) before step 3.
3. `read` parses one value in chunks of about `CHUNK` bytes, cut at commas
   between elements, each wrapped in the brackets open at its ends so that
   orjson checks its syntax, and converts each chunk with the same rules as a
   small body (`wire.datatypes.json_numbers`, `wire.datatypes.json_bytes_elements`) into the
   tensor's data. It stops at the first chunk holding more elements than the
   shape declares, and yields to the event loop between chunks.

A value that is not a clean array of scalars stays in the document; a body
whose document is then over `HEADER_LIMIT` is refused.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass
from typing import Any, AsyncIterator

import numpy as np
import orjson

from ...errors import BadRequest
from ...wire.datatypes import DataBuilder, data_from_json, flatten
from ...wire.packed import PackedBytes

LARGE_JSON = 1024 * 1024  # JSON from this size takes this path (docs/PERFORMANCE.md: where it starts to pay)
HEADER_LIMIT = LARGE_JSON  # what a large body may hold besides its data values
WINDOW = 1024 * 1024  # bytes one regular-expression call scans
CHUNK = 256 * 1024  # bytes of data parsed and converted between two yields

_WHITESPACE = b" \t\n\r"
_STRING = rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"'
_SCALARS = rb"[-+.0-9a-zA-Z \t\n\r\[\]]"  # numbers, true, false, null, brackets, whitespace (and junk orjson refuses)
# an array's contents, as far as they are scalars; group 1: the last string matched
_SCAN = re.compile(rb"(?:" + _SCALARS + rb"++|,|(" + _STRING + rb"))*+")
_STRING_RE = re.compile(_STRING)
_STRING_BODY = re.compile(rb'(?:[^"\\]++|\\.)*+')  # a string's characters, escapes whole
# elements, each with the comma after it (commas inside strings are no separators)
_ELEMENTS = re.compile(rb"(?:(?:" + _SCALARS + rb"++|" + _STRING + rb")*+,)*+")
_ONE_ELEMENT = re.compile(rb"(?:" + _SCALARS + rb"++|" + _STRING + rb")*+,")
_SPACE = re.compile(rb"[ \t\n\r]*+")


def _always(match: re.Match[bytes] | None) -> re.Match[bytes]:
    """The match of a pattern that also matches the empty string (so it never fails)."""
    assert match is not None
    return match


def load_json_object(body: bytes | memoryview) -> dict:
    """A request body's JSON (small bodies whole, large ones without their data arrays): an object, or a 400."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("the request body must be a JSON object")
    return document


@dataclass(slots=True)
class Span:
    start: int  # where the value starts in the body: its "[" or '"'
    end: int  # where it ends (exclusive)
    has_strings: bool = False


class LargeDocument:
    """A large JSON body, parsed but for its data values."""

    def __init__(self, body: bytes, spans: list[Span], document: dict, token: str):
        self.body, self.spans, self.document, self._token = body, spans, document, token

    def value_of(self, placeholder: Any) -> int | None:
        """Which data value a placeholder stands for (None: it is no placeholder)."""
        if type(placeholder) is dict and len(placeholder) == 1 and self._token in placeholder:
            return placeholder[self._token]
        return None

    async def read(self, index: int, datatype: str, shape: list[int], where: str, max_tensor_bytes: int) -> np.ndarray | PackedBytes:
        """Data value `index` as the tensor's data, as `wire.datatypes.data_from_json` would give it
        (the shape is checked already, as the caller does for a small body)."""
        span = self.spans[index]
        if self.body[span.start] == ord('"'):  # a single string: one element, read at once
            return data_from_json(datatype, shape, orjson.loads(self.body[span.start : span.end]), where, max_tensor_bytes)
        builder = DataBuilder(datatype, shape, where, max_tensor_bytes)
        if builder.count > (span.end - span.start - 1) // 2:  # each element takes a character and a separator at least
            raise BadRequest(f"{where}: data of {span.end - span.start} bytes cannot hold the {builder.count} elements of shape {shape}")
        async for values in self._chunks(span, where):
            builder.add(values)
        return builder.finish()

    async def check_unclaimed(self, claimed: set[int]) -> None:
        """Values no input took (under another key, or a repeated one) are still checked as JSON, as a full parse would."""
        for i, span in enumerate(self.spans):
            if i not in claimed and self.body[span.start] == ord("["):
                async for _ in self._chunks(span):
                    pass

    async def _chunks(self, span: Span, where: str = "data") -> AsyncIterator[list]:
        """The scalars of an array value, row-major, in chunks of about CHUNK bytes."""
        body, end = self.body, span.end
        pos, depth = span.start, 0
        while pos < end:
            if pos > span.start:
                after_comma = _always(_SPACE.match(body, pos, end)).end()
                if body[after_comma : after_comma + 1] in (b"]", b",", b""):
                    raise _malformed("a comma with no element after it")
            cut = self._cut(pos, end, span.has_strings)
            chunk = body[pos:cut]
            opened, closed = chunk.count(b"["), chunk.count(b"]")
            if span.has_strings and (opened or closed):  # brackets inside strings are no structure
                structure = _STRING_RE.sub(b'""', chunk)
                opened, closed = structure.count(b"["), structure.count(b"]")
            after = depth + opened - closed
            if cut < end:
                if after < 1:
                    raise _malformed("the array closes before its end")
                if chunk.rstrip(_WHITESPACE)[-1:] in (b"[", b",", b""):
                    raise _malformed("a comma with no element before it")
            elif after != 0:
                raise _malformed("unbalanced brackets")
            try:
                parsed = orjson.loads(b"[" * depth + chunk + b"]" * after)
            except orjson.JSONDecodeError as exc:
                raise _malformed(str(exc)) from None
            depth, pos = after, cut + 1
            yield flatten(parsed, where)
            await asyncio.sleep(0)

    def _cut(self, pos: int, end: int, has_strings: bool) -> int:
        """Where the chunk from `pos` ends: a comma between elements near pos + CHUNK, or the value's end."""
        stop = pos + CHUNK
        if stop >= end:
            return end
        if not has_strings:
            cut = self.body.rfind(b",", pos, stop)
            if cut < 0:
                cut = self.body.find(b",", stop, end)
            return end if cut < 0 else cut
        matched = _always(_ELEMENTS.match(self.body, pos, stop)).end()
        if matched == pos:  # one element longer than a chunk
            one = _ONE_ELEMENT.match(self.body, pos, end)
            matched = end + 1 if one is None else one.end()
        return matched - 1


def _malformed(why: str) -> BadRequest:
    return BadRequest(f"malformed JSON in an input's data: {why}")


async def scan(body: bytes, limit: int) -> LargeDocument:
    """Find the data values of body[:limit] and parse the rest (steps 1 and 2 of the module's docstring)."""
    spans, pos, unread = [], 0, None  # unread: where a data value starts that is no clean array
    while True:
        key = body.find(b'"data"', pos, limit)
        if key < 0:
            break
        # a quoted "data" and a colon: the key of a member (inside a string, a quote ends the string);
        # should its first quote be an escaped one, the key is another, whose value no input claims
        pos = key + len(b'"data"')
        colon = _always(_SPACE.match(body, pos, limit)).end()
        if body[colon : colon + 1] != b":":
            continue
        value = _always(_SPACE.match(body, colon + 1, limit)).end()
        first = body[value : value + 1]
        if first == b"[":
            span = await _array(body, value, limit)
        elif first == b'"':
            end = await _string_end(body, value, limit)
            span = None if end is None else Span(value, end, True)
        else:
            continue
        if span is not None:
            spans.append(span)
            pos = span.end
        elif unread is None:
            unread = value
    token = secrets.token_hex(8)
    pieces, previous = [], 0
    for i, span in enumerate(spans):
        pieces += [body[previous : span.start], b'{"%s":%d}' % (token.encode(), i)]
        previous = span.end
    pieces.append(body[previous:limit])
    rest = b"".join(pieces)
    if len(rest) > HEADER_LIMIT:
        if unread is not None:
            raise BadRequest(f"malformed JSON, or data that is no array of numbers, booleans or strings, from byte {unread}")
        raise BadRequest(
            f"the JSON body holds {len(rest)} bytes besides its inputs' data arrays, over the {HEADER_LIMIT} a body of "
            f"{LARGE_JSON} bytes or more may hold (names, shapes, parameters): send large values as tensor data"
        )
    return LargeDocument(body, spans, load_json_object(rest), token)


async def _string_end(body: bytes, start: int, limit: int) -> int | None:
    """The end of the string at `start` (after its closing quote), scanned a window at a time; None if it never ends."""
    pos = start + 1
    while True:
        stop = min(pos + WINDOW, limit)
        pos = _always(_STRING_BODY.match(body, pos, stop)).end()
        if body[pos : pos + 1] == b'"':
            return pos + 1
        if stop == limit or pos < stop - 1 or (pos == stop - 1 and body[pos] != ord("\\")):
            return None  # the body ends first, or a character no string holds (a raw line break, say)
        await asyncio.sleep(0)  # the window ended inside the string (or between a backslash and what it escapes)


async def _array(body: bytes, start: int, limit: int) -> Span | None:
    """The array of scalars at `start`, or None when it holds something else (an object) or is no
    clean array: it then stays in the document."""
    pos, first_string, last_string = start + 1, None, None
    while True:
        stop = min(pos + WINDOW, limit)
        match = _always(_SCAN.match(body, pos, stop))
        if match.start(1) >= 0:
            last_string = match.start(1)
            first_string = body.find(b'"', pos, stop) if first_string is None else first_string
        pos = match.end()
        if pos < stop and body[pos : pos + 1] == b'"':  # a string running past the window
            string_end = await _string_end(body, pos, limit)
            if string_end is None:
                return None
            last_string, pos = pos, string_end
            first_string = last_string if first_string is None else first_string
        elif pos < stop or stop == limit:
            break
        await asyncio.sleep(0)
    # after the array: "}" (the last member), or "," and the next key (the last string scanned)
    stopped_at = body[pos : pos + 1]
    if stopped_at == b"}":
        cut, separator = pos, b""
    elif stopped_at == b":" and last_string is not None:
        cut, separator = last_string, b","
    else:
        return None
    end = body.rfind(b"]", start, cut) + 1
    if end == 0 or body[end:cut].strip(_WHITESPACE) != separator:
        return None
    return Span(start, end, first_string is not None and first_string < end)
