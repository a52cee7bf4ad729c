"""The token store and the checks on token requests, without HTTP."""

from __future__ import annotations

import hashlib

import pytest

from bodhi_jupyter.auth.principal import Principal
from bodhi_jupyter.auth.tokens import TokenStore
from bodhi_jupyter.errors import BodhiAPIError, as_http
from bodhi_jupyter.handlers.base import Page, visible_owner
from bodhi_jupyter.handlers.tokens import parse_new_token, parse_token_update, visible_token
from bodhi_jupyter.models.registry import ModelNotFound


@pytest.fixture
def store(database):
    return TokenStore(database)


def error(fn, *args) -> BodhiAPIError:
    """The HTTP error the call ends in (domain errors through the one mapping)."""
    with pytest.raises(Exception) as info:
        fn(*args)
    err = as_http(info.value)
    assert err is not None, info.value
    return err


ADMIN = Principal(name="root", role="admin", auth_method="jupyter", scope="admin")
USER = Principal(name="alice", role="user", auth_method="jupyter", scope="write")
MODELS = {"fake-a": "fake-a", "org/repo:Q4": "org/repo:Q4"}


def resolve(name: str) -> str:
    if name not in MODELS:
        raise ModelNotFound(f"The model '{name}' does not exist")
    return MODELS[name]


def test_lifecycle_in_the_store(store):
    token, info = store.create("alice", "nb", "write", models=["fake-a"])
    assert token.startswith("bodhi_") and len(token) - len("bodhi_") >= 32
    assert info.prefix == token[:len(info.prefix)] and len(info.prefix) < 20
    assert store.authenticate(token).id == info.id

    store.update(info.id, status="inactive")
    assert error(store.authenticate, token).code == "token_inactive"  # cache dropped at once
    store.update(info.id, status="active", name="renamed")
    assert store.authenticate(token).name == "renamed"
    assert store.delete(info.id)
    assert error(store.authenticate, token).code == "token_invalid"
    assert store.get(info.id) is None and not store.delete(info.id)


def test_wrong_and_expired_tokens(store):
    token, _ = store.create("alice", "x", "read")
    err = error(store.authenticate, token[:-1] + ("A" if token[-1] != "A" else "B"))
    assert (err.status, err.code) == (401, "token_invalid")  # same prefix, other secret
    assert error(store.authenticate, "bodhi_nonsense").code == "token_invalid"
    old, info = store.create("alice", "old", "read", expires_in=-1)
    assert info.expired and info.public()["status"] == "expired"
    err = error(store.authenticate, old)
    assert (err.status, err.code) == (401, "token_expired")


def test_only_the_hash_is_stored(store):
    token, info = store.create("alice", "x", "read")
    from sqlalchemy import select

    from bodhi_jupyter.store.tables import api_tokens

    with store.database.read() as conn:
        row = conn.execute(select(api_tokens).where(api_tokens.c.id == info.id)).one()
    assert row.hashed == hashlib.sha256(token.encode()).hexdigest()
    assert token[len(info.prefix):] not in str(row._asdict())
    assert set(info.public()) == {"id", "name", "prefix", "scope", "models", "status",
                                  "created_at", "last_used_at", "expires_at", "kernel",
                                  "notebook"}
    assert info.public()["kernel"] is False and info.public()["notebook"] is None


def test_new_token_request():
    new = parse_new_token({"name": " nb ", "scopes": ["read", "write"], "expires_in": 60,
                           "models": ["fake-a", "fake-a", "org/repo:Q4"]}, USER, resolve)
    assert (new.name, new.scope, new.expires_in, new.models) == (
        "nb", "write", 60, ["fake-a", "org/repo:Q4"])
    assert parse_new_token({"name": "n", "scope": "admin"}, ADMIN, resolve).models is None

    cases = [  # body, status, code, param
        ({"scope": "read"}, 400, "missing_required_field", "name"),
        ({"name": "", "scope": "read"}, 400, "invalid_value", "name"),
        ({"name": "x" * 256, "scope": "read"}, 400, "invalid_value", "name"),
        ({"name": 5, "scope": "read"}, 400, "invalid_value", "name"),
        ({"name": "n"}, 400, "missing_required_field", "scope"),
        ({"name": "n", "scope": "root"}, 400, "invalid_value", "scope"),
        ({"name": "n", "scope": ["read"]}, 400, "invalid_value", "scope"),
        ({"name": "n", "scopes": []}, 400, "invalid_value", "scopes"),
        ({"name": "n", "scopes": "read"}, 400, "invalid_value", "scopes"),
        ({"name": "n", "scope": "read", "scopes": ["read"]}, 400, "invalid_value", "scopes"),
        ({"name": "n", "scope": "read", "expires_in": 0}, 400, "invalid_value", "expires_in"),
        ({"name": "n", "scope": "read", "expires_in": True}, 400, "invalid_value",
         "expires_in"),
        ({"name": "n", "scope": "read", "expires_in": 1.5}, 400, "invalid_value",
         "expires_in"),
        ({"name": "n", "scope": "read", "expires_in": 10**12}, 400, "invalid_value",
         "expires_in"),
        ({"name": "n", "scope": "read", "models": []}, 400, "invalid_value", "models"),
        ({"name": "n", "scope": "read", "models": "fake-a"}, 400, "invalid_value", "models"),
        ({"name": "n", "scope": "read", "models": ["nope"]}, 400, "model_not_found",
         "models"),
        ({"name": "n", "scope": "read", "expire_in": 5}, 400, "unknown_field", "expire_in"),
        ({"name": "n", "scope": "admin"}, 403, "insufficient_scope", "scope"),
        ({"name": "n", "scopes": ["read", "admin"]}, 403, "insufficient_scope", "scope"),
    ]
    for body, status, code, param in cases:
        err = error(parse_new_token, body, USER, resolve)
        assert (err.status, err.code, err.param) == (status, code, param), body


def test_update_and_page_requests():
    assert parse_token_update({"name": "n", "status": "inactive"}) == {
        "name": "n", "status": "inactive"}
    assert parse_token_update({"status": "active"}) == {"status": "active"}
    for body, param in [({}, None), ({"scope": "admin"}, "scope"), ({"status": "gone"},
                        "status"), ({"name": ""}, "name"), ({"name": None}, None)]:
        err = error(parse_token_update, body)
        assert (err.status, err.param) == (400, param), body

    assert (Page().page, Page().page_size) == (1, 50)
    assert (Page("3", "200").page, Page("3", "200").page_size) == (3, 200)
    for page, size, param in [("0", None, "page"), ("x", None, "page"), (None, "201",
                              "page_size"), (None, "0", "page_size"), ("1.5", None, "page")]:
        assert error(Page, page, size).param == param


def test_who_sees_which_tokens(store):
    _, mine = store.create("alice", "mine", "read")
    _, theirs = store.create("bob", "theirs", "read")
    assert visible_token(store, USER, mine.id) == mine
    err = error(visible_token, store, USER, theirs.id)
    assert (err.status, err.code) == (404, "token_not_found")  # as if it did not exist
    assert error(visible_token, store, USER, "no-such-id").message == err.message.replace(
        theirs.id, "no-such-id")
    assert visible_token(store, ADMIN, theirs.id) == theirs

    assert visible_owner(USER, None) == visible_owner(USER, "alice") == "alice"
    assert error(visible_owner, USER, "bob").code == "insufficient_scope"
    assert error(visible_owner, USER, "*").status == 403
    assert visible_owner(ADMIN, "bob") == "bob" and visible_owner(ADMIN, "*") is None
    assert visible_owner(ADMIN, None) == "root"  # an admin's own, unless asked for more
    assert visible_owner(ADMIN, None, everyone_by_default=True) is None
