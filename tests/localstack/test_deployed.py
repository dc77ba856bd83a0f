"""Checks against the stack as deployed on LocalStack, the ones the expanded template alone
cannot make: what the gateway does with wrong methods and unknown paths, the queue's redrive
to the dead-letter queue and its event source, the roles, and the functions' logs.

scripts/test-localstack.sh runs these after `scripts/deploy.sh localstack`, with
    MEDIAGEN_API_URL   the stage's base URL (http://127.0.0.1:4599/_aws/execute-api/<id>/prod)
    MEDIAGEN_STACK     the stack's name (default mediagen)
    AWS_ENDPOINT_URL   LocalStack, with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY=test, AWS_REGION
and, optionally, MEDIAGEN_API_KEY (sent as a bearer token) and MEDIAGEN_EXPECT_ENFORCE_IAM=1.
Needs boto3 (.venv/ has it). Skipped when MEDIAGEN_API_URL is not set.
"""

import fnmatch
import json
import os
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

API = os.environ.get("MEDIAGEN_API_URL", "").rstrip("/")
STACK = os.environ.get("MEDIAGEN_STACK", "mediagen")

if not API:
    raise unittest.SkipTest("MEDIAGEN_API_URL is not set: run scripts/test-localstack.sh")

import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def call(method, path, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{API}{path}", data=data, method=method, headers=headers or {})
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if os.environ.get("MEDIAGEN_API_KEY"):
        request.add_header("Authorization", f"Bearer {os.environ['MEDIAGEN_API_KEY']}")
    try:
        with OPENER.open(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


def stack_resources():
    cloudformation = boto3.client("cloudformation")
    resources = cloudformation.describe_stack_resources(StackName=STACK)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources}


class GatewayRouting(unittest.TestCase):
    """The ANY routes and the gateway response of template.yaml, through LocalStack's REST API."""

    def test_a_wrong_method_is_405_with_allow(self):
        cases = [
            ("GET", "/media/generate", "POST"),
            ("DELETE", "/media/generate", "POST"),
            ("POST", "/media/status/01a2153f-cfaf-7415-9eac-265bbd966d0f", "GET"),
            ("PUT", "/media/jobs/01a2153f-cfaf-7415-9eac-265bbd966d0f", "GET"),
            ("POST", "/media/content/01a2153f-cfaf-7415-9eac-265bbd966d0f", "GET"),
        ]
        for method, path, allow in cases:
            with self.subTest(method=method, path=path):
                status, headers, body = call(method, path, body={} if method in ("POST", "PUT") else None)
                self.assertEqual(status, 405, body[:300])
                self.assertEqual(headers.get("Allow"), allow)
                self.assertEqual(json.loads(body)["type"], "urn:mediagen:problem:method-not-allowed")

    def test_an_unknown_path_is_the_no_route_problem(self):
        for method, path in [("GET", "/no/such/path"), ("GET", "/"), ("GET", "/media"), ("POST", "/media/status")]:
            with self.subTest(method=method, path=path):
                status, headers, body = call(method, path)
                self.assertEqual(status, 404, body[:300])
                self.assertTrue(headers.get("Content-Type", "").startswith("application/problem+json"))
                problem = json.loads(body)
                self.assertEqual(problem["type"], "urn:mediagen:problem:no-route")
                self.assertEqual(problem["status"], 404)

    def test_a_malformed_id_is_400(self):
        status, _, body = call("GET", "/media/status/not-an-id")
        self.assertEqual(status, 400, body[:300])

    def test_a_throttled_request_is_set_to_answer_a_429_problem_with_retry_after(self):
        """LocalStack does not throttle a stage: what the deployed API answers one is read back
        from the API as deployed."""
        api_id = stack_resources()["MediaApi"]
        response = boto3.client("apigateway").get_gateway_response(restApiId=api_id, responseType="THROTTLED")
        if response.get("defaultResponse"):
            self.skipTest(
                "LocalStack keeps its default gateway responses: it does not take them from an API's OpenAPI body "
                "(x-amazon-apigateway-gateway-responses, where SAM puts GatewayResponses); the expanded template "
                "(tests/template) and the local gateway (functions/devtools/tests/it/hosted.rs) are checked instead"
            )
        self.assertEqual(response["statusCode"], "429")
        self.assertEqual(response["responseParameters"]["gatewayresponse.header.Retry-After"], "'1'")
        self.assertEqual(
            response["responseParameters"]["gatewayresponse.header.Content-Type"], "'application/problem+json'"
        )
        problem = json.loads(response["responseTemplates"]["application/json"])
        self.assertEqual((problem["type"], problem["status"]), ("urn:mediagen:problem:throttled", 429))

    def test_the_stream_route_is_streamed(self):
        """The stream route's integration as deployed: InvokeWithResponseStream's URI, read from the
        API, and the STREAM transfer mode. LocalStack 2026.3 keeps the URI but drops the mode when
        it imports the API's OpenAPI body, so the mode is read where the API was defined then: the
        stack's processed template. (Nor can it call such an integration: it takes the function's
        ARN from the URI by cutting `/invocations` off, which leaves `.../response-streaming-`; the
        local gateway's streaming is tested instead, functions/devtools/tests/it/stream.rs.)"""
        path = "/v1/predictions/{prediction_id}/stream"
        api_id = stack_resources()["MediaApi"]
        apigateway = boto3.client("apigateway")
        resources = apigateway.get_resources(restApiId=api_id, limit=500)["items"]
        resource = next(r for r in resources if r["path"] == path)
        for method in ("GET", "ANY"):
            with self.subTest(method=method):
                integration = apigateway.get_integration(restApiId=api_id, resourceId=resource["id"], httpMethod=method)
                self.assertIn("/2021-11-15/functions/", integration["uri"])
                self.assertTrue(integration["uri"].endswith("/response-streaming-invocations"), integration["uri"])
                if "responseTransferMode" in integration:
                    self.assertEqual(integration["responseTransferMode"], "STREAM")
        body = boto3.client("cloudformation").get_template(StackName=STACK, TemplateStage="Processed")["TemplateBody"]
        if isinstance(body, str):
            body = json.loads(body)
        definition = body["Resources"]["MediaApi"]["Properties"]["Body"]["paths"]
        for path_, methods in definition.items():
            for method, operation in methods.items():
                mode = operation.get("x-amazon-apigateway-integration", {}).get("responseTransferMode", "BUFFERED")
                with self.subTest(path=path_, method=method):
                    self.assertEqual(mode, "STREAM" if path_ == path else "BUFFERED")

    def test_usage_answers_the_callers_quota_through_the_catch_all_route(self):
        status, _, body = call("GET", "/media/usage")
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(json.loads(body)["active_jobs"]["limit"], 100)


class Queue(unittest.TestCase):
    def test_the_jobs_queue_redrives_to_the_dead_letter_queue(self):
        sqs = boto3.client("sqs")
        resources = stack_resources()
        queue = sqs.get_queue_attributes(QueueUrl=resources["JobsQueue"], AttributeNames=["All"])["Attributes"]
        dlq = sqs.get_queue_attributes(QueueUrl=resources["JobsDeadLetterQueue"], AttributeNames=["All"])["Attributes"]
        redrive = json.loads(queue["RedrivePolicy"])
        self.assertEqual(redrive["deadLetterTargetArn"], dlq["QueueArn"])
        self.assertEqual(int(redrive["maxReceiveCount"]), int(os.environ.get("MAX_RECEIVE_COUNT", "5")))
        self.assertEqual(queue["VisibilityTimeout"], "180")
        self.assertEqual(dlq["MessageRetentionPeriod"], "1209600")

    def test_the_queue_drives_generate(self):
        resources = stack_resources()
        mappings = boto3.client("lambda").list_event_source_mappings(FunctionName=resources["GenerateFunction"])
        (mapping,) = mappings["EventSourceMappings"]
        queue_arn = boto3.client("sqs").get_queue_attributes(
            QueueUrl=resources["JobsQueue"], AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        self.assertEqual(mapping["EventSourceArn"], queue_arn)
        self.assertEqual(mapping["State"], "Enabled")
        self.assertEqual(mapping["BatchSize"], 4)
        self.assertEqual(mapping["FunctionResponseTypes"], ["ReportBatchItemFailures"])
        self.assertEqual(mapping["ScalingConfig"]["MaximumConcurrency"], 5)


def _patterns(value):
    return [value] if isinstance(value, str) else list(value)


def _matches(patterns, value):
    return any(fnmatch.fnmatchcase(value.lower(), pattern.lower()) for pattern in patterns)


def evaluate(statements, action, resource, leading_keys=None):
    """IAM's decision for one action on one resource under identity-policy STATEMENTS:
    "explicitDeny" if a Deny matches, else "allowed" if an Allow matches, else "implicitDeny".
    Wildcards (* and ?) in actions and resources as IAM reads them. The one condition the roles of
    template.yaml use, ForAllValues:StringLike on dynamodb:LeadingKeys, matches when LEADING_KEYS
    (the items' partition keys) are given and each matches a pattern; NotAction, NotResource and
    other conditions are refused here."""
    decision = "implicitDeny"
    for statement in statements:
        unsupported = {"NotAction", "NotResource"} & set(statement)
        if unsupported:
            raise AssertionError(f"the evaluator does not read {sorted(unsupported)}: {statement}")
        condition = statement.get("Condition")
        if condition is not None:
            if list(condition) != ["ForAllValues:StringLike"] or list(condition["ForAllValues:StringLike"]) != [
                "dynamodb:LeadingKeys"
            ]:
                raise AssertionError(f"the evaluator does not read the condition {condition}")
            patterns = _patterns(condition["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
            if not leading_keys or not all(_matches(patterns, key) for key in leading_keys):
                continue
        if _matches(_patterns(statement["Action"]), action) and _matches(_patterns(statement["Resource"]), resource):
            if statement["Effect"] == "Deny":
                return "explicitDeny"
            decision = "allowed"
    return decision


class Roles(unittest.TestCase):
    """What each deployed role may do: its policies as IAM holds them after the deploy,
    evaluated here (LocalStack's own SimulatePrincipalPolicy only matches actions and resources
    literally, without wildcards). Whether a call with the role's credentials is refused depends
    on LocalStack enforcing IAM (ENFORCE_IAM), which its free edition does not."""

    @classmethod
    def setUpClass(cls):
        cls.iam = boto3.client("iam")
        cls.resources = stack_resources()
        cls.table_arn = boto3.client("dynamodb").describe_table(TableName=cls.resources["JobsTable"])["Table"]["TableArn"]
        cls.bucket_arn = f"arn:aws:s3:::{cls.resources['MediaBucket']}"
        sqs = boto3.client("sqs")
        cls.queue_arn = sqs.get_queue_attributes(QueueUrl=cls.resources["JobsQueue"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def role_arn(self, logical_id):
        return self.iam.get_role(RoleName=self.resources[logical_id])["Role"]["Arn"]

    def statements(self, logical_id):
        role = self.resources[logical_id]
        attached = self.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        self.assertEqual(attached, [], f"{logical_id} has managed policies attached")
        statements = []
        for name in self.iam.list_role_policies(RoleName=role)["PolicyNames"]:
            document = self.iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
            if isinstance(document, str):
                document = json.loads(urllib.parse.unquote(document))
            found = document["Statement"]
            statements.extend(found if isinstance(found, list) else [found])
        self.assertTrue(statements, f"{logical_id} has no policy")
        return statements

    def allowed(self, logical_id, action, resource, leading_keys=None):
        return evaluate(self.statements(logical_id), action, resource, leading_keys) == "allowed"

    def test_the_evaluator(self):
        statements = [{"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/media/*"},
                      {"Effect": "Deny", "Action": ["s3:DeleteObject"], "Resource": "*"}]
        self.assertEqual(evaluate(statements, "s3:PutObject", "arn:aws:s3:::b/media/j/0.png"), "allowed")
        self.assertEqual(evaluate(statements, "s3:PutObject", "arn:aws:s3:::b/other"), "implicitDeny")
        self.assertEqual(evaluate(statements, "s3:DeleteObject", "arn:aws:s3:::b/media/x"), "explicitDeny")
        self.assertEqual(evaluate(statements, "dynamodb:PutItem", "arn:aws:s3:::b/media/x"), "implicitDeny")

    def test_status_reads_jobs_and_cannot_write(self):
        for action in ("dynamodb:GetItem", "dynamodb:BatchGetItem"):
            self.assertTrue(self.allowed("StatusRole", action, self.table_arn), action)
        writes = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
                  "dynamodb:TransactWriteItems", "dynamodb:DeleteTable"]
        for action in writes:
            with self.subTest(action=action):
                self.assertFalse(self.allowed("StatusRole", action, self.table_arn))
                self.assertFalse(self.allowed("StatusRole", action, self.table_arn, ["JOB#x", "KEY#y"]))
        # Its writes: a key's request counters (docs/design.md, "Rate limits") and the caller's
        # webhook signing state (docs/design.md, "Webhooks").
        self.assertTrue(self.allowed("StatusRole", "dynamodb:UpdateItem", self.table_arn, ["RATE#k#other#60"]))
        self.assertTrue(self.allowed("StatusRole", "dynamodb:UpdateItem", self.table_arn, ["WAITS#k"]))
        self.assertTrue(self.allowed("StatusRole", "dynamodb:UpdateItem", self.table_arn, ["WEBHOOK_SECRET#alice"]))
        self.assertFalse(self.allowed("StatusRole", "dynamodb:UpdateItem", self.table_arn, ["RATE#k", "JOB#x"]))
        self.assertFalse(self.allowed("StatusRole", "dynamodb:UpdateItem", self.table_arn, ["OWNER#alice"]))
        self.assertFalse(self.allowed("StatusRole", "sqs:SendMessage", self.queue_arn))
        self.assertFalse(self.allowed("StatusRole", "s3:PutObject", f"{self.bucket_arn}/media/j/0.png"))

    def test_stream_reads_jobs_and_counts_requests_only(self):
        self.assertTrue(self.allowed("StreamRole", "dynamodb:GetItem", self.table_arn))
        self.assertTrue(self.allowed("StreamRole", "dynamodb:UpdateItem", self.table_arn, ["RATE#k#other#60"]))
        for action in ("dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:BatchGetItem"):
            with self.subTest(action=action):
                self.assertFalse(self.allowed("StreamRole", action, self.table_arn))
        self.assertFalse(self.allowed("StreamRole", "dynamodb:UpdateItem", self.table_arn, ["JOB#x"]))
        self.assertFalse(self.allowed("StreamRole", "sqs:SendMessage", self.queue_arn))
        self.assertFalse(self.allowed("StreamRole", "s3:GetObject", f"{self.bucket_arn}/media/j/0.png"))

    def test_owners_quotas_are_written_by_what_admits_and_ends_jobs_only(self):
        writers = ("SubmitRole", "GenerateRole", "SweeperRole")
        for role in writers + ("DeliverRole", "StatusRole", "ContentRole"):
            with self.subTest(role=role):
                self.assertEqual(
                    self.allowed(role, "dynamodb:UpdateItem", self.table_arn, ["QUOTA#alice"]), role in writers
                )

    def test_only_generate_stores_and_removes_images_and_only_content_and_submit_read_them(self):
        image = f"{self.bucket_arn}/media/some-job/0.png"
        for role in ("SubmitRole", "GenerateRole", "StatusRole", "ContentRole"):
            with self.subTest(role=role):
                self.assertEqual(self.allowed(role, "s3:PutObject", image), role == "GenerateRole")
                # submit reads them for the OpenAI-compatible API's base64 answers.
                self.assertEqual(self.allowed(role, "s3:GetObject", image), role in ("ContentRole", "SubmitRole"))
                # generate removes the images of an attempt whose job was canceled meanwhile.
                self.assertEqual(self.allowed(role, "s3:DeleteObject", image), role == "GenerateRole")
                self.assertFalse(self.allowed(role, "s3:GetObject", f"{self.bucket_arn}/elsewhere"))

    def test_only_submit_and_generate_queue_jobs_and_only_generate_consumes_them(self):
        # generate sends a job its next look, delayed (docs/design.md, "Slow models").
        for role in ("SubmitRole", "GenerateRole", "StatusRole", "ContentRole"):
            with self.subTest(role=role):
                self.assertEqual(
                    self.allowed(role, "sqs:SendMessage", self.queue_arn), role in ("SubmitRole", "GenerateRole")
                )
                self.assertEqual(self.allowed(role, "sqs:ReceiveMessage", self.queue_arn), role == "GenerateRole")
                self.assertEqual(self.allowed(role, "sqs:DeleteMessage", self.queue_arn), role == "GenerateRole")

    def test_a_write_with_the_status_roles_credentials(self):
        """With IAM enforced this write is refused; LocalStack's free edition accepts it even
        with ENFORCE_IAM=1, and the test says so (skip) rather than pass."""
        credentials = boto3.client("sts").assume_role(
            RoleArn=self.role_arn("StatusRole"), RoleSessionName="mediagen-status"
        )["Credentials"]
        as_status = boto3.client(
            "dynamodb",
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
        )
        key = {"pk": {"S": f"iam-probe#{uuid.uuid4()}"}}
        try:
            as_status.put_item(TableName=self.resources["JobsTable"], Item=key)
        except botocore.exceptions.ClientError as err:
            self.assertIn(err.response["Error"]["Code"], ("AccessDeniedException", "AccessDenied"))
            return
        boto3.client("dynamodb").delete_item(TableName=self.resources["JobsTable"], Key=key)
        if os.environ.get("MEDIAGEN_EXPECT_ENFORCE_IAM") == "1":
            self.fail("the status role wrote to the table although IAM enforcement was expected")
        self.skipTest("LocalStack does not enforce IAM here (ENFORCE_IAM=1 is a LocalStack Pro feature): "
                      "the status role's write went through; the policy checks above are the proof")


class Secrets(unittest.TestCase):
    """The webhook master key, the file links' key and the Replicate token live in SSM Parameter
    Store; a function's configuration names their parameters and holds none of their values."""

    def test_no_function_has_a_secret_in_its_environment(self):
        lambda_ = boto3.client("lambda")
        root = Path(__file__).resolve().parents[2] / ".local"
        kept = [p.read_text().strip() for p in root.glob(f"*-secret-localstack-{STACK}") if p.is_file()]
        self.assertTrue(kept, "scripts/deploy.sh keeps the stack's secrets in .local/")
        functions = [r for r in stack_resources() if r.endswith("Function")]
        self.assertEqual(len(functions), 7, functions)
        for logical_id in functions:
            name = stack_resources()[logical_id]
            variables = lambda_.get_function_configuration(FunctionName=name).get("Environment", {}).get("Variables", {})
            with self.subTest(function=logical_id):
                self.assertFalse({"WEBHOOK_SECRET", "FILE_URL_SECRET", "REPLICATE_API_TOKEN"} & set(variables))
                for value in variables.values():
                    self.assertFalse(any(secret in value for secret in kept), f"a secret in {logical_id}'s environment")
                    self.assertFalse(value.startswith("whsec_"))

    def test_the_secrets_are_secure_strings(self):
        ssm = boto3.client("ssm")
        for name in ("webhook-secret", "file-url-secret"):
            with self.subTest(parameter=name):
                parameter = ssm.get_parameter(Name=f"/{STACK}/{name}")["Parameter"]
                self.assertEqual(parameter["Type"], "SecureString")


class Logs(unittest.TestCase):
    def test_each_function_logs_to_its_log_group(self):
        """The host executor hands each invocation's output to LocalStack as its logs."""
        logs = boto3.client("logs")
        resources = stack_resources()
        deadline = time.monotonic() + 30
        for logical_id in ("SubmitFunction", "GenerateFunction", "StatusFunction", "ContentFunction"):
            group = f"/aws/lambda/{resources[logical_id]}"
            with self.subTest(group=group):
                while True:
                    events = logs.filter_log_events(logGroupName=group, filterPattern="START RequestId").get("events", [])
                    if events or time.monotonic() > deadline:
                        break
                    time.sleep(1)
                self.assertTrue(events, f"no invocation logged in {group}")


if __name__ == "__main__":
    unittest.main()
