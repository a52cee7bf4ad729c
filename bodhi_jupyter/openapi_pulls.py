"""OpenAPI paths of ``bodhi/app/models/pulls`` (downloads from the Hugging Face hub), merged
into the document by ``openapi.py``."""

from __future__ import annotations

from .models.pulls import (
    FILENAME_PATTERN,
    MAX_FILENAME,
    MAX_REPO,
    MAX_REVISION,
    REPO_PATTERN,
    REVISION_PATTERN,
    STATES,
)


def add_pull_paths(paths: dict, schemas: dict, op, json, ref, error, path_param,
                   page_params, page_of) -> None:
    time = {"type": "string", "format": "date-time"}
    count = {"type": "integer", "minimum": 0}
    pull_schemas = {
        "PullRequest": {
            "type": "object", "required": ["repo", "filename"], "additionalProperties": False,
            "properties": {
                "repo": {"type": "string", "pattern": REPO_PATTERN, "maxLength": MAX_REPO,
                         "description": "owner/name on the hub"},
                "filename": {"type": "string", "pattern": FILENAME_PATTERN,
                             "maxLength": MAX_FILENAME,
                             "description": "a .gguf file in the repository; any part of a "
                             "split GGUF (x-00001-of-00003.gguf) pulls every part"},
                "revision": {"type": ["string", "null"], "pattern": REVISION_PATTERN,
                             "maxLength": MAX_REVISION,
                             "description": "branch, tag or commit (default main)"}}},
        "Pull": {
            "type": "object",
            "required": ["id", "repo", "filename", "revision", "state", "bytes_done",
                         "bytes_total", "speed", "eta_s", "files", "model_id", "error",
                         "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string"}, "repo": {"type": "string"},
                "filename": {"type": "string", "description": "the first part of a split "
                             "GGUF"},
                "revision": {"type": "string"}, "state": {"enum": list(STATES)},
                "bytes_done": count, "bytes_total": {"type": ["integer", "null"], "minimum": 0},
                "speed": {"type": ["number", "null"], "description": "bytes/s while running"},
                "eta_s": {"type": ["number", "null"], "minimum": 0},
                "files": {"type": "array", "items": {"type": "string"}},
                "model_id": {"type": ["string", "null"], "description": "its id in "
                             "/v1/models once done"},
                "error": {"oneOf": [{"type": "null"}, {
                    "type": "object", "required": ["message", "type", "code"],
                    "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                                   "code": {"type": "string", "description":
                                            "repo_not_found, file_not_found, "
                                            "revision_not_found, gated, network_error, "
                                            "hub_error, disk_full, not_gguf, "
                                            "checksum_mismatch, interrupted, pull_error"}}}]},
                "created_by": {"type": ["string", "null"]},
                "created_at": time, "updated_at": time}},
    }
    clash = pull_schemas.keys() & schemas.keys()
    assert not clash, f"schema names used twice: {sorted(clash)}"
    schemas.update(pull_schemas)
    pull_id = path_param("pull_id", "pull id")
    tag = "models"
    errors = {"400": error, "404": error}
    paths.update({
        "/app/models/pulls": {
            "get": op("Pulls from the Hugging Face hub, newest first",
                      {"200": json(page_of(ref("Pull"))), "400": error}, params=page_params,
                      tag=tag),
            "post": op("Pull a GGUF (all parts of a split one) into the Hugging Face cache "
                       "in the background (admin). The hub is asked first: a missing repo, "
                       "file or revision is 404, a gated or private one 403 (set HF_TOKEN in "
                       "the server's environment), no room 507, hub unreachable 502. The "
                       "same repo, file and revision while one runs: 200 with that pull",
                       {"201": json(ref("Pull"), "Started"), "200": json(ref("Pull"),
                                                                        "Already running"),
                        **errors, "422": error, "502": error, "507": error},
                       body=ref("PullRequest"), tag=tag),
        },
        "/app/models/pulls/{pull_id}": {
            "get": op("One pull: state, bytes, speed, ETA", {"200": json(ref("Pull")),
                                                            **errors},
                      params=[pull_id], tag=tag),
            "delete": op("Cancel a queued or running pull and remove its partial files (it "
                         "stays listed as cancelled); a finished pull is removed from the "
                         "list (its model files stay)",
                         {"204": {"description": "Cancelled or removed"}, **errors},
                         params=[pull_id], tag=tag),
        },
        "/app/models/pulls/{pull_id}/retry": {"post": op(
            "Run a failed or cancelled pull again, continuing from the bytes on disk",
            {"200": json(ref("Pull")), **errors}, params=[pull_id], tag=tag)},
    })
