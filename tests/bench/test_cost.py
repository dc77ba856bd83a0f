"""The cost per 1,000 jobs in scripts/bench/bench.py: its arithmetic against a hand computation,
its reading of template.yaml, and the sources of its prices. Needs PyYAML, in .venv/."""

import copy
import datetime
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "bench"))

import bench  # noqa: E402

SUMMARY = {
    "warm_p50_ms": {"submit": 10.2, "generate": 99.01, "status": 2.0, "content": 3.5},
    "local_image_bytes": 2**20,
}
FACTS = {
    "memory_mb": {"submit": 256, "generate": 1024, "status": 512, "content": 128, "sweeper": 256},
    "architecture": "arm64",
    "image_retention_days": 73,
    "runs_per_day": {"sweeper": 1440.0},
    "polled_queues": 2,
}
ASSUMPTIONS = {
    **bench.COST_ASSUMPTIONS,
    "status_polls": 2,
    "jobs_per_day": 720,
    "replicate_image_bytes": 2**21,
    "replicate_wait_ms": 1500,
    "idle_pollers_per_queue": 4,
    "long_poll_seconds": 20,
    "platform_log_bytes": 100,
    "log_line_bytes": 200,
}


def fixture_prices():
    """$1 per 1,000 of everything, so that a row's dollars per 1,000 jobs are its quantity per
    job, except three prices that check the scaling."""
    real = bench.load_prices()
    prices = copy.deepcopy(real)
    for price in prices["prices"].values():
        price.update(usd=1, per=1000)
    prices["prices"]["lambda_request"].update(usd=0.2, per=1_000_000)
    prices["prices"]["replicate_flux_schnell_image"].update(usd=0.003, per=1)
    prices["prices"]["eventbridge_schedule_event"].update(usd=0, per=1)
    prices["allowances"]["lambda_free_requests"]["quantity"] = 1_000_000
    prices["allowances"]["lambda_free_gb_seconds"]["quantity"] = 400_000
    return prices


class Arithmetic(unittest.TestCase):
    def setUp(self):
        self.cost = bench.cost_per_1000_jobs(SUMMARY, fixture_prices(), FACTS, ASSUMPTIONS)
        self.rows = {row["key"]: row for row in self.cost["rows"]}

    def test_quantities_per_job_match_the_hand_count(self):
        gib = 2**30
        # Invocations: submit 1, status 2 polls + the whole job, content 1, generate 1, and the
        # sweeper's 1440 runs a day over 720 jobs.
        # Billed ms × GB: submit 11 × 0.25, status 3 × 2 × 0.5, content 4 × 0.125, sweeper
        # 2 × 2 × 0.25 (timed as status), generate 100 × 1 or, waiting for Replicate, 1600 × 1.
        # Writes: the job 3, its unsent mark's removal 2, the claim 1, the commit 6; with Replicate
        # the prediction noted 1.
        # Reads: 3 key reads + 2 polls + 1.5 whole job + 0.5 media item + 2 sweeps × 0.5.
        # Idle polls: 2 queues × 4 polls × 86400 / 20 s, over 720 jobs.
        # Storage: the image (1 MiB local, 2 MiB Replicate) for 73 days of a 730-hour month.
        # Logs: 8 invocations × 100 bytes + 200 bytes × (submit 2 + generate 4 or 6 + 2 sweeps × 1).
        expected = {
            "api_gateway_rest_request": (5, 5),
            "lambda_request": (8, 8),
            "lambda_gb_second": (107.25 / 1000, 1607.25 / 1000),
            "dynamodb_write_request_unit": (12, 13),
            "dynamodb_read_request_unit": (8, 8),
            "sqs_standard_request": (3, 3),
            "sqs_idle_poll": (48, 48),
            "eventbridge_schedule_event": (2, 2),
            "s3_standard_put": (1, 1),
            "s3_standard_get": (1, 1),
            "s3_standard_storage": (2.4 / 1024, 4.8 / 1024),
            "data_transfer_out": (1 / 1024, 2 / 1024),
            "cloudwatch_logs_ingestion": (2400 / gib, 2800 / gib),
            "replicate_flux_schnell_image": (0, 1),
        }
        rows = {row["key"]: row for row in self.cost["rows"]}
        self.assertEqual(rows.keys(), expected.keys())
        for key, (local, replicate) in expected.items():
            with self.subTest(key):
                self.assertAlmostEqual(rows[key]["per_job"]["local"], local, places=12)
                self.assertAlmostEqual(rows[key]["per_job"]["replicate"], replicate, places=12)

    def test_dollars_scale_with_the_price_and_its_unit(self):
        self.assertAlmostEqual(self.rows["lambda_request"]["usd_per_1000"]["local"], 8 * 0.2 / 1e6 * 1000)
        self.assertAlmostEqual(self.rows["replicate_flux_schnell_image"]["usd_per_1000"]["replicate"], 3.0)
        self.assertEqual(self.rows["replicate_flux_schnell_image"]["usd_per_1000"]["local"], 0)
        self.assertAlmostEqual(self.rows["dynamodb_write_request_unit"]["usd_per_1000"]["local"], 12)

    def test_totals_are_the_sums_of_the_rows(self):
        for model in bench.MODELS:
            self.assertAlmostEqual(self.cost["totals"][model], sum(r["usd_per_1000"][model] for r in self.cost["rows"]))

    def test_lambda_free_tier_covers_the_requests_first(self):
        free = self.cost["local_within_lambda_free_tier"]
        # 1,000,000 requests / 8 a job, before 400,000 GB-s / 0.10725 a job.
        self.assertEqual(free["jobs_per_month"], 125_000)
        self.assertAlmostEqual(free["usd_per_1000"], self.cost["totals"]["local"] - 0.0016 - 0.10725)

    def test_an_unmeasured_image_takes_the_assumed_size(self):
        summary = {"warm_p50_ms": SUMMARY["warm_p50_ms"]}
        cost = bench.cost_per_1000_jobs(summary, fixture_prices(), FACTS, ASSUMPTIONS)
        self.assertEqual(cost["image_bytes"]["local"], ASSUMPTIONS["local_image_bytes"])
        self.assertFalse(cost["image_bytes_measured"])

    def test_the_section_renders_the_totals(self):
        text = "\n".join(bench.render_cost(self.cost))
        self.assertIn("## Cost per 1,000 jobs", text)
        self.assertIn(f"**{bench.usd(self.cost['totals']['replicate'])}**", text)


    def test_every_catalogue_model_has_a_row_at_its_price(self):
        rows = bench.catalogue_costs(self.cost)
        catalogue = tomllib.loads((bench.ROOT / "models.toml").read_text())
        self.assertEqual([r["model"] for r in rows], [m["name"] for m in catalogue["models"]])
        for row, model in zip(rows, catalogue["models"]):
            self.assertAlmostEqual(row["model_usd_per_1000"], model["price_usd"] * 1000)
            self.assertAlmostEqual(row["usd_per_1000"], row["model_usd_per_1000"] + row["aws_usd_per_1000"])
        text = "\n".join(bench.render_cost(self.cost))
        self.assertIn("| `gpt-image-1` | openai |", text)


class StreamCost(unittest.TestCase):
    def test_a_minute_of_an_open_stream_is_its_duration_reads_and_share_of_a_request(self):
        prices = bench.load_prices()
        facts = {"memory_mb": {"stream": 512}, "architecture": "x86_64"}
        cost = bench.stream_cost_per_minute(1.0, prices, facts, longest_s=600)
        price = {key: entry["usd"] / entry["per"] for key, entry in prices["prices"].items()}
        self.assertAlmostEqual(cost["gb_seconds"], 30.0)
        self.assertAlmostEqual(cost["usd"]["lambda_duration"], 30 * price["lambda_gb_second_x86_64"])
        self.assertAlmostEqual(cost["usd"]["dynamodb_reads"], 30 * price["dynamodb_read_request_unit"])
        self.assertAlmostEqual(
            cost["usd"]["requests"], 0.1 * (price["api_gateway_rest_request"] + price["lambda_request"])
        )
        self.assertAlmostEqual(cost["total_usd"], sum(cost["usd"].values()))

    def test_the_repository_template_gives_the_stream_its_memory(self):
        self.assertIn("stream", bench.template_facts()["memory_mb"])


class Template(unittest.TestCase):
    def test_short_forms_and_defaults_are_read(self):
        text = """
Parameters:
  Architecture: {Type: String, Default: x86_64}
  RetentionDays: {Type: Number, Default: 9}
Globals:
  Function:
    Architectures: [!Ref Architecture]
    MemorySize: 256
Resources:
  Worker:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: generate}}
    Properties:
      Role: !GetAtt WorkerRole.Arn
      FunctionName: !Sub ${AWS::StackName}-generate
      MemorySize: 2048
      Events:
        Jobs: {Type: SQS, Properties: {Queue: !GetAtt Jobs.Arn}}
  Sweeper:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: sweeper}}
    Properties:
      Events:
        Sweep: {Type: Schedule, Properties: {Schedule: rate(5 minutes)}}
        Dead: {Type: SQS, Properties: {Queue: !GetAtt Dead.Arn}}
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      LifecycleConfiguration:
        Rules:
          - {Prefix: media/, ExpirationInDays: !Ref RetentionDays}
"""
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "template.yaml"
            path.write_text(text)
            facts = bench.template_facts(path)
        self.assertEqual(facts["memory_mb"], {"generate": 2048, "sweeper": 256})
        self.assertEqual(facts["architecture"], "x86_64")
        self.assertEqual(facts["image_retention_days"], 9)
        self.assertEqual(facts["runs_per_day"], {"generate": 0, "sweeper": 288})
        self.assertEqual(facts["polled_queues"], 2)

    def test_the_repository_template_gives_every_figure_the_cost_needs(self):
        facts = bench.template_facts()
        for name in bench.FUNCTIONS + ["sweeper"]:
            self.assertGreaterEqual(facts["memory_mb"][name], 128, name)
        self.assertIn(facts["architecture"], ("arm64", "x86_64"))
        self.assertGreater(facts["runs_per_day"]["sweeper"], 0)
        cost = bench.cost_per_1000_jobs({"warm_p50_ms": SUMMARY["warm_p50_ms"]}, bench.load_prices(), facts)
        self.assertGreater(cost["totals"]["replicate"], cost["totals"]["local"])


class Prices(unittest.TestCase):
    def test_every_figure_names_its_page_and_the_day_it_was_read(self):
        prices = bench.load_prices()
        entries = {**prices["prices"], **prices["allowances"]}
        today = datetime.date.today()
        for key, entry in entries.items():
            with self.subTest(key):
                self.assertTrue(entry["source"].startswith("https://"))
                self.assertTrue(entry["seen_in"].startswith("https://"))
                self.assertLessEqual(datetime.date.fromisoformat(entry["read"]), today)
                self.assertTrue(entry["unit"])
                figure = entry["usd"] if "usd" in entry else entry["quantity"]
                self.assertGreaterEqual(figure, 0)
                self.assertGreater(entry.get("per", 1), 0)


if __name__ == "__main__":
    unittest.main()
