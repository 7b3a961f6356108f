//! The service's background tasks, supervised together: one ending before it is asked to stop
//! (returning, failing or panicking) is reported with its reason, and the service stops with an
//! error, so the orchestrator restarts it instead of it running half-alive.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tokio::task::{Id, JoinError, JoinSet};
use tokio_util::sync::CancellationToken;

/// When a task is stopped during shutdown: servers first, then what writes to the database, then
/// the relay (whose last drain must see the writers' last commit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The HTTP servers.
    Serving,
    /// The consumer, the sweeper, the purge, the gauges.
    Writing,
    /// The outbox relay.
    Relaying,
}

/// A task that ended while it should have been running.
#[derive(Debug, thiserror::Error)]
#[error("background task `{name}` ended unexpectedly: {reason}")]
pub struct TaskEnded {
    /// The task.
    pub name: &'static str,
    /// Why: its error, its panic message, or that it returned.
    pub reason: String,
}

/// What a task returns: `Err` with a reason when it failed.
pub type TaskResult = Result<(), String>;

/// The running tasks, by stage.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<TaskResult>,
    names: HashMap<Id, (&'static str, Stage)>,
}

impl Tasks {
    /// Runs `task` under supervision.
    pub fn spawn<F>(&mut self, name: &'static str, stage: Stage, task: F)
    where
        F: Future<Output = TaskResult> + Send + 'static,
    {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), (name, stage));
    }

    /// Waits until `shutdown` is cancelled (`Ok`), or a task ends first (`Err`, logged at ERROR).
    pub async fn supervise(&mut self, shutdown: &CancellationToken) -> Result<(), TaskEnded> {
        // With no task left, only the shutdown can answer.
        tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            Some(joined) = self.set.join_next_with_id() => {
                let (name, _, reason) = self.ended(joined);
                let ended = TaskEnded { name, reason: reason.unwrap_or_else(|| "it returned".to_owned()) };
                tracing::error!(task = name, reason = %ended.reason,
                    "a background task ended unexpectedly; stopping the service so it is restarted");
                Err(ended)
            }
        }
    }

    /// Waits up to `limit` for the tasks of `stage` to end; returns the names of those still running.
    pub async fn stopped(&mut self, stage: Stage, limit: Duration) -> Vec<&'static str> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.names.values().any(|(_, s)| *s == stage) {
            match tokio::time::timeout_at(deadline, self.set.join_next_with_id()).await {
                Ok(Some(joined)) => {
                    let (name, _, reason) = self.ended(joined);
                    match reason {
                        Some(reason) => tracing::error!(task = name, %reason, "task failed while stopping"),
                        None => tracing::debug!(task = name, "stopped"),
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.names
            .values()
            .filter(|(_, s)| *s == stage)
            .map(|(name, _)| *name)
            .collect()
    }

    /// Forgets an ended task; its name, stage, and why it failed if it did.
    fn ended(&mut self, joined: Result<(Id, TaskResult), JoinError>) -> (&'static str, Stage, Option<String>) {
        let (id, reason) = match joined {
            Ok((id, Ok(()))) => (id, None),
            Ok((id, Err(reason))) => (id, Some(reason)),
            Err(e) => (e.id(), Some(join_error(e))),
        };
        let (name, stage) = self.names.remove(&id).unwrap_or(("unknown", Stage::Writing));
        (name, stage, reason)
    }
}

fn join_error(e: JoinError) -> String {
    if e.is_cancelled() {
        return "cancelled".to_owned();
    }
    let panic = e.into_panic();
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".to_owned());
    format!("panicked: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parked(stop: CancellationToken) -> TaskResult {
        stop.cancelled().await;
        Ok(())
    }

    #[tokio::test]
    async fn a_task_that_panics_is_reported_with_its_message() {
        let stop = CancellationToken::new();
        let mut tasks = Tasks::default();
        tasks.spawn("steady", Stage::Writing, parked(stop.clone()));
        tasks.spawn("fragile", Stage::Writing, async { panic!("boom at offset 7") });
        let ended = tasks.supervise(&CancellationToken::new()).await.unwrap_err();
        assert_eq!(ended.name, "fragile");
        assert_eq!(ended.reason, "panicked: boom at offset 7");
        stop.cancel();
        assert!(tasks.stopped(Stage::Writing, Duration::from_secs(5)).await.is_empty());
    }

    #[tokio::test]
    async fn a_task_that_returns_or_fails_early_is_reported() {
        let mut tasks = Tasks::default();
        tasks.spawn("relay", Stage::Relaying, async { Ok(()) });
        let ended = tasks.supervise(&CancellationToken::new()).await.unwrap_err();
        assert_eq!((ended.name, ended.reason.as_str()), ("relay", "it returned"));

        tasks.spawn("http", Stage::Serving, async { Err("address in use".to_owned()) });
        let ended = tasks.supervise(&CancellationToken::new()).await.unwrap_err();
        assert_eq!(
            ended.to_string(),
            "background task `http` ended unexpectedly: address in use"
        );
    }

    #[tokio::test]
    async fn shutdown_is_not_a_failure_and_stages_stop_in_turn() {
        let (writers, relay, shutdown) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let mut tasks = Tasks::default();
        tasks.spawn("consumer", Stage::Writing, parked(writers.clone()));
        tasks.spawn("relay", Stage::Relaying, parked(relay.clone()));
        shutdown.cancel();
        assert!(tasks.supervise(&shutdown).await.is_ok());
        writers.cancel();
        assert!(tasks.stopped(Stage::Writing, Duration::from_secs(5)).await.is_empty());
        // The relay was not asked to stop: it is named as still running when its time is up.
        assert_eq!(
            tasks.stopped(Stage::Relaying, Duration::from_millis(50)).await,
            vec!["relay"]
        );
        relay.cancel();
        assert!(tasks.stopped(Stage::Relaying, Duration::from_secs(5)).await.is_empty());
    }
}
