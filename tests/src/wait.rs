//! The one way a test waits for something: [`wait_until`] polls a probe until it is ready or a
//! deadline passes, and the failure says what was awaited and what the probe last saw. No test
//! sleeps for a fixed time to let something happen.

use std::time::{Duration, Instant};

/// What a probe answers: ready with a value, or not yet (with why, when it knows).
pub trait Probe<T> {
    fn ready(self) -> Result<T, Option<String>>;
}

impl<T> Probe<T> for Option<T> {
    fn ready(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T> Probe<T> for anyhow::Result<T> {
    fn ready(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(format!("{e:#}")))
    }
}

impl Probe<()> for bool {
    fn ready(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

/// First poll interval; it doubles up to [`MAX_INTERVAL`], so a quick condition is seen
/// quickly and a slow one does not cost a busy loop.
const FIRST_INTERVAL: Duration = Duration::from_millis(10);
const MAX_INTERVAL: Duration = Duration::from_millis(200);

/// One wait's clock: how long it may last, and how long to sleep before the next poll.
struct Schedule<'a> {
    what: &'a str,
    started: Instant,
    deadline: Duration,
    interval: Duration,
}

impl<'a> Schedule<'a> {
    fn new(deadline: Duration, what: &'a str) -> Self {
        Self {
            what,
            started: Instant::now(),
            deadline: crate::patience(deadline),
            interval: FIRST_INTERVAL,
        }
    }

    /// After a poll that was not ready: the sleep before the next one, or the failure (with
    /// what the probe said last) once the deadline has passed.
    fn after_miss(&mut self, last: Option<String>) -> anyhow::Result<Duration> {
        let (what, waited) = (self.what, self.started.elapsed());
        if waited >= self.deadline {
            match last {
                Some(last) => anyhow::bail!("waited {waited:.1?} for {what}; last: {last}"),
                None => anyhow::bail!("waited {waited:.1?} for {what}"),
            }
        }
        let sleep = self.interval.min(self.deadline - waited);
        self.interval = (self.interval * 2).min(MAX_INTERVAL);
        Ok(sleep)
    }
}

/// Polls `probe` until it is ready and returns its value; fails after `deadline` (stretched by
/// [`crate::patience`] under emulation) with `what` and the probe's last answer.
pub fn wait_until<T, P: Probe<T>>(
    deadline: Duration,
    mut probe: impl FnMut() -> P,
    what: &str,
) -> anyhow::Result<T> {
    let mut schedule = Schedule::new(deadline, what);
    loop {
        match probe().ready() {
            Ok(value) => return Ok(value),
            Err(last) => std::thread::sleep(schedule.after_miss(last)?),
        }
    }
}

/// [`wait_until`] for async probes (the store fixtures and the conformance suite).
pub async fn wait_until_async<T, P: Probe<T>, F: std::future::Future<Output = P>>(
    deadline: Duration,
    mut probe: impl FnMut() -> F,
    what: &str,
) -> anyhow::Result<T> {
    let mut schedule = Schedule::new(deadline, what);
    loop {
        match probe().await.ready() {
            Ok(value) => return Ok(value),
            Err(last) => tokio::time::sleep(schedule.after_miss(last)?).await,
        }
    }
}

/// Collects a store watch's events until there are `n`, failing after 15 s, or when a batch
/// brings more than `n`.
pub async fn watch_events<W: netd_store::Watch>(
    watch: &mut W,
    n: usize,
) -> Vec<netd_store::WatchEvent> {
    let mut events = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while events.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        let batch = match tokio::time::timeout(left, watch.next()).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => panic!("the watch failed after {events:?}: {error}"),
            Err(_) => panic!("only {events:?} within 15 s"),
        };
        events.extend(batch);
    }
    assert_eq!(events.len(), n, "more events than expected: {events:?}");
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_ready() {
        let mut calls = 0;
        let v = wait_until(
            Duration::from_secs(5),
            || {
                calls += 1;
                (calls == 3).then_some(calls)
            },
            "the third call",
        )
        .unwrap();
        assert_eq!(v, 3);
    }

    #[test]
    fn names_what_and_the_last_answer_at_the_deadline() {
        let e = wait_until(
            Duration::from_millis(50),
            || -> anyhow::Result<()> { anyhow::bail!("connection refused") },
            "etcd to answer",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("for etcd to answer; last: connection refused"),
            "{e}"
        );
    }
}
