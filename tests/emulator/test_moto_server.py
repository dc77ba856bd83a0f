"""scripts/moto_server.py: moto server with SendMessage not counting the whole queue. The patch
must still apply to the pinned moto, and the server must answer as moto does: a standard queue's
counts, a FIFO queue's content-based deduplication. Run against the server itself, over HTTP."""

import re
import subprocess
import sys
import time
import unittest
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import moto_server  # noqa: E402
from moto.sqs.models import Queue, SQSBackend  # noqa: E402


class PatchTest(unittest.TestCase):
    def test_the_patch_reaches_the_pinned_moto(self):
        self.assertIs(Queue.attributes.fget, moto_server._attributes_unless_sending)
        self.assertIs(SQSBackend.send_message, moto_server._send_without_counting)


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "moto_server.py"), "-H", "127.0.0.1", "-p", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.time() + 30
        port = None
        while port is None and time.time() < deadline:
            line = cls.server.stdout.readline()
            if not line:
                break
            found = re.search(r"Running on http://127\.0\.0\.1:(\d+)", line)
            port = found and found.group(1)
        if port is None:
            cls.server.kill()
            raise RuntimeError("scripts/moto_server.py did not start")
        cls.sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    @classmethod
    def tearDownClass(cls):
        cls.server.kill()
        cls.server.wait()
        cls.server.stdout.close()

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


if __name__ == "__main__":
    unittest.main()
