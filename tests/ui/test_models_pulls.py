"""Pulls in the panel's Models view, in a real browser against a real `jupyter lab` whose
hub is the local stand-in (HF_ENDPOINT): start one by repository and file, watch its bar,
speed and time left, cancel it, retry it, and see the pulled model in Files. Screenshots
in both themes (tests/ui/artifacts/*-models-pull*.png)."""

from __future__ import annotations

import pytest

from ..hf_hub_stand_in import HubStandIn, tiny_gguf
from ..live_server import wait_until
from .conftest import CHROMIUM, Lab, only_open, section, shot

pytestmark = pytest.mark.timeout(240)

REPO = "someone/tiny-GGUF"
FILE = "tiny-Q4_K_M.gguf"
MODEL_ID = f"{REPO}:Q4_K_M"
SIZE = 2_000_000  # 123 chunks of 16 KiB


@pytest.fixture(scope="module")
def hub():
    with HubStandIn() as h:
        yield h


@pytest.fixture(scope="module")
def lab(tmp_path_factory, hub):
    import os

    if not os.path.exists(CHROMIUM):
        pytest.skip("browser tests need Debian's chromium (make test installs it as root)")
    lab = Lab(tmp_path_factory.mktemp("lab"))
    lab.env["HF_ENDPOINT"] = hub.url
    lab.start()
    yield lab
    lab.stop()


def pull_row(page):
    return page.locator(f".bodhi-Pull:has(.bodhi-ItemName:text-is('{FILE}'))")


def test_a_pull_shows_progress_and_cancels(page, lab, hub, artifacts):
    f = hub.add(REPO, FILE, tiny_gguf(SIZE), delay=0.15)  # ~18 s: time to look and cancel
    page.locator("#bodhi-chat").wait_for(state="visible")
    page.locator(".bodhi-Tab", has_text="Models").click()
    pulls = section(page, "pulls")
    pulls.locator(".bodhi-Empty").wait_for()
    pulls.locator(".bodhi-PullRepo").fill(REPO)
    pulls.locator(".bodhi-PullFile").fill(FILE)
    pulls.locator(".bodhi-StartPull").click()
    row = pull_row(page)
    row.wait_for()
    # the bar moves, with bytes of the total, a speed and the time left
    page.wait_for_function(
        "() => { const b = document.querySelector('.bodhi-Pull[data-state=running] "
        "[role=progressbar]'); return b && Number(b.getAttribute('aria-valuenow')) >= 5; }",
        timeout=30_000)
    summary = row.locator(".bodhi-PullSummary").inner_text()
    assert "of 2.0 MB" in summary and "/s" in summary and "left" in summary, summary
    assert row.locator(".bodhi-PullState").inner_text() == "pulling"
    only_open(page, "pulls")
    shot(page, artifacts, "models-pull-running")
    row.locator(".bodhi-CancelPull").click()
    page.locator(".bodhi-Pull[data-state=cancelled]").wait_for(timeout=15_000)
    assert row.locator(".bodhi-PullState").inner_text() == "cancelled"
    [state] = [p["state"] for p in lab.api("bodhi/app/models/pulls")["data"]]
    assert state == "cancelled"
    served_at_cancel = f.served
    assert 0 < served_at_cancel < SIZE
    assert row.locator(".bodhi-RetryPull").is_visible()
    shot(page, artifacts, "models-pull-cancelled")


def test_a_retried_pull_finishes_and_its_model_is_listed(page, lab, hub, artifacts):
    hub.repos[REPO].files[FILE].delay = 0.01
    row = pull_row(page)
    row.locator(".bodhi-RetryPull").click()
    page.locator(".bodhi-Pull[data-state=done]").wait_for(timeout=60_000)
    assert MODEL_ID in row.locator(".bodhi-PullModel").inner_text()
    assert "2.0 MB" in row.locator(".bodhi-PullSummary").inner_text()
    assert row.locator(".bodhi-CancelPull, .bodhi-RetryPull").count() == 0
    # the pulled file is in Files at once (the view reloads the models when a pull ends)
    only_open(page, "files", "pulls")
    files = section(page, "files")
    files.locator(f".bodhi-File[data-model='{MODEL_ID}']").wait_for(timeout=15_000)
    assert files.locator(f".bodhi-File[data-model='{MODEL_ID}'] .bodhi-Source").inner_text() \
        == "hf-cache"
    wait_until(lambda: any(m["id"] == MODEL_ID for m in lab.api("bodhi/v1/models")["data"]),
               10, "the pulled model in /v1/models")
    shot(page, artifacts, "models-pull-done")


def test_a_hub_error_reads_cleanly(page, lab, hub, artifacts):
    only_open(page, "pulls")
    pulls = section(page, "pulls")
    pulls.locator(".bodhi-PullRepo").fill("nobody/no-such-repo")
    pulls.locator(".bodhi-PullFile").fill("x.gguf")
    pulls.locator(".bodhi-StartPull").click()
    # refused at once (4xx) or failed as a pull: either way its words are shown
    error = page.locator(".bodhi-Pulls .bodhi-Error").first
    error.wait_for(timeout=30_000)
    assert error.inner_text().strip()
    shot(page, artifacts, "models-pull-error")
