//! What a job costs (docs/cost.md): its model's price per image, and the AWS requests, Lambda
//! time, storage and transfer it pays for, at the list prices of scripts/bench/prices.json.

/// AWS list prices a job pays, in micro-dollars (us-east-1, read 2026-11-26; scripts/bench/prices.json).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AwsRates {
    /// The requests every one-image job makes whatever its model: six API Gateway requests
    /// (submit, three polls, content, the download's redirect), their Lambda invocations, about
    /// ten DynamoDB writes and four SQS requests (docs/cost.md).
    pub per_job: f64,
    /// One S3 PUT.
    pub per_image: f64,
    /// A GB-second of Lambda on the functions' architecture (arm64).
    pub per_gb_second: f64,
    /// A byte sent out to the client once.
    pub per_byte_out: f64,
    /// A byte kept a month in S3 Standard.
    pub per_byte_month: f64,
}

impl AwsRates {
    pub const LIST: AwsRates = AwsRates {
        per_job: 6.0 * 3.5 + 7.0 * 0.2 + 10.0 * 0.625 + 4.0 * 0.4,
        per_image: 5.0,
        per_gb_second: 13.3334,
        per_byte_out: 0.09e6 / 1e9,
        per_byte_month: 0.023e6 / 1e9,
    };
}

/// What one succeeded job used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JobUsage {
    /// The catalogue's price per image of the model that made the images, in micro-dollars.
    pub price_per_image: u64,
    pub images: u64,
    /// The bytes of all its images.
    pub bytes: u64,
    /// The Lambda time of the attempt that made them, in milliseconds.
    pub lambda_ms: u64,
    /// The memory of the function that ran it, in MB.
    pub memory_mb: u32,
    /// How long its images are kept, in days.
    pub retention_days: u64,
}

/// The job's cost in micro-dollars: the model's price for its images plus its AWS share.
pub fn job_cost(usage: JobUsage, rates: AwsRates) -> u64 {
    let gb_seconds = usage.lambda_ms as f64 / 1000.0 * f64::from(usage.memory_mb) / 1024.0;
    let bytes = usage.bytes as f64;
    let aws = rates.per_job
        + rates.per_image * usage.images as f64
        + rates.per_gb_second * gb_seconds
        + rates.per_byte_out * bytes
        + rates.per_byte_month * bytes * usage.retention_days as f64 / 30.0;
    usage.price_per_image * usage.images + aws.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(price_per_image: u64, images: u64) -> JobUsage {
        JobUsage {
            price_per_image,
            images,
            bytes: 1_500_000 * images,
            lambda_ms: 2_000,
            memory_mb: 1024,
            retention_days: 30,
        }
    }

    #[test]
    fn the_model_price_counts_per_image_and_aws_adds_a_small_share() {
        // flux-schnell's one image: $0.003 of Replicate, and docs/cost.md's $0.25 of AWS per
        // 1,000 jobs is about 250 micro-dollars a job.
        let one = job_cost(usage(3_000, 1), AwsRates::LIST);
        assert!((3_200..3_300).contains(&one), "{one}");
        let two = job_cost(usage(3_000, 2), AwsRates::LIST);
        assert!(two > 6_000 + 300 && two < one * 2, "{two}");
    }

    #[test]
    fn a_free_model_still_costs_its_aws_share() {
        let local = JobUsage {
            bytes: 38_000,
            lambda_ms: 6,
            ..usage(0, 1)
        };
        let cost = job_cost(local, AwsRates::LIST);
        assert!((30..50).contains(&cost), "{cost}");
    }
}
