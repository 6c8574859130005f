//! The sending end: [`Sender`], its [`Loan`]s, [`OwnedLoan`]s and
//! [`PodLoan`]s.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::ops::Deref;
use std::rc::Rc;
use std::time::Duration;

use super::error::corrupt;
use super::ledger::{Events, Ledger};
use super::liveness::Watch;
use super::segment::{Segment, FLAG_SENDER_CLOSED};
use super::wait::{sleep_on, spin_on, yield_on, DEFAULT_SPIN, DEFAULT_YIELD};
#[cfg(feature = "card")]
use super::CardSlots;
use super::{check_pod, Error, Geometry, Result, Transport, Tx, TxLoan, Wait};
use crate::ring::{Consumer, Producer};
use crate::sync::Ordering;

/// The one event a sent slot waits for: the receiver gave it back.
const RETURNED: Events = 1;

/// Slots of this size and up are taken back from the return ring before
/// every loan as well as after every send. A loan then gets the slot the
/// receiver gave back last, when it is back: a ping-pong whose receiver
/// answers before it drops the message reuses one slot, not two, and a
/// sender that writes whole messages writes memory still in its cache.
/// Looking at the return ring costs a cache-line transfer on the way to
/// the send; writing a slot this size whole takes about a microsecond or
/// more, ten times that. Smaller slots look only after a send, off the
/// critical path, and their ping-pong alternates between two slots.
pub const RECLAIM_BEFORE_LOAN: usize = 64 << 10;

#[derive(Debug)]
struct SendState {
    submit: Producer,
    returns: Consumer,
    ledger: Ledger,
    receiver: Option<Watch>,
    /// What a corrupt return ring gave where no error can be returned
    /// (after a send, counting the slots in flight): the next loan
    /// returns it.
    deferred: Option<Error>,
}

/// The sending end of a channel.
#[derive(Debug)]
pub struct Sender<T: Transport> {
    pub(super) seg: Segment,
    pub(super) slots: T,
    geo: Geometry,
    state: RefCell<SendState>,
    backpressure: Cell<Wait>,
    spin: Cell<u32>,
    yield_for: Cell<Duration>,
}

impl<T: Transport> Sender<T> {
    pub(super) fn new(seg: Segment, slots: T, backpressure: Wait) -> Sender<T> {
        let geo = *seg.geometry();
        // Fresh rings (all zero): attaching cannot fail.
        let submit = Producer::attach(seg.submit_ring()).expect("fresh ring");
        let returns = Consumer::attach(seg.return_ring()).expect("fresh ring");
        Sender {
            state: RefCell::new(SendState {
                submit,
                returns,
                ledger: Ledger::new(geo.slot_count),
                receiver: None,
                deferred: None,
            }),
            seg,
            slots,
            geo,
            backpressure: Cell::new(backpressure),
            spin: Cell::new(DEFAULT_SPIN),
            yield_for: Cell::new(DEFAULT_YIELD),
        }
    }

    /// The channel's shape.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The transport (e.g. [`CardSlots::pool`]).
    pub fn transport(&self) -> &T {
        &self.slots
    }

    /// Changes what [`Sender::loan`] does when every slot is taken.
    pub fn set_backpressure(&self, wait: Wait) {
        self.backpressure.set(wait);
    }

    /// Busy-poll rounds when waiting for a slot, before it yields
    /// (default [`DEFAULT_SPIN`]; 0: none).
    pub fn set_spin(&self, rounds: u32) {
        self.spin.set(rounds);
    }

    /// How long a wait for a slot gives the CPU up and checks again after
    /// its spin, before it sleeps (default [`DEFAULT_YIELD`]; zero: sleep
    /// right after the spin; with `set_spin(0)`, at once).
    pub fn set_yield(&self, span: Duration) {
        self.yield_for.set(span);
    }

    /// Slots sent and not yet given back (after taking in what the
    /// receiver has returned so far).
    pub fn in_flight(&self) -> u32 {
        let mut st = self.state.borrow_mut();
        // A corrupt return ring surfaces on the next loan; here it only
        // means the count is as of the last good entry.
        self.collect_or_defer(&mut st);
        st.ledger.in_flight()
    }

    /// A free slot, waiting as the channel's backpressure setting says.
    #[inline(always)]
    pub fn loan(&self) -> Result<Loan<'_, T>> {
        self.loan_with(self.backpressure.get())
    }

    /// A free slot, or [`Error::Full`] at once.
    #[inline(always)]
    pub fn try_loan(&self) -> Result<Loan<'_, T>> {
        self.loan_with(Wait::Never)
    }

    /// A free slot, waiting as `wait` says.
    #[inline(always)]
    pub fn loan_with(&self, wait: Wait) -> Result<Loan<'_, T>> {
        let index = self.take_slot(wait)?;
        Ok(SlotLoan::new(self, index))
    }

    /// A free slot of a sender kept in an `Rc`, waiting as the
    /// backpressure setting says. The loan holds the `Rc`, not a borrow,
    /// so it can live next to the sender (in the same struct, say) while
    /// earlier messages are in flight: "send, then loan the next slot at
    /// once" across loop iterations.
    ///
    /// ```
    /// use std::rc::Rc;
    /// use zcopy::channel::{Builder, OwnedLoan, Sender, Shm};
    ///
    /// struct Pinger {
    ///     tx: Rc<Sender<Shm>>,
    ///     next: Option<OwnedLoan<Shm>>,
    /// }
    ///
    /// impl Pinger {
    ///     fn ping(&mut self, msg: &[u8]) -> zcopy::channel::Result<()> {
    ///         let mut loan = match self.next.take() {
    ///             Some(l) => l,
    ///             None => self.tx.loan_owned()?,
    ///         };
    ///         loan.as_mut_slice()[..msg.len()].copy_from_slice(msg);
    ///         loan.send(msg.len())?;
    ///         // The next slot, taken off the critical path.
    ///         self.next = Some(self.tx.try_loan_owned()?);
    ///         Ok(())
    ///     }
    /// }
    ///
    /// let tx = Rc::new(Builder::new().slot_size(64).slot_count(4).create()?);
    /// let mut p = Pinger { tx, next: None };
    /// p.ping(b"one")?;
    /// p.ping(b"two")?;
    /// assert_eq!(p.tx.in_flight(), 2);
    /// # Ok::<(), zcopy::channel::Error>(())
    /// ```
    pub fn loan_owned(self: &Rc<Self>) -> Result<OwnedLoan<T>> {
        self.loan_owned_with(self.backpressure.get())
    }

    /// As [`Sender::loan_owned`], or [`Error::Full`] at once.
    pub fn try_loan_owned(self: &Rc<Self>) -> Result<OwnedLoan<T>> {
        self.loan_owned_with(Wait::Never)
    }

    /// As [`Sender::loan_owned`], waiting as `wait` says.
    pub fn loan_owned_with(self: &Rc<Self>, wait: Wait) -> Result<OwnedLoan<T>> {
        let index = self.take_slot(wait)?;
        Ok(SlotLoan::new(Rc::clone(self), index))
    }

    /// Takes a free slot for a loan, waiting as `wait` says. The common
    /// case, a free slot at hand, is inlined into the caller; what waiting
    /// takes is not.
    #[inline(always)]
    fn take_slot(&self, wait: Wait) -> Result<u32> {
        let mut st = self.state.borrow_mut();
        if let Some(e) = st.deferred.take() {
            return Err(e);
        }
        if self.geo.slot_size as usize >= RECLAIM_BEFORE_LOAN {
            self.collect(&mut st)?;
        }
        if let Some(index) = st.ledger.loan() {
            return Ok(index);
        }
        drop(st);
        self.wait_for_slot(wait)
    }

    /// [`Sender::take_slot`] when no slot was free: takes in what the
    /// receiver returned, then waits for a return as `wait` says. It spins,
    /// then yields, and asks after the receiver's process (a system call)
    /// only once both brought nothing back, before it sleeps.
    #[inline(never)]
    fn wait_for_slot(&self, wait: Wait) -> Result<u32> {
        let mut st = self.state.borrow_mut();
        let mut deadline = None;
        let mut first = true;
        loop {
            if let Some(index) = st.ledger.loan() {
                return Ok(index);
            }
            self.collect(&mut st)?;
            if st.ledger.has_free() {
                continue;
            }
            let d = *deadline.get_or_insert_with(|| wait.deadline());
            let Some(d) = d else {
                return Err(Error::Full);
            };
            let mut returned = None;
            if first {
                // Once per call: after a sleep the returns wake it.
                first = false;
                returned = spin_on(self.spin.get(), d, || {
                    self.collect(&mut st)?;
                    Ok(st.ledger.has_free().then_some(()))
                })?;
                if returned.is_none() {
                    returned = yield_on(self.yield_for.get(), d, || {
                        self.collect(&mut st)?;
                        Ok(st.ledger.has_free().then_some(()))
                    })?;
                }
            }
            if returned.is_none() {
                self.check_receiver(&mut st)?;
                sleep_on(&mut st.returns, d)?;
            }
        }
    }

    /// Copies `data` into a slot and sends it (for callers that have the
    /// bytes already; writing into a [`Loan`] avoids this copy).
    pub fn send_copy(&self, data: &[u8]) -> Result<()> {
        Tx::send_copy(self, data)
    }

    /// A slot holding a `P`, written in place, then [`PodLoan::send`].
    pub fn loan_pod<P: bytemuck::Pod>(&self) -> Result<PodLoan<'_, T, P>> {
        let loan = self.loan()?;
        check_pod::<P>(loan.slot_ptr(), self.geo.slot_size as usize)?;
        Ok(PodLoan {
            loan,
            _p: PhantomData,
        })
    }

    /// Checks whether the receiver died; if it did, reclaims the slots it
    /// held and returns [`Error::PeerDied`] (once). Waiting calls do this by
    /// themselves; a sender that never waits can call it now and then.
    pub fn check_peer(&self) -> Result<()> {
        let mut st = self.state.borrow_mut();
        self.collect(&mut st)?;
        self.check_receiver(&mut st)
    }

    /// Takes back the slots the receiver returned.
    #[inline(always)]
    fn collect(&self, st: &mut SendState) -> Result<()> {
        while let Some(v) = st.returns.pop().map_err(corrupt("return ring indices"))? {
            let index = (v & 0xffff_ffff) as u32;
            st.ledger
                .settle(index, RETURNED)
                .map_err(|_| Error::Corrupt("the receiver returned a slot that was not sent"))?;
        }
        Ok(())
    }

    /// [`Sender::collect`] where its error cannot be returned: kept for
    /// the next loan (the first one, if several).
    #[inline(always)]
    fn collect_or_defer(&self, st: &mut SendState) {
        if let Err(e) = self.collect(st) {
            st.deferred.get_or_insert(e);
        }
    }

    fn check_receiver(&self, st: &mut SendState) -> Result<()> {
        let owner = &self.seg.header().receiver;
        let pid = owner.pid.load(Ordering::Acquire);
        let start = owner.start.load(Ordering::Acquire);
        if pid == 0 || start == 0 {
            // None attached, or one is attaching right now.
            st.receiver = None;
            return Ok(());
        }
        let known = st.receiver.as_ref().map(|w| (w.pid, w.start));
        if known != Some((pid, start)) {
            st.receiver = Some(Watch::new(pid, start));
        }
        if !st.receiver.as_ref().is_some_and(Watch::gone) {
            return Ok(());
        }
        let reclaimed = self.reclaim(st)?;
        // Free the receiver position for a new receiver (only if it still
        // names the dead one).
        let _ = owner
            .pid
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
        st.receiver = None;
        Err(Error::PeerDied { pid, reclaimed })
    }

    /// After the receiver died: every slot in flight that is neither in the
    /// submit ring (the next receiver gets those) nor returned was held by
    /// the dead receiver; it is free again.
    fn reclaim(&self, st: &mut SendState) -> Result<u32> {
        self.collect(st)?;
        let mut queued = vec![false; self.geo.slot_count as usize];
        for v in st
            .submit
            .pending()
            .map_err(corrupt("submit ring indices"))?
        {
            let index = (v & 0xffff_ffff) as usize;
            if !st.ledger.is_in_flight(index) || queued[index] {
                return Err(Error::Corrupt(
                    "the submit ring holds a slot that was not sent",
                ));
            }
            queued[index] = true;
        }
        Ok(st.ledger.reclaim(|index| queued[index]))
    }

    #[inline]
    fn slot(&self, index: u32) -> *mut u8 {
        self.slots
            .base()
            .as_ptr()
            .wrapping_add(self.geo.slot_offset(index) as usize)
    }
}

impl<T: Transport> Drop for Sender<T> {
    fn drop(&mut self) {
        let h = self.seg.header();
        // CLOSED (release): the receiver reads everything sent, then Closed.
        h.flags.fetch_or(FLAG_SENDER_CLOSED, Ordering::AcqRel);
        self.state.get_mut().submit.wake();
        if let Some(path) = self.seg.path() {
            let _ = std::fs::remove_file(path);
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// How a loan holds on to its [`Sender`]: by borrowing it (`&Sender`, a
/// [`Loan`]) or through an `Rc` (`Rc<Sender>`, an [`OwnedLoan`], which
/// borrows nothing). Sealed: these two are all there are.
pub trait SenderRef<T: Transport>: Deref<Target = Sender<T>> + sealed::Sealed {}

impl<T: Transport> sealed::Sealed for &Sender<T> {}
impl<T: Transport> SenderRef<T> for &Sender<T> {}
impl<T: Transport> sealed::Sealed for Rc<Sender<T>> {}
impl<T: Transport> SenderRef<T> for Rc<Sender<T>> {}

/// A loaned slot: write the message in place, then [`SlotLoan::send`] it
/// with its length. `send` takes the loan, so a slot cannot be sent twice
/// or written after it went; dropping it unsent gives the slot back.
///
/// ```compile_fail,E0382
/// # let tx = zcopy::channel::Builder::new().create().unwrap();
/// let loan = tx.loan().unwrap();
/// loan.send(0).unwrap();
/// loan.send(0).unwrap(); // the loan is gone
/// ```
///
/// ```compile_fail,E0382
/// # let tx = zcopy::channel::Builder::new().create().unwrap();
/// let mut loan = tx.loan().unwrap();
/// loan.send(1).unwrap();
/// loan.as_mut_slice()[0] = 1; // the slot is the receiver's now
/// ```
///
/// A message has the length `send` is given: there is no length to
/// forget, and no default that would send an empty message.
///
/// ```compile_fail,E0061
/// # let tx = zcopy::channel::Builder::new().create().unwrap();
/// let mut loan = tx.loan().unwrap();
/// loan.as_mut_slice()[..5].copy_from_slice(b"hello");
/// loan.send().unwrap(); // send takes the length
/// ```
#[derive(Debug)]
pub struct SlotLoan<T: Transport, S: SenderRef<T>> {
    sender: S,
    index: u32,
    _t: PhantomData<fn() -> T>,
}

/// A slot loaned from a borrowed [`Sender`] ([`Sender::loan`]).
pub type Loan<'a, T> = SlotLoan<T, &'a Sender<T>>;

/// A slot loaned from a [`Sender`] kept in an `Rc`
/// ([`Sender::loan_owned`]): it borrows nothing.
pub type OwnedLoan<T> = SlotLoan<T, Rc<Sender<T>>>;

impl<T: Transport, S: SenderRef<T>> SlotLoan<T, S> {
    #[inline]
    fn new(sender: S, index: u32) -> SlotLoan<T, S> {
        SlotLoan {
            sender,
            index,
            _t: PhantomData,
        }
    }

    #[inline]
    fn slot_ptr(&self) -> *mut u8 {
        self.sender.slot(self.index)
    }

    /// The whole slot, writable (its old contents are whatever was there).
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the slot lies inside the transport's mapping (index <
        // slot_count, stride × count = slots_bytes, checked at creation or
        // open), which lives as long as the sender this loan holds (by
        // borrow or by Rc); it is Loaned, so the receiver does not own it
        // and no other loan names it; the borrow of `self` bounds the
        // slice's life. (A misbehaving peer can still write these bytes
        // from its side; that changes data, never where this slice points.)
        unsafe { std::slice::from_raw_parts_mut(self.slot_ptr(), self.capacity()) }
    }

    /// Slot capacity in bytes.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.sender.geo.capacity()
    }

    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Where the slot starts in the transport's memory (for the card
    /// transport: the offset in [`CardSlots::pool`] to name in an SQE).
    pub fn offset(&self) -> u64 {
        self.sender.geo.slot_offset(self.index)
    }

    /// Sends the first `len` bytes of the slot as the message; the
    /// receiver reads them in place. `len` past the slot is
    /// [`Error::TooLarge`] and the slot goes back unsent.
    #[inline(always)]
    pub fn send(self, len: usize) -> Result<()> {
        self.sender.geo.check_len(len)?;
        let index = self.index;
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the handle is moved out of `this` once, and `this` is
        // ManuallyDrop, so neither its Drop (which would give the slot
        // back) nor the handle's own drop runs for it again; the other
        // fields need no drop.
        let sender: S = unsafe { std::ptr::read(&this.sender) };
        let mut st = sender.state.borrow_mut();
        st.ledger.send(index, RETURNED);
        let entry = u64::from(index) | (len as u64) << 32;
        // The ring has room for every slot, so Full means the receiver's
        // head is lying.
        st.submit
            .push(entry)
            .map_err(|_| Error::Corrupt("submit ring full: impossible head index"))?;
        // Take back what the receiver returned now, while the message is on
        // its way: the next loan then reuses the slot returned last (the
        // ledger lends the most recently freed slot first), which is still
        // in cache, instead of walking every slot. A corrupt return ring
        // surfaces on the next loan.
        this.sender.collect_or_defer(&mut st);
        Ok(())
    }
}

impl<T: Transport, S: SenderRef<T>> Drop for SlotLoan<T, S> {
    #[inline]
    fn drop(&mut self) {
        let mut st = self.sender.state.borrow_mut();
        st.ledger.unloan(self.index);
    }
}

/// A loaned slot holding a `P`: write it through `DerefMut`, then send.
#[derive(Debug)]
pub struct PodLoan<'a, T: Transport, P> {
    loan: Loan<'a, T>,
    _p: PhantomData<P>,
}

impl<T: Transport, P: bytemuck::Pod> std::ops::Deref for PodLoan<'_, T, P> {
    type Target = P;
    fn deref(&self) -> &P {
        // SAFETY: check_pod made sure a P fits the slot and the slot is
        // aligned for P; P is Pod, so whatever bytes are there are a valid P;
        // the slot is Loaned (ours alone) for as long as `self` lives.
        unsafe { &*self.loan.slot_ptr().cast::<P>() }
    }
}

impl<T: Transport, P: bytemuck::Pod> std::ops::DerefMut for PodLoan<'_, T, P> {
    fn deref_mut(&mut self) -> &mut P {
        // SAFETY: as in deref, and `&mut self` makes the borrow unique.
        unsafe { &mut *self.loan.slot_ptr().cast::<P>() }
    }
}

impl<T: Transport, P: bytemuck::Pod> PodLoan<'_, T, P> {
    /// Sends the value.
    pub fn send(self) -> Result<()> {
        self.loan.send(std::mem::size_of::<P>())
    }
}

#[cfg(feature = "card")]
impl Sender<CardSlots> {
    /// The pool the slots live in (this process's import).
    pub fn pool(&self) -> &crate::card::Pool {
        self.slots.pool()
    }
}

impl<T: Transport> Tx for Sender<T> {
    type Loan<'a>
        = Loan<'a, T>
    where
        T: 'a;
    type OwnedLoan = OwnedLoan<T>;
    fn loan_with(&self, wait: Wait) -> Result<Loan<'_, T>> {
        Sender::loan_with(self, wait)
    }
    fn loan(&self) -> Result<Loan<'_, T>> {
        Sender::loan(self)
    }
    fn loan_owned_with(self: &Rc<Self>, wait: Wait) -> Result<OwnedLoan<T>> {
        Sender::loan_owned_with(self, wait)
    }
    fn loan_owned(self: &Rc<Self>) -> Result<OwnedLoan<T>> {
        Sender::loan_owned(self)
    }
    fn in_flight(&self) -> u32 {
        Sender::in_flight(self)
    }
    fn slot_size(&self) -> usize {
        self.geo.slot_size as usize
    }
}

impl<T: Transport, S: SenderRef<T>> TxLoan for SlotLoan<T, S> {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        SlotLoan::as_mut_slice(self)
    }
    fn capacity(&self) -> usize {
        SlotLoan::capacity(self)
    }
    fn offset(&self) -> u64 {
        SlotLoan::offset(self)
    }
    fn send(self, len: usize) -> Result<()> {
        SlotLoan::send(self, len)
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use super::super::liveness::ASKED;
    use super::*;
    use crate::channel::{Builder, Receiver, Shm};

    #[test]
    fn a_return_of_a_slot_never_sent_fails_the_next_loan() {
        // A receiver that gives back a slot it never got: the send that
        // takes in the return cannot report it, the next loan does, once.
        let tx: Sender<Shm> = Builder::new().slot_size(64).slot_count(4).create().unwrap();
        let mut peer = Producer::attach(tx.seg.return_ring()).unwrap();
        let loan = tx.loan().unwrap();
        let never_sent = (loan.index() + 1) % 4;
        peer.push(u64::from(never_sent)).unwrap();
        loan.send(8).unwrap();
        assert!(
            matches!(tx.loan(), Err(Error::Corrupt(why)) if why.contains("not sent")),
            "the loan after the bad return"
        );
        // Reported; the channel's own state is untouched, so it goes on.
        assert_eq!(tx.in_flight(), 1);
        tx.loan().unwrap().send(8).unwrap();
        assert_eq!(tx.in_flight(), 2);
    }

    /// Waits in `loan` (no spin, `yield_for` of yielding) on a channel of
    /// one slot whose receiver gives it back once `delay` has passed: how
    /// many times the wait asked after the receiver.
    fn asks_for_a_late_return(yield_for: Duration, delay: Duration) -> u64 {
        let (a, b) = UnixStream::pair().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                let rx = Receiver::<Shm>::from_socket(&b).unwrap();
                let held = rx.recv().unwrap();
                std::thread::sleep(delay);
                drop(held);
                // Stay attached until the sender has its slot.
                let _ = rx.recv();
            });
            let tx = Builder::new().slot_size(64).slot_count(1).create().unwrap();
            tx.share(&a).unwrap();
            tx.set_spin(0);
            tx.set_yield(yield_for);
            tx.send_copy(b"held").unwrap();
            let before = ASKED.with(|n| n.get());
            let loan = tx.loan().unwrap();
            let asked = ASKED.with(|n| n.get()) - before;
            loan.send(3).unwrap();
            asked
        })
    }

    #[test]
    fn a_timeout_past_the_clocks_range_waits_as_long_as_it_takes() {
        // Instant + Duration::MAX overflows: the wait must not panic.
        let (a, b) = UnixStream::pair().unwrap();
        std::thread::scope(|s| {
            s.spawn(move || {
                let rx = Receiver::<Shm>::from_socket(&b).unwrap();
                let held = rx.recv().unwrap();
                std::thread::sleep(Duration::from_millis(50));
                drop(held);
                let _ = rx.recv_timeout(Duration::MAX);
            });
            let tx = Builder::new().slot_size(64).slot_count(1).create().unwrap();
            tx.share(&a).unwrap();
            tx.send_copy(b"held").unwrap();
            let loan = tx.loan_with(Wait::Timeout(Duration::MAX)).unwrap();
            loan.send(3).unwrap();
        });
    }

    #[test]
    fn a_wait_for_a_slot_yields_before_it_sleeps() {
        // A slot that comes back while the wait yields is taken there: the
        // wait never got to its sleep, before which it asks after the
        // receiver.
        // Long enough that the wait surely began before it ends.
        let delay = Duration::from_millis(200);
        assert_eq!(asks_for_a_late_return(Duration::from_secs(30), delay), 0);
        // Without the yield, the same wait sleeps (and asks first).
        assert!(asks_for_a_late_return(Duration::ZERO, delay) > 0);
    }
}
