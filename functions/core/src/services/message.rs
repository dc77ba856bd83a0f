//! One delivery of a queue message, and what became of it: the shape of the work SQS hands to
//! `generate` (job messages) and to `deliver` (webhook deliveries). The entrypoint turns the
//! [`Outcome`] into an acknowledgement or a retry.

use crate::domain::ids::JobId;

/// What became of one delivery of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The work is done, or there was nothing to do: delete the message.
    Acknowledge,
    /// Deliver the message again later.
    Retry,
}

/// One delivery of a message naming a job.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    pub job_id: JobId,
    /// How many times the queue has handed out this message, this time included.
    pub receive_count: u32,
    pub receipt_handle: Option<&'a str>,
}
