"""The request contract is written once: the OpenAPI document publishes the schemas that
validation runs, and a reference JSON Schema 2020-12 validator agrees with ours."""

from __future__ import annotations

import time

import pytest
from jsonschema import Draft202012Validator

from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.openapi import document
from bodhi_jupyter.schemas import ENDPOINT_SCHEMAS, REQUEST_SCHEMAS, validate

MSG = [{"role": "user", "content": "hi"}]
BODIES = {
    "chat": [
        {"model": "m", "messages": MSG},
        {"model": "m", "messages": MSG, "max_tokens": 2**31 - 1, "seed": -1, "stop": "x",
         "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
         "tool_choice": {"type": "function", "function": {"name": "f"}},
         "response_format": {"type": "json_object"}, "stream_options": {
             "include_usage": True}, "logit_bias": {"1": 2}, "cache_prompt": True},
        {"model": "m", "messages": [{"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "image_url", "image_url": "x"},
            {"type": "something_new"}]}]},
        {"model": "m", "messages": MSG, "max_tokens": 2**31},
        {"model": "m", "messages": MSG, "temperature": 2.5},
        {"model": "m", "messages": MSG, "n": 2},
        {"model": "m", "messages": MSG, "tools": [{"type": "web", "function": {}}]},
        {"model": "m", "messages": MSG, "tool_choice": "sometimes"},
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
        {"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"type": "x"}]}]},
        {"model": "m", "messages": MSG, "stream": 1},
        {"model": "", "messages": MSG},
    ],
    "completions": [{"model": "m", "prompt": [[1, 2], "x", 3]}, {"model": "m", "prompt": []},
                    {"model": "m", "prompt": "x", "top_k": -1}],
    "embeddings": [{"model": "m", "input": "x", "dimensions": 8,
                    "encoding_format": "base64"},
                   {"model": "m", "input": "x", "stream": True},
                   {"model": "m", "input": "x", "encoding_format": "int8"}],
    "responses": [{"model": "m", "input": "x", "instructions": None},
                  {"model": "m", "input": [{"role": "user", "content": [
                      {"type": "input_text", "text": "x"}]}, {"type": "function_call_output",
                                                               "call_id": "c", "output": "1"}]},
                  {"model": "m", "input": [{"role": "robot", "content": "x"}]},
                  {"model": "m", "input": "x", "tool_choice": 3}],
    "messages": [{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
                     {"type": "text", "text": "x"}]}], "system": [{"type": "text",
                                                                  "text": "s"}]},
                 {"model": "m", "messages": [{"role": "system", "content": "x"}]},
                 {"model": "m", "messages": MSG, "temperature": 1.5},
                 {"model": "m", "messages": MSG, "tool_choice": {"type": "whatever"}}],
    "count_tokens": [{"model": "m", "messages": MSG}, {"model": "m"}],
}


def test_the_document_publishes_the_validating_schemas():
    schemas = document("/")["components"]["schemas"]
    for name, schema in REQUEST_SCHEMAS.items():
        assert schemas[name] is schema
        Draft202012Validator.check_schema(schema)
    assert set(ENDPOINT_SCHEMAS.values()) == set(REQUEST_SCHEMAS)


@pytest.mark.parametrize("endpoint", sorted(BODIES))
def test_validation_agrees_with_the_reference_validator(endpoint):
    reference = Draft202012Validator(REQUEST_SCHEMAS[ENDPOINT_SCHEMAS[endpoint]])
    verdicts = []
    for body in BODIES[endpoint]:
        try:
            validate(endpoint, body)
            ours = True
        except BodhiAPIError as e:
            assert e.status == 400 and e.param, body
            ours = False
        assert ours == reference.is_valid(body), body
        verdicts.append(ours)
    assert True in verdicts and False in verdicts  # both kinds were tried


@pytest.mark.parametrize("body, param, code", [
    ({"messages": MSG}, "model", "missing_required_field"),
    ({"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
     "messages[0].content[0].text", "missing_required_field"),
    ({"model": "m", "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {}}]}]}, "messages[0].content[0].image_url.url",
     "missing_required_field"),
    ({"model": "m", "messages": MSG, "stop": ["a", 3]}, "stop[1]", "invalid_value"),
    ({"model": "m", "messages": MSG, "tools": [{"type": "function", "function": {
        "name": "f", "parameters": "x"}}]}, "tools[0].function.parameters", "invalid_value"),
])
def test_errors_name_the_field_by_its_json_path(body, param, code):
    with pytest.raises(BodhiAPIError) as caught:
        validate("chat", body)
    assert (caught.value.param, caught.value.code) == (param, code)
    assert f"'{param}'" in caught.value.message


def test_validating_a_chat_request_costs_well_under_a_fifth_of_a_millisecond():
    body = {"model": "smollm2-135m-instruct", "temperature": 0.7, "max_tokens": 256,
            "stream": True, "stop": ["\n\n"], "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And of Spain?"}]}
    n = 5000
    start = time.process_time()  # CPU time: other processes on the machine do not count
    for _ in range(n):
        validate("chat", body)
    per_call = (time.process_time() - start) / n
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} us of CPU per validation"
