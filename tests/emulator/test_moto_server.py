"""scripts/moto_server.py: moto server with SendMessage and ReceiveMessage not counting the whole
queue, each host's service found once, and no access lines. The patches must still apply to the
pinned moto, and the server must answer as moto does: a standard queue's counts, a FIFO queue's
content-based deduplication, a queue's retention period, each service's requests on one port
reaching that service. Run against the server itself, over HTTP, except the retention check, which
reads the clock: it runs in process on moto's own objects."""

import re
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import moto_server  # noqa: E402
from moto.core.utils import unix_time_millis  # noqa: E402
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler  # noqa: E402
from moto.sqs.models import Message, Queue, SQSBackend  # noqa: E402


class PatchTest(unittest.TestCase):
    def test_the_patch_reaches_the_pinned_moto(self):
        self.assertIs(Queue.attributes.fget, moto_server._attributes_unless_sending)
        self.assertIs(SQSBackend.send_message, moto_server._send_without_counting)
        self.assertTrue(hasattr(DomainDispatcherApplication.get_backend_for_host, "cache_info"))
        self.assertIs(MotoRequestHandler.log_request, moto_server._no_access_line)
        self.assertIs(SQSBackend.is_message_valid_based_on_retention_period, moto_server._retained)

    def test_a_message_is_retained_for_the_queues_period_and_no_longer(self):
        backend = SQSBackend("us-east-1", "123456789012")
        backend.create_queue("retained", MessageRetentionPeriod="60")
        message = Message("id", "body")
        for age_seconds, retained in [(59, True), (61, False)]:
            message.sent_timestamp = int(unix_time_millis()) - age_seconds * 1000
            self.assertIs(backend.is_message_valid_based_on_retention_period("retained", message), retained)


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.log = tempfile.TemporaryFile(mode="w+")
        cls.server = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "moto_server.py"), "-H", "127.0.0.1", "-p", "0"],
            stdout=cls.log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 30
        port = None
        while port is None and time.time() < deadline and cls.server.poll() is None:
            found = re.search(r"Running on http://127\.0\.0\.1:(\d+)", cls.logged())
            port = found and found.group(1)
            time.sleep(0.05)
        if port is None:
            cls.server.kill()
            raise RuntimeError("scripts/moto_server.py did not start")
        cls.sqs, cls.s3, cls.ssm = (
            boto3.client(
                service,
                endpoint_url=f"http://127.0.0.1:{port}",
                region_name="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
            for service in ("sqs", "s3", "ssm")
        )

    @classmethod
    def logged(cls):
        cls.log.seek(0)
        return cls.log.read()

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()
        cls.log.close()

    def count(self, queue_url):
        attributes = self.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def test_a_standard_queue_counts_what_was_sent(self):
        queue_url = self.sqs.create_queue(QueueName="standard")["QueueUrl"]
        for body in ["a", "b", "a"]:
            self.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        self.sqs.send_message_batch(QueueUrl=queue_url, Entries=[{"Id": "1", "MessageBody": "c"}])
        self.assertEqual(self.count(queue_url), 4)
        received = self.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        self.assertEqual(sorted(m["Body"] for m in received), ["a", "a", "b", "c"])

    def test_a_fifo_queue_still_deduplicates_by_content(self):
        queue_url = self.sqs.create_queue(
            QueueName="dedup.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )["QueueUrl"]
        for _ in range(2):
            self.sqs.send_message(QueueUrl=queue_url, MessageBody="same", MessageGroupId="g")
        self.assertEqual(self.count(queue_url), 1)

    def test_a_fifo_queue_without_it_still_asks_for_a_deduplication_id(self):
        queue_url = self.sqs.create_queue(QueueName="plain.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        with self.assertRaises(self.sqs.exceptions.ClientError):
            self.sqs.send_message(QueueUrl=queue_url, MessageBody="x", MessageGroupId="g")

    def test_each_service_on_the_one_port_reaches_its_own(self):
        for round in range(2):
            self.s3.create_bucket(Bucket=f"bucket-{round}")
            self.s3.put_object(Bucket=f"bucket-{round}", Key="k", Body=b"object")
            self.ssm.put_parameter(Name=f"/p/{round}", Value="parameter", Type="String")
            queue_url = self.sqs.create_queue(QueueName=f"routed-{round}")["QueueUrl"]
            self.assertEqual(self.s3.get_object(Bucket=f"bucket-{round}", Key="k")["Body"].read(), b"object")
            self.assertEqual(self.ssm.get_parameter(Name=f"/p/{round}")["Parameter"]["Value"], "parameter")
            self.assertIn(queue_url, self.sqs.list_queues()["QueueUrls"])

    def test_requests_leave_no_access_lines(self):
        self.sqs.list_queues()
        self.assertNotIn("HTTP/1.1", self.logged())


if __name__ == "__main__":
    unittest.main()
