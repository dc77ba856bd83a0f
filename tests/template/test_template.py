"""The wiring of the deployed service, read from the CloudFormation that SAM makes of
template.yaml (aws-sam-translator, the library behind `sam build` and CloudFormation's SAM
transform). No Docker and no AWS account needed.

Each check is a function answering the problems it finds; the tests assert that the template
has none, and that a deliberately broken copy of it has some."""

import json
import tomllib
import re
import unittest

import support
from support import ref_name, resources_of_type

ANY = "x-amazon-apigateway-any-method"

# The routes of docs/design.md ("HTTP contract"), and the ANY routes that let each function answer 405 itself.
ROUTES = {
    ("/media/generate", "POST"): "SubmitFunction",
    ("/media/generate", "ANY"): "SubmitFunction",
    ("/media/status/{job_id}", "GET"): "StatusFunction",
    ("/media/status/{job_id}", "ANY"): "StatusFunction",
    ("/media/jobs/{job_id}", "GET"): "StatusFunction",
    ("/media/jobs/{job_id}", "ANY"): "StatusFunction",
    ("/media/jobs", "GET"): "StatusFunction",
    ("/media/jobs", "ANY"): "StatusFunction",
    ("/media/jobs/{job_id}/cancel", "POST"): "SubmitFunction",
    ("/media/jobs/{job_id}/cancel", "ANY"): "SubmitFunction",
    ("/v1/predictions", "POST"): "SubmitFunction",
    ("/v1/predictions", "ANY"): "SubmitFunction",
    ("/v1/models/{owner}/{name}/predictions", "POST"): "SubmitFunction",
    ("/v1/models/{owner}/{name}/predictions", "ANY"): "SubmitFunction",
    ("/v1/predictions/{prediction_id}/cancel", "POST"): "SubmitFunction",
    ("/v1/predictions/{prediction_id}/cancel", "ANY"): "SubmitFunction",
    ("/v1/images/generations", "POST"): "SubmitFunction",
    ("/v1/images/generations", "ANY"): "SubmitFunction",
    ("/v1/predictions/{prediction_id}", "GET"): "StatusFunction",
    ("/v1/predictions/{prediction_id}", "ANY"): "StatusFunction",
    ("/v1/predictions/{prediction_id}/stream", "GET"): "StreamFunction",
    ("/v1/predictions/{prediction_id}/stream", "ANY"): "StreamFunction",
    ("/v1/files/{media_id}", "GET"): "ContentFunction",
    ("/v1/files/{media_id}", "ANY"): "ContentFunction",
    ("/media/content/{media_id}", "GET"): "ContentFunction",
    ("/media/content/{media_id}", "ANY"): "ContentFunction",
    ("/", "ANY"): "StatusFunction",
    ("/{proxy+}", "ANY"): "StatusFunction",
}

# The routes whose answers are streamed, as they come.
STREAMED_PATHS = {"/v1/predictions/{prediction_id}/stream"}

FUNCTIONS = {
    "SubmitFunction": "submit",
    "GenerateFunction": "generate",
    "DeliverFunction": "deliver",
    "SweeperFunction": "sweeper",
    "StatusFunction": "status",
    "ContentFunction": "content",
    "StreamFunction": "stream",
}

TABLE = {"Fn::GetAtt": ["JobsTable", "Arn"]}
QUEUE = {"Fn::GetAtt": ["JobsQueue", "Arn"]}
WEBHOOKS = {"Fn::GetAtt": ["WebhooksQueue", "Arn"]}
DEAD_LETTERS = {"Fn::GetAtt": ["JobsDeadLetterQueue", "Arn"]}
MEDIA_OBJECTS = {"Fn::Sub": "${MediaBucket.Arn}/media/*"}
FILE_LINK_KEY = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${FileUrlSecretParameter}"}
MODEL_TOKEN = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${ReplicateApiTokenParameter}"}
WEBHOOK_KEY = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${WebhookSecretParameter}"}
OPENAI_KEY = {"Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${OpenAiApiKeyParameter}"}


def bedrock_models():
    """The foundation-model ARN of each Bedrock model in the catalogue (models.toml): generate
    may invoke those and no other."""
    catalogue = tomllib.loads((support.ROOT / "models.toml").read_text())
    return [
        {"Fn::Sub": f"arn:${{AWS::Partition}}:bedrock:${{AWS::Region}}::foundation-model/{m.get('model', m['name'])}"}
        for m in catalogue["models"]
        if m["provider"] == "bedrock"
    ]

# Writes a function may make only to items whose key starts so (dynamodb:LeadingKeys): status and
# content count a key's requests (docs/design.md, "Rate limits"), status also rotates the caller's
# webhook secret (docs/design.md, "Webhooks"); submit frees the idempotency record of a job never
# queued.
LEADING_KEYS = {
    ("StatusFunction", "dynamodb:UpdateItem"): ["RATE#*", "WAITS#*", "WEBHOOK_SECRET#*"],
    ("ContentFunction", "dynamodb:UpdateItem"): ["RATE#*", "WAITS#*"],
    ("StreamFunction", "dynamodb:UpdateItem"): ["RATE#*", "WAITS#*"],
    ("SubmitFunction", "dynamodb:DeleteItem"): ["IDEMPOTENCY#*"],
}

# Every data action each function may take, and on what (one resource, or a list of them).
# Anything more is a failure.
PERMISSIONS = {
    "SubmitFunction": {
        "dynamodb:PutItem": TABLE,
        "dynamodb:UpdateItem": TABLE,
        "dynamodb:GetItem": TABLE,
        "dynamodb:BatchGetItem": TABLE,
        "sqs:SendMessage": [QUEUE, WEBHOOKS],
        # GET /v1/predictions shares its path with creating (docs/design.md, "Replicate-compatible API").
        "dynamodb:Query": {"Fn::Sub": "${JobsTable.Arn}/index/by_owner"},
        "dynamodb:DeleteItem": TABLE,
        "ssm:GetParameter": FILE_LINK_KEY,
        # POST /v1/images/generations answers the images as base64 (docs/design.md, "OpenAI-compatible API").
        "s3:GetObject": MEDIA_OBJECTS,
    },
    "GenerateFunction": {
        "dynamodb:PutItem": TABLE,
        "dynamodb:UpdateItem": TABLE,
        "sqs:ReceiveMessage": QUEUE,
        "sqs:DeleteMessage": QUEUE,
        "sqs:ChangeMessageVisibility": QUEUE,
        "sqs:GetQueueAttributes": QUEUE,
        # The jobs queue too: a job whose model runs on is looked at again by a delayed message.
        "sqs:SendMessage": [WEBHOOKS, QUEUE],
        "s3:PutObject": MEDIA_OBJECTS,
        "s3:DeleteObject": MEDIA_OBJECTS,
        "ssm:GetParameter": [MODEL_TOKEN, OPENAI_KEY],
        "bedrock:InvokeModel": bedrock_models(),
    },
    # Reads jobs and sends webhooks; never writes a job.
    "DeliverFunction": {
        "dynamodb:GetItem": TABLE,
        "dynamodb:BatchGetItem": TABLE,
        "sqs:ReceiveMessage": WEBHOOKS,
        "sqs:DeleteMessage": WEBHOOKS,
        "sqs:ChangeMessageVisibility": WEBHOOKS,
        "sqs:GetQueueAttributes": WEBHOOKS,
        "ssm:GetParameter": [FILE_LINK_KEY, WEBHOOK_KEY],
    },
    # Fails stranded jobs, removes what their attempts stored, queues their webhooks; sends again
    # the messages of the jobs never sent.
    "SweeperFunction": {
        "dynamodb:UpdateItem": TABLE,
        "dynamodb:Query": {"Fn::Sub": "${JobsTable.Arn}/index/unsent"},
        "sqs:ReceiveMessage": DEAD_LETTERS,
        "sqs:DeleteMessage": DEAD_LETTERS,
        "sqs:ChangeMessageVisibility": DEAD_LETTERS,
        "sqs:GetQueueAttributes": DEAD_LETTERS,
        "sqs:SendMessage": [QUEUE, WEBHOOKS],
        "s3:DeleteObject": MEDIA_OBJECTS,
        # To stop the model runs of the jobs it fails (docs/design.md, "Failure rules").
        "ssm:GetParameter": MODEL_TOKEN,
    },
    "StatusFunction": {
        "dynamodb:GetItem": TABLE,
        "dynamodb:BatchGetItem": TABLE,
        "dynamodb:Query": {"Fn::Sub": "${JobsTable.Arn}/index/by_owner"},
        "dynamodb:UpdateItem": TABLE,
        "ssm:GetParameter": [FILE_LINK_KEY, WEBHOOK_KEY],
    },
    "ContentFunction": {
        "dynamodb:GetItem": TABLE,
        "s3:GetObject": MEDIA_OBJECTS,
        "dynamodb:UpdateItem": TABLE,
        "ssm:GetParameter": FILE_LINK_KEY,
    },
    "StreamFunction": {
        "dynamodb:GetItem": TABLE,
        "dynamodb:UpdateItem": TABLE,
        "ssm:GetParameter": FILE_LINK_KEY,
    },
}
LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
# Each SQS-triggered function, its queue and that queue's dead-letter queue (the sweeper's queue
# is itself one: its messages stay until handled or their retention ends).
QUEUES = {
    "GenerateFunction": ("JobsQueue", "JobsDeadLetterQueue"),
    "DeliverFunction": ("WebhooksQueue", "WebhooksDeadLetterQueue"),
    "SweeperFunction": ("JobsDeadLetterQueue", None),
}
# Webhook deliveries are tried for hours: 30 s doubling to 15 minutes between receives
# (domain/webhook.rs, retry_delay), jitter taking off at most a fifth.
WEBHOOK_RETRY_SPAN_SECONDS = 3 * 3600
WRITE_ACTION = re.compile(r":(Put|Update|Delete|BatchWrite|Write|Create|Send|Change|Transact|PartiQLInsert|PartiQLUpdate|PartiQLDelete)")

# ---------------------------------------------------------------------------------- checks


def routes(cfn):
    """{(path, METHOD): function logical id} of the REST API's OpenAPI body."""
    found = {}
    for api in resources_of_type(cfn, "AWS::ApiGateway::RestApi").values():
        for path, methods in api["Properties"]["Body"]["paths"].items():
            for method, operation in methods.items():
                integration = operation.get("x-amazon-apigateway-integration", {})
                uri = integration.get("uri", {}).get("Fn::Sub", "")
                target = re.search(r"functions/\$\{(\w+)\.Arn\}/(?:response-streaming-)?invocations", uri)
                if integration.get("type") != "aws_proxy" or not target:
                    found[(path, method.upper())] = None
                else:
                    found[(path, "ANY" if method == ANY else method.upper())] = target.group(1)
    return found


def route_problems(cfn):
    problems = []
    if resources_of_type(cfn, "AWS::ApiGatewayV2::Api"):
        problems.append("an HTTP API (v2) is declared; LocalStack's free edition has none")
    apis = resources_of_type(cfn, "AWS::ApiGateway::RestApi")
    if list(apis) != ["MediaApi"]:
        problems.append(f"expected one REST API, MediaApi; found {sorted(apis)}")
    actual = routes(cfn)
    for route, function in sorted(ROUTES.items()):
        if actual.get(route) != function:
            problems.append(f"{route[1]} {route[0]} goes to {actual.get(route)}, not {function}")
    for route in sorted(set(actual) - set(ROUTES)):
        problems.append(f"unexpected route {route[1]} {route[0]} to {actual[route]}")
    # The stream routes, and only they, are streamed: API Gateway calls InvokeWithResponseStream
    # (its own path and API version) and passes each chunk on (docs/design.md, "Progress stream").
    for api in resources_of_type(cfn, "AWS::ApiGateway::RestApi").values():
        for path, methods in api["Properties"]["Body"]["paths"].items():
            for method, operation in methods.items():
                integration = operation.get("x-amazon-apigateway-integration", {})
                uri = integration.get("uri", {}).get("Fn::Sub", "")
                mode = integration.get("responseTransferMode", "BUFFERED")
                streamed = path in STREAMED_PATHS
                if streamed != (mode == "STREAM"):
                    problems.append(f"{method} {path} is {mode}")
                if streamed != ("/2021-11-15/functions/" in uri and uri.endswith("/response-streaming-invocations")):
                    problems.append(f"{method} {path} is integrated by {uri}")
    # API Gateway may call each routed function, and only through this API.
    permissions = resources_of_type(cfn, "AWS::Lambda::Permission").values()
    for (path, method), function in sorted(ROUTES.items()):
        suffix = "/{}{}".format("*" if method == "ANY" else method, re.sub(r"\{[^}]+\}", "*", path))
        if path == "/{proxy+}":
            suffix = "/*/*"
        granted = any(
            ref_name(p["Properties"]["FunctionName"]) == function
            and p["Properties"]["Principal"] == "apigateway.amazonaws.com"
            and p["Properties"]["SourceArn"]["Fn::Sub"][0].endswith(suffix)
            and ref_name(p["Properties"]["SourceArn"]["Fn::Sub"][1]["__ApiId__"]) == "MediaApi"
            for p in permissions
        )
        if not granted:
            problems.append(f"API Gateway may not invoke {function} for {method} {path}")
    return problems


def gateway_response_problems(cfn):
    body = cfn["Resources"]["MediaApi"]["Properties"]["Body"]
    response = body.get("x-amazon-apigateway-gateway-responses", {}).get("MISSING_AUTHENTICATION_TOKEN")
    if not response:
        return ["no gateway response for MISSING_AUTHENTICATION_TOKEN: unmatched requests get API Gateway's 403"]
    problems = []
    if response.get("statusCode") != "404":
        problems.append(f"an unmatched request answers {response.get('statusCode')}, not 404")
    if response.get("responseParameters", {}).get("gatewayresponse.header.Content-Type") != "'application/problem+json'":
        problems.append("an unmatched request's answer is not application/problem+json")
    problem = json.loads(response["responseTemplates"]["application/json"])
    if problem.get("type") != "urn:mediagen:problem:no-route" or problem.get("status") != 404:
        problems.append(f"an unmatched request's problem is {problem}, not the no-route problem")
    # API Gateway's own errors in our shape, with Retry-After where another try may succeed.
    responses = body.get("x-amazon-apigateway-gateway-responses", {})
    for kind, retry_after in [("THROTTLED", "'1'"), ("INTEGRATION_TIMEOUT", "'5'"), ("DEFAULT_5XX", "'5'"), ("DEFAULT_4XX", None)]:
        response = responses.get(kind, {})
        parameters = response.get("responseParameters", {})
        if parameters.get("gatewayresponse.header.Content-Type") != "'application/problem+json'":
            problems.append(f"API Gateway's {kind} answer is not application/problem+json")
        if parameters.get("gatewayresponse.header.Retry-After") != retry_after:
            problems.append(f"API Gateway's {kind} answer has Retry-After {parameters.get('gatewayresponse.header.Retry-After')}, not {retry_after}")
        template = response.get("responseTemplates", {}).get("application/json", "")
        if "urn:mediagen:problem:" not in template:
            problems.append(f"API Gateway's {kind} answer is not one of our problems: {template!r}")
    throttled = responses.get("THROTTLED", {})
    if throttled.get("statusCode") != "429" or '"status":429' not in throttled.get("responseTemplates", {}).get("application/json", ""):
        problems.append("a throttled request is not a 429 problem")
    return problems


def queue_problems(cfn):
    problems = []
    mappings = resources_of_type(cfn, "AWS::Lambda::EventSourceMapping").values()
    by_function = {ref_name(m["Properties"]["FunctionName"]): m["Properties"] for m in mappings}
    if sorted(by_function) != sorted(QUEUES) or len(by_function) != len(mappings):
        return [f"expected one event source mapping for each of {sorted(QUEUES)}, found {sorted(by_function)}"]
    for function, (queue_name, dead_letter_name) in QUEUES.items():
        mapping = by_function[function]
        if mapping["EventSourceArn"] != {"Fn::GetAtt": [queue_name, "Arn"]}:
            problems.append(f"{function}'s event source is {mapping['EventSourceArn']}, not {queue_name}")
        if mapping.get("FunctionResponseTypes") != ["ReportBatchItemFailures"]:
            problems.append(f"{function}'s batchItemFailures are ignored without ReportBatchItemFailures")
        if not 1 <= int(mapping.get("BatchSize", 0)) <= 10:
            problems.append(f"{function}'s batch size {mapping.get('BatchSize')}: it is written for batches of at most 10")
        if "MaximumBatchingWindowInSeconds" not in mapping:
            problems.append(f"{function}: no batching window set")
        if "MaximumConcurrency" not in mapping.get("ScalingConfig", {}):
            problems.append(f"{function}'s event source has no maximum concurrency")

        queue = cfn["Resources"][queue_name]["Properties"]
        props = cfn["Resources"][function]["Properties"]
        needed = 6 * int(props["Timeout"]) + int(mapping.get("MaximumBatchingWindowInSeconds", 0))
        if int(queue["VisibilityTimeout"]) < needed:
            problems.append(f"{queue_name} visibility timeout {queue['VisibilityTimeout']} s is under 6 × {function}'s timeout + batching window ({needed} s)")
        redrive = queue.get("RedrivePolicy", {})
        if int(queue.get("MessageRetentionPeriod", 345600)) < 1209600:
            problems.append(f"{queue_name} keeps messages {queue.get('MessageRetentionPeriod', 'the default 4 days')}, not the 14 days most")
        if dead_letter_name and redrive.get("deadLetterTargetArn") != {"Fn::GetAtt": [dead_letter_name, "Arn"]}:
            problems.append(f"{queue_name} does not redrive to {dead_letter_name}")

    jobs = by_function["GenerateFunction"]
    # A record that waits behind others for its turn may find too little time left and go back
    # unstarted, and SQS counts that receive all the same (docs/design.md, "Failure rules").
    if int(jobs.get("BatchSize", 0)) != support.record_concurrency():
        problems.append(
            f"generate's batch size {jobs.get('BatchSize')} is not RECORD_CONCURRENCY {support.record_concurrency()}: "
            "records that wait their turn spend receives"
        )
    if ref_name(jobs.get("ScalingConfig", {}).get("MaximumConcurrency")) != "GenerateMaxConcurrency":
        problems.append("the event source's maximum concurrency is not the GenerateMaxConcurrency parameter")
    redrive = cfn["Resources"]["JobsQueue"]["Properties"].get("RedrivePolicy", {})
    if ref_name(redrive.get("maxReceiveCount")) != "MaxReceiveCount":
        problems.append("the redrive maxReceiveCount is not the MaxReceiveCount parameter")
    generate = cfn["Resources"]["GenerateFunction"]["Properties"]
    if ref_name(generate["Environment"]["Variables"].get("MAX_RECEIVE_COUNT")) != "MaxReceiveCount":
        problems.append("generate's MAX_RECEIVE_COUNT is not the MaxReceiveCount parameter")

    receives = int(cfn["Resources"]["WebhooksQueue"]["Properties"].get("RedrivePolicy", {}).get("maxReceiveCount", 0))
    span = sum(0.8 * min(30 * 2 ** (n - 1), 900) for n in range(1, receives))
    if span < WEBHOOK_RETRY_SPAN_SECONDS:
        problems.append(f"webhooks are given up after {receives} receives, {span / 3600:.1f} h: retries should span hours")
    return problems


def statements(cfn, role):
    """Every statement a role may have: those under a condition as if it held."""
    for policy in cfn["Resources"][role]["Properties"].get("Policies", []):
        statement = policy["PolicyDocument"]["Statement"]
        for each in statement if isinstance(statement, list) else [statement]:
            yield each["Fn::If"][1] if "Fn::If" in each else each


def as_list(value):
    return value if isinstance(value, list) else [value]


def policy_problems(cfn):
    problems = []
    roles_seen = {}
    for function, allowed in PERMISSIONS.items():
        props = cfn["Resources"][function]["Properties"]
        role = ref_name(props["Role"])
        if role in roles_seen:
            problems.append(f"{function} shares its role {role} with {roles_seen[role]}")
        roles_seen[role] = function
        role_props = cfn["Resources"][role]["Properties"]
        if role_props.get("ManagedPolicyArns"):
            problems.append(f"{function}'s role has managed policies {role_props['ManagedPolicyArns']}: their resources are not ours")
        trust = role_props["AssumeRolePolicyDocument"]["Statement"]
        if [s["Principal"] for s in trust] != [{"Service": "lambda.amazonaws.com"}]:
            problems.append(f"{function}'s role may be assumed by {[s['Principal'] for s in trust]}")
        log_group = cfn["Resources"][function].get("DependsOn")
        granted = {}
        for statement in statements(cfn, role):
            if statement.get("Effect") != "Allow" or "NotAction" in statement or "NotResource" in statement:
                problems.append(f"{function}: statement {statement.get('Sid')} is not a plain Allow")
                continue
            resources = as_list(statement["Resource"])
            for action in as_list(statement["Action"]):
                leading = LEADING_KEYS.get((function, action))
                if leading is not None:
                    condition = statement.get("Condition", {}).get("ForAllValues:StringLike", {})
                    if condition.get("dynamodb:LeadingKeys") != leading:
                        problems.append(f"{function} may {action} on items other than {leading}")
                if "*" in action:
                    problems.append(f"{function} is granted the wildcard action {action}")
                if action in LOG_ACTIONS:
                    if resources != [{"Fn::GetAtt": [log_group, "Arn"]}]:
                        problems.append(f"{function} may write logs to {resources}, not only its own log group {log_group}")
                    continue
                for resource in resources:
                    if resource == "*":
                        problems.append(f"{function} may {action} on every resource ({resource})")
                    granted.setdefault(action, []).append(resource)
        for action, resources in sorted(granted.items()):
            if action not in allowed:
                problems.append(f"{function} may {action}, which it does not need")
            elif sorted(map(json.dumps, resources)) != sorted(map(json.dumps, as_list(allowed[action]))):
                problems.append(f"{function} may {action} on {resources}, not only on {allowed[action]}")
        for action in sorted(set(allowed) - set(granted)):
            problems.append(f"{function} may not {action}, which it needs")
        if function == "StatusFunction":
            problems += [
                f"status may write: {a}" for a in granted if WRITE_ACTION.search(a) and (function, a) not in LEADING_KEYS
            ]
        if function == "ContentFunction":
            problems += [f"content may {a}; it only reads" for a in granted if a.startswith("s3:") and a != "s3:GetObject"]
    return problems


def data_problems(cfn):
    problems = []
    table = cfn["Resources"]["JobsTable"]["Properties"]
    if table.get("KeySchema") != [{"AttributeName": "pk", "KeyType": "HASH"}]:
        problems.append(f"the table's key is {table.get('KeySchema')}, not pk")
    if table.get("AttributeDefinitions") != [
        {"AttributeName": name, "AttributeType": "S"} for name in ("pk", "gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")
    ]:
        problems.append("the table's pk and index keys are not strings")
    indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
    by_owner = indexes.get("by_owner", {})
    if by_owner.get("KeySchema") != [
        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
    ]:
        problems.append("the table has no by_owner index on gsi1pk and gsi1sk")
    projection = by_owner.get("Projection", {})
    if projection.get("ProjectionType") != "INCLUDE" or projection.get("NonKeyAttributes") != support.owner_index_attributes():
        problems.append(
            f"by_owner projects {projection}, not INCLUDE of OWNER_INDEX_ATTRIBUTES in adapters/dynamodb/item.rs"
        )
    unsent = indexes.get("unsent", {})
    if unsent.get("KeySchema") != [
        {"AttributeName": "gsi2pk", "KeyType": "HASH"},
        {"AttributeName": "gsi2sk", "KeyType": "RANGE"},
    ]:
        problems.append("the table has no unsent index on gsi2pk and gsi2sk for the sweeper")
    if table.get("BillingMode") != "PAY_PER_REQUEST":
        problems.append("the table is not on-demand")
    if table.get("TimeToLiveSpecification") != {"AttributeName": "ttl", "Enabled": True}:
        problems.append(f"the table's TTL is {table.get('TimeToLiveSpecification')}, not on ttl")
    if not table.get("PointInTimeRecoverySpecification", {}).get("PointInTimeRecoveryEnabled"):
        problems.append("the table has no point-in-time recovery")

    bucket = cfn["Resources"]["MediaBucket"]["Properties"]
    block = bucket.get("PublicAccessBlockConfiguration", {})
    for setting in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"):
        if block.get(setting) is not True:
            problems.append(f"the bucket's {setting} is not on")
    if not bucket.get("BucketEncryption", {}).get("ServerSideEncryptionConfiguration"):
        problems.append("the bucket has no default encryption")
    rules = bucket.get("LifecycleConfiguration", {}).get("Rules", [])
    expiring = [
        r
        for r in rules
        if r.get("Status") == "Enabled"
        and (r.get("Prefix") or r.get("Filter", {}).get("Prefix")) == "media/"
        and ref_name(r.get("ExpirationInDays")) == "RetentionDays"
    ]
    if not expiring:
        problems.append("no enabled lifecycle rule expires media/ after RetentionDays")
    for name, props in resources_of_type(cfn, "AWS::Lambda::Function").items():
        if ref_name(props["Properties"]["Environment"]["Variables"].get("RETENTION_DAYS")) != "RetentionDays":
            problems.append(f"{name}'s RETENTION_DAYS is not the RetentionDays parameter")
    return problems


def function_problems(cfn):
    problems = []
    functions = resources_of_type(cfn, "AWS::Lambda::Function")
    if set(functions) != set(FUNCTIONS):
        problems.append(f"functions are {sorted(functions)}, expected {sorted(FUNCTIONS)}")
    read = support.settings_read_by_config()
    required = support.required_settings() | {
        "MODEL_PROVIDER",
        "PRESIGN_TTL_SECONDS",
        "RETENTION_DAYS",
        "MAX_RECEIVE_COUNT",
        # Optional to the code (no queue, no webhooks), but a deployed stack always has one.
        "WEBHOOKS_QUEUE_URL",
    }
    for name, binary in FUNCTIONS.items():
        resource = functions.get(name)
        if resource is None:
            continue
        props = resource["Properties"]
        if props.get("Runtime") != "provided.al2023" or props.get("Handler") != "bootstrap":
            problems.append(f"{name} runs on {props.get('Runtime')} with handler {props.get('Handler')}")
        if props.get("Architectures") != [{"Ref": "Architecture"}]:
            problems.append(f"{name}'s architecture is {props.get('Architectures')}, not the Architecture parameter")
        metadata = resource.get("Metadata", {})
        if metadata.get("BuildMethod") != "rust-cargolambda" or metadata.get("BuildProperties", {}).get("Binary") != binary:
            problems.append(f"{name} is not built by cargo lambda as the binary {binary}: {metadata}")
        cargo_toml = support.ROOT / "functions" / binary / "Cargo.toml"
        if not cargo_toml.is_file() or f'name = "{binary}"' not in cargo_toml.read_text():
            problems.append(f"{name}'s binary {binary} is not a package of the workspace")
        variables = props["Environment"]["Variables"]
        for missing in sorted(required - set(variables)):
            problems.append(f"{name} lacks {missing}, which functions/core/src/runtime/config.rs needs")
        for unknown in sorted(set(variables) - read - {"RUST_LOG"}):
            problems.append(f"{name} sets {unknown}, which functions/core/src/runtime/config.rs does not read (nor the providers' settings)")
        if "REPLICATE_API_TOKEN" in variables:
            problems.append(f"{name} has REPLICATE_API_TOKEN: the token belongs in SSM, not in an environment")
        has_token = "REPLICATE_API_TOKEN_PARAMETER" in variables
        # generate runs the model; sweeper stops the runs of the jobs it fails.
        if has_token != (name in ("GenerateFunction", "SweeperFunction")):
            problems.append(
                f"{name} {'has' if has_token else 'lacks'} REPLICATE_API_TOKEN_PARAMETER; only generate and sweeper call the model"
            )
        for secret in ("WEBHOOK_SECRET", "FILE_URL_SECRET"):
            if secret in variables:
                problems.append(f"{name} has {secret}: secrets belong in SSM, not in an environment")
        has_secret = "WEBHOOK_SECRET_PARAMETER" in variables
        # deliver signs webhooks; status shows each owner their own key (GET /v1/webhooks/default/secret).
        if has_secret != (name in ("DeliverFunction", "StatusFunction")):
            problems.append(
                f"{name} {'has' if has_secret else 'lacks'} WEBHOOK_SECRET_PARAMETER; only deliver and status need it"
            )
        elif has_secret and ref_name(variables["WEBHOOK_SECRET_PARAMETER"]) != "WebhookSecretParameter":
            problems.append(f"{name}'s WEBHOOK_SECRET_PARAMETER is not the WebhookSecretParameter parameter")
        log_group = resource.get("DependsOn")
        log_props = cfn["Resources"].get(log_group, {}).get("Properties", {})
        if cfn["Resources"].get(log_group, {}).get("Type") != "AWS::Logs::LogGroup":
            problems.append(f"{name} does not depend on a log group of its own")
        elif log_props.get("LogGroupName") != {"Fn::Sub": "/aws/lambda/" + props["FunctionName"]["Fn::Sub"]}:
            problems.append(f"{name}'s log group {log_props.get('LogGroupName')} is not the one Lambda writes to")
        elif ref_name(log_props.get("RetentionInDays")) != "LogRetentionDays":
            problems.append(f"{name}'s logs are not kept for LogRetentionDays")
    parameters = cfn["Parameters"]
    architecture = parameters.get("Architecture", {})
    if architecture.get("Default") != "arm64" or set(architecture.get("AllowedValues", [])) != {"arm64", "x86_64"}:
        problems.append(f"the Architecture parameter is {architecture}")
    if "ReplicateApiToken" in parameters:
        problems.append("the Replicate token is a parameter: it would be a plain environment variable")
    for secret in ("WebhookSecret", "FileUrlSecret"):
        if secret in parameters:
            problems.append(f"{secret} is a parameter: it would be a plain environment variable")
    if "Default" in parameters.get("WebhookSecretParameter", {}):
        problems.append("the webhook secret's parameter has a default: every stack must be given its own")
    return problems


def alarm_problems(cfn):
    problems = []
    for dead_letter_name in ("JobsDeadLetterQueue", "WebhooksDeadLetterQueue"):
        alarms = [
            a["Properties"]
            for a in resources_of_type(cfn, "AWS::CloudWatch::Alarm").values()
            if a["Properties"].get("Namespace") == "AWS/SQS"
            and a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and {"Name": "QueueName", "Value": {"Fn::GetAtt": [dead_letter_name, "QueueName"]}}
            in a["Properties"].get("Dimensions", [])
        ]
        if not alarms:
            problems.append(f"no alarm on the depth of {dead_letter_name}")
    for queue_name in ("JobsQueue", "WebhooksQueue"):
        ages = [
            a["Properties"]
            for a in resources_of_type(cfn, "AWS::CloudWatch::Alarm").values()
            if a["Properties"].get("MetricName") == "ApproximateAgeOfOldestMessage"
            and {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_name, "QueueName"]}}
            in a["Properties"].get("Dimensions", [])
        ]
        retention = int(cfn["Resources"][queue_name]["Properties"].get("MessageRetentionPeriod", 345600))
        if not ages:
            problems.append(f"no alarm on the age of {queue_name}'s oldest message")
        elif any(float(a["Threshold"]) > retention / 2 for a in ages):
            problems.append(f"{queue_name}'s age alarm fires too late to act before its messages expire")
    return problems


def schedule_problems(cfn):
    """The sweeper runs every minute (docs/design.md, "Failure rules"), and EventBridge may call it."""
    problems = []
    targets = [
        (rule["Properties"].get("ScheduleExpression"), ref_name(target["Arn"]))
        for rule in resources_of_type(cfn, "AWS::Events::Rule").values()
        for target in rule["Properties"].get("Targets", [])
    ]
    if ("rate(1 minute)", "SweeperFunction") not in targets:
        problems.append(f"no schedule runs the sweeper every minute: {targets}")
    allowed = any(
        ref_name(p["Properties"]["FunctionName"]) == "SweeperFunction"
        and p["Properties"]["Principal"] == "events.amazonaws.com"
        for p in resources_of_type(cfn, "AWS::Lambda::Permission").values()
    )
    if not allowed:
        problems.append("EventBridge may not invoke the sweeper")
    return problems


def account_id_problems(cfn):
    text = json.dumps(cfn)
    return [f"a hard-coded account id: {m}" for m in sorted(set(re.findall(r"(?<![0-9])[0-9]{12}(?![0-9])", text)))]


def output_problems(cfn):
    expected = {"ApiUrl", "ApiId", "TableName", "QueueName", "QueueUrl", "DeadLetterQueueName", "BucketName"}
    expected |= {"WebhooksQueueName", "WebhooksDeadLetterQueueName"}
    missing = expected - set(cfn.get("Outputs", {}))
    return [f"no output {name}" for name in sorted(missing)]


# Reservations (docs/deploy.md, "Concurrency"): each function's own parameter, -1 for none. An
# SQS-triggered function needs at least its event source's MaximumConcurrency, or the poller is
# throttled and its messages spend receives; the sweeper one more, for its schedule. AWS keeps
# 100 of a 1,000-concurrency account unreserved.
ACCOUNT_CONCURRENCY = 1000
UNRESERVED_FLOOR = 100


def concurrency_problems(cfn):
    problems = []
    parameters = cfn["Parameters"]
    conditions = cfn.get("Conditions", {})
    defaults = {}
    for name in FUNCTIONS:
        parameter = name.removesuffix("Function") + "ReservedConcurrency"
        props = cfn["Resources"].get(name, {}).get("Properties", {})
        reserved = props.get("ReservedConcurrentExecutions")
        condition = reserved.get("Fn::If", [None])[0] if isinstance(reserved, dict) else None
        if reserved != {"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}:
            problems.append(f"{name}'s reserved concurrency is {reserved}, not the {parameter} parameter under a condition")
            continue
        if conditions.get(condition) != {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "-1"]}]}:
            problems.append(f"{name}'s reservation condition {condition} is not '{parameter} is not -1'")
        spec = parameters.get(parameter, {})
        pattern = re.compile(spec.get("AllowedPattern", ".*"))
        if not pattern.fullmatch("-1") or pattern.fullmatch("0") or not pattern.fullmatch("100"):
            problems.append(f"{parameter} must take -1 and 100, and refuse 0 (which disables the function)")
        default = str(spec.get("Default", ""))
        if not default.isdigit() or int(default) < 1:
            problems.append(f"{parameter}'s default {default!r} reserves nothing")
            continue
        defaults[name] = int(default)
    least = {
        "GenerateFunction": int(parameters.get("GenerateMaxConcurrency", {}).get("Default", 0)),
    }
    for mapping in resources_of_type(cfn, "AWS::Lambda::EventSourceMapping").values():
        function = ref_name(mapping["Properties"]["FunctionName"])
        limit = mapping["Properties"].get("ScalingConfig", {}).get("MaximumConcurrency")
        if function != "GenerateFunction" and isinstance(limit, int):
            least[function] = limit + (1 if function == "SweeperFunction" else 0)
    for function, needed in least.items():
        if function in defaults and defaults[function] < needed:
            problems.append(f"{function} reserves {defaults[function]}, under the {needed} its event source may run at once")
    if sum(defaults.values()) > ACCOUNT_CONCURRENCY - UNRESERVED_FLOOR:
        problems.append(f"the reservations' defaults add up to {sum(defaults.values())}: over what a 1,000 account can reserve")
    return problems


CHECKS = [
    route_problems,
    gateway_response_problems,
    queue_problems,
    policy_problems,
    data_problems,
    function_problems,
    alarm_problems,
    schedule_problems,
    account_id_problems,
    output_problems,
    concurrency_problems,
]

# ---------------------------------------------------------------------------------- tests


class ExpandedTemplate(unittest.TestCase):
    def test_the_template_has_no_problems(self):
        cfn = support.expanded()
        for check in CHECKS:
            with self.subTest(check=check.__name__):
                self.assertEqual(check(cfn), [])


def broken(change):
    cfn = support.expanded()
    change(cfn)
    return cfn


def resource(cfn, name):
    return cfn["Resources"][name]["Properties"]


def statement(cfn, role, sid):
    return next(s for s in statements(cfn, role) if s.get("Sid") == sid)


class BrokenWiringIsCaught(unittest.TestCase):
    """Each check finds the fault it is there for, in a copy of the template broken on purpose."""

    def assertCaught(self, check, change, words):
        problems = check(broken(change))
        self.assertTrue(any(words in p for p in problems), f"{check.__name__} missed it: {problems}")

    def test_a_catalogue_model_generate_may_not_invoke(self):
        def change(cfn):
            statement(cfn, "GenerateRole", "InvokeCatalogueModels")["Resource"].pop()

        self.assertCaught(policy_problems, change, "bedrock:InvokeModel")

    def test_a_route_to_the_wrong_function(self):
        def change(cfn):
            paths = resource(cfn, "MediaApi")["Body"]["paths"]
            uri = paths["/media/generate"]["post"]["x-amazon-apigateway-integration"]["uri"]
            uri["Fn::Sub"] = uri["Fn::Sub"].replace("SubmitFunction", "StatusFunction")

        self.assertCaught(route_problems, change, "POST /media/generate goes to StatusFunction")

    def test_a_missing_route(self):
        self.assertCaught(
            route_problems,
            lambda cfn: resource(cfn, "MediaApi")["Body"]["paths"]["/media/jobs/{job_id}"].pop("get"),
            "GET /media/jobs/{job_id} goes to None",
        )

    def test_no_404_for_unknown_paths(self):
        self.assertCaught(
            gateway_response_problems,
            lambda cfn: resource(cfn, "MediaApi")["Body"].pop("x-amazon-apigateway-gateway-responses"),
            "403",
        )

    def test_a_throttle_in_api_gateways_own_shape(self):
        self.assertCaught(
            gateway_response_problems,
            lambda cfn: resource(cfn, "MediaApi")["Body"]["x-amazon-apigateway-gateway-responses"].pop("THROTTLED"),
            "THROTTLED answer is not application/problem+json",
        )

    def test_batch_failures_not_reported(self):
        def change(cfn):
            mapping = next(iter(resources_of_type(cfn, "AWS::Lambda::EventSourceMapping").values()))
            del mapping["Properties"]["FunctionResponseTypes"]

        self.assertCaught(queue_problems, change, "ReportBatchItemFailures")

    def test_generate_given_more_records_than_it_runs_at_once(self):
        def change(cfn):
            for mapping in resources_of_type(cfn, "AWS::Lambda::EventSourceMapping").values():
                if mapping["Properties"]["EventSourceArn"] == QUEUE:
                    mapping["Properties"]["BatchSize"] = support.record_concurrency() + 1

        self.assertCaught(queue_problems, change, "RECORD_CONCURRENCY")

    def test_webhooks_that_trigger_generate(self):
        def change(cfn):
            for mapping in resources_of_type(cfn, "AWS::Lambda::EventSourceMapping").values():
                if mapping["Properties"]["EventSourceArn"] == WEBHOOKS:
                    mapping["Properties"]["FunctionName"] = {"Ref": "GenerateFunction"}

        self.assertCaught(queue_problems, change, "expected one event source mapping")

    def test_webhooks_given_up_within_the_hour(self):
        self.assertCaught(
            queue_problems,
            lambda cfn: resource(cfn, "WebhooksQueue")["RedrivePolicy"].update(maxReceiveCount=5),
            "should span hours",
        )

    def test_no_webhooks_dead_letter_queue(self):
        self.assertCaught(queue_problems, lambda cfn: resource(cfn, "WebhooksQueue").pop("RedrivePolicy"), "WebhooksDeadLetterQueue")

    def test_a_short_visibility_timeout(self):
        self.assertCaught(
            queue_problems, lambda cfn: resource(cfn, "JobsQueue").update(VisibilityTimeout=60), "visibility timeout"
        )

    def test_messages_kept_the_default_four_days(self):
        self.assertCaught(
            queue_problems, lambda cfn: resource(cfn, "JobsQueue").pop("MessageRetentionPeriod"), "4 days"
        )

    def test_no_alarm_on_the_oldest_job(self):
        def change(cfn):
            del cfn["Resources"]["JobsQueueAgeAlarm"]

        self.assertCaught(alarm_problems, change, "age of JobsQueue")

    def test_no_sweep_schedule(self):
        def change(cfn):
            for name in list(resources_of_type(cfn, "AWS::Events::Rule")):
                del cfn["Resources"][name]

        self.assertCaught(schedule_problems, change, "every minute")

    def test_no_dead_letter_queue(self):
        self.assertCaught(queue_problems, lambda cfn: resource(cfn, "JobsQueue").pop("RedrivePolicy"), "redrive")

    def test_status_may_write(self):
        self.assertCaught(
            policy_problems,
            lambda cfn: statement(cfn, "StatusRole", "ReadJobs")["Action"].append("dynamodb:PutItem"),
            "status may write",
        )

    def test_content_may_delete_images(self):
        self.assertCaught(
            policy_problems,
            lambda cfn: statement(cfn, "ContentRole", "ReadImages").update(Action=["s3:GetObject", "s3:DeleteObject"]),
            "content may s3:DeleteObject",
        )

    def test_a_data_action_on_every_resource(self):
        self.assertCaught(
            policy_problems,
            lambda cfn: statement(cfn, "SubmitRole", "QueueJobs").update(Resource="*"),
            "on every resource",
        )

    def test_a_data_action_on_another_resource(self):
        self.assertCaught(
            policy_problems,
            lambda cfn: statement(cfn, "GenerateRole", "StoreImages").update(Resource={"Fn::Sub": "${MediaBucket.Arn}/*"}),
            "may s3:PutObject on",
        )

    def test_deliver_may_write_jobs(self):
        self.assertCaught(
            policy_problems,
            lambda cfn: statement(cfn, "DeliverRole", "ReadJobs")["Action"].append("dynamodb:UpdateItem"),
            "DeliverFunction may dynamodb:UpdateItem",
        )

    def test_generate_may_not_queue_webhooks(self):
        self.assertCaught(
            policy_problems,
            lambda cfn: statement(cfn, "GenerateRole", "QueueWebhooks").update(Resource=QUEUE),
            "GenerateFunction may sqs:SendMessage on",
        )

    def test_a_managed_policy(self):
        self.assertCaught(
            policy_problems,
            lambda cfn: resource(cfn, "GenerateRole").update(
                ManagedPolicyArns=["arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"]
            ),
            "managed policies",
        )

    def test_an_owner_index_projecting_every_attribute(self):
        def change(cfn):
            index = next(i for i in resource(cfn, "JobsTable")["GlobalSecondaryIndexes"] if i["IndexName"] == "by_owner")
            index["Projection"] = {"ProjectionType": "ALL"}

        self.assertCaught(data_problems, change, "by_owner projects")

    def test_an_owner_index_without_the_final_status(self):
        def change(cfn):
            index = next(i for i in resource(cfn, "JobsTable")["GlobalSecondaryIndexes"] if i["IndexName"] == "by_owner")
            index["Projection"]["NonKeyAttributes"].remove("final_status")

        self.assertCaught(data_problems, change, "by_owner projects")

    def test_no_ttl(self):
        self.assertCaught(data_problems, lambda cfn: resource(cfn, "JobsTable").pop("TimeToLiveSpecification"), "TTL")

    def test_a_public_bucket(self):
        self.assertCaught(
            data_problems,
            lambda cfn: resource(cfn, "MediaBucket")["PublicAccessBlockConfiguration"].update(RestrictPublicBuckets=False),
            "RestrictPublicBuckets",
        )

    def test_no_lifecycle_rule(self):
        self.assertCaught(data_problems, lambda cfn: resource(cfn, "MediaBucket").pop("LifecycleConfiguration"), "lifecycle")

    def test_a_missing_setting(self):
        self.assertCaught(
            function_problems,
            lambda cfn: resource(cfn, "ContentFunction")["Environment"]["Variables"].pop("JOBS_QUEUE_URL"),
            "ContentFunction lacks JOBS_QUEUE_URL",
        )

    def test_a_misspelt_setting(self):
        self.assertCaught(
            function_problems,
            lambda cfn: resource(cfn, "StatusFunction")["Environment"]["Variables"].update(JOB_TABLE="x"),
            "does not read",
        )

    def test_the_token_given_to_every_function(self):
        self.assertCaught(
            function_problems,
            lambda cfn: resource(cfn, "SubmitFunction")["Environment"]["Variables"].update(REPLICATE_API_TOKEN="x"),
            "SubmitFunction has REPLICATE_API_TOKEN",
        )

    def test_the_webhook_secret_given_to_every_function(self):
        self.assertCaught(
            function_problems,
            lambda cfn: resource(cfn, "ContentFunction")["Environment"]["Variables"].update(WEBHOOK_SECRET_PARAMETER="x"),
            "ContentFunction has WEBHOOK_SECRET_PARAMETER",
        )

    def test_a_secret_in_an_environment(self):
        self.assertCaught(
            function_problems,
            lambda cfn: resource(cfn, "StatusFunction")["Environment"]["Variables"].update(WEBHOOK_SECRET="whsec_x"),
            "secrets belong in SSM",
        )

    def test_a_default_webhook_secret(self):
        self.assertCaught(
            function_problems,
            lambda cfn: cfn["Parameters"]["WebhookSecretParameter"].update(Default="/x"),
            "has a default",
        )

    def test_request_counting_that_may_write_any_item(self):
        def change(cfn):
            del statement(cfn, "StatusRole", "CountRequestsAndRotateWebhookSecrets")["Condition"]

        self.assertCaught(policy_problems, change, "StatusFunction may dynamodb:UpdateItem on items other than")

    def test_no_webhooks_dead_letter_alarm(self):
        def change(cfn):
            del cfn["Resources"]["WebhooksDeadLetterQueueAlarm"]

        self.assertCaught(alarm_problems, change, "WebhooksDeadLetterQueue")

    def test_no_dead_letter_alarm(self):
        def change(cfn):
            for name in resources_of_type(cfn, "AWS::CloudWatch::Alarm"):
                del cfn["Resources"][name]

        self.assertCaught(alarm_problems, change, "alarm")

    def test_a_function_left_unreserved(self):
        self.assertCaught(
            concurrency_problems,
            lambda cfn: resource(cfn, "StatusFunction").pop("ReservedConcurrentExecutions"),
            "StatusFunction's reserved concurrency is None",
        )

    def test_a_reservation_that_may_be_zero(self):
        self.assertCaught(
            concurrency_problems,
            lambda cfn: cfn["Parameters"]["SubmitReservedConcurrency"].update(AllowedPattern="^-?[0-9]+$"),
            "refuse 0",
        )

    def test_generate_reserving_less_than_its_event_source_runs(self):
        self.assertCaught(
            concurrency_problems,
            lambda cfn: cfn["Parameters"]["GenerateReservedConcurrency"].update(Default="2"),
            "GenerateFunction reserves 2",
        )

    def test_a_sweeper_with_no_room_for_its_schedule(self):
        self.assertCaught(
            concurrency_problems,
            lambda cfn: cfn["Parameters"]["SweeperReservedConcurrency"].update(Default="2"),
            "SweeperFunction reserves 2",
        )

    def test_reservations_a_normal_account_cannot_hold(self):
        self.assertCaught(
            concurrency_problems,
            lambda cfn: cfn["Parameters"]["StatusReservedConcurrency"].update(Default="900"),
            "add up to",
        )

    def test_a_hard_coded_account(self):
        self.assertCaught(
            account_id_problems,
            lambda cfn: statement(cfn, "SubmitRole", "QueueJobs").update(
                Resource="arn:aws:sqs:us-east-1:123456789012:mediagen-jobs"
            ),
            "123456789012",
        )


if __name__ == "__main__":
    unittest.main()
