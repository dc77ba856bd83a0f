//! Metrics as CloudWatch Embedded Metric Format lines on stdout (docs/design.md, "Observability"): Lambda ships them
//! to CloudWatch Logs, which turns them into metrics; no agent and no extra API calls.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

pub const NAMESPACE: &str = "mediagen";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    JobsSubmitted,
    JobsSucceeded,
    JobsFailed,
    /// From submission to the first claim, in milliseconds.
    QueueLatency,
    /// From the first claim to completion, in milliseconds.
    GenerationLatency,
    /// Webhooks a receiver took (answered 2xx).
    WebhooksDelivered,
    /// Webhook attempts that failed and will be tried again.
    WebhookAttemptsFailed,
    /// A succeeded job's cost, model and AWS, in dollars (docs/cost.md).
    CostUsd,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::JobsSubmitted => "JobsSubmitted",
            Metric::JobsSucceeded => "JobsSucceeded",
            Metric::JobsFailed => "JobsFailed",
            Metric::QueueLatency => "QueueLatency",
            Metric::GenerationLatency => "GenerationLatency",
            Metric::WebhooksDelivered => "WebhooksDelivered",
            Metric::WebhookAttemptsFailed => "WebhookAttemptsFailed",
            Metric::CostUsd => "CostUsd",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Metric::JobsSubmitted
            | Metric::JobsSucceeded
            | Metric::JobsFailed
            | Metric::WebhooksDelivered
            | Metric::WebhookAttemptsFailed => "Count",
            Metric::QueueLatency | Metric::GenerationLatency => "Milliseconds",
            Metric::CostUsd => "None",
        }
    }
}

/// One EMF document carrying the given values, dimensioned by model.
pub fn document(model: &str, values: &[(Metric, f64)], timestamp_ms: u64) -> Value {
    let definitions: Vec<Value> = values
        .iter()
        .map(|(metric, _)| json!({"Name": metric.name(), "Unit": metric.unit()}))
        .collect();
    let mut document = Map::new();
    document.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Model"]],
                "Metrics": definitions,
            }],
        }),
    );
    document.insert("Model".into(), json!(model));
    for (metric, value) in values {
        document.insert(metric.name().into(), json!(value));
    }
    Value::Object(document)
}

/// Writes the values as one EMF line.
pub fn emit(model: &str, values: &[(Metric, f64)]) {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    println!("{}", document(model, values, now_ms));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_declares_each_value_it_carries() {
        let doc = document(
            "local",
            &[(Metric::JobsSucceeded, 1.0), (Metric::GenerationLatency, 412.0)],
            1_800_000_000_000,
        );
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "mediagen");
        assert_eq!(directive["Dimensions"], json!([["Model"]]));
        assert_eq!(
            directive["Metrics"],
            json!([
                {"Name": "JobsSucceeded", "Unit": "Count"},
                {"Name": "GenerationLatency", "Unit": "Milliseconds"},
            ])
        );
        assert_eq!(doc["_aws"]["Timestamp"], 1_800_000_000_000u64);
        assert_eq!(doc["Model"], "local");
        assert_eq!(doc["JobsSucceeded"], 1.0);
        assert_eq!(doc["GenerationLatency"], 412.0);
    }
}
