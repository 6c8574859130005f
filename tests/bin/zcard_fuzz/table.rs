//! What docs/uapi.md says each call may return, and the counters every
//! process of a run shares (calls, errnos seen, violations).

use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;

/// The calls the fuzzer judges, each with its own errno list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `ZCARD_IOC_INFO`.
    Info,
    /// `ZCARD_IOC_POOL_CREATE`.
    PoolCreate,
    /// `ZCARD_IOC_POOL_DESTROY`.
    PoolDestroy,
    /// `ZCARD_IOC_POOL_EXPORT`.
    PoolExport,
    /// `ZCARD_IOC_POOL_IMPORT`.
    PoolImport,
    /// `ZCARD_IOC_RING_SETUP`.
    RingSetup,
    /// `ZCARD_IOC_ENTER`.
    Enter,
    /// `ZCARD_IOC_SET_EVENTFD`.
    SetEventfd,
    /// Any request number that is none of the above.
    OtherIoctl,
    /// `mmap` of the file.
    Mmap,
    /// `mprotect` of a mapping of the file.
    Mprotect,
    /// `madvise(MADV_DONTNEED)` of a mapping.
    Madvise,
    /// `munmap` of a mapping (whole or part).
    Munmap,
    /// `open` of /dev/zcard0.
    Open,
    /// The result of an SQE (its CQE).
    Cqe,
}

/// Every call, in the order the report lists them.
pub const CALLS: [Call; 15] = [
    Call::Info,
    Call::PoolCreate,
    Call::PoolDestroy,
    Call::PoolExport,
    Call::PoolImport,
    Call::RingSetup,
    Call::Enter,
    Call::SetEventfd,
    Call::OtherIoctl,
    Call::Mmap,
    Call::Mprotect,
    Call::Madvise,
    Call::Munmap,
    Call::Open,
    Call::Cqe,
];

/// Errnos a call may return, from docs/uapi.md. `EFAULT` (an argument the
/// kernel cannot read or write) and `ENODEV` (the card removed) apply to
/// every ioctl but `INFO`'s `ENODEV`.
pub fn documented(call: Call) -> &'static [Errno] {
    use Errno::*;
    match call {
        Call::Info => &[EFAULT],
        Call::PoolCreate => &[EINVAL, ENOMEM, EFAULT, ENODEV],
        Call::PoolDestroy => &[ENOENT, EFAULT, ENODEV],
        Call::PoolExport => &[ENOENT, EMFILE, EINVAL, EFAULT, ENODEV],
        Call::PoolImport => &[EBADF, EINVAL, EXDEV, EFAULT, ENODEV],
        Call::RingSetup => &[EINVAL, EBUSY, ENOMEM, EFAULT, ENODEV],
        Call::Enter => &[ENXIO, EINVAL, EBUSY, ETIME, EINTR, EAGAIN, EFAULT, ENODEV],
        Call::SetEventfd => &[EBADF, EINVAL, EFAULT, ENODEV],
        Call::OtherIoctl => &[ENOTTY, ENODEV],
        // The kernel's own checks come first: ENOMEM for a length no
        // address range fits, EOVERFLOW for an offset plus length past 2^64.
        Call::Mmap => &[EINVAL, EPERM, ENXIO, EACCES, ENODEV, ENOMEM, EOVERFLOW],
        // Adding PROT_EXEC, or PROT_WRITE through a read-only file.
        Call::Mprotect => &[EACCES],
        Call::Madvise => &[],
        Call::Munmap => &[],
        Call::Open => &[ENODEV],
        Call::Cqe => &[
            EINVAL, ERANGE, EOPNOTSUPP, ENOENT, EFAULT, EIO, ECANCELED, ETIMEDOUT, ENODEV,
        ],
    }
}

/// Errno values counted per call (Linux's are below this).
pub const ERRNO_SLOTS: usize = 136;

/// The counters all processes of one run share (an anonymous shared
/// mapping made before the first fork).
#[repr(C)]
pub struct Shared {
    /// Calls made by each worker (its forked children count into its slot).
    pub calls: [AtomicU64; MAX_WORKERS],
    /// SQEs consumed by the driver (each a CQE, or lost to a CQ head that
    /// was moved on purpose, then counted as an overflow).
    pub sqes: AtomicU64,
    /// Broken promises: an undocumented errno, a wrong result, wrong data.
    pub violations: AtomicU64,
    /// Children forked by workers.
    pub forks: AtomicU64,
    /// Children killed with SIGKILL by their worker.
    pub child_kills: AtomicU64,
    /// CQEs of requests that reached the card and ended with a card
    /// fault's errno instead of their result.
    pub faulted: AtomicU64,
    /// Calls that returned each errno (slot 0: success), per call.
    pub outcomes: [[AtomicU64; ERRNO_SLOTS]; CALLS.len()],
}

/// Workers one run may have.
pub const MAX_WORKERS: usize = 16;

impl Shared {
    /// Maps a zeroed `Shared` that forked processes keep sharing.
    pub fn map() -> &'static Shared {
        let p = crate::sys::mmap(
            std::mem::size_of::<Shared>(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
        .expect("a shared mapping for the counters");
        // SAFETY: the mapping is zero-filled, page aligned, big enough, and
        // never unmapped; all-zero bytes are valid `AtomicU64`s.
        unsafe { &*(p as *const Shared) }
    }

    /// Counts one outcome of `call`.
    pub fn count(&self, call: Call, outcome: Result<(), Errno>) {
        let slot = match outcome {
            Ok(()) => 0,
            Err(e) => (e as i32 as usize).min(ERRNO_SLOTS - 1),
        };
        self.outcomes[index(call)][slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Total calls so far.
    pub fn total_calls(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Where `call` sits in `CALLS`.
pub fn index(call: Call) -> usize {
    CALLS
        .iter()
        .position(|c| *c == call)
        .expect("every call is listed")
}
