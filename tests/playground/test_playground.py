"""The playground page (web/playground.html) in headless Chromium, as a person uses it.

Against the API at MEDIAGEN_API_URL (key MEDIAGEN_API_KEY) when set, as scripts/test-clients.sh
runs it; otherwise against tests/playground/stub_api.py started here behind a /prod stage prefix.
Playwright's Python package drives Debian's Chromium (/usr/bin/chromium, or MEDIAGEN_CHROMIUM);
no browser is downloaded. The screenshot goes to target/playground.png (MEDIAGEN_SCREENSHOT).

    .venv/bin/python -m unittest discover -s tests/playground -v
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import threading
import unittest
import urllib.request
from pathlib import Path

from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
import stub_api  # noqa: E402

CHROMIUM = os.environ.get("MEDIAGEN_CHROMIUM", "/usr/bin/chromium")
# As the machine's notes say: without the background-networking flags Chromium keeps trying
# Google's hosts, which this closed network refuses.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOT = Path(os.environ.get("MEDIAGEN_SCREENSHOT", ROOT / "target" / "playground.png"))
# A job on the local stack takes about a second; allow for a cold function.
JOB_TIMEOUT_MS = int(os.environ.get("MEDIAGEN_PLAYGROUND_TIMEOUT_MS", "90000"))

# Records each state #status shows, to check that progress was shown while waiting.
STATES_SEEN = """() => {
  window.statesSeen = [];
  new MutationObserver(() => {
    const state = document.querySelector('#status').dataset.state;
    if (window.statesSeen[window.statesSeen.length - 1] !== state) window.statesSeen.push(state);
  }).observe(document.querySelector('#status'), { attributes: true, childList: true, characterData: true, subtree: true });
}"""

# Records each line #progress shows: what the job's progress stream said while it ran.
PROGRESS_SEEN = """() => {
  window.progressSeen = [];
  new MutationObserver(() => {
    const text = document.querySelector('#progress').textContent;
    if (text && window.progressSeen[window.progressSeen.length - 1] !== text) window.progressSeen.push(text);
  }).observe(document.querySelector('#progress'), { childList: true, characterData: true, subtree: true });
}"""

# The progress stream's path, to refuse it (the page then polls).
STREAM_ROUTE = "**/v1/predictions/*/stream*"

FIRST_IMAGE_LOADED = """() => {
  const img = document.querySelector('#images img');
  return img !== null && img.complete && img.naturalWidth > 0;
}"""


class Playground(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stub = cls.store = None
        url = os.environ.get("MEDIAGEN_API_URL", "").rstrip("/")
        if url:
            cls.api, cls.key = url, os.environ.get("MEDIAGEN_API_KEY", "")
        else:
            cls.stub, cls.store = stub_api.make_server(prefix="/prod", key="stub-key")
            threading.Thread(target=cls.stub.serve_forever, daemon=True).start()
            cls.api, cls.key = f"http://127.0.0.1:{cls.stub.server_address[1]}/prod", "stub-key"
        cls.playwright = sync_playwright().start()
        cls.browser = cls.playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )

    def setUp(self):
        # A browser context of each test's own: its local storage (the key) starts empty, and no
        # page of another test can write to it.
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 860})
        self.addCleanup(self.context.close)

    @classmethod
    def tearDownClass(cls):
        cls.browser.close()
        cls.playwright.stop()
        if cls.stub:
            cls.stub.shutdown()
            cls.stub.server_close()

    def open_page(self):
        """The playground, in this test's browser context (a first visit has no key stored)."""
        page = self.context.new_page()
        self.addCleanup(page.close)
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        self.addCleanup(lambda: self.assertEqual(errors, [], "the page threw"))
        page.goto(f"{self.api}/playground")
        page.wait_for_load_state("load")
        return page

    def fill_and_submit(self, page, key: str | None, prompt: str, width: int, height: int):
        if key is not None:
            page.fill("#api-key", key)
        page.fill("#prompt", prompt)
        page.fill("#width", str(width))
        page.fill("#height", str(height))
        page.click("#submit")

    def test_a_prompt_becomes_an_image_of_the_asked_size(self):
        page = self.open_page()
        # A first visit asks for the key.
        page.wait_for_selector("#api-key", state="visible", timeout=10000)
        page.evaluate(STATES_SEEN)
        page.evaluate(PROGRESS_SEEN)
        self.fill_and_submit(page, self.key, "a lighthouse at dusk", 512, 384)

        page.wait_for_function(FIRST_IMAGE_LOADED, timeout=JOB_TIMEOUT_MS)
        size = page.evaluate("() => { const i = document.querySelector('#images img'); return [i.naturalWidth, i.naturalHeight]; }")
        self.assertEqual(size, [512, 384], "the browser decoded an image of the asked size")
        status = page.locator("#status")
        self.assertEqual(status.get_attribute("data-state"), "succeeded")
        self.assertRegex(status.inner_text(), r"^succeeded · attempt 1 · \d+\.\ds$")
        seen = page.evaluate("window.statesSeen")
        self.assertEqual(seen[-1], "succeeded")
        self.assertIn(seen[0], ("queued", "processing"), f"the progress was shown while waiting: {seen}")
        # Followed by its progress stream: the logs line the stream sent was shown, then its image.
        self.assertEqual(status.get_attribute("data-follow"), "stream")
        progress = page.evaluate("window.progressSeen")
        self.assertTrue(any(line.startswith("generating with ") for line in progress),
                        f"the stream's logs line was shown: {progress}")
        self.assertEqual(progress[-1], "image 1 of 1 ready")
        job_id = status.get_attribute("data-job-id")
        if self.store:
            # The EventSource sent no key: the link is signed.
            asked = [r for r in self.store.requests if r["path"] == f"/prod/v1/predictions/{job_id}/stream"]
            self.assertTrue(asked, "the page opened the job's stream")
            self.assertNotIn("Authorization", asked[0]["headers"])
        # Listed, and the list follows the job to its end.
        page.wait_for_selector(f'#jobs button[data-job-id="{job_id}"] .s-succeeded', timeout=10000)
        self.assertFalse(page.is_visible("#api-key"), "the key is kept, not asked again")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        # Asked once: a new visit has the key, lists the job, and shows its image on a click.
        again = self.open_page()
        self.assertFalse(again.is_visible("#api-key"))
        listed = f'#jobs button[data-job-id="{job_id}"]'
        try:
            again.wait_for_selector(listed, timeout=5000)
        except PlaywrightTimeoutError:
            # The list loads once, as the page opens: ask again, as a person would.
            again.click("#refresh-jobs")
            again.wait_for_selector(listed, timeout=15000)
        # Clicked in the page itself: the list is redrawn as it refreshes, so the button Playwright
        # found may be replaced before it is stable enough for a pointer click.
        again.wait_for_function(
            "selector => { const b = document.querySelector(selector); if (b) b.click(); return !!b; }",
            arg=listed,
            timeout=15000,
        )
        again.wait_for_function(FIRST_IMAGE_LOADED, timeout=JOB_TIMEOUT_MS)
        self.assertEqual(again.get_attribute("#status", "data-job-id"), job_id)
        self.assertEqual(again.evaluate("document.querySelector('#images img').naturalHeight"), 384)

    def get(self, path: str) -> dict:
        request = urllib.request.Request(f"{self.api}{path}", headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)

    def options(self, page) -> list[list[str]]:
        return page.eval_on_selector_all("#model option", "options => options.map(o => [o.value, o.textContent])")

    def test_the_model_select_lists_the_models_and_the_job_carries_the_choice(self):
        listed = self.get("/v1/models")["data"]
        page = self.open_page()
        page.wait_for_function("n => document.querySelectorAll('#model option').length === n", arg=len(listed))
        options = self.options(page)
        self.assertEqual([value for value, _ in options], [m["id"] for m in listed])
        for (_, text), model in zip(options, listed):
            self.assertIn(model["owned_by"], text)
            self.assertIn("/image", text)
        self.assertEqual(page.input_value("#model"), next(m["id"] for m in listed if m["default"]))
        self.assertEqual(page.inner_text('label[for="model"]'), "Model")
        if self.stub:
            self.assertEqual([text for _, text in options],
                             ["local · local · $0.000/image (default)", "gpt-image-1 · openai · $0.042/image"])
            chosen = "gpt-image-1"
        else:
            # A real stack's other models may cost money: another one only if it is free.
            free = [m["id"] for m in listed if not m["default"] and not m.get("price_per_image_usd")]
            chosen = free[0] if free else page.input_value("#model")
        page.select_option("#model", chosen)
        sizes = next(m for m in listed if m["id"] == chosen).get("sizes") or []
        if sizes:
            self.assertIn(", ".join(sizes), page.inner_text("#model-hint"))

        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/media/generate")) as submitted:
            self.fill_and_submit(page, self.key, "a harbour at dawn", 1024, 1024)
        self.assertEqual(submitted.value.post_data_json["model"], chosen)
        page.wait_for_selector("#status[data-job-id]", timeout=10000)
        job_id = page.get_attribute("#status", "data-job-id")
        self.assertEqual(self.get(f"/media/jobs/{job_id}")["model"], chosen, "the job carries the chosen model")
        self.assertIn(chosen, page.inner_text("#job-meta"))
        if self.store:
            self.assertEqual(self.store.submitted[-1]["model"], chosen)
        page.wait_for_function(FIRST_IMAGE_LOADED, timeout=JOB_TIMEOUT_MS)

    def test_without_the_models_the_form_uses_the_api_default(self):
        # As from an API older than the page: no GET /v1/models.
        self.context.route("**/v1/models", lambda route: route.fulfill(
            status=404, content_type="application/problem+json",
            body=json.dumps({"type": "urn:mediagen:problem:no-route", "title": "No route", "status": 404})))
        page = self.open_page()
        page.wait_for_selector("#model-hint:not([hidden])", timeout=10000)
        self.assertIn("could not be loaded", page.inner_text("#model-hint"))
        self.assertEqual(self.options(page), [["", "the API's default"]])
        with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/media/generate")) as submitted:
            self.fill_and_submit(page, self.key, "a red fox", 256, 256)
        self.assertNotIn("model", submitted.value.post_data_json)
        page.wait_for_function(FIRST_IMAGE_LOADED, timeout=JOB_TIMEOUT_MS)

    def test_without_the_stream_the_page_polls(self):
        # As from an API older than the stream, or a network that drops it: refused before any event.
        refused = []

        def refuse(route):
            refused.append(route.request.url)
            route.fulfill(status=404, content_type="application/problem+json",
                          body=json.dumps({"type": "urn:mediagen:problem:no-route", "title": "No route", "status": 404}))

        self.context.route(STREAM_ROUTE, refuse)
        page = self.open_page()
        with page.expect_request(lambda r: r.method == "GET" and "/media/jobs/" in r.url and r.headers.get("prefer")):
            self.fill_and_submit(page, self.key, "a red fox", 256, 256)
        page.wait_for_function(FIRST_IMAGE_LOADED, timeout=JOB_TIMEOUT_MS)
        self.assertTrue(refused, "the page tried the stream first")
        status = page.locator("#status")
        self.assertEqual(status.get_attribute("data-state"), "succeeded")
        self.assertEqual(status.get_attribute("data-follow"), "poll")
        self.assertEqual(page.inner_text("#progress"), "")

    def test_a_failed_job_shows_its_code_and_message(self):
        prompt = os.environ.get("MEDIAGEN_FAILURE_PROMPT") or ("[fail] a storm at sea" if self.stub else None)
        if not prompt:
            self.skipTest("the local model never fails: set MEDIAGEN_FAILURE_PROMPT for a model that can")
        page = self.open_page()
        self.fill_and_submit(page, self.key, prompt, 256, 256)
        page.wait_for_selector('#status[data-state="failed"]', timeout=JOB_TIMEOUT_MS)
        self.assertIn("The job failed: model_failed: ", page.inner_text("#job-error"))
        # The stream's error event said it first.
        progress = page.inner_text("#progress")
        self.assertTrue(progress and progress in page.inner_text("#job-error"), progress)
        self.assertEqual(page.locator("#images img").count(), 0)

    def test_an_invalid_width_names_the_field(self):
        page = self.open_page()
        self.fill_and_submit(page, self.key, "too narrow", 300, 384)
        page.wait_for_selector("#error:not([hidden])")
        self.assertIn("width: must be a multiple of 32", page.inner_text("#error"))
        self.assertEqual(page.get_attribute("#width", "aria-invalid"), "true")
        self.assertIsNone(page.get_attribute("#height", "aria-invalid"))

    def test_a_refused_key_says_so_and_asks_again(self):
        page = self.open_page()
        self.fill_and_submit(page, "mg_not_a_key", "a lighthouse at dusk", 512, 384)
        page.wait_for_selector("#error:not([hidden])")
        self.assertIn("refused the key (401)", page.inner_text("#error"))
        self.assertTrue(page.is_visible("#api-key"), "the key field is shown again")


if __name__ == "__main__":
    unittest.main(verbosity=2)
