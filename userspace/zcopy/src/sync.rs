//! The atomics the rings use, futex wait/wake on a shared 32-bit word, and
//! the two halves of the rings' wake-up fence.
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

#[cfg(loom)]
use loom::sync::atomic::fence;
#[cfg(not(loom))]
use std::sync::atomic::{compiler_fence, fence};

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

/// The producer's half of the wake-up fence: orders its store of `tail`
/// before its load of `need_wakeup`. `light` (from [`light_fence`]): this
/// process is registered for `MEMBARRIER_CMD_GLOBAL_EXPEDITED`, so a
/// consumer about to sleep makes the CPU fence for it ([`sleeper_fence`])
/// and the producer needs only to keep the compiler from reordering; an
/// MFENCE on every push would wait for the store buffer to drain, which
/// cross-core means waiting for the entry's cache line to change hands.
#[inline]
pub(crate) fn producer_fence(light: bool) {
    #[cfg(not(loom))]
    if light {
        compiler_fence(Ordering::SeqCst);
        return;
    }
    #[cfg(loom)]
    let _ = light;
    fence(Ordering::SeqCst);
}

/// The consumer's half: orders its store of `need_wakeup` before its load
/// of `tail`, and, where the kernel has it, makes every running thread of
/// every process registered by [`light_fence`] execute a full memory
/// barrier (`membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`). A producer
/// whose `tail` store came before that barrier has its store visible now;
/// one whose store came after loads `need_wakeup` after it too, sees 1 and
/// wakes the consumer. Either way no wake-up is lost, as with a fence on
/// both sides. It costs an inter-processor interrupt per CPU running such
/// a thread, and only a consumer about to sleep pays it.
///
/// Returns false when this process cannot issue that barrier (an old
/// kernel, or a seccomp filter that refuses `membarrier` here and may
/// allow it to the producer's process): the caller then bounds its sleep.
pub(crate) fn sleeper_fence() -> bool {
    fence(Ordering::SeqCst);
    #[cfg(not(loom))]
    return membarrier::usable() && membarrier::global_expedited();
    #[cfg(loom)]
    true
}

/// Whether this process's producers may use the light fence: true once it
/// registered for `MEMBARRIER_CMD_GLOBAL_EXPEDITED` (the registration is the
/// process's, kept across fork, dropped at exec). Asked once per process.
pub(crate) fn light_fence() -> bool {
    #[cfg(not(loom))]
    return membarrier::registered();
    #[cfg(loom)]
    false
}

#[cfg(not(loom))]
mod membarrier {
    use std::sync::OnceLock;

    use libc::{
        MEMBARRIER_CMD_GLOBAL_EXPEDITED, MEMBARRIER_CMD_QUERY,
        MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
    };

    fn call(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: membarrier takes two integers and touches no memory of
        // this process.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
    }

    /// The kernel offers both commands (Linux 4.16 and later, unless a
    /// seccomp filter says otherwise).
    pub(super) fn usable() -> bool {
        static USABLE: OnceLock<bool> = OnceLock::new();
        *USABLE.get_or_init(|| {
            let want = MEMBARRIER_CMD_GLOBAL_EXPEDITED | MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED;
            let got = call(MEMBARRIER_CMD_QUERY);
            got >= 0 && got as libc::c_int & want == want
        })
    }

    /// Registers this process, once: true when the kernel accepted.
    pub(super) fn registered() -> bool {
        static REGISTERED: OnceLock<bool> = OnceLock::new();
        *REGISTERED.get_or_init(|| usable() && call(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0)
    }

    pub(super) fn global_expedited() -> bool {
        call(MEMBARRIER_CMD_GLOBAL_EXPEDITED) == 0
    }
}
