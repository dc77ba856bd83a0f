"""The official `replicate` Python client, unchanged, against the local stack (docs/design.md,
"Replicate-compatible API"): only its base URL and API token are ours. The stack is reached over
HTTPS through tls_proxy.py, as a deployed stack is reached through API Gateway.

Needs MEDIAGEN_API_URL (the local stack), MEDIAGEN_API_KEY and MEDIAGEN_OTHER_API_KEY (keys of
two owners); scripts/test.sh sets them."""

import http.server
import json
import os
import queue
import threading
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

import httpx
import replicate
from replicate.exceptions import ReplicateError
from replicate.webhook import WebhookValidationError

HERE = Path(__file__).resolve().parent


def png_size(data: bytes):
    """(width, height) of a PNG, read from its header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


class ReplicateClient(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.TemporaryDirectory()
        cls.proxy = subprocess.Popen(
            [sys.executable, str(HERE / "tls_proxy.py"), os.environ["MEDIAGEN_API_URL"], cls.certs.name],
            stdout=subprocess.PIPE,
            text=True,
        )
        cls.base_url = cls.proxy.stdout.readline().strip()
        cls.cert = str(Path(cls.certs.name) / "cert.pem")
        cls.tls = ssl.create_default_context(cafile=cls.cert)

    @classmethod
    def tearDownClass(cls):
        cls.proxy.terminate()
        cls.proxy.wait(10)
        cls.certs.cleanup()

    def client(self, key=None):
        # The client's own transport option, so that it trusts the proxy's certificate.
        return replicate.Client(
            api_token=key or os.environ["MEDIAGEN_API_KEY"],
            base_url=self.base_url,
            transport=httpx.HTTPTransport(verify=self.tls),
        )

    def test_run_returns_files_whose_bytes_are_the_asked_images(self):
        output = self.client().run(
            "mediagen/local",
            input={"prompt": "a lighthouse at dusk", "width": 512, "height": 384, "num_outputs": 2},
        )
        self.assertEqual(len(output), 2)
        first = output[0].read()
        self.assertEqual(png_size(first), (512, 384))
        self.assertNotEqual(first, output[1].read())

        urls = self.client().run(
            "mediagen/local",
            input={"prompt": "a lighthouse at dusk", "width": 512, "height": 384, "seed": 11},
            use_file_output=False,
        )
        self.assertTrue(urls[0].startswith("https://"), urls)
        # A plain HTTP client, no key: the link is signed.
        with urllib.request.urlopen(urls[0], context=self.tls) as answer:
            self.assertEqual(png_size(answer.read()), (512, 384))

    def test_predictions_create_wait_reload_and_list_only_the_callers(self):
        client = self.client()
        prediction = client.predictions.create(model="mediagen/local", input={"prompt": "waited", "width": 256, "height": 256})
        self.assertIn(prediction.status, ("starting", "processing", "succeeded"))
        prediction.wait()
        self.assertEqual(prediction.status, "succeeded")
        prediction.reload()
        self.assertEqual(prediction.status, "succeeded")
        self.assertEqual(png_size(prediction.output and self.fetch(prediction.output[0])), (256, 256))

        theirs = self.client(os.environ["MEDIAGEN_OTHER_API_KEY"]).predictions.create(
            model="mediagen/local", input={"prompt": "someone else's"}
        )
        seen, page = [], client.predictions.list()
        while True:
            seen += [p.id for p in page.results]
            if not page.next:
                break
            page = client.predictions.list(page.next)
        self.assertIn(prediction.id, seen)
        self.assertNotIn(theirs.id, seen)
        with self.assertRaises(ReplicateError) as raised:
            client.predictions.get(theirs.id)
        self.assertEqual(raised.exception.status, 404)

    def fetch(self, url):
        with urllib.request.urlopen(url, context=self.tls) as answer:
            return answer.read()

    def test_cancel_ends_a_prediction_canceled(self):
        prediction = self.client().predictions.create(
            model="mediagen/local-slow", input={"prompt": "never mind", "num_outputs": 4}
        )
        prediction.cancel()
        self.assertIn(prediction.status, ("canceled", "processing"))
        prediction.wait()
        self.assertEqual(prediction.status, "canceled")

    def test_a_fast_run_waits_and_a_slow_one_is_polled_to_the_end(self):
        client = self.client()
        started = time.monotonic()
        self.assertEqual(len(client.run("mediagen/local", input={"prompt": "fast", "width": 256, "height": 256})), 1)
        # The slow model outlasts a 1 s wait: the answer says `starting` and run() polls on.
        output = client.run(
            "mediagen/local-slow", input={"prompt": "slow", "width": 256, "height": 256}, wait=1
        )
        self.assertEqual(png_size(output[0].read()), (256, 256))
        self.assertGreater(time.monotonic() - started, 2.5)

    def test_a_webhook_validates_with_the_clients_own_check(self):
        received = queue.Queue()

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                received.put((dict(self.headers), body.decode()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        client = self.client()
        prediction = client.predictions.create(
            model="mediagen/local",
            input={"prompt": "a signed heron", "width": 256, "height": 256},
            webhook=f"http://127.0.0.1:{server.server_address[1]}/hook",
            webhook_events_filter=["completed"],
        )
        headers, body = received.get(timeout=60)
        secret = client.webhooks.default.secret()
        self.assertTrue(secret.key.startswith("whsec_"))
        # Raises if the signature does not hold.
        client.webhooks.validate(headers=headers, body=body, secret=secret)
        delivered = json.loads(body)
        self.assertEqual((delivered["id"], delivered["status"]), (prediction.id, "succeeded"))
        forged = body.replace("succeeded", "failed")
        with self.assertRaises(WebhookValidationError):
            client.webhooks.validate(headers=headers, body=forged, secret=secret)
        # Another owner's secret is not this one.
        theirs = self.client(os.environ["MEDIAGEN_OTHER_API_KEY"]).webhooks.default.secret()
        self.assertNotEqual(theirs.key, secret.key)

    def test_during_a_rotations_grace_a_receiver_with_the_old_secret_still_validates(self):
        """A receiver that still holds the secret from before a rotation validates the deliveries
        of the grace (they carry a signature with each secret), as does one holding the new.
        With the other owner's key, so that the test run's own secret never moves."""
        received = queue.Queue()

        class Receiver(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                received.put((dict(self.headers), body.decode()))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        key = os.environ["MEDIAGEN_OTHER_API_KEY"]
        client = self.client(key)
        old = client.webhooks.default.secret()
        with httpx.Client(verify=self.tls) as http_client:
            rotated = http_client.post(
                f"{self.base_url}/media/webhooks/secret/rotate", headers={"authorization": f"Bearer {key}"}
            )
        self.assertEqual(rotated.status_code, 200, rotated.text)
        new = client.webhooks.default.secret()
        self.assertEqual(new.key, rotated.json()["key"])
        self.assertNotEqual(new.key, old.key)
        client.predictions.create(
            model="mediagen/local",
            input={"prompt": "a heron in a grace period", "width": 256, "height": 256},
            webhook=f"http://127.0.0.1:{server.server_address[1]}/hook",
            webhook_events_filter=["completed"],
        )
        headers, body = received.get(timeout=60)
        self.assertEqual(len(headers["webhook-signature"].split()), 2, headers)
        # Each raises if no signature holds.
        client.webhooks.validate(headers=headers, body=body, secret=old)
        client.webhooks.validate(headers=headers, body=body, secret=new)

    def test_a_wrong_key_and_an_unknown_model_are_the_clients_errors(self):
        with self.assertRaises(ReplicateError) as raised:
            self.client("mgk_wrongwrongwrongwrongwrongwrong12").run("mediagen/local", input={"prompt": "a"})
        self.assertEqual(raised.exception.status, 401)
        with self.assertRaises(ReplicateError) as raised:
            self.client().run("acme/no-such-model", input={"prompt": "a"})
        self.assertIn(raised.exception.status, (404, 422))
        self.assertIn("acme/no-such-model", raised.exception.detail)


if __name__ == "__main__":
    unittest.main()
