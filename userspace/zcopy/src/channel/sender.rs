//! The sending end: [`Sender`], its [`Loan`]s and [`PodLoan`]s.

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;

use super::error::corrupt;
use super::ledger::{Events, Ledger};
use super::liveness::Watch;
use super::segment::{Segment, FLAG_SENDER_CLOSED};
use super::wait::{wait_on, DEFAULT_SPIN};
use super::{check_pod, CardSlots, Error, Geometry, Result, Transport, Tx, TxLoan, Wait};
use crate::ring::{Consumer, Producer};
use crate::sync::Ordering;

/// The one event a sent slot waits for: the receiver gave it back.
const RETURNED: Events = 1;

#[derive(Debug)]
struct SendState {
    submit: Producer,
    returns: Consumer,
    ledger: Ledger,
    receiver: Option<Watch>,
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
            }),
            seg,
            slots,
            geo,
            backpressure: Cell::new(backpressure),
            spin: Cell::new(DEFAULT_SPIN),
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

    /// Busy-poll rounds before sleeping when waiting (0: sleep at once).
    pub fn set_spin(&self, rounds: u32) {
        self.spin.set(rounds);
    }

    /// Slots sent and not yet given back (after taking in what the
    /// receiver has returned so far).
    pub fn in_flight(&self) -> u32 {
        let mut st = self.state.borrow_mut();
        // A corrupt return ring surfaces on the next loan; here it only
        // means the count is as of the last good entry.
        let _ = self.collect(&mut st);
        st.ledger.in_flight()
    }

    /// A free slot, waiting as the channel's backpressure setting says.
    pub fn loan(&self) -> Result<Loan<'_, T>> {
        self.loan_with(self.backpressure.get())
    }

    /// A free slot, or [`Error::Full`] at once.
    pub fn try_loan(&self) -> Result<Loan<'_, T>> {
        self.loan_with(Wait::Never)
    }

    /// A free slot, waiting as `wait` says.
    pub fn loan_with(&self, wait: Wait) -> Result<Loan<'_, T>> {
        let mut st = self.state.borrow_mut();
        let mut deadline = None;
        loop {
            if let Some(index) = st.ledger.loan() {
                return Ok(Loan {
                    sender: self,
                    index,
                    len: 0,
                });
            }
            self.collect(&mut st)?;
            if st.ledger.has_free() {
                continue;
            }
            let d = *deadline.get_or_insert_with(|| wait.deadline());
            let Some(d) = d else {
                return Err(Error::Full);
            };
            self.check_receiver(&mut st)?;
            wait_on(&mut st.returns, self.spin.get(), d)?;
        }
    }

    /// Copies `data` into a slot and sends it (for callers that have the
    /// bytes already; writing into a [`Loan`] avoids this copy).
    pub fn send_copy(&self, data: &[u8]) -> Result<()> {
        let mut loan = self.loan()?;
        loan.set_len(data.len())?;
        loan.as_mut_slice()[..data.len()].copy_from_slice(data);
        loan.send()
    }

    /// A slot holding a `P`, written in place, then [`PodLoan::send`].
    pub fn loan_pod<P: bytemuck::Pod>(&self) -> Result<PodLoan<'_, T, P>> {
        let mut loan = self.loan()?;
        check_pod::<P>(loan.slot_ptr(), self.geo.slot_size as usize)?;
        loan.set_len(std::mem::size_of::<P>())?;
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
    fn collect(&self, st: &mut SendState) -> Result<()> {
        while let Some(v) = st.returns.pop().map_err(corrupt("return ring indices"))? {
            let index = (v & 0xffff_ffff) as u32;
            st.ledger
                .settle(index, RETURNED)
                .map_err(|_| Error::Corrupt("the receiver returned a slot that was not sent"))?;
        }
        Ok(())
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

    fn slot(&self, index: u32) -> *mut u8 {
        self.slots
            .base()
            .as_ptr()
            .wrapping_add(index as usize * self.geo.slot_stride as usize)
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

/// A loaned slot: write the message in place, then [`Loan::send`] it.
/// Dropping it unsent gives the slot back.
#[derive(Debug)]
pub struct Loan<'a, T: Transport> {
    sender: &'a Sender<T>,
    index: u32,
    len: u32,
}

impl<T: Transport> Loan<'_, T> {
    fn slot_ptr(&self) -> *mut u8 {
        self.sender.slot(self.index)
    }

    /// The whole slot, writable (its old contents are whatever was there).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the slot lies inside the transport's mapping (index <
        // slot_count, stride × count = slots_bytes, checked at creation or
        // open); it is Loaned, so the receiver does not own it and no other
        // Loan names it; the borrow of `self` bounds the slice's life. (A
        // misbehaving peer can still write these bytes from its side; that
        // changes data, never where this slice points.)
        unsafe { std::slice::from_raw_parts_mut(self.slot_ptr(), self.capacity()) }
    }

    /// Slot capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.sender.geo.slot_size as usize
    }

    /// Sets the message length (default 0).
    pub fn set_len(&mut self, len: usize) -> Result<()> {
        if len > self.capacity() {
            return Err(Error::TooLarge {
                len,
                capacity: self.capacity(),
            });
        }
        self.len = len as u32;
        Ok(())
    }

    /// The message length.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when the message length is 0.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Where the slot starts in the transport's memory (for the card
    /// transport: the offset in [`CardSlots::pool`] to name in an SQE).
    pub fn offset(&self) -> u64 {
        u64::from(self.index) * self.sender.geo.slot_stride
    }

    /// Sends the message; the receiver reads the slot in place.
    pub fn send(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        let mut st = this.sender.state.borrow_mut();
        st.ledger.send(this.index, RETURNED);
        let entry = u64::from(this.index) | u64::from(this.len) << 32;
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
        let _ = this.sender.collect(&mut st);
        Ok(())
    }
}

impl<T: Transport> Drop for Loan<'_, T> {
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
        self.loan.send()
    }
}

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
    fn loan_with(&self, wait: Wait) -> Result<Loan<'_, T>> {
        Sender::loan_with(self, wait)
    }
    fn loan(&self) -> Result<Loan<'_, T>> {
        Sender::loan(self)
    }
    fn in_flight(&self) -> u32 {
        Sender::in_flight(self)
    }
    fn slot_size(&self) -> usize {
        self.geo.slot_size as usize
    }
}

impl<T: Transport> TxLoan for Loan<'_, T> {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        Loan::as_mut_slice(self)
    }
    fn set_len(&mut self, len: usize) -> Result<()> {
        Loan::set_len(self, len)
    }
    fn offset(&self) -> u64 {
        Loan::offset(self)
    }
    fn send(self) -> Result<()> {
        Loan::send(self)
    }
}
