"""Which endpoints a model may be asked for, decided from its metadata and its alias."""

from __future__ import annotations

import pytest

from bodhi_jupyter.errors import BodhiAPIError
from bodhi_jupyter.models.capabilities import capabilities, check_capable, model_fields
from bodhi_jupyter.models.metadata import ModelMetadata
from bodhi_jupyter.models.registry import ResolvedModel, ServerOptions

CHAT = ModelMetadata("llama", chat_template=True, capabilities=("chat", "completion"),
                     template="{{ messages }}")
BASE = ModelMetadata("gemma3", capabilities=("completion",))
EMBED = ModelMetadata("bert", embedding_length=384, capabilities=("embedding",))


def model(meta, **server) -> ResolvedModel:
    return ResolvedModel("m", "/m.gguf", "alias", ServerOptions(2048, 2, **server),
                         metadata=meta)


def refusal(endpoint, m) -> BodhiAPIError:
    with pytest.raises(BodhiAPIError) as caught:
        check_capable(endpoint, m, m.metadata)
    assert caught.value.status == 400 and caught.value.param == "model"
    return caught.value


@pytest.mark.parametrize("endpoint", ["chat", "responses", "messages", "count_tokens"])
def test_an_embedding_model_cannot_chat(endpoint):
    err = refusal(endpoint, model(EMBED))
    assert err.code == "model_not_chat_capable"
    assert "'m'" in err.message and "/v1/embeddings" in err.message


def test_an_embedding_model_cannot_complete_but_embeds():
    assert refusal("completions", model(EMBED)).code == "model_not_completion_capable"
    check_capable("embeddings", model(EMBED), EMBED)


@pytest.mark.parametrize("endpoint", ["chat", "responses", "messages", "count_tokens"])
def test_no_chat_template_is_refused_unless_configured(endpoint):
    err = refusal(endpoint, model(BASE))
    assert err.code == "no_chat_template"
    assert "chat_template" in err.message and "chat_template_file" in err.message
    for server in ({"chat_template": "chatml"}, {"chat_template_file": "/t.jinja"},
                   {"extra_args": ("--chat-template=chatml",)}):
        check_capable(endpoint, model(BASE, **server), BASE)


def test_what_is_allowed():
    for endpoint in ("chat", "completions", "embeddings", "responses", "messages"):
        check_capable(endpoint, model(CHAT), CHAT)
    check_capable("completions", model(BASE), BASE)
    check_capable("embeddings", model(BASE), BASE)  # decoders embed with mean pooling
    check_capable("chat", model(None), None)  # unknown metadata: left to the engine


def test_listed_capabilities_and_fields():
    assert capabilities(model(BASE)) == ["completion"]
    assert capabilities(model(BASE, chat_template="chatml")) == ["chat", "completion"]
    assert capabilities(model(EMBED, chat_template="chatml")) == ["embedding"]
    assert capabilities(model(None)) is None
    fields = model_fields(model(BASE, chat_template="chatml"))
    assert fields["source"] == "alias" and fields["architecture"] == "gemma3"
    assert fields["chat_template"] is True and fields["capabilities"] == ["chat", "completion"]
    unknown = model_fields(model(None))
    assert unknown["source"] == "alias" and unknown["capabilities"] is None
