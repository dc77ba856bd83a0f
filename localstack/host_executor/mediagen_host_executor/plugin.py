"""The entry point LocalStack loads (group `localstack.lambda.runtime_executor`, name `host`):
LAMBDA_RUNTIME_EXECUTOR=host selects it."""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class HostRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "host"

    def load(self, *args, **kwargs):
        from .executor import HostRuntimeExecutor

        return HostRuntimeExecutor
