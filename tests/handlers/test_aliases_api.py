"""A configured alias through the HTTP API: request defaults fill only what the request
leaves out, and server options reach the engine's command line."""

import pytest

from ..conftest import DEMO_MODEL_ID

QUESTION = [{"role": "user", "content": "Write a long story about a dragon."}]


@pytest.fixture
def bodhi_config():
    return {"ModelRegistry": {"aliases": {
        "terse": {"model": DEMO_MODEL_ID,
                  "request": {"max_tokens": 3, "temperature": 0},
                  "server": {"ctx_size": 1024, "parallel": 1}},
    }}}


async def test_alias_is_listed_and_applies_defaults(openai_client, bodhi_app):
    ids = [m.id for m in (await openai_client.models.list()).data]
    assert "terse" in ids and DEMO_MODEL_ID in ids

    short = await openai_client.chat.completions.create(model="terse", messages=QUESTION)
    assert short.model == "terse"
    assert short.usage.completion_tokens <= 3
    assert short.choices[0].finish_reason == "length"

    longer = await openai_client.chat.completions.create(model="terse", messages=QUESTION,
                                                          max_tokens=12)
    assert longer.usage.completion_tokens > 3

    (engine,) = bodhi_app.supervisor.engines.values()
    cmd = engine.command
    assert cmd[cmd.index("--ctx-size") + 1] == "1024"
    assert cmd[cmd.index("--parallel") + 1] == "1"
    assert cmd[cmd.index("--alias") + 1] == "terse"


async def test_config_alias_is_stored_in_the_database(bodhi_app):
    from sqlalchemy import select

    from bodhi_jupyter.store.orm import ModelAlias

    with bodhi_app.database.session() as s:
        rows = s.scalars(select(ModelAlias)).all()
    assert [(r.name, r.model, r.source) for r in rows] == [("terse", DEMO_MODEL_ID, "config")]
    assert rows[0].request_defaults == {"max_tokens": 3, "temperature": 0}
