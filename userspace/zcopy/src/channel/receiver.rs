//! The receiving end: [`Receiver`] and the [`Sample`]s it hands out.

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::time::Duration;

use super::error::corrupt;
use super::liveness::{self, Watch};
use super::segment::{Segment, FLAG_SENDER_CLOSED};
use super::wait::{prefetch, sleep_on, spin_on, yield_on, Pacer, DEFAULT_SPIN, DEFAULT_YIELD};
#[cfg(feature = "card")]
use super::CardSlots;
use super::{check_pod, Error, Geometry, Result, Rx, RxSample, Shm, Transport, Wait};
use crate::ring::{Consumer, Producer};
use crate::sync::Ordering;

#[derive(Debug)]
struct RecvState {
    submit: Consumer,
    returns: Producer,
    held: Vec<bool>,
    sender: Watch,
    /// When a call that does not wait next asks after the sender.
    pacer: Pacer,
    /// A failure while giving a slot back in Drop, reported by the next call.
    deferred: Option<Error>,
    /// The slots of the last two messages: the sender lends the slot
    /// returned last first, so the next message is likely in one of them.
    recent: [u32; 2],
    /// The last look at the ring found nothing: the next one starts
    /// fetching `recent` before it reads the entry.
    polling: bool,
}

/// The receiving end of a channel.
#[derive(Debug)]
pub struct Receiver<T: Transport> {
    pub(super) seg: Segment,
    pub(super) slots: T,
    geo: Geometry,
    state: RefCell<RecvState>,
    spin: Cell<u32>,
    yield_for: Cell<Duration>,
}

impl Receiver<Shm> {
    /// Opens the named channel `/dev/shm/zcopy.<name>`.
    pub fn open_named(name: &str) -> Result<Receiver<Shm>> {
        let seg = Segment::open_named(name)?;
        let (pid, start) = seg.sender();
        if !liveness::alive(pid, start) {
            return Err(Error::Stale {
                name: name.to_string(),
                pid,
            });
        }
        Receiver::attach(&(), seg, Vec::new())
    }
}

impl<T: Transport> Receiver<T> {
    pub(super) fn attach(ctx: &T::Context, seg: Segment, fds: Vec<OwnedFd>) -> Result<Receiver<T>> {
        let geo = *seg.geometry();
        if geo.transport != T::KIND {
            return Err(Error::Layout(format!(
                "the channel's transport is {:?}, this receiver's is {:?}",
                geo.transport,
                T::KIND
            )));
        }
        let (me, start) = liveness::me();
        let owner = &seg.header().receiver;
        if let Err(pid) = owner
            .pid
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire)
        {
            let alive = liveness::alive(pid, owner.start.load(Ordering::Acquire));
            return Err(Error::ReceiverAttached { pid, alive });
        }
        owner.start.store(start, Ordering::Release);
        let detach = |e| {
            owner.start.store(0, Ordering::Release);
            owner.pid.store(0, Ordering::Release);
            e
        };
        let slots = T::open(ctx, &seg, geo.slots_bytes, fds).map_err(detach)?;
        let submit = Consumer::attach(seg.submit_ring())
            .map_err(corrupt("submit ring indices"))
            .map_err(detach)?;
        let returns = Producer::attach(seg.return_ring())
            .map_err(corrupt("return ring indices"))
            .map_err(detach)?;
        let (spid, sstart) = seg.sender();
        let state = RecvState {
            submit,
            returns,
            held: vec![false; geo.slot_count as usize],
            sender: Watch::new(spid, sstart),
            pacer: Pacer::new(),
            deferred: None,
            recent: [0, 0],
            polling: false,
        };
        Ok(Receiver {
            seg,
            slots,
            geo,
            state: RefCell::new(state),
            spin: Cell::new(DEFAULT_SPIN),
            yield_for: Cell::new(DEFAULT_YIELD),
        })
    }

    /// The channel's shape.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The transport (e.g. [`CardSlots::pool`]).
    pub fn transport(&self) -> &T {
        &self.slots
    }

    /// Busy-poll rounds when waiting, before it yields (default
    /// [`DEFAULT_SPIN`]; 0: none). See [`Receiver::recv`].
    pub fn set_spin(&self, rounds: u32) {
        self.spin.set(rounds);
    }

    /// How long a wait gives the CPU up and checks again after its spin,
    /// before it sleeps (default [`DEFAULT_YIELD`]; zero: sleep right
    /// after the spin; with `set_spin(0)`, at once). See [`Receiver::recv`].
    pub fn set_yield(&self, span: Duration) {
        self.yield_for.set(span);
    }

    /// The next message, waiting as long as it takes.
    ///
    /// How it waits: it checks the submit ring up to `spin` times (256,
    /// [`DEFAULT_SPIN`], unless [`Receiver::set_spin`] says otherwise), with
    /// a spin-loop hint between checks; then it gives the CPU up
    /// (`sched_yield`) and checks again, until 50 µs have passed
    /// ([`DEFAULT_YIELD`], [`Receiver::set_yield`]); then it sleeps on the
    /// ring's futex until the sender's next message wakes it, for at most
    /// [`LIVENESS_SLICE`](super::LIVENESS_SLICE) (20 ms) at a time. Before
    /// each sleep it checks whether the sender closed ([`Error::Closed`])
    /// or died ([`Error::PeerDied`]), both only once every message sent
    /// has been taken.
    #[inline]
    pub fn recv(&self) -> Result<Sample<'_, T>> {
        self.recv_with(Wait::Forever)?.ok_or(Error::Timeout)
    }

    /// The next message if one is there, without waiting: `None` when
    /// there is none yet. When there is none and the sender has closed
    /// the channel, [`Error::Closed`] (one atomic load tells); when its
    /// process is gone, [`Error::PeerDied`] (asked of its pidfd, one
    /// system call, at most once per [`LIVENESS_SLICE`](super::LIVENESS_SLICE),
    /// the clock read on every [`PEER_CHECK_EVERY`](super::PEER_CHECK_EVERY)th
    /// call that finds nothing). [`Receiver::is_closed`] asks both at once.
    #[inline(always)]
    pub fn try_recv(&self) -> Result<Option<Sample<'_, T>>> {
        self.recv_with(Wait::Never)
    }

    /// The next message, waiting at most `timeout` ([`Error::Timeout`]),
    /// as [`Receiver::recv`] waits.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_, T>> {
        self.recv_with(Wait::Timeout(timeout))?
            .ok_or(Error::Timeout)
    }

    /// True once nothing beyond the messages already in the channel can
    /// come: the sender closed it (dropped its end) or its process is
    /// gone. Messages sent before that are still received.
    pub fn is_closed(&self) -> bool {
        self.sender_closed() || self.state.borrow().sender.gone()
    }

    fn sender_closed(&self) -> bool {
        // CLOSED (acquire): pairs with the sender's fetch_or in Drop, so
        // every message it sent before is visible in the ring.
        self.seg.header().flags.load(Ordering::Acquire) & FLAG_SENDER_CLOSED != 0
    }

    /// The next message, waiting as `wait` says (`None`: nothing there and
    /// `Wait::Never`), as [`Receiver::recv`] and [`Receiver::try_recv`]
    /// describe. The common case, a message already there, is inlined
    /// into the caller; what waiting takes is not.
    #[inline(always)]
    pub fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_, T>>> {
        let mut st = self.state.borrow_mut();
        if let Some(e) = st.deferred.take() {
            return Err(e);
        }
        if st.polling {
            self.prefetch_recent(&st);
        }
        if let Some(v) = st.submit.pop().map_err(corrupt("submit ring indices"))? {
            return self.take(&mut st, v).map(Some);
        }
        let Some(deadline) = wait.deadline() else {
            // A poll that found nothing, the busy-polling caller's loop:
            // inlined too, and short while nothing needs asking.
            st.polling = true;
            if !self.sender_closed() && !st.pacer.due() {
                return Ok(None);
            }
            return self.poll_sender(&mut st);
        };
        self.wait_for_message(&mut st, deadline)
    }

    /// Nothing yet: starts fetching the slots the next message is likely
    /// in, right before a look at the ring, so that their first line
    /// travels alongside the entry's instead of after it. Fetched after a
    /// look that found nothing, they would come from before the sender's
    /// next write more often than not: a sender writes the slot and the
    /// entry back to back, and a poller waits between its looks.
    #[inline(always)]
    fn prefetch_recent(&self, st: &RecvState) {
        for i in st.recent {
            prefetch(self.slot(i));
        }
    }

    /// A poll found nothing, and the sender closed or it is time to ask
    /// after its process: the message that came just before, the end, or
    /// nothing yet.
    #[inline(never)]
    fn poll_sender(&self, st: &mut RecvState) -> Result<Option<Sample<'_, T>>> {
        if !self.sender_left(st, true)? {
            return Ok(None);
        }
        let v = st.submit.pop().map_err(corrupt("submit ring indices"))?;
        v.map(|v| self.take(st, v)).transpose()
    }

    /// The ring was found empty: whether the sender closed or (when `ask`)
    /// its process is gone. The ring was read before the flag and the
    /// process, so it is read once more: true when a message sent just
    /// before the end is there to take, [`Error::Closed`] or
    /// [`Error::PeerDied`] when nothing is, false while the sender is there.
    fn sender_left(&self, st: &mut RecvState, ask: bool) -> Result<bool> {
        let end = if self.sender_closed() {
            Error::Closed
        } else if ask && st.sender.gone() {
            Error::PeerDied {
                pid: st.sender.pid,
                reclaimed: 0,
            }
        } else {
            return Ok(false);
        };
        if st.submit.ready().map_err(corrupt("submit ring indices"))? {
            Ok(true)
        } else {
            Err(end)
        }
    }

    /// The message of submit entry `v`, checked against the geometry and
    /// the slots this receiver holds.
    #[inline(always)]
    fn take(&self, st: &mut RecvState, v: u64) -> Result<Sample<'_, T>> {
        let index = (v & 0xffff_ffff) as u32;
        let len = (v >> 32) as u32;
        if index >= self.geo.slot_count {
            return Err(Error::Corrupt("message names a slot past the end"));
        }
        if len > self.geo.slot_size {
            return Err(Error::Corrupt("message longer than its slot"));
        }
        if std::mem::replace(&mut st.held[index as usize], true) {
            return Err(Error::Corrupt("message names a slot the receiver holds"));
        }
        st.recent = [index, st.recent[0]];
        st.polling = false;
        Ok(Sample {
            receiver: self,
            index,
            len,
        })
    }

    /// [`Receiver::recv_with`] when no message was there and the call
    /// waits, until `deadline` (`None`: as long as it takes). It spins on
    /// the ring first, then yields, and asks after the sender's process (a
    /// system call) only once both found nothing, before it sleeps: a
    /// message that comes within the spin costs no system call.
    #[inline(never)]
    fn wait_for_message(
        &self,
        st: &mut RecvState,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Sample<'_, T>>> {
        let mut found = spin_on(self.spin.get(), deadline, || {
            self.prefetch_recent(st);
            st.submit.pop().map_err(corrupt("submit ring indices"))
        })?;
        if found.is_none() {
            found = yield_on(self.yield_for.get(), deadline, || {
                st.submit.pop().map_err(corrupt("submit ring indices"))
            })?;
        }
        if let Some(v) = found {
            return self.take(st, v).map(Some);
        }
        // Woken by a message or at the end of a slice alike: a sleep is
        // followed by a check of the ring, and by the next sleep, with no
        // spin between (a sender that went quiet for a slice is idle).
        loop {
            if !self.sender_left(st, true)? {
                sleep_on(&mut st.submit, deadline)?;
            }
            if let Some(v) = st.submit.pop().map_err(corrupt("submit ring indices"))? {
                return self.take(st, v).map(Some);
            }
        }
    }

    #[inline(always)]
    fn release(&self, index: u32) {
        let mut st = self.state.borrow_mut();
        st.held[index as usize] = false;
        if st.returns.push(u64::from(index)).is_err() {
            st.deferred = Some(Error::Corrupt("return ring full: impossible head index"));
        }
    }

    #[inline]
    fn slot(&self, index: u32) -> *const u8 {
        self.slots
            .base()
            .as_ptr()
            .wrapping_add(self.geo.slot_offset(index) as usize)
    }
}

impl<T: Transport> Drop for Receiver<T> {
    fn drop(&mut self) {
        // Detach: every Sample is gone (they borrow self), so every slot this
        // receiver took has been returned; a new receiver can carry on.
        let owner = &self.seg.header().receiver;
        owner.start.store(0, Ordering::Release);
        owner.pid.store(0, Ordering::Release);
    }
}

/// A received message: derefs to its bytes, in the slot the sender wrote;
/// the slot goes back to the sender when this is dropped.
#[derive(Debug)]
pub struct Sample<'a, T: Transport> {
    receiver: &'a Receiver<T>,
    index: u32,
    len: u32,
}

impl<T: Transport> std::ops::Deref for Sample<'_, T> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // SAFETY: index < slot_count and len ≤ slot_size were checked when
        // the message was taken, so the bytes lie inside the transport's
        // mapping; the slot is held by this receiver (held[index]) until this
        // Sample drops, and the protocol keeps the sender from writing it
        // meanwhile (a misbehaving sender could still change the bytes: that
        // changes data, never where this slice points).
        unsafe { std::slice::from_raw_parts(self.receiver.slot(self.index), self.len as usize) }
    }
}

impl<T: Transport> Sample<'_, T> {
    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Where the slot starts in the transport's memory (card: pool offset).
    pub fn offset(&self) -> u64 {
        self.receiver.geo.slot_offset(self.index)
    }

    /// The message as a `P`: its length must be `size_of::<P>()`.
    pub fn as_pod<P: bytemuck::Pod>(&self) -> Result<&P> {
        check_pod::<P>(
            self.receiver.slot(self.index),
            self.receiver.geo.slot_size as usize,
        )?;
        if self.len as usize != std::mem::size_of::<P>() {
            return Err(Error::Type {
                ty: std::any::type_name::<P>(),
                why: format!(
                    "the message is {} bytes, the type {}",
                    self.len,
                    std::mem::size_of::<P>()
                ),
            });
        }
        // SAFETY: check_pod made sure the slot is aligned for P and a P fits;
        // the length matches; P is Pod so any bytes are a valid P; the slot
        // is held for as long as `self` lives.
        Ok(unsafe { &*self.receiver.slot(self.index).cast::<P>() })
    }
}

impl<T: Transport> Drop for Sample<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.receiver.release(self.index);
    }
}

#[cfg(feature = "card")]
impl Receiver<CardSlots> {
    /// The pool the slots live in (this process's import).
    pub fn pool(&self) -> &crate::card::Pool {
        self.slots.pool()
    }
}

impl<T: Transport> Rx for Receiver<T> {
    type Sample<'a>
        = Sample<'a, T>
    where
        T: 'a;
    fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_, T>>> {
        Receiver::recv_with(self, wait)
    }
    fn is_closed(&self) -> bool {
        Receiver::is_closed(self)
    }
    fn slot_size(&self) -> usize {
        self.geo.slot_size as usize
    }
}

impl<T: Transport> RxSample for Sample<'_, T> {
    fn offset(&self) -> u64 {
        Sample::offset(self)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::super::liveness::ASKED;
    use super::*;
    use crate::channel::{Builder, Sender};

    fn asked() -> u64 {
        ASKED.with(|n| n.get())
    }

    /// Both ends of a channel of four 64-byte slots, in this thread.
    fn local_pair() -> (Sender<Shm>, Receiver<Shm>) {
        let (a, b) = UnixStream::pair().unwrap();
        let tx = Builder::new().slot_size(64).slot_count(4).create().unwrap();
        tx.share(&a).unwrap();
        (tx, Receiver::<Shm>::from_socket(&b).unwrap())
    }

    /// `recv_timeout(timeout)` on a channel whose sender sends nothing
    /// times out, well within `bound`.
    fn times_out_within(rx: &Receiver<Shm>, timeout: Duration, bound: Duration) {
        let t = std::time::Instant::now();
        assert!(matches!(rx.recv_timeout(timeout), Err(Error::Timeout)));
        assert!(t.elapsed() < bound, "{:?}", t.elapsed());
    }

    #[test]
    fn a_wait_asks_after_the_sender_only_before_it_sleeps() {
        let (tx, rx) = local_pair();

        // A message that comes while the wait spins (here: already there
        // when the wait begins, as after a poll that just missed it) is
        // taken without asking the kernel about the sender's process.
        tx.send_copy(b"ping").unwrap();
        let before = asked();
        let mut st = rx.state.borrow_mut();
        let got = rx.wait_for_message(&mut st, None).unwrap();
        drop(st);
        assert_eq!(&got.unwrap()[..], b"ping");
        assert_eq!(
            asked() - before,
            0,
            "a system call for a message within the spin"
        );

        // Nothing comes: before it sleeps, the wait asks (a dead sender
        // is still noticed).
        let before = asked();
        assert!(matches!(
            rx.recv_timeout(Duration::from_millis(5)),
            Err(Error::Timeout)
        ));
        assert!(asked() > before, "slept without asking after the sender");
    }

    /// Sends `b"late"` from another thread once `delay` has passed while
    /// this thread waits in `recv` (no spin, `yield_for` of yielding):
    /// how many times the wait asked after the sender.
    fn asks_for_a_late_message(yield_for: Duration, delay: Duration) -> u64 {
        let (a, b) = UnixStream::pair().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                let tx = Builder::new().slot_size(64).slot_count(4).create().unwrap();
                tx.share(&a).unwrap();
                std::thread::sleep(delay);
                tx.send_copy(b"late").unwrap();
            });
            let rx = Receiver::<Shm>::from_socket(&b).unwrap();
            rx.set_spin(0);
            rx.set_yield(yield_for);
            let before = asked();
            assert_eq!(&rx.recv().unwrap()[..], b"late");
            asked() - before
        })
    }

    #[test]
    fn a_wait_yields_before_it_sleeps() {
        // A message that comes while the wait yields is taken there: the
        // wait never got to its sleep, before which it asks after the
        // sender.
        // Long enough that the wait surely began before it ends.
        let delay = Duration::from_millis(200);
        assert_eq!(asks_for_a_late_message(Duration::from_secs(30), delay), 0);
        // Without the yield, the same wait sleeps (and asks first).
        assert!(asks_for_a_late_message(Duration::ZERO, delay) > 0);
    }

    #[test]
    fn a_spin_without_end_keeps_the_timeout() {
        // 2^32 rounds would take tens of seconds; the spin looks at the
        // clock every LOOK_EVERY rounds.
        let (_tx, rx) = local_pair();
        rx.set_spin(u32::MAX);
        rx.set_yield(Duration::ZERO);
        times_out_within(&rx, Duration::from_millis(50), Duration::from_secs(5));
    }

    #[test]
    fn a_wait_yields_no_longer_than_its_timeout() {
        let (_tx, rx) = local_pair();
        rx.set_yield(Duration::from_secs(30));
        times_out_within(&rx, Duration::from_millis(20), Duration::from_secs(10));
    }
}
