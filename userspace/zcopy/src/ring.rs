//! Single-producer/single-consumer index rings in shared memory.
//!
//! A ring is a [`RingHeader`] followed by `capacity` 64-bit entries
//! (capacity a power of two). The producer owns `tail`, the consumer owns
//! `head`, each on its own cache line; `need_wakeup` sits on a third line,
//! written only by a consumer about to sleep, so a busy pair never writes it
//! and never makes a system call.
//!
//! **Lap-tagged entries** (as in FastForward-style queues): bit 63 of an
//! entry ([`LAP_BIT`]) says which lap of the ring wrote it, so a busy
//! consumer polls the entry at its own `head` and never reads `tail`: a
//! message then costs the consumer one cache-line transfer (the entry)
//! instead of two (`tail`, then the entry). The bit written at position
//! `p` is the inverse of bit `log2(capacity)` of `p`: lap 0 writes 1, so
//! the zeroed entries of a fresh ring read as the lap before it, and the
//! entry the producer left one lap earlier never passes for a new one.
//! Values are 63 bits; the channel's entries (slot ≤ 2^16, length ≤ 2^30)
//! leave bit 63 clear.
//!
//! Both sides keep their own index privately and never read it back from
//! shared memory, and every index read from the other side is validated
//! (`tail - head` must lie in `0..=capacity`): a peer scribbling on the
//! header can make a ring report [`RingError::Corrupt`], never make this side
//! touch memory outside the ring (entry indices are masked). A scribbled
//! entry is a wrong value, which the channel validates.
//!
//! Sync points (each pair is named at both ends):
//! - **ENTRY**: the producer stores an entry, tagged with its lap, with
//!   Release; the consumer loads the entry at `head` with Acquire and takes
//!   it when the tag is this lap's (what the producer wrote before the entry
//!   is then visible).
//! - **TAIL**: the producer stores `tail` with Release after the entry; the
//!   consumer loads it with Acquire only when about to sleep (it is the
//!   futex word) and when attaching.
//! - **HEAD**: the consumer reads an entry, then stores `head` with Release;
//!   the producer loads `head` with Acquire before overwriting entries below it.
//! - **WAKE**: Dekker pair. Producer: store entry and `tail`, fence, load
//!   `need_wakeup`. Consumer: store `need_wakeup`, fence, load `tail`. At
//!   least one sees the other's store, so a consumer never sleeps through a
//!   push: either it sees the new tail (and, by TAIL, the entry) and does
//!   not sleep, or the producer sees the flag and wakes it. The futex word
//!   is `tail` itself, so a push that lands between the check and the sleep
//!   makes FUTEX_WAIT return at once.
//!
//!   The fence is asymmetric where the kernel allows: the consumer, about
//!   to sleep, issues `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)`, which
//!   makes the producer's CPU fence for it, and a producer in a process
//!   registered for it pushes with no CPU fence at all (see
//!   `sync::producer_fence` and `sync::sleeper_fence`). A busy pair then
//!   never waits for a store buffer to drain; only a consumer going to
//!   sleep pays, with one system call. Elsewhere both sides use a SeqCst
//!   fence, and that protocol is the one the loom model checks.

use std::time::Duration;

use crate::sync::{
    futex_wait, futex_wake, light_fence, producer_fence, sleeper_fence, AtomicU32, AtomicU64,
    Ordering,
};

#[cfg(loom)]
use loom::sync::atomic::fence;
#[cfg(not(loom))]
use std::sync::atomic::fence;

pub(crate) use crate::sync::Woke;

/// Cache line size the layout is built around.
pub const CACHE_LINE: usize = 64;

/// The longest a consumer sleeps when it could not make producers fence
/// for it (`sync::sleeper_fence`): a wake-up lost to a producer that did
/// not fence then costs at most this.
pub const UNFENCED_SLEEP: Duration = Duration::from_millis(1);

/// The entry bit that carries the lap tag; values pushed must leave it clear.
pub const LAP_BIT: u64 = 1 << 63;

/// One value alone on a cache line.
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Line<T>(pub T);

/// The shared part of a ring. `#[repr(C)]`: its layout is part of the
/// segment format (see `channel::segment`).
#[repr(C)]
#[derive(Debug, Default)]
pub struct RingHeader {
    /// Next entry the producer will write (free-running, wraps at 2^32).
    pub tail: Line<AtomicU32>,
    /// Next entry the consumer will read (free-running).
    pub head: Line<AtomicU32>,
    /// Non-zero while the consumer is (about to be) asleep on `tail`.
    pub need_wakeup: Line<AtomicU32>,
}

/// Bytes a ring of `capacity` entries takes: header, then entries.
pub const fn ring_bytes(capacity: u32) -> usize {
    std::mem::size_of::<RingHeader>() + capacity as usize * 8
}

/// What a ring operation can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// No room (producer side).
    Full,
    /// The other side's index is impossible: the shared header was overwritten.
    Corrupt,
}

/// Where a ring lives. Plain pointers: the memory is owned by whoever maps
/// the segment, which keeps it alive as long as any ring end exists.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingPtr {
    hdr: *const RingHeader,
    entries: *const AtomicU64,
    mask: u32,
    /// log2(capacity): the position bit that flips every lap.
    lap_shift: u32,
}

// SAFETY: a RingPtr only names shared memory that every access reaches
// through atomics; which thread holds it does not matter.
unsafe impl Send for RingPtr {}

impl RingPtr {
    /// # Safety
    /// `hdr` must point at a `RingHeader` followed by `capacity` `AtomicU64`
    /// entries, aligned to [`CACHE_LINE`], valid (mapped, readable and
    /// writable) for as long as this value or any copy of it is used.
    /// `capacity` must be a power of two, at least 1.
    pub(crate) unsafe fn new(hdr: *const RingHeader, capacity: u32) -> RingPtr {
        debug_assert!(capacity.is_power_of_two());
        RingPtr {
            hdr,
            entries: hdr
                .cast::<u8>()
                .wrapping_add(std::mem::size_of::<RingHeader>())
                .cast(),
            mask: capacity - 1,
            lap_shift: capacity.trailing_zeros(),
        }
    }

    #[inline]
    fn hdr(&self) -> &RingHeader {
        // SAFETY: valid for the ring's lifetime by the contract of `new`.
        unsafe { &*self.hdr }
    }

    #[inline]
    fn entry(&self, index: u32) -> &AtomicU64 {
        let ptr = self.entries.wrapping_add((index & self.mask) as usize);
        // SAFETY: `index & mask` < capacity, and `new`'s contract makes
        // `capacity` entries valid after the header.
        unsafe { &*ptr }
    }

    #[inline]
    fn capacity(&self) -> u32 {
        self.mask + 1
    }

    /// The tag an entry written at position `index` carries: [`LAP_BIT`]
    /// on even laps, 0 on odd ones (so zeroed entries belong to lap -1).
    #[inline]
    fn lap_tag(&self, index: u32) -> u64 {
        if (index >> self.lap_shift) & 1 == 0 {
            LAP_BIT
        } else {
            0
        }
    }

    /// `tail - head` as the consumer may see it: None when `head` is one
    /// past `tail` (the consumer took an entry by its tag before the
    /// producer's `tail` store after it became visible), else the count,
    /// checked against the capacity.
    #[inline]
    fn consumer_view(&self, tail: u32, head: u32) -> Result<Option<u32>, RingError> {
        if head.wrapping_sub(tail) == 1 {
            Ok(None)
        } else {
            self.used(tail, head).map(Some)
        }
    }

    /// Checks `tail - head` against the capacity.
    #[inline]
    fn used(&self, tail: u32, head: u32) -> Result<u32, RingError> {
        let used = tail.wrapping_sub(head);
        if used > self.capacity() {
            Err(RingError::Corrupt)
        } else {
            Ok(used)
        }
    }
}

/// The producing end of a ring.
#[derive(Debug)]
pub(crate) struct Producer {
    ring: RingPtr,
    tail: u32,
    head_cache: u32,
    /// The WAKE fence needs no CPU fence here (`sync::light_fence`).
    light: bool,
}

impl Producer {
    /// Takes over the producing end where the shared indices stand.
    pub(crate) fn attach(ring: RingPtr) -> Result<Producer, RingError> {
        let tail = ring.hdr().tail.0.load(Ordering::Relaxed);
        // HEAD (acquire): entries below head are free to overwrite.
        let head = ring.hdr().head.0.load(Ordering::Acquire);
        ring.used(tail, head)?;
        Ok(Producer {
            ring,
            tail,
            head_cache: head,
            light: light_fence(),
        })
    }

    /// Appends one entry, waking the consumer if it asked to be woken.
    /// `value` must leave [`LAP_BIT`] clear (debug builds check).
    #[inline]
    pub(crate) fn push(&mut self, value: u64) -> Result<(), RingError> {
        debug_assert_eq!(value & LAP_BIT, 0, "ring values are 63 bits");
        let cap = self.ring.capacity();
        if self.tail.wrapping_sub(self.head_cache) >= cap {
            // HEAD (acquire): pairs with Consumer::pop's release store.
            let head = self.ring.hdr().head.0.load(Ordering::Acquire);
            let used = self.ring.used(self.tail, head)?;
            self.head_cache = head;
            if used == cap {
                return Err(RingError::Full);
            }
        }
        let tagged = (value & !LAP_BIT) | self.ring.lap_tag(self.tail);
        // ENTRY (release): publishes the entry, and whatever this side wrote
        // before it (the slot), to a consumer polling it.
        self.ring.entry(self.tail).store(tagged, Ordering::Release);
        self.tail = self.tail.wrapping_add(1);
        let hdr = self.ring.hdr();
        // TAIL (release): the entry above is below the new tail.
        hdr.tail.0.store(self.tail, Ordering::Release);
        // WAKE: tail store before need_wakeup load (pairs with Consumer::wait).
        producer_fence(self.light);
        if hdr.need_wakeup.0.load(Ordering::Relaxed) != 0 {
            futex_wake(&hdr.tail.0);
        }
        Ok(())
    }

    /// The entries pushed and not yet consumed, oldest first.
    pub(crate) fn pending(&self) -> Result<Vec<u64>, RingError> {
        // HEAD (acquire): the consumer has finished with entries below head.
        let head = self.ring.hdr().head.0.load(Ordering::Acquire);
        let used = self.ring.used(self.tail, head)?;
        Ok((0..used)
            .map(|i| {
                self.ring
                    .entry(head.wrapping_add(i))
                    .load(Ordering::Relaxed)
                    & !LAP_BIT
            })
            .collect())
    }

    /// Wakes a sleeping consumer whether or not it set `need_wakeup`
    /// (it then re-checks whatever state made it sleep).
    pub(crate) fn wake(&self) {
        fence(Ordering::SeqCst);
        futex_wake(&self.ring.hdr().tail.0);
    }
}

/// The consuming end of a ring.
#[derive(Debug)]
pub(crate) struct Consumer {
    ring: RingPtr,
    head: u32,
}

impl Consumer {
    /// Takes over the consuming end where the shared indices stand.
    pub(crate) fn attach(ring: RingPtr) -> Result<Consumer, RingError> {
        let head = ring.hdr().head.0.load(Ordering::Relaxed);
        // TAIL (acquire): entries below tail are written.
        let tail = ring.hdr().tail.0.load(Ordering::Acquire);
        ring.consumer_view(tail, head)?;
        Ok(Consumer { ring, head })
    }

    /// The entry at `head` if it is this lap's.
    #[inline]
    fn peek(&self) -> Option<u64> {
        // ENTRY (acquire): pairs with Producer::push's release store of the
        // entry; a tag of this lap means the producer wrote it (and what
        // it wrote before) for this position.
        let v = self.ring.entry(self.head).load(Ordering::Acquire);
        (v & LAP_BIT == self.ring.lap_tag(self.head)).then_some(v & !LAP_BIT)
    }

    /// Takes the oldest entry, if any.
    #[inline]
    pub(crate) fn pop(&mut self) -> Result<Option<u64>, RingError> {
        let Some(value) = self.peek() else {
            return Ok(None);
        };
        self.head = self.head.wrapping_add(1);
        // HEAD (release): the entry is read; the producer may reuse it.
        self.ring.hdr().head.0.store(self.head, Ordering::Release);
        Ok(Some(value))
    }

    /// True when an entry is ready (without taking it).
    #[inline]
    pub(crate) fn ready(&mut self) -> Result<bool, RingError> {
        Ok(self.peek().is_some())
    }

    /// Sleeps until the producer pushes, the timeout passes, or a signal.
    /// Returns at once when an entry is already there.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> Result<Woke, RingError> {
        let hdr = self.ring.hdr();
        hdr.need_wakeup.0.store(1, Ordering::Relaxed);
        // WAKE: need_wakeup store before the tail load (pairs with Producer::push).
        let timeout = if sleeper_fence() {
            timeout
        } else {
            Some(timeout.map_or(UNFENCED_SLEEP, |t| t.min(UNFENCED_SLEEP)))
        };
        // TAIL (acquire): as in pop.
        let tail = hdr.tail.0.load(Ordering::Acquire);
        let woke = match self.ring.consumer_view(tail, self.head)? {
            // Empty, or one past: this side took the last entry by its tag
            // and has not seen the tail store after it; that store then
            // comes before the producer's fence, so either FUTEX_WAIT sees
            // the word changed or the producer sees need_wakeup and wakes.
            Some(0) | None => Ok(futex_wait(&hdr.tail.0, tail, timeout)),
            // By TAIL the entry at head, below this tail, is visible: one
            // that does not carry this lap's tag was overwritten.
            Some(_) if self.peek().is_none() => Err(RingError::Corrupt),
            Some(_) => Ok(Woke::Maybe),
        };
        hdr.need_wakeup.0.store(0, Ordering::Relaxed);
        woke
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    /// A ring in ordinary memory, aligned like the segment puts it.
    struct Heap {
        buf: Vec<Line<[u64; 8]>>,
        cap: u32,
    }

    impl Heap {
        fn new(cap: u32) -> Heap {
            let lines = ring_bytes(cap).div_ceil(CACHE_LINE);
            Heap {
                buf: (0..lines).map(|_| Line([0; 8])).collect(),
                cap,
            }
        }
        fn ptr(&mut self) -> RingPtr {
            // SAFETY: the buffer is zeroed (a valid empty RingHeader and
            // entries: atomics of zero), 64-aligned, ring_bytes(cap) long, and
            // outlives every RingPtr the tests make from it.
            unsafe { RingPtr::new(self.buf.as_mut_ptr().cast(), self.cap) }
        }
        fn hdr(&mut self) -> &RingHeader {
            // SAFETY: as in ptr(); the header is at the start.
            unsafe { &*self.buf.as_ptr().cast::<RingHeader>() }
        }
        /// An empty ring whose indices stand at `start`: every entry
        /// carries the tag of the lap before its next position, as a ring
        /// that got there by pushes and pops would.
        fn start_at(&mut self, start: u32) {
            self.hdr().tail.0.store(start, Ordering::Relaxed);
            self.hdr().head.0.store(start, Ordering::Relaxed);
            let ring = self.ptr();
            for p in (0..self.cap).map(|i| start.wrapping_add(i)) {
                ring.entry(p)
                    .store(ring.lap_tag(p) ^ LAP_BIT, Ordering::Relaxed);
            }
        }
    }

    #[test]
    fn layout_is_three_lines() {
        assert_eq!(std::mem::size_of::<RingHeader>(), 192);
        assert_eq!(std::mem::offset_of!(RingHeader, head), 64);
        assert_eq!(std::mem::offset_of!(RingHeader, need_wakeup), 128);
        assert_eq!(ring_bytes(4), 192 + 32);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Push(u64),
        Pop,
        /// The consumer detaches and a new one attaches (the indices stay).
        Reattach,
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                4 => any::<u64>().prop_map(Op::Push),
                4 => Just(Op::Pop),
                1 => Just(Op::Reattach),
            ],
            1..400,
        )
    }

    proptest! {
        #![proptest_config(zcopy_testkit::proptest_config("ring_matches_vecdeque", 256))]

        /// Any sequence of pushes and pops behaves like a bounded VecDeque,
        /// through wrap-around and at the full and empty edges; the shared
        /// indices may start anywhere (they wrap at 2^32).
        #[test]
        fn ring_matches_vecdeque(cap_log in 0u32..5, start in any::<u32>(), ops in ops()) {
            let cap = 1u32 << cap_log;
            let mut heap = Heap::new(cap);
            heap.start_at(start);
            let mut p = Producer::attach(heap.ptr()).unwrap();
            let mut c = Consumer::attach(heap.ptr()).unwrap();
            let mut model = VecDeque::new();
            for op in ops {
                match op {
                    Op::Push(v) => {
                        let v = v & !LAP_BIT;
                        let got = p.push(v);
                        if model.len() == cap as usize {
                            prop_assert_eq!(got, Err(RingError::Full));
                        } else {
                            prop_assert_eq!(got, Ok(()));
                            model.push_back(v);
                        }
                    }
                    Op::Pop => prop_assert_eq!(c.pop(), Ok(model.pop_front())),
                    Op::Reattach => c = Consumer::attach(heap.ptr()).unwrap(),
                }
                prop_assert_eq!(p.pending().unwrap(), model.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(c.ready(), Ok(!model.is_empty()));
            }
        }

        /// Whatever a peer writes into the shared indices, neither end
        /// reads or writes outside the ring: it reports Corrupt or carries on.
        #[test]
        fn garbage_indices_are_caught(cap_log in 0u32..5, tail in any::<u32>(), head in any::<u32>(), ops in ops()) {
            let cap = 1u32 << cap_log;
            let mut heap = Heap::new(cap);
            let mut p = Producer::attach(heap.ptr()).unwrap();
            let mut c = Consumer::attach(heap.ptr()).unwrap();
            heap.hdr().tail.0.store(tail, Ordering::Relaxed);
            heap.hdr().head.0.store(head, Ordering::Relaxed);
            let sane = tail.wrapping_sub(head) <= cap;
            // A consumer may stand one past the tail it sees (see consumer_view).
            let one_past = head.wrapping_sub(tail) == 1;
            prop_assert_eq!(Consumer::attach(heap.ptr()).is_ok(), sane || one_past);
            prop_assert_eq!(Producer::attach(heap.ptr()).is_ok(), sane);
            for op in ops {
                // Ok or Corrupt; never a panic or a wild access (the entry
                // index is always masked, the header is always in bounds).
                match op {
                    Op::Push(v) => { let _ = p.push(v & !LAP_BIT); }
                    Op::Pop => { let _ = c.pop(); }
                    Op::Reattach => { let _ = Consumer::attach(heap.ptr()).map(|n| c = n); }
                }
            }
        }
    }

    #[test]
    fn consumer_sees_an_impossible_tail_when_it_would_sleep() {
        let mut heap = Heap::new(8);
        let mut c = Consumer::attach(heap.ptr()).unwrap();
        heap.hdr().tail.0.store(9, Ordering::Relaxed);
        // A busy consumer polls its entry, not the tail: nothing there.
        assert_eq!(c.pop(), Ok(None));
        assert_eq!(c.wait(Some(Duration::ZERO)), Err(RingError::Corrupt));
        heap.hdr().tail.0.store(u32::MAX - 1, Ordering::Relaxed);
        assert_eq!(c.wait(Some(Duration::ZERO)), Err(RingError::Corrupt));
        assert_eq!(Consumer::attach(heap.ptr()).err(), Some(RingError::Corrupt));
    }

    #[test]
    fn the_entry_a_lap_earlier_is_not_taken_for_a_new_one() {
        let mut heap = Heap::new(2);
        let mut p = Producer::attach(heap.ptr()).unwrap();
        let mut c = Consumer::attach(heap.ptr()).unwrap();
        for v in 1..=6 {
            assert_eq!(c.pop(), Ok(None));
            p.push(v).unwrap();
            assert_eq!(c.pop(), Ok(Some(v)));
        }
        // Each entry still holds what two positions earlier wrote.
        assert_eq!(c.pop(), Ok(None));
        assert_eq!(c.ready(), Ok(false));
    }

    #[test]
    fn a_consumer_one_past_the_visible_tail_is_not_corrupt() {
        // The consumer took an entry by its tag; the producer's tail store
        // after it is not visible yet (tail one behind head).
        let mut heap = Heap::new(4);
        let mut p = Producer::attach(heap.ptr()).unwrap();
        let mut c = Consumer::attach(heap.ptr()).unwrap();
        p.push(1).unwrap();
        assert_eq!(c.pop(), Ok(Some(1)));
        heap.hdr().tail.0.store(0, Ordering::Relaxed);
        let t = Some(Duration::from_millis(1));
        assert_eq!(c.wait(t), Ok(Woke::TimedOut), "nothing new: not Corrupt");
        assert!(Consumer::attach(heap.ptr()).is_ok());
        heap.hdr().tail.0.store(u32::MAX, Ordering::Relaxed);
        assert_eq!(
            c.wait(None),
            Err(RingError::Corrupt),
            "two behind is impossible"
        );
    }

    #[test]
    fn an_untagged_entry_below_the_tail_is_corrupt() {
        let mut heap = Heap::new(4);
        let mut p = Producer::attach(heap.ptr()).unwrap();
        let mut c = Consumer::attach(heap.ptr()).unwrap();
        p.push(5).unwrap();
        // The peer rewrites the entry with the wrong lap's tag.
        heap.ptr().entry(0).store(5, Ordering::Relaxed);
        assert_eq!(c.pop(), Ok(None));
        assert_eq!(c.wait(Some(Duration::ZERO)), Err(RingError::Corrupt));
        assert_eq!(heap.hdr().need_wakeup.0.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn producer_sees_an_impossible_head() {
        let mut heap = Heap::new(2);
        let mut p = Producer::attach(heap.ptr()).unwrap();
        p.push(1).unwrap();
        p.push(2).unwrap();
        // The consumer claims to have read 3 of the 2 entries.
        heap.hdr().head.0.store(3, Ordering::Relaxed);
        assert_eq!(p.push(3), Err(RingError::Corrupt));
        assert_eq!(p.pending(), Err(RingError::Corrupt));
    }

    #[test]
    fn wait_times_out_on_an_empty_ring_and_returns_at_once_on_a_full_one() {
        let mut heap = Heap::new(2);
        let mut p = Producer::attach(heap.ptr()).unwrap();
        let mut c = Consumer::attach(heap.ptr()).unwrap();
        assert_eq!(c.wait(Some(Duration::from_millis(5))), Ok(Woke::TimedOut));
        assert_eq!(heap.hdr().need_wakeup.0.load(Ordering::Relaxed), 0);
        p.push(7).unwrap();
        assert_eq!(c.wait(None), Ok(Woke::Maybe));
        assert_eq!(c.pop(), Ok(Some(7)));
    }

    #[test]
    fn threads_pass_a_million_entries_in_order_with_sleeps() {
        let mut heap = Heap::new(64);
        let mut p = Producer::attach(heap.ptr()).unwrap();
        let mut c = Consumer::attach(heap.ptr()).unwrap();
        const N: u64 = 1_000_000;
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut next = 0;
                while next < N {
                    match c.pop().unwrap() {
                        Some(v) => {
                            assert_eq!(v, next);
                            next += 1;
                        }
                        None => {
                            c.wait(Some(Duration::from_secs(10))).unwrap();
                        }
                    }
                }
            });
            for v in 0..N {
                loop {
                    match p.push(v) {
                        Ok(()) => break,
                        Err(RingError::Full) => std::hint::spin_loop(),
                        Err(e) => panic!("{e:?}"),
                    }
                }
            }
        });
    }

    /// A consumer that sleeps each time it finds the ring empty, against a
    /// producer that pushes at random short intervals, so that pushes land
    /// while the consumer is on its way to sleep: every push wakes it. A
    /// lost wake-up shows as a wait that times out with an entry in the
    /// ring, and ends the test. The timeout is long (2 s) so that a
    /// producer merely descheduled between its store and its wake on a
    /// loaded machine does not pass for one.
    #[test]
    fn a_sleeping_consumer_is_woken_by_every_push() {
        use std::sync::atomic::AtomicBool;
        let mut heap = Heap::new(64);
        let mut p = Producer::attach(heap.ptr()).unwrap();
        let mut c = Consumer::attach(heap.ptr()).unwrap();
        const N: u64 = 30_000;
        let seed = zcopy_testkit::seed("a_sleeping_consumer_is_woken_by_every_push");
        let lost = AtomicBool::new(false);
        let got = std::thread::scope(|s| {
            let consumer = s.spawn(|| {
                let mut next = 0;
                while next < N {
                    match c.pop().unwrap() {
                        Some(v) => {
                            assert_eq!(v, next);
                            next += 1;
                        }
                        None => {
                            let woke = c.wait(Some(Duration::from_secs(2))).unwrap();
                            if woke == Woke::TimedOut && c.ready().unwrap() {
                                lost.store(true, std::sync::atomic::Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
                next
            });
            let mut x = seed | 1;
            for v in 0..N {
                p.push(v).unwrap();
                // xorshift: 0 to 4095 spins between pushes.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for _ in 0..x % 4096 {
                    std::hint::spin_loop();
                }
                // The consumer drains faster than this produces; should it
                // fall behind, wait rather than overrun.
                let lost = || lost.load(std::sync::atomic::Ordering::Relaxed);
                while p.pending().unwrap().len() > 32 && !lost() {
                    std::thread::yield_now();
                }
                if lost() {
                    break;
                }
            }
            consumer.join().unwrap()
        });
        assert!(
            !lost.into_inner(),
            "a push did not wake the consumer, after {got} entries (seed {seed})"
        );
        assert_eq!(got, N);
    }
}

#[cfg(all(test, loom))]
mod loom_tests {
    use super::*;
    use loom::thread;

    fn ring(cap: u32) -> (RingPtr, Box<RingHeader>, Box<[AtomicU64]>) {
        let hdr = Box::new(RingHeader::default());
        let entries: Box<[AtomicU64]> = (0..cap).map(|_| AtomicU64::new(0)).collect();
        let ptr = RingPtr {
            hdr: &*hdr,
            entries: entries.as_ptr(),
            mask: cap - 1,
            lap_shift: cap.trailing_zeros(),
        };
        (ptr, hdr, entries)
    }

    /// Entries arrive in order and intact through a full ring (producer
    /// retries on Full, consumer on empty).
    #[test]
    fn spsc_in_order_through_full() {
        loom::model(|| {
            let (ptr, hdr, entries) = ring(2);
            let mut p = Producer::attach(ptr).unwrap();
            let mut c = Consumer::attach(ptr).unwrap();
            let t = thread::spawn(move || {
                for v in 1..=3u64 {
                    while p.push(v) == Err(RingError::Full) {
                        thread::yield_now();
                    }
                }
            });
            for want in 1..=3u64 {
                loop {
                    match c.pop().unwrap() {
                        Some(v) => {
                            assert_eq!(v, want);
                            break;
                        }
                        None => thread::yield_now(),
                    }
                }
            }
            t.join().unwrap();
            drop((hdr, entries));
        });
    }

    /// With one entry, every push overwrites the one a lap earlier: a busy
    /// consumer polling the entry takes each value once, in order, and
    /// never an old lap's (the lap tag and ENTRY's release/acquire).
    #[test]
    fn lap_tags_through_one_entry() {
        loom::model(|| {
            let (ptr, hdr, entries) = ring(1);
            let mut p = Producer::attach(ptr).unwrap();
            let mut c = Consumer::attach(ptr).unwrap();
            let data = std::sync::Arc::new(AtomicU64::new(0));
            let d = data.clone();
            let t = thread::spawn(move || {
                for v in 1..=3u64 {
                    // The "slot": written before the entry, read after it.
                    d.store(v * 10, Ordering::Relaxed);
                    while p.push(v) == Err(RingError::Full) {
                        thread::yield_now();
                    }
                    while d.load(Ordering::Acquire) != 0 {
                        thread::yield_now();
                    }
                }
            });
            for want in 1..=3u64 {
                loop {
                    match c.pop().unwrap() {
                        Some(v) => {
                            assert_eq!(v, want);
                            assert_eq!(data.load(Ordering::Relaxed), want * 10);
                            data.store(0, Ordering::Release);
                            break;
                        }
                        None => thread::yield_now(),
                    }
                }
            }
            t.join().unwrap();
            drop((hdr, entries));
        });
    }

    /// A consumer that sleeps when the ring is empty is always woken by a
    /// push: a lost wake-up would deadlock, which loom reports.
    #[test]
    fn no_lost_wakeup() {
        loom::model(|| {
            let (ptr, hdr, entries) = ring(2);
            let mut p = Producer::attach(ptr).unwrap();
            let mut c = Consumer::attach(ptr).unwrap();
            let t = thread::spawn(move || {
                p.push(1).unwrap();
                p.push(2).unwrap();
            });
            let mut got = Vec::new();
            while got.len() < 2 {
                match c.pop().unwrap() {
                    Some(v) => got.push(v),
                    None => {
                        c.wait(None).unwrap();
                    }
                }
            }
            assert_eq!(got, [1, 2]);
            t.join().unwrap();
            drop((hdr, entries));
        });
    }
}
