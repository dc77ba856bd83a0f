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
    Status(JobStatus),
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

/// Every event `job` has produced, in order. A job that runs again (its lease ran out, or it
/// waits for a slow model between looks) produces nothing new until it ends: its record says
/// which models it tried only then.
pub fn events(job: &Job) -> Vec<StreamEvent> {
    let mut events = vec![StreamEvent::Status(JobStatus::Queued)];
    let started = job.started_at.is_some() || job.attempts > 0 || job.status == JobStatus::Processing;
    if started {
        events.push(StreamEvent::Status(JobStatus::Processing));
        events.push(StreamEvent::Logs(format!("generating with {}", job.request.model)));
    }
    if !job.status.is_final() {
        return events;
    }
    for attempt in &job.model_attempts {
        events.push(StreamEvent::Logs(format!(
            "{}: {} in {:.1} s",
            attempt.model,
            attempt.outcome,
            attempt.duration_ms as f64 / 1000.0
        )));
    }
    events.extend(job.media_ids.iter().copied().map(StreamEvent::Output));
    events.push(StreamEvent::Status(job.status));
    if job.status == JobStatus::Failed {
        let message = job
            .error
            .as_ref()
            .map_or_else(|| "the job failed".to_owned(), |e| e.message.clone());
        events.push(StreamEvent::Error(message));
    }
    events.push(StreamEvent::Done {
        canceled: job.status == JobStatus::Canceled,
    });
    events
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
    use crate::domain::job::{JobError, ModelAttempt};
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
        job.started_at = Some(Utc::now());
        let processing = events(&job);
        job.status = JobStatus::Queued;
        let retrying = events(&job);
        job.status = JobStatus::Processing;
        job.attempts = 2;
        let second = events(&job);
        job.status = JobStatus::Succeeded;
        job.media_ids = vec![MediaId::new(), MediaId::new()];
        job.model_attempts = vec![
            ModelAttempt {
                model: "a".into(),
                outcome: "model_unavailable".into(),
                duration_ms: 1200,
            },
            ModelAttempt {
                model: "b".into(),
                outcome: "succeeded".into(),
                duration_ms: 800,
            },
        ];
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
                "status", "status", "logs", "logs", "logs", "output", "output", "status", "done"
            ]
        );
        assert_eq!(succeeded[3], StreamEvent::Logs("a: model_unavailable in 1.2 s".into()));
        assert_eq!(succeeded[5], StreamEvent::Output(job.media_ids[0]));
        assert_eq!(succeeded[7], StreamEvent::Status(JobStatus::Succeeded));
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
