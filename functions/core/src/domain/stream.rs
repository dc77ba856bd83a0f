//! A job's progress as Server-Sent Events (docs/design.md, "Progress stream"): the events a job
//! has produced so far, derived from its record alone, so that any instance of the stream
//! function, at any time, numbers them the same way. A later record only ever adds events after
//! the earlier ones, so an event's place in the list is its id, and a client that reconnects with
//! `Last-Event-ID` is sent only what follows it.

use super::ids::MediaId;
use super::job::{Job, JobStatus};

/// One event of a job's stream. Replicate's clients know `output`, `logs`, `error` and `done`;
/// `status` is ours, for the moves between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// The job's status; `attempt` counts the job's runs while it is processing.
    Status {
        status: JobStatus,
        attempt: Option<u32>,
    },
    Logs(String),
    /// An image, as it is committed.
    Output(MediaId),
    /// The failed job's error message.
    Error(String),
    /// The end: nothing follows.
    Done {
        canceled: bool,
    },
}

impl StreamEvent {
    /// The SSE event's name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::Status { .. } => "status",
            StreamEvent::Logs(_) => "logs",
            StreamEvent::Output(_) => "output",
            StreamEvent::Error(_) => "error",
            StreamEvent::Done { .. } => "done",
        }
    }
}

/// Every event `job` has produced, in order.
pub fn events(job: &Job) -> Vec<StreamEvent> {
    let mut events = vec![StreamEvent::Status {
        status: JobStatus::Queued,
        attempt: None,
    }];
    // A job is claimed before it runs, and each claim counts an attempt; a processing job
    // without a count (a record written before counts were kept) has run once.
    let runs = match job.status {
        JobStatus::Processing => job.attempts.max(1),
        _ => job.attempts,
    };
    for attempt in 1..=runs {
        events.push(StreamEvent::Status {
            status: JobStatus::Processing,
            attempt: Some(attempt),
        });
        events.push(StreamEvent::Logs(format!(
            "attempt {attempt}: generating with {}",
            job.request.model
        )));
    }
    match job.status {
        JobStatus::Queued | JobStatus::Processing => {}
        JobStatus::Succeeded => {
            events.extend(job.media_ids.iter().copied().map(StreamEvent::Output));
            events.push(final_status(JobStatus::Succeeded));
            events.push(StreamEvent::Done { canceled: false });
        }
        JobStatus::Failed => {
            events.push(final_status(JobStatus::Failed));
            let message = job
                .error
                .as_ref()
                .map_or_else(|| "the job failed".to_owned(), |e| e.message.clone());
            events.push(StreamEvent::Error(message));
            events.push(StreamEvent::Done { canceled: false });
        }
        JobStatus::Canceled => {
            events.push(final_status(JobStatus::Canceled));
            events.push(StreamEvent::Done { canceled: true });
        }
    }
    events
}

fn final_status(status: JobStatus) -> StreamEvent {
    StreamEvent::Status { status, attempt: None }
}

/// The index of the first event to send to a client that last saw `last_event_id` (the
/// `Last-Event-ID` header): all of them if it saw none, or sent an id not of ours.
pub fn first_unseen(last_event_id: Option<&str>) -> usize {
    last_event_id
        .and_then(|id| id.trim().parse::<usize>().ok())
        .map_or(0, |seen| seen.saturating_add(1))
}

/// One SSE event: its id, name and data, each line of the data its own `data:` field.
pub fn frame(id: usize, name: &str, data: &str) -> String {
    let mut frame = format!("id: {id}\nevent: {name}\n");
    for line in data.split('\n') {
        frame.push_str("data: ");
        frame.push_str(line.trim_end_matches('\r'));
        frame.push('\n');
    }
    frame.push('\n');
    frame
}

/// A comment line: clients ignore it, and it keeps proxies from closing an idle connection.
pub const HEARTBEAT: &str = ": keep-alive\n\n";

/// What ends a connection before the job is final: how long to wait before reconnecting, in
/// milliseconds, which an `EventSource` then does with `Last-Event-ID` on its own.
pub fn reconnect(after_ms: u64) -> String {
    format!("retry: {after_ms}\n: reconnect to follow the job further\n\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;

    use super::*;
    use crate::domain::generation::tests::sample_request;
    use crate::domain::job::JobError;
    use crate::domain::keys::tests::sample_owner;

    fn job() -> Job {
        Job::new(sample_owner(), sample_request(), Utc::now(), Duration::from_secs(60))
    }

    fn names(job: &Job) -> Vec<&'static str> {
        events(job).iter().map(StreamEvent::name).collect()
    }

    #[test]
    fn a_later_record_only_adds_events_after_the_earlier_ones() {
        let mut job = job();
        let queued = events(&job);
        job.status = JobStatus::Processing;
        job.attempts = 1;
        let processing = events(&job);
        job.status = JobStatus::Queued;
        let retrying = events(&job);
        job.status = JobStatus::Processing;
        job.attempts = 2;
        let second = events(&job);
        job.status = JobStatus::Succeeded;
        job.media_ids = vec![MediaId::new(), MediaId::new()];
        let succeeded = events(&job);
        for (earlier, later) in [
            (&queued, &processing),
            (&processing, &retrying),
            (&retrying, &second),
            (&second, &succeeded),
        ] {
            assert_eq!(&later[..earlier.len()], &earlier[..]);
        }
        assert_eq!(
            names(&job),
            [
                "status", "status", "logs", "status", "logs", "output", "output", "status", "done"
            ]
        );
        assert_eq!(succeeded[5], StreamEvent::Output(job.media_ids[0]));
    }

    #[test]
    fn a_failed_job_ends_with_its_error_and_a_canceled_one_says_so() {
        let mut failed = job();
        failed.status = JobStatus::Failed;
        failed.attempts = 1;
        failed.error = Some(JobError::new("content_filtered", "the prompt was refused"));
        let events_of_failed = events(&failed);
        assert_eq!(names(&failed), ["status", "status", "logs", "status", "error", "done"]);
        assert_eq!(events_of_failed[4], StreamEvent::Error("the prompt was refused".into()));
        let mut canceled = job();
        canceled.status = JobStatus::Canceled;
        assert_eq!(events(&canceled).last(), Some(&StreamEvent::Done { canceled: true }));
        assert_eq!(names(&canceled), ["status", "status", "done"]);
    }

    #[test]
    fn a_client_resumes_after_the_last_event_it_saw() {
        assert_eq!(first_unseen(None), 0);
        assert_eq!(first_unseen(Some("3")), 4);
        assert_eq!(first_unseen(Some(" 0 ")), 1);
        assert_eq!(first_unseen(Some("not-ours")), 0);
    }

    #[test]
    fn a_frame_carries_each_line_of_its_data_in_its_own_field() {
        assert_eq!(
            frame(2, "logs", "one\r\ntwo"),
            "id: 2\nevent: logs\ndata: one\ndata: two\n\n"
        );
        assert_eq!(frame(0, "done", "{}"), "id: 0\nevent: done\ndata: {}\n\n");
    }
}
