"""The capacity model of scripts/capacity.py: its arithmetic on a small fixture template, a changed
template setting changing the rendered figure, and docs/capacity.md being what render writes.
Needs PyYAML, in .venv/."""

import math
import sys
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import capacity  # noqa: E402

FIXTURE = """
Parameters:
  Architecture: {Type: String, Default: arm64}
  RetentionDays: {Type: Number, Default: 7}
  MaxActiveJobsPerOwner: {Type: Number, Default: 50}
  MaxReceiveCount: {Type: Number, Default: 3}
  GenerateMaxConcurrency: {Type: Number, Default: 3}
  SubmitReservedConcurrency: {Type: String, Default: "40"}
  GenerateReservedConcurrency: {Type: String, Default: "-1"}
Globals:
  Function:
    Architectures: [!Ref Architecture]
    MemorySize: 256
    Timeout: 10
Resources:
  Api:
    Type: AWS::Serverless::Api
    Properties:
      MethodSettings:
        - {ResourcePath: "/*", HttpMethod: "*", ThrottlingBurstLimit: 16, ThrottlingRateLimit: 8}
      GatewayResponses:
        THROTTLED: {ResponseParameters: {Headers: {Retry-After: "'2'"}}}
        DEFAULT_5XX: {ResponseParameters: {Headers: {Retry-After: "'7'"}}}
  Submit:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: submit}}
    Properties:
      ReservedConcurrentExecutions: !If [ReservesSubmit, !Ref SubmitReservedConcurrency, !Ref AWS::NoValue]
  Status:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: status}}
    Properties: {}
  Content:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: content}}
    Properties: {ReservedConcurrentExecutions: 20}
  Generate:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: generate}}
    Properties:
      MemorySize: 2048
      ReservedConcurrentExecutions: !If [ReservesGenerate, !Ref GenerateReservedConcurrency, !Ref AWS::NoValue]
      Events:
        Jobs:
          Type: SQS
          Properties:
            Queue: !GetAtt Jobs.Arn
            BatchSize: 2
            ScalingConfig: {MaximumConcurrency: !Ref GenerateMaxConcurrency}
  Sweeper:
    Type: AWS::Serverless::Function
    Metadata: {BuildProperties: {Binary: sweeper}}
    Properties:
      Events:
        Sweep: {Type: Schedule, Properties: {Schedule: rate(2 minutes)}}
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      GlobalSecondaryIndexes:
        - {IndexName: by_owner, Projection: {ProjectionType: INCLUDE}}
  Jobs:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 60
      MessageRetentionPeriod: 86400
      RedrivePolicy: {deadLetterTargetArn: x, maxReceiveCount: !Ref MaxReceiveCount}
  Age:
    Type: AWS::CloudWatch::Alarm
    Properties:
      MetricName: ApproximateAgeOfOldestMessage
      Dimensions: [{Name: QueueName, Value: !GetAtt Jobs.QueueName}]
      Threshold: 600
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      LifecycleConfiguration:
        Rules: [{Prefix: media/, ExpirationInDays: !Ref RetentionDays}]
"""


def sources(directory, text=FIXTURE):
    path = Path(directory) / "template.yaml"
    path.write_text(text)
    return capacity.Sources(template=path)


class Arithmetic(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.sources = sources(self.dir.name)
        self.t = capacity.template_facts(self.sources)
        self.code = capacity.code_facts(self.sources)
        self.cat = capacity.catalogue(self.sources)
        self.limits = {lim.key: lim for lim in capacity.limits(self.t, self.code, self.cat)}

    def tearDown(self):
        self.dir.cleanup()

    def rate(self, key, model="local"):
        return self.limits[key].jobs_per_second[model]

    def test_the_template_as_read(self):
        t = self.t
        self.assertEqual(t["reserved"], {"submit": 40, "status": None, "content": 20, "generate": None, "sweeper": None})
        self.assertEqual((t["batch_size"], t["max_concurrency"], t["max_concurrency_parameter"]), (2, 3, "GenerateMaxConcurrency"))
        self.assertEqual((t["throttle_rate"], t["throttle_burst"]), (8, 16))
        self.assertEqual((t["throttled_retry_after"], t["gateway_error_retry_after"]), (2, 7))
        self.assertEqual((t["visibility_timeout_s"], t["retention_s"], t["max_receive_count"], t["age_alarm_s"]), (60, 86400, 3, 600))
        self.assertEqual((t["max_active_per_owner"], t["retention_days"]), (50, 7))
        self.assertEqual(t["memory_mb"]["generate"], 2048)
        self.assertEqual(t["runs_per_day"]["sweeper"], 720)

    def test_each_limit_by_hand(self):
        polls = capacity.bench.COST_ASSUMPTIONS["status_polls"]
        seconds = capacity.AWS_SECONDS
        flux = capacity.PAID_MODEL
        # The stage throttle per method: 8 submits a second; 8 polls a second over the polls of a job.
        self.assertAlmostEqual(self.rate("stage-submit"), 8)
        self.assertAlmostEqual(self.rate("stage-polls"), 8 / polls)
        # submit reserved 40; status unreserved: the account's 1,000 less the 100 AWS keeps.
        self.assertAlmostEqual(self.rate("lambda-submit"), 40 / seconds["submit"])
        self.assertAlmostEqual(self.rate("lambda-status"), 900 / seconds["status"] / (polls + 1))
        # generate unreserved: the event source's 3 invocations × batches of 2.
        self.assertAlmostEqual(self.rate("generate"), 3 * 2 / seconds["generate"])
        self.assertAlmostEqual(self.rate("generate", flux), 3 * 2 / (seconds["generate"] + capacity.MODEL_SECONDS[flux]))
        # Replicate's 600 a minute from models.toml; the local model has no provider limit.
        self.assertEqual(self.rate("provider"), math.inf)
        self.assertAlmostEqual(self.rate("provider", flux), self.cat["rates"]["replicate"] / 60)
        # Partitions: 1,000 WCU/s over 3 WCU a job on by_owner; 16 unsent partitions over 2 WCU.
        self.assertAlmostEqual(self.rate("by-owner"), 1000 / 3)
        self.assertAlmostEqual(self.rate("unsent"), 1000 * self.code["unsent_shards"] / 2)
        self.assertEqual(self.code["unsent_shards"], 16)
        # The quota record at 50 active jobs: 2,000 bytes, 2 WCU a write, 2 writes a job.
        self.assertAlmostEqual(self.rate("quota-item"), 1000 / 4)
        self.assertAlmostEqual(self.rate("active-jobs"), 50 / seconds["generate"])
        self.assertAlmostEqual(self.rate("key-rate"), self.code["creates_per_minute"] / 60)

    def test_a_flow_through_the_limits(self):
        # One owner at 300 a second: the stage lets 8 through, the key's 10 a second takes them all,
        # flux-schnell drains 6 ÷ 2.1 a second, and the backlog fills the owner's 50 slots.
        load = capacity.Load("x", "x", 300, 600, 1, "x")
        found = list(self.limits.values())
        local = capacity.flow(found, load, "local", self.t)
        self.assertAlmostEqual(local["admitted"], 8)
        self.assertEqual(local["backlog"], 0)
        flux = capacity.flow(found, load, capacity.PAID_MODEL, self.t)
        drain = 6 / 2.1
        self.assertAlmostEqual(flux["drain"], drain)
        self.assertAlmostEqual(flux["full_after"], 50 / (8 - drain))
        self.assertEqual(flux["backlog"], 50)
        self.assertAlmostEqual(flux["taken"], 50 + drain * 600)


class Rendering(unittest.TestCase):
    def test_a_changed_setting_changes_the_figure(self):
        with tempfile.TemporaryDirectory() as directory:
            before = capacity.render(sources(directory))
            after = capacity.render(sources(directory, FIXTURE.replace("GenerateMaxConcurrency: {Type: Number, Default: 3}",
                                                                        "GenerateMaxConcurrency: {Type: Number, Default: 7}")))
        self.assertIn("3 invocations × 2 jobs", before)
        self.assertIn("7 invocations × 2 jobs", after)
        self.assertIn("| `generate` drain (the jobs queue's event source) | the stack | 60 |", before)
        self.assertIn("| `generate` drain (the jobs queue's event source) | the stack | 140 |", after)

    def test_docs_capacity_md_is_current(self):
        self.assertEqual(capacity.DOC.read_text(), capacity.render(),
                         "docs/capacity.md is stale: run .venv/bin/python scripts/capacity.py render")


if __name__ == "__main__":
    unittest.main()
