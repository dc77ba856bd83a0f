//! The baseline of the benchmarks: a `lambda_runtime` function that does nothing, built with the
//! same profile as ours, so that `scripts/bench.sh` can tell what our functions add to a start.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
