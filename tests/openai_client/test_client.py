"""The official `openai` Python SDK, unchanged, against the local stack (docs/design.md,
"OpenAI-compatible API"): only its base URL and API key are ours.

Needs MEDIAGEN_API_URL (the local stack) and MEDIAGEN_API_KEY; scripts/test.sh sets them."""

import base64
import json
import os
import unittest
import urllib.request

import openai

PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"


def png_size(data: bytes):
    """(width, height) of a PNG, read from its header."""
    assert data[:8] == PNG, data[:8]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class OpenAiClient(unittest.TestCase):
    def client(self, key=None):
        # No retries: a test must see the first answer, and a retried create is another job.
        return openai.OpenAI(
            api_key=key or os.environ["MEDIAGEN_API_KEY"],
            base_url=os.environ["MEDIAGEN_API_URL"] + "/v1",
            max_retries=0,
        )

    def test_b64_json_answers_the_images_bytes(self):
        result = self.client().images.generate(
            model="local", prompt="a lighthouse at dusk", size="512x512", response_format="b64_json"
        )
        self.assertEqual(len(result.data), 1)
        image = base64.b64decode(result.data[0].b64_json)
        self.assertEqual(png_size(image), (512, 512))
        self.assertIsNone(result.data[0].url)
        self.assertGreater(result.created, 0)

    def test_url_answers_links_a_plain_client_downloads(self):
        result = self.client().images.generate(prompt="a red fox in the snow", size="1024x1536")
        url = result.data[0].url
        self.assertTrue(url.startswith(os.environ["MEDIAGEN_API_URL"] + "/v1/files/"), url)
        # No key: the link is signed, as the Replicate-compatible API's outputs are.
        with urllib.request.urlopen(url) as answer:
            image = answer.read()
        # 1024x1536 scaled into our sides (at most 1440), its shape kept.
        self.assertEqual(png_size(image), (960, 1440))

    def test_n_makes_that_many_images(self):
        result = self.client().images.generate(
            prompt="two boats", n=2, size="256x256", response_format="b64_json"
        )
        images = [base64.b64decode(d.b64_json) for d in result.data]
        self.assertEqual([png_size(i) for i in images], [(256, 256), (256, 256)])
        self.assertNotEqual(images[0], images[1])

    def test_output_format_jpeg(self):
        result = self.client().images.generate(
            prompt="a jar of honey", size="256x256", output_format="jpeg", response_format="b64_json"
        )
        self.assertEqual(base64.b64decode(result.data[0].b64_json)[:3], JPEG)
        self.assertEqual(result.output_format, "jpeg")

    def test_an_unknown_model_is_not_found(self):
        with self.assertRaises(openai.NotFoundError) as caught:
            self.client().images.generate(model="dall-e-9", prompt="a cat")
        self.assertEqual(caught.exception.code, "model_not_found")
        self.assertEqual(caught.exception.param, "model")

    def test_an_empty_prompt_or_a_bad_size_is_a_bad_request(self):
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client().images.generate(prompt="   ")
        self.assertEqual(caught.exception.param, "prompt")
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client().images.generate(prompt="a cat", size="640x480")
        self.assertEqual(caught.exception.param, "size")

    def test_a_stream_yields_one_completed_event_per_image(self):
        stream = self.client().images.generate(
            model="local", prompt="a kite over a beach", size="512x512", stream=True
        )
        events = list(stream)
        self.assertEqual([e.type for e in events], ["image_generation.completed"])
        event = events[0]
        self.assertIsInstance(event, openai.types.ImageGenCompletedEvent)
        self.assertEqual(png_size(base64.b64decode(event.b64_json)), (512, 512))
        self.assertEqual((event.size, event.output_format, event.background), ("512x512", "png", "opaque"))
        self.assertGreater(event.created_at, 0)
        self.assertEqual(event.usage.total_tokens, 0)

    def test_a_stream_of_n_images_has_n_events_and_no_partial_one(self):
        # partial_images is taken, but no model here makes a partial image: only final ones come.
        events = list(
            self.client().images.generate(
                prompt="two kites", n=2, size="256x256", output_format="jpeg", partial_images=2, stream=True
            )
        )
        self.assertEqual([e.type for e in events], ["image_generation.completed"] * 2)
        images = [base64.b64decode(e.b64_json) for e in events]
        self.assertEqual([i[:3] for i in images], [JPEG, JPEG])
        self.assertEqual([e.output_format for e in events], ["jpeg", "jpeg"])
        self.assertNotEqual(images[0], images[1])

    def test_a_stream_is_server_sent_events_naming_its_job(self):
        raw = self.client().images.with_raw_response.generate(
            prompt="a streamed job", size="256x256", stream=True
        )
        content_type = raw.headers["content-type"]
        self.assertTrue(content_type.startswith("text/event-stream"), content_type)
        self.assertTrue(raw.headers["x-mediagen-job-id"])
        self.assertEqual(len(list(raw.parse())), 1)

    def test_a_streaming_client_gets_the_same_errors(self):
        # The errors come before any event, as OpenAI's JSON errors, which the SDK raises as usual.
        with self.assertRaises(openai.BadRequestError) as caught:
            self.client().images.generate(prompt="a cat", size="640x480", stream=True)
        self.assertEqual(caught.exception.param, "size")
        with self.assertRaises(openai.NotFoundError) as caught:
            self.client().images.generate(model="dall-e-9", prompt="a cat", stream=True)
        self.assertEqual(caught.exception.code, "model_not_found")

    def test_models_list_is_the_catalogue(self):
        models = list(self.client().models.list())
        with urllib.request.urlopen(os.environ["MEDIAGEN_API_URL"] + "/v1/models") as answer:
            raw = json.load(answer)
        self.assertEqual([m.id for m in models], [m["id"] for m in raw["data"]])
        self.assertIn("local", [m.id for m in models])
        local = next(m for m in models if m.id == "local")
        self.assertEqual((local.object, local.owned_by), ("model", "local"))

    def test_a_bad_key_is_refused(self):
        with self.assertRaises(openai.AuthenticationError) as caught:
            self.client(key="mgk_refusedrefusedrefusedrefused1234").images.generate(prompt="a cat")
        self.assertEqual(caught.exception.code, "invalid_api_key")

    def test_the_job_is_an_ordinary_job_of_the_callers(self):
        raw = self.client().images.with_raw_response.generate(prompt="a listed job", size="256x256")
        job_id = raw.headers["x-mediagen-job-id"]
        self.assertEqual(len(raw.parse().data), 1)
        request = urllib.request.Request(
            os.environ["MEDIAGEN_API_URL"] + "/media/jobs?limit=100",
            headers={"Authorization": "Bearer " + os.environ["MEDIAGEN_API_KEY"]},
        )
        with urllib.request.urlopen(request) as answer:
            jobs = json.load(answer)["jobs"]
        listed = {job["job_id"]: job for job in jobs}
        self.assertIn(job_id, listed)
        self.assertEqual(listed[job_id]["status"], "succeeded")
        self.assertEqual(listed[job_id]["prompt"], "a listed job")

    def test_an_idempotency_key_answers_the_same_job(self):
        key = {"Idempotency-Key": "openai-client-" + os.urandom(8).hex()}
        first = self.client().images.with_raw_response.generate(
            prompt="once only", size="256x256", extra_headers=key
        )
        again = self.client().images.with_raw_response.generate(
            prompt="once only", size="256x256", extra_headers=key
        )
        self.assertEqual(first.headers["x-mediagen-job-id"], again.headers["x-mediagen-job-id"])
        self.assertEqual(again.headers.get("idempotent-replayed"), "true")


if __name__ == "__main__":
    unittest.main()
