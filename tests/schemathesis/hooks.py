"""schemathesis hooks for the run in scripts/test.sh.

Each generated request that carries an `Idempotency-Key` gets a key of its own, as a client gives
each new request: generated cases reuse a few small values, and the same key with another body
is correctly refused (`422`), which is not what the positive-data checks test."""

import uuid

import schemathesis


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = f"st-{uuid.uuid4()}"
