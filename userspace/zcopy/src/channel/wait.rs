//! How a channel end waits for its peer: the [`Wait`] policy, and the
//! spin, yield, then sleep of a wait on an index ring.

use std::time::{Duration, Instant};

use super::error::corrupt;
use super::{Error, Result};
use crate::ring::Consumer;

/// What to do when there is nothing to take (no free slot, no message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once ([`Error::Full`], or `None` from `try_recv`).
    Never,
    /// Wait as long as it takes (a dead peer still ends the wait).
    Forever,
    /// Wait at most this long ([`Error::Timeout`]).
    Timeout(Duration),
}

impl Wait {
    pub(crate) fn deadline(self) -> Option<Option<Instant>> {
        match self {
            Wait::Never => None,
            Wait::Forever => Some(None),
            // Past the clock's range: as good as forever.
            Wait::Timeout(d) => Some(Instant::now().checked_add(d)),
        }
    }
}

/// How long one sleep lasts before the peer's liveness is checked again:
/// the bound on noticing a dead peer while waiting.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(20);
/// Default busy-poll rounds of a wait, before it yields
/// ([`DEFAULT_YIELD`]) and then sleeps: each round checks the ring once
/// (one load, a hit while nothing comes) and pauses the CPU (x86 PAUSE:
/// about 10 to 150 cycles, by CPU model), so the spin lasts about 1 to
/// 15 µs. A peer that answers within it is seen at busy-poll speed without
/// a system call; one that answers within the yield, after a system call
/// or a few; one that does not finds this side asleep in the futex, using
/// no CPU. `Sender::set_spin` and `Receiver::set_spin` change it per end
/// (0: no spin).
pub const DEFAULT_SPIN: u32 = 256;
/// Default time a waiting end spends giving its CPU up (`sched_yield`)
/// and checking again, after its spin and before it sleeps: about what
/// waking a thread that sleeps on an idle CPU takes (27–50 µs at the
/// median in a 2-vCPU VM, docs/benchmarks.md). Two ends that answer each other
/// then do not both fall asleep, and stay so, once one of them was late:
/// the other, still yielding, sees the late answer and replies to an end
/// that is awake. Yielding, not spinning, lets a peer on the same core
/// run at once. `Sender::set_yield` and `Receiver::set_yield` change it
/// per end (zero: sleep right after the spin).
pub const DEFAULT_YIELD: Duration = Duration::from_micros(50);
/// A `try_recv` that finds nothing looks at the clock on every this many
/// such calls, and asks whether the sender is still there (a system call)
/// when [`LIVENESS_SLICE`] has passed since it last asked. The closed flag
/// it reads on every call.
pub const PEER_CHECK_EVERY: u32 = 256;

/// Paces the liveness checks of a receiver polled without waiting, so a
/// busy-polling loop makes a system call at most once per
/// [`LIVENESS_SLICE`] and reads the clock once per [`PEER_CHECK_EVERY`]
/// empty polls.
#[derive(Debug)]
pub(crate) struct Pacer {
    idle: u32,
    next: Instant,
}

impl Pacer {
    pub(crate) fn new() -> Pacer {
        Pacer {
            idle: 0,
            next: Instant::now(),
        }
    }

    /// A poll found nothing: true when it is time to ask after the peer.
    #[inline]
    pub(crate) fn due(&mut self) -> bool {
        self.idle = self.idle.wrapping_add(1);
        if self.idle % PEER_CHECK_EVERY != 0 {
            return false;
        }
        let now = Instant::now();
        if now < self.next {
            return false;
        }
        self.next = now + LIVENESS_SLICE;
        true
    }
}

/// A spinning end reads the clock once per this many rounds of its spin,
/// for its deadline (and an RDMA sender out of slots for its next read of
/// the receiver's board): however long an end is told to spin, its
/// timeout holds. The rounds between read no clock (in a guest without a
/// working vDSO every read is a system call).
pub(crate) const LOOK_EVERY: u32 = 256;

/// Whether a wait that has spun `spins` rounds, and goes on spinning while
/// `spinning`, looks at its deadline now: once per [`LOOK_EVERY`] rounds
/// of the spin (not at its start, where the deadline was just set), and
/// at every turn once the spin is over.
#[inline(always)]
pub(crate) fn deadline_due(spins: u32, spinning: bool) -> bool {
    !spinning || (spins > 0 && spins % LOOK_EVERY == 0)
}

/// Busy-polls `poll` up to `spin` rounds, pausing the CPU between them,
/// and returns what it found (a message, a returned slot: `poll` takes it
/// at once), or `None` when the rounds ran out or, looked at every
/// [`LOOK_EVERY`] rounds, the deadline passed. Nothing here asks after
/// the peer: a caller does that, a system call, only when the spin found
/// nothing and it is about to sleep ([`sleep_on`]).
#[inline(always)]
pub(crate) fn spin_on<R>(
    spin: u32,
    deadline: Option<Instant>,
    mut poll: impl FnMut() -> Result<Option<R>>,
) -> Result<Option<R>> {
    for i in 0..spin {
        if let Some(r) = poll()? {
            return Ok(Some(r));
        }
        if deadline_due(i + 1, true) && deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
        std::hint::spin_loop();
    }
    Ok(None)
}

/// After [`spin_on`] found nothing: gives the CPU up and polls again, as
/// long as `span` (cut to the caller's `deadline`) has not passed. Returns
/// what `poll` found, or `None` when the time ran out. The clock is read
/// once per round; each round is a system call anyway.
#[inline(never)]
pub(crate) fn yield_on<R>(
    span: Duration,
    deadline: Option<Instant>,
    mut poll: impl FnMut() -> Result<Option<R>>,
) -> Result<Option<R>> {
    if span.is_zero() {
        return Ok(None);
    }
    // A span past the clock's range yields for an hour, then the wait
    // goes on to sleep (where it asks after the peer) as any other.
    let end = Instant::now() + span.min(Duration::from_secs(3600));
    let end = deadline.map_or(end, |d| d.min(end));
    loop {
        std::thread::yield_now();
        if let Some(r) = poll()? {
            return Ok(Some(r));
        }
        if Instant::now() >= end {
            return Ok(None);
        }
    }
}

/// Sleeps on `ring` until it has an entry, the deadline passes, or one
/// liveness slice ends (the caller spun and yielded first, [`spin_on`],
/// [`yield_on`]).
pub(crate) fn sleep_on(ring: &mut Consumer, deadline: Option<Instant>) -> Result<()> {
    let slice = match deadline {
        None => LIVENESS_SLICE,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            left.min(LIVENESS_SLICE)
        }
    };
    // Woken or timed out alike: the caller re-checks the ring and the peer.
    ring.wait(Some(slice))
        .map_err(corrupt("ring indices out of range"))?;
    Ok(())
}

/// Asks the CPU to start loading the cache line at `ptr` (a hint: never
/// faults, whatever `ptr` is).
#[inline]
pub(crate) fn prefetch(ptr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 is a hint; it does not fault on any address and
    // changes no memory (SSE, part of the x86_64 baseline).
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
