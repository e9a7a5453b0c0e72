//! The one way the Docker frontend takes its locks.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks, recovering from a poisoned mutex (a panicking call must not wedge the plugin).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
