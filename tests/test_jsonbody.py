"""The one JSON body parser: what json.loads would let through but no engine parses."""

from __future__ import annotations

import json
import time

import pytest

from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.jsonbody import MAX_DEPTH, nesting_depth, parse_json_object


def refused(raw: bytes) -> BodhiAPIError:
    with pytest.raises(BodhiAPIError) as caught:
        parse_json_object(raw)
    assert caught.value.status == 400 and caught.value.code == "invalid_json"
    return caught.value


def test_depth_ignores_brackets_in_strings():
    assert nesting_depth(b'{"a": [1, {"b": []}]}') == 4
    assert nesting_depth(b'{"a": "[[[[[[[[", "b": "\\"[[[["}') == 1
    assert parse_json_object(b'{"s": "' + b"[" * 500 + b'"}') == {"s": "[" * 500}


def test_too_deep_is_refused_before_parsing():
    at_limit = b'{"a": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert parse_json_object(at_limit)
    err = refused(b'{"a": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}")
    assert "levels deep" in err.message
    refused(b"[" * 200_000)  # unbalanced and deep: no RecursionError either
    # many brackets, shallow: fine
    assert len(parse_json_object(json.dumps({"input": [[1, 2]] * 10_000}).encode())[
        "input"]) == 10_000


@pytest.mark.parametrize("raw, param", [
    (b'{"temperature": NaN}', "temperature"),
    (b'{"a": [1, {"b": Infinity}]}', "a[1].b"),
    (b'{"a": -Infinity}', "a"),
    (b'{"x": 1e400}', "x"),
    (b'{"x": [0.5, -1.5e999]}', "x[1]"),
])
def test_non_finite_numbers_are_refused_by_path(raw, param):
    err = refused(raw)
    assert err.param == param and "finite" in err.message


@pytest.mark.parametrize("raw, param", [
    (b'{"messages": [{"content": "a \\ud800 b"}]}', "messages[0].content"),
    (b'{"input": ["\\uDFFF"]}', "input[0]"),
    (b'{"\\udc00": 1}', "\\udc00"),
])
def test_lone_surrogates_are_refused_by_path(raw, param):
    err = refused(raw)
    assert err.param == param and "surrogate" in err.message


def test_valid_text_and_numbers_pass():
    body = parse_json_object(b'{"t": "\\ud83d\\ude00 \\u00e9", "n": 1e308, "m": -0.5}')
    assert body == {"t": "\U0001F600 \u00e9", "n": 1e308, "m": -0.5}


@pytest.mark.parametrize("raw", [b"", b"{", b"[1]", b'"x"', b"\xff\xfe", b'{"a": 1} x'])
def test_malformed_or_not_an_object(raw):
    refused(raw)


def test_parsing_a_chat_request_stays_cheap():
    raw = json.dumps({"model": "m", "temperature": 0.7, "max_tokens": 256, "messages": [
        {"role": "user", "content": "What is the capital of France? " * 4}] * 4}).encode()
    n = 2000
    start = time.process_time()
    for _ in range(n):
        parse_json_object(raw)
    per_call = (time.process_time() - start) / n
    assert per_call < 100e-6, f"{per_call * 1e6:.1f} us of CPU per body"
