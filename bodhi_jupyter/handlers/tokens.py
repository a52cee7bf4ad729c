"""API token management under ``bodhi/app/tokens``.

Only a signed-in person (not a bodhi token) may mint or manage tokens, a token never gets a
scope its creator lacks, and other people's tokens do not exist (404) for anyone but an
admin. The request checks are plain functions so they can be tested without HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tornado import web

from ..auth.principal import Principal
from ..auth.scopes import SCOPES
from ..auth.tokens import STATUSES, TokenInfo, TokenStore
from ..errors import BodhiAPIError, invalid
from ..jsonbody import parse_json_object
from ..models.registry import ModelNotFound
from .base import BodhiHandler, requires

MAX_NAME = 255
MAX_EXPIRES_IN = 10 * 365 * 86400  # longer than this: leave expires_in out (never expires)
CREATE_FIELDS = ("name", "scope", "scopes", "expires_in", "models")
UPDATE_FIELDS = ("name", "status")


@dataclass(frozen=True)
class NewToken:
    name: str
    scope: str
    expires_in: int | None
    models: list[str] | None


def _reject_unknown(body: dict, allowed: tuple[str, ...]) -> None:
    # strict, so that a misspelt field (say "expire_in") cannot silently mint a token that
    # lives forever
    for key in body:
        if key not in allowed:
            raise invalid(f"Unknown field '{key}'; allowed: {', '.join(allowed)}", param=key,
                          code="unknown_field")


def _name(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid("'name' must be a non-empty string", param="name")
    if len(value.strip()) > MAX_NAME:
        raise invalid(f"'name' must be at most {MAX_NAME} characters", param="name")
    return value.strip()


def _scope(body: dict) -> str:
    scope, scopes = body.get("scope"), body.get("scopes")
    if scope is not None and scopes is not None:
        raise invalid("Give 'scope' or 'scopes', not both", param="scopes")
    if scope is not None:
        if scope not in SCOPES:
            raise invalid(f"'scope' must be one of {', '.join(SCOPES)}", param="scope")
        return scope
    if scopes is not None:
        if (not isinstance(scopes, list) or not scopes
                or not all(isinstance(s, str) and s in SCOPES for s in scopes)):
            raise invalid(f"'scopes' must be a non-empty list of {', '.join(SCOPES)}",
                          param="scopes")
        return max(scopes, key=SCOPES.index)  # each scope includes the ones before it
    raise invalid("'scope' is required", param="scope", code="missing_required_field")


def parse_new_token(body: dict, creator: Principal,
                    resolve: Callable[[str], str]) -> NewToken:
    """Check a create request; ``resolve`` maps a model name to its id or raises
    ModelNotFound."""
    _reject_unknown(body, CREATE_FIELDS)
    if body.get("name") is None:
        raise invalid("'name' is required", param="name", code="missing_required_field")
    name = _name(body["name"])
    scope = _scope(body)
    expires_in = body.get("expires_in")
    if expires_in is not None and (
            not isinstance(expires_in, int) or isinstance(expires_in, bool)
            or not 0 < expires_in <= MAX_EXPIRES_IN):
        raise invalid(f"'expires_in' must be a whole number of seconds between 1 and "
                      f"{MAX_EXPIRES_IN}", param="expires_in")
    models = body.get("models")
    if models is not None:
        if (not isinstance(models, list) or not models
                or not all(isinstance(m, str) and m for m in models)):
            raise invalid("'models' must be a non-empty list of model ids (leave it out for "
                          "every model)", param="models")
        ids = []
        for m in models:
            try:
                model_id = resolve(m)
            except ModelNotFound as e:  # the field that named it is 'models'
                raise ModelNotFound(str(e), param="models") from None
            if model_id not in ids:
                ids.append(model_id)
        models = ids
    if not creator.can(scope):
        raise BodhiAPIError(403, f"A token cannot get the '{scope}' scope: its creator has "
                            f"only '{creator.scope}'", code="insufficient_scope",
                            param="scope")
    return NewToken(name, scope, expires_in, models)


def parse_token_update(body: dict) -> dict:
    """The changes a PUT asks for: a new name and/or status, nothing else."""
    _reject_unknown(body, UPDATE_FIELDS)
    changes = {}
    if body.get("name") is not None:
        changes["name"] = _name(body["name"])
    if body.get("status") is not None:
        if body["status"] not in STATUSES:
            raise invalid(f"'status' must be one of {', '.join(STATUSES)}", param="status")
        changes["status"] = body["status"]
    if not changes:
        raise invalid("Give a new 'name' and/or 'status'", code="missing_required_field")
    return changes


def visible_token(store: TokenStore, principal: Principal, token_id: str) -> TokenInfo:
    """The token, if the caller owns it or is an admin; otherwise as if it did not exist."""
    info = store.get(token_id)
    if info is None or (info.owner != principal.name and not principal.can("admin")):
        raise BodhiAPIError(404, f"No API token with id '{token_id}'", code="token_not_found")
    return info


def token_json(info: TokenInfo) -> dict:
    return {**info.public(), "owner": info.owner,
            "scopes": list(SCOPES[:SCOPES.index(info.scope) + 1])}


class TokensHandler(BodhiHandler):
    @web.authenticated
    @requires("read", login_only=True)
    async def get(self):
        page = self.page()
        tokens = self.bodhi.tokens.list(self.visible_owner())
        self.finish(page.of([token_json(t) for t in tokens]))

    @web.authenticated
    @requires("write", login_only=True)
    async def post(self):
        new = parse_new_token(parse_json_object(self.request.body), self.principal,
                              lambda name: self.bodhi.registry.resolve(name).id)
        token, info = self.bodhi.tokens.create(self.owner, new.name, new.scope,
                                               new.expires_in, new.models,
                                               groups=self.principal.groups)
        self.log.info("bodhi: %s created API token %s (%r, scope %s)", self.owner, info.id,
                      info.name, info.scope)
        self.audit("token.create", info.id, owner=info.owner, name=info.name,
                   scope=info.scope, models=info.public()["models"],
                   expires_at=info.public()["expires_at"])
        self.set_status(201)
        self.set_header("Cache-Control", "no-store")  # the only time the secret is shown
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{info.id}")
        self.finish({"token": token, **token_json(info)})


class TokenHandler(BodhiHandler):
    @web.authenticated
    @requires("read", login_only=True)
    async def get(self, token_id: str):
        self.finish(token_json(visible_token(self.bodhi.tokens, self.principal, token_id)))

    @web.authenticated
    @requires("write", login_only=True)
    async def put(self, token_id: str):
        changes = parse_token_update(parse_json_object(self.request.body))
        before = visible_token(self.bodhi.tokens, self.principal, token_id)
        info = self.bodhi.tokens.update(token_id, **changes)
        if info is None:  # deleted meanwhile
            raise BodhiAPIError(404, f"No API token with id '{token_id}'",
                                code="token_not_found")
        self.log.info("bodhi: %s updated API token %s: %s", self.owner, token_id,
                      ", ".join(changes))
        self.audit("token.update", token_id, owner=info.owner, name=info.name,
                   changes=changes, previous={k: getattr(before, k) for k in changes})
        self.finish(token_json(info))

    @web.authenticated
    @requires("write", login_only=True)
    async def delete(self, token_id: str):
        info = visible_token(self.bodhi.tokens, self.principal, token_id)
        self.bodhi.tokens.delete(token_id)
        self.log.info("bodhi: %s deleted API token %s", self.owner, token_id)
        self.audit("token.delete", token_id, owner=info.owner, name=info.name,
                   scope=info.scope)
        self.set_status(204)
        self.finish()


default_handlers = [
    (r"bodhi/app/tokens", TokensHandler),
    (r"bodhi/app/tokens/([^/]+)", TokenHandler),
]
