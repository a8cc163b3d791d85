"""The page at `/` in a real headless Chromium (Debian's `chromium`, driven by Playwright).

`make install` installs chromium when it is missing (scripts/ensure_chromium.sh). Without
it the tests skip and say why, except on CI (CI=true), where a missing browser fails them:
there the page must really be tested.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.ollama_standin import OllamaStandIn
from tests.ragged_server import RaggedServer
from tests.test_server import FOXTROT, home, server, standin  # noqa: F401  (module fixtures)

# What works headless here, without a GPU, a sandbox (root) or any network of its own.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    for name in (os.environ.get("RAGGED_CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    reason = "no chromium on PATH (Debian: `apt-get install chromium`; `make install` tries)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}: CI must test the page in a real browser")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Playwright gives every launch a fresh temporary profile (its --user-data-dir).
        launched = playwright.chromium.launch(executable_path=executable, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: RaggedServer, standin: OllamaStandIn) -> Iterator[Any]:  # noqa: F811
    standin.reset()
    standin.token_delay = 0.0
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(str(exc)))
    tab.goto(server.url + "/")
    tab.wait_for_function("document.querySelectorAll('#collection option').length >= 2")
    yield tab
    context.close()
    assert not problems, problems  # no script error on the way


def ask(page: Any, question: str) -> None:
    page.fill("#question", question)
    page.press("#question", "Enter")


def test_a_question_streams_its_answer_and_a_citation_opens_its_passage(
    page: Any,
    standin: OllamaStandIn,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert page.locator("#collection").input_value() == "default"
    standin.token_delay = 0.15  # slow enough to see the answer grow
    ask(page, FOXTROT)
    # While streaming: part of the answer is shown, marked as still coming.
    page.wait_for_selector(".answer.streaming:not(:empty)")
    partial = page.inner_text(".answer.streaming")
    assert partial and "[1]" not in partial
    page.wait_for_selector(".answer:not(.streaming) .cite", timeout=30_000)
    answer = page.inner_text(".turn .answer")
    assert "7341" in answer and answer.startswith(partial.strip()[:10])
    assert "install.md" in page.inner_text(".turn .sources")
    page.screenshot(path=str(tmp_path / "answer.png"))

    page.click(".turn .answer .cite")
    page.wait_for_selector("#passage:not([hidden])")
    assert "7341" in page.inner_text("#passage-text")
    assert "install.md" in page.inner_text("#passage-title")
    link = page.get_attribute("#passage-file", "href")
    assert link and link.endswith("/file?collection=default")
    with page.expect_popup() as popup:
        page.click("#passage-file")
    opened = popup.value
    opened.wait_for_load_state()
    assert "Foxtrot daemon listens on port 7341" in opened.inner_text("body")


def test_not_in_your_documents_is_shown_as_such(page: Any, standin: OllamaStandIn) -> None:  # noqa: F811
    ask(page, "xylophone quasar marmalade?")
    page.wait_for_selector(".answer.not-found")
    assert "Not in your documents" in page.text_content(".answer.not-found")
    assert standin.count("/api/chat") == 0
    assert page.locator(".turn .cite").count() == 0


def test_follow_ups_in_another_collection(page: Any) -> None:
    page.select_option("#collection", "faq")
    ask(page, "What is rate limiting?")
    page.wait_for_selector(".turn:nth-child(1) .answer:not(.streaming) .cite")
    ask(page, "And how do I disable it?")
    page.wait_for_selector(".turn:nth-child(2) .answer:not(.streaming) .cite")
    second = page.locator(".turn:nth-child(2)")
    assert "searched for: And how do I disable rate limiting?" in second.inner_text()
    assert "limits.enabled = false" in second.locator(".answer").inner_text()
    page.click("#new")
    assert page.locator(".turn").count() == 0
