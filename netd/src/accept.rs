//! What a server's accept loop does when `accept` fails: wait, and go on.
//!
//! `accept` fails for the server's own lack of resources (EMFILE, ENFILE: descriptors;
//! ENOBUFS, ENOMEM) or for the one connection's (ECONNABORTED: the peer gave up in the
//! queue). Neither is a reason to stop serving: the listener itself is fine. Retrying at once
//! on EMFILE spins at 100 % of a core (the pending connection stays queued and the listener
//! stays readable) and starves the runtime; ending the loop used to end the whole daemon. So
//! a failed accept waits, from 5 ms doubling to 1 s while failures continue, and is logged
//! once per run of failures.

use std::{io, time::Duration};

const FIRST_PAUSE: Duration = Duration::from_millis(5);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// The state of one accept loop.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// A connection was accepted: the next failure starts a new run.
    pub fn accepted(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
        }
        self.failures = 0;
    }

    /// Waits after a failed accept, as long as the failures call for.
    pub async fn failed(&mut self, what: &str, error: &io::Error) {
        if !exhausted(error) {
            // The one connection's trouble: the next one may be fine.
            tracing::debug!(%error, "{what}: accept");
            return;
        }
        if self.failures == 0 {
            tracing::warn!(%error, "{what}: cannot accept connections; waiting");
        }
        self.failures = self.failures.saturating_add(1);
        tokio::time::sleep(pause(self.failures)).await;
    }
}

/// Whether the error is the process's or the system's lack of a resource.
fn exhausted(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn pause(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_PAUSE
        .saturating_mul(1 << doublings)
        .min(LONGEST_PAUSE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_second() {
        assert_eq!(pause(1), Duration::from_millis(5));
        assert_eq!(pause(2), Duration::from_millis(10));
        assert_eq!(pause(8), Duration::from_millis(640));
        assert_eq!(pause(9), LONGEST_PAUSE);
        assert_eq!(pause(u32::MAX), LONGEST_PAUSE);
    }

    #[test]
    fn only_a_lack_of_resources_is_waited_out() {
        assert!(exhausted(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!exhausted(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
