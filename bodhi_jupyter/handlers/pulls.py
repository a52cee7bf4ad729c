"""``bodhi/app/models/pulls``: download GGUF models from the Hugging Face hub. Anyone with
``read`` sees the pulls (they are the server's, not a person's); ``admin`` starts, cancels
and retries them, since they fill the server's disk; so may a notebook's kernel credential
of an admin (``bodhi_jupyter.pull()`` in a notebook of the server's owner)."""

from __future__ import annotations

from tornado import web

from ..errors import invalid
from ..jsonbody import parse_json_object
from ..models.pulls import ACTIVE
from .base import BodhiHandler, requires

FIELDS = ("repo", "filename", "revision")


def parse_pull_request(body: dict) -> tuple[str, str, str | None]:
    """The fields of a POST; the values are checked by the PullManager."""
    for key in body:
        if key not in FIELDS:
            raise invalid(f"Unknown field '{key}'; allowed: {', '.join(FIELDS)}", param=key,
                          code="unknown_field")
    return body.get("repo"), body.get("filename"), body.get("revision")


class PullsHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self):
        page = self.page()
        self.finish(page.of([p.public() for p in self.bodhi.pulls.list()]))

    @web.authenticated
    @requires("admin", from_notebook=True)
    async def post(self):
        repo, filename, revision = parse_pull_request(parse_json_object(self.request.body))
        pull, created = await self.bodhi.pulls.start(repo, filename, revision,
                                                     created_by=self.owner)
        if created:  # otherwise the same pull was running already: nothing changed
            self.audit("pull.start", pull.id, repo=pull.repo, filename=pull.filename,
                       revision=pull.revision)
        self.set_status(201 if created else 200)
        self.set_header("Location", f"{self.request.path.rstrip('/')}/{pull.id}")
        self.finish(pull.public())


class PullHandler(BodhiHandler):
    @web.authenticated
    @requires("read")
    async def get(self, pull_id: str):
        self.finish(self.bodhi.pulls.get(pull_id).public())

    @web.authenticated
    @requires("admin", from_notebook=True)
    async def delete(self, pull_id: str):
        before = self.bodhi.pulls.get(pull_id)
        await self.bodhi.pulls.cancel(pull_id)
        self.audit("pull.cancel", pull_id, repo=before.repo, filename=before.filename,
                   state=before.state)
        self.set_status(204)
        self.finish()


class PullRetryHandler(BodhiHandler):
    @web.authenticated
    @requires("admin", from_notebook=True)
    async def post(self, pull_id: str):
        before = self.bodhi.pulls.get(pull_id)
        pull = await self.bodhi.pulls.retry(pull_id)
        if before.state not in ACTIVE:  # a pull still running is left as it is
            self.audit("pull.retry", pull_id, repo=pull.repo, filename=pull.filename,
                       previous_state=before.state)
        self.finish(pull.public())


default_handlers = [
    (r"bodhi/app/models/pulls", PullsHandler),
    (r"bodhi/app/models/pulls/([^/]+)", PullHandler),
    (r"bodhi/app/models/pulls/([^/]+)/retry", PullRetryHandler),
]
