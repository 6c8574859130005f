//! The atomics the rings use, and futex wait/wake on a shared 32-bit word.
//!
//! Under `--cfg loom` the atomics are loom's and the futex is modelled with a
//! loom mutex and condition variable that has the futex's one property the
//! rings rely on: the value check in [`futex_wait`] and the wake in
//! [`futex_wake`] are atomic with respect to each other. A lost wake-up then
//! shows up in loom as a deadlock.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use std::time::Duration;

/// What a [`futex_wait`] ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woke {
    /// Woken, or the word no longer held the expected value, or a signal.
    Maybe,
    /// The timeout passed.
    TimedOut,
}

/// Sleeps while `word == expected`, at most `timeout` (None: no limit).
/// Process-shared (no `FUTEX_PRIVATE_FLAG`): the word may live in memory
/// mapped by several processes, which is the point.
#[cfg(not(loom))]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> Woke {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call;
    // FUTEX_WAIT only reads it, and `ts_ptr` is null or points at a live
    // timespec on this stack frame.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
        )
    };
    if rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ETIMEDOUT) {
        Woke::TimedOut
    } else {
        Woke::Maybe
    }
}

/// Wakes every sleeper in [`futex_wait`] on `word`.
#[cfg(not(loom))]
pub(crate) fn futex_wake(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE does not access
    // it beyond using its address as the key.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, i32::MAX);
    }
}

#[cfg(loom)]
mod model {
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        /// One hash bucket for every futex word, like a kernel with one bucket.
        pub(super) static ref BUCKET: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }
}

/// Loom model of FUTEX_WAIT: check and sleep under the bucket lock.
#[cfg(loom)]
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, _timeout: Option<Duration>) -> Woke {
    let (lock, cond) = &*model::BUCKET;
    let guard = lock.lock().unwrap();
    if word.load(Ordering::SeqCst) == expected {
        drop(cond.wait(guard).unwrap());
    }
    Woke::Maybe
}

/// Loom model of FUTEX_WAKE: wake everyone under the bucket lock.
#[cfg(loom)]
pub(crate) fn futex_wake(_word: &AtomicU32) {
    let (lock, cond) = &*model::BUCKET;
    let _guard = lock.lock().unwrap();
    cond.notify_all();
}
