"""OpenAPI path of ``bodhi/app/audit`` (the audit log), merged into the document by
``openapi.py``."""

from __future__ import annotations

from .audit import ACTIONS


def add_audit_paths(paths: dict, schemas: dict, op, json, ref, error, query_param,
                    page_params, page_of) -> None:
    new = {"AuditEntry": {
        "type": "object",
        "required": ["id", "at", "action", "actor", "via", "address", "target", "details"],
        "properties": {
            "id": {"type": "integer"},
            "at": {"type": "string", "format": "date-time"},
            "action": {"enum": list(ACTIONS)},
            "actor": {"type": "string", "description": "who: the user the change was made as"},
            "via": {"type": "string", "description": "the credential: jupyter, hub, or "
                    "bodhi_token:<token id> (never the token itself)"},
            "address": {"type": ["string", "null"], "description": "the client's IP address"},
            "target": {"type": ["string", "null"], "description": "what changed: a token "
                       "id, setting key, alias or upstream name, process or pull id"},
            "details": {"type": "object", "description": "the changed fields and their "
                        "non-secret values (an API key only as \"set\" or \"cleared\")"},
            "request_id": {"type": ["string", "null"]}}}}
    clash = new.keys() & schemas.keys()
    assert not clash, f"schema names used twice: {sorted(clash)}"
    schemas.update(new)
    time = {"type": "string", "format": "date-time"}
    paths["/app/audit"] = {"get": op(
        "The audit log, newest first (admin): tokens, settings, aliases, upstreams, engines "
        "loaded or unloaded by hand, pulls, quota refusals",
        {"200": json(page_of(ref("AuditEntry"))), "400": error},
        params=[*page_params,
                query_param("user", {"type": "string"}, "only changes made by this user"),
                query_param("action", {"type": "string"}, "an action (token.create) or a "
                            "prefix ending in '.' (token.)"),
                query_param("since", time, "from"),
                query_param("until", time, "until (exclusive)")], tag="audit")}
