"""The local stack (scripts/local.env, created by `mediagen-dev setup`) and template.yaml describe
the same resources: a name or setting changed in one must be changed in the other."""

import json
import tomllib
import unittest

import support

# The local gateway's copy of the functions' timeouts (functions/devtools/src/gateway.rs).
LAMBDA = support.ROOT / "functions" / "devtools" / "lambda.json"
# cargo-lambda's router, the copy of the API's route table (functions/core/src/entrypoints/http/routes.rs)
# that a test of functions/devtools/src/gateway.rs holds to it.
WATCH_ROUTER = tomllib.loads((support.ROOT / "Cargo.toml").read_text())["workspace"]["metadata"]["lambda"]["watch"][
    "router"
]

# Each setting of scripts/local.env and where template.yaml holds it: the default of a
# parameter the resource takes its value from, or a value written in a resource.
PARAMETERS = {
    "MEDIAGEN_TABLE": ("TableName", "JobsTable", "TableName"),
    "MEDIAGEN_QUEUE": ("QueueName", "JobsQueue", "QueueName"),
    "MEDIAGEN_DEAD_LETTER_QUEUE": ("DeadLetterQueueName", "JobsDeadLetterQueue", "QueueName"),
    "MEDIAGEN_BUCKET": ("BucketName", "MediaBucket", "BucketName"),
    "MEDIAGEN_WEBHOOKS_QUEUE": ("WebhooksQueueName", "WebhooksQueue", "QueueName"),
    "MEDIAGEN_WEBHOOKS_DEAD_LETTER_QUEUE": ("WebhooksDeadLetterQueueName", "WebhooksDeadLetterQueue", "QueueName"),
}
# A property path, dotted for nested properties.
RESOURCE_VALUES = {
    "QUEUE_VISIBILITY_TIMEOUT": ("JobsQueue", "VisibilityTimeout"),
    "WEBHOOKS_VISIBILITY_TIMEOUT": ("WebhooksQueue", "VisibilityTimeout"),
    "WEBHOOKS_MAX_RECEIVE_COUNT": ("WebhooksQueue", "RedrivePolicy.maxReceiveCount"),
}
# Settings of the local stack alone, with no counterpart in the template.
LOCAL_ONLY = {
    # The local stack's public secrets, which `mediagen-dev setup` keeps in SSM for its functions;
    # a deployed stack is given its own (WebhookSecretParameter, FileUrlSecretParameter).
    "WEBHOOK_SECRET",
    "FILE_URL_SECRET",
    # API Gateway and Lambda scale the HTTP functions themselves; the local gateway is told how far.
    "HTTP_FUNCTION_CONCURRENCY",
}
# Function settings the local stack sets on purpose where a deployment takes the template's
# parameter (each a parameter of template.yaml, and a setting functions/core reads).
LOCAL_PARAMETERS: dict[str, str] = {"MAX_ACTIVE_JOBS_PER_OWNER": "MaxActiveJobsPerOwner"}

# How many batches each local pump runs at once, and the function whose SQS event source's
# ScalingConfig.MaximumConcurrency it stands in for.
CONCURRENCY = {
    "GENERATE_CONCURRENCY": "GenerateFunction",
    "DELIVER_CONCURRENCY": "DeliverFunction",
    "SWEEPER_CONCURRENCY": "SweeperFunction",
}


class LocalStackMatchesTemplate(unittest.TestCase):
    def setUp(self):
        self.env = support.local_env()
        self.template = support.template()
        self.parameters = self.template["Parameters"]
        self.resources = self.template["Resources"]

    def test_every_local_setting_has_a_counterpart_in_the_template(self):
        known = set(PARAMETERS) | set(RESOURCE_VALUES) | LOCAL_ONLY | set(LOCAL_PARAMETERS)
        known |= {"MAX_RECEIVE_COUNT", "SWEEP_SCHEDULE_SECONDS", "GENERATE_BATCH_SIZE"} | set(CONCURRENCY)
        unknown = sorted(set(self.env) - known)
        self.assertEqual(
            unknown,
            [],
            "scripts/local.env has settings this test does not compare with template.yaml; "
            "add them to PARAMETERS, RESOURCE_VALUES, LOCAL_ONLY or LOCAL_PARAMETERS in tests/template/test_parity.py",
        )

    def test_local_only_settings_are_parameters_the_functions_read(self):
        variables = self.template["Globals"]["Function"]["Environment"]["Variables"]
        for setting, parameter in LOCAL_PARAMETERS.items():
            with self.subTest(setting=setting):
                self.assertIn(parameter, self.parameters)
                self.assertEqual(variables.get(setting), {"Ref": parameter})
                self.assertIn(setting, support.settings_read_by_config())

    def test_resource_names_are_the_template_defaults(self):
        for setting, (parameter, resource, prop) in PARAMETERS.items():
            with self.subTest(setting=setting):
                self.assertIn(setting, self.env, f"scripts/local.env no longer sets {setting}")
                default = str(self.parameters[parameter]["Default"])
                self.assertEqual(
                    self.env[setting],
                    default,
                    f"scripts/local.env has {setting}={self.env[setting]} but template.yaml's "
                    f"parameter {parameter} defaults to {default}",
                )
                self.assertEqual(
                    self.resources[resource]["Properties"][prop],
                    {"Ref": parameter},
                    f"{resource}.{prop} does not take its value from the parameter {parameter}",
                )

    def test_queue_settings_are_the_templates(self):
        for setting, (resource, path) in RESOURCE_VALUES.items():
            with self.subTest(setting=setting):
                value = self.resources[resource]["Properties"]
                for prop in path.split("."):
                    value = value[prop]
                value = str(value)
                self.assertEqual(
                    self.env[setting],
                    value,
                    f"scripts/local.env has {setting}={self.env[setting]} but template.yaml's "
                    f"{resource}.{path} is {value}",
                )

    def test_the_local_sweep_runs_on_the_templates_schedule(self):
        events = self.resources["SweeperFunction"]["Properties"]["Events"]
        schedules = [e["Properties"]["Schedule"] for e in events.values() if e["Type"] == "Schedule"]
        seconds = {"rate(1 minute)": "60"}.get(schedules[0] if schedules else None)
        self.assertEqual(
            self.env.get("SWEEP_SCHEDULE_SECONDS"),
            seconds,
            f"scripts/local.env's SWEEP_SCHEDULE_SECONDS is not the sweeper's schedule {schedules}",
        )

    def test_the_pumps_run_as_many_batches_at_once_as_the_event_sources(self):
        for setting, function in CONCURRENCY.items():
            with self.subTest(setting=setting):
                events = self.resources[function]["Properties"]["Events"]
                (sqs,) = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
                maximum = sqs["ScalingConfig"]["MaximumConcurrency"]
                if isinstance(maximum, dict):
                    maximum = self.parameters[maximum["Ref"]]["Default"]
                self.assertEqual(
                    self.env.get(setting),
                    str(maximum),
                    f"scripts/local.env's {setting} is not {function}'s MaximumConcurrency {maximum}",
                )

    def test_the_generate_pump_takes_batches_of_the_event_sources_size(self):
        events = self.resources["GenerateFunction"]["Properties"]["Events"]
        (sqs,) = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
        self.assertEqual(
            self.env.get("GENERATE_BATCH_SIZE"),
            str(sqs["BatchSize"]),
            f"scripts/local.env's GENERATE_BATCH_SIZE is not generate's BatchSize {sqs['BatchSize']}",
        )

    def test_the_local_webhook_secret_is_never_the_deployed_one(self):
        self.assertNotIn("Default", self.parameters["WebhookSecretParameter"])
        self.assertNotIn(self.env["WEBHOOK_SECRET"], support.TEMPLATE.read_text())

    def test_max_receive_count_is_one_parameter_for_the_queue_and_the_worker(self):
        default = str(self.parameters["MaxReceiveCount"]["Default"])
        self.assertEqual(
            self.env["MAX_RECEIVE_COUNT"],
            default,
            f"scripts/local.env has MAX_RECEIVE_COUNT={self.env['MAX_RECEIVE_COUNT']} but "
            f"template.yaml's parameter MaxReceiveCount defaults to {default}",
        )
        redrive = self.resources["JobsQueue"]["Properties"]["RedrivePolicy"]
        self.assertEqual(redrive["maxReceiveCount"], {"Ref": "MaxReceiveCount"})
        variables = self.template["Globals"]["Function"]["Environment"]["Variables"]
        self.assertEqual(variables["MAX_RECEIVE_COUNT"], {"Ref": "MaxReceiveCount"})

    def test_parameter_defaults_are_the_functions_defaults(self):
        # What a deployed stack runs with when nobody overrides a parameter is what the code
        # itself assumes when the variable is unset (functions/core/src/runtime/config.rs).
        for setting, parameter in {
            "PRESIGN_TTL_SECONDS": "PresignTtlSeconds",
            "RETENTION_DAYS": "RetentionDays",
            "MAX_RECEIVE_COUNT": "MaxReceiveCount",
        }.items():
            with self.subTest(setting=setting):
                default = support.config_default(setting)
                self.assertIsNotNone(
                    default,
                    f"functions/core/src/runtime/config.rs no longer reads {setting} with "
                    f'parse_or or parse_within(&get, "{setting}", <default>, ...); update this test',
                )
                self.assertEqual(int(self.parameters[parameter]["Default"]), default)


if __name__ == "__main__":
    unittest.main()


class LocalRoutesMatchTemplate(unittest.TestCase):
    """The API's route table sends each path to the function the REST API sends it to, and the
    local gateway gives each function the template's timeout."""

    def setUp(self):
        self.template = support.template()
        self.local = json.loads(LAMBDA.read_text())

    def functions(self):
        """{binary: (properties, {path of each Api event})} of the template's functions."""
        found = {}
        for resource in self.template["Resources"].values():
            if resource["Type"] == "AWS::Serverless::Function":
                events = resource["Properties"].get("Events", {}).values()
                paths = {e["Properties"]["Path"] for e in events if e["Type"] == "Api"}
                found[resource["Metadata"]["BuildProperties"]["Binary"]] = (resource["Properties"], paths)
        return found

    def test_every_path_goes_to_the_templates_function(self):
        # API Gateway's greedy `{proxy+}` is matchit's catch-all `{*proxy}`.
        expected = {
            path.replace("{proxy+}", "{*proxy}"): binary
            for binary, (_, paths) in self.functions().items()
            for path in paths
        }
        for path, binary in expected.items():
            self.assertEqual(WATCH_ROUTER.get(path), binary, f"template.yaml sends {path} to {binary}")
        # Every other route of the table is one the template's `/{proxy+}` sends to its function.
        greedy = expected["/{*proxy}"]
        for path, binary in WATCH_ROUTER.items():
            if path not in expected:
                self.assertEqual(binary, greedy, f"template.yaml sends {path} to {greedy} through /{{proxy+}}")

    def test_every_function_has_the_templates_timeout(self):
        default = self.template["Globals"]["Function"]["Timeout"]
        expected = {binary: props.get("Timeout", default) for binary, (props, _) in self.functions().items()}
        actual = {name: settings["timeout_seconds"] for name, settings in self.local["functions"].items()}
        self.assertEqual(actual, expected)
