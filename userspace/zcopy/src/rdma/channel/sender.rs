//! The sending end of an RDMA channel: [`Sender`], its [`Loan`]s and
//! [`OwnedLoan`]s.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use super::link::{
    anon_ring, check_peer, credit_range, geometry, recv_depth, End, Hello, Link, LinkStats, CLOSE,
    IBV_WC_RECV_RDMA_WITH_IMM, IBV_WC_SUCCESS, KIND, PULL_EVERY, WR_CLOSE, WR_READ, WR_RECV,
    WR_WRITE,
};
use crate::channel::ledger::{Events, Ledger};
use crate::channel::{
    deadline_due, Builder, Error, Geometry, Result, Tx, TxLoan, Wait, LOOK_EVERY,
};
use crate::rdma::cm::Connection;
use crate::rdma::verbs::Region;

/// What a sent slot waits for: the receiver's board counts its release.
/// That proves the write was delivered (the receiver took its completion
/// before releasing the slot), so the write's own completion is not
/// waited for: most writes go unsignaled. A write the peer has placed is
/// never read from this slot again: were its acknowledgement lost, the
/// retransmitted duplicate is acknowledged without being executed
/// (InfiniBand C9-105).
const CREDITED: Events = 1;

#[derive(Debug)]
struct SendState {
    link: Link,
    ledger: Ledger,
    /// Sends of each slot so far (wrapping): the slot's message was
    /// released once the receiver's board word for it says the same.
    sent: Vec<u32>,
    /// A read of the receiver's board is on its way.
    reading: bool,
    /// The next read of the board may go no earlier than this.
    pull_at: Instant,
    /// PeerDied already reported (later calls report it with 0 reclaimed).
    reported: bool,
}

/// The sending end of an RDMA channel: made by
/// [`BuilderExt::connect_rdma`].
#[derive(Debug)]
pub struct Sender {
    state: RefCell<SendState>,
    geo: Geometry,
    backpressure: Cell<Wait>,
    spin: Cell<u32>,
}

/// RDMA channels from a [`Builder`]: the channel's shape and backpressure
/// as for a shared-memory channel, then where the receiver listens.
pub trait BuilderExt {
    /// An RDMA channel to the [`Listener`](crate::rdma::Listener) at `dst`, from the local address
    /// `src` (None: wherever the routing table says). Both ends register a
    /// ring of this shape; messages move by RDMA WRITE WITH IMMEDIATE, slot
    /// to slot.
    fn connect_rdma(self, src: Option<IpAddr>, dst: SocketAddr) -> Result<Sender>;

    /// As [`BuilderExt::connect_rdma`], with the sender's slots in `ring`
    /// (slot `i` at `i × stride`): a zcard pool mapping, say, so the card's
    /// STORAGE_READ lands in a loaned slot that then goes out by RDMA with
    /// no CPU copy ([`Loan::offset`] names the slot).
    fn connect_rdma_on<R>(self, ring: R, src: Option<IpAddr>, dst: SocketAddr) -> Result<Sender>
    where
        R: Region + Send + std::fmt::Debug + 'static;
}

impl BuilderExt for Builder {
    fn connect_rdma(self, src: Option<IpAddr>, dst: SocketAddr) -> Result<Sender> {
        Sender::connect::<MmapMut>(self.shape(), src, dst, None)
    }

    fn connect_rdma_on<R>(self, ring: R, src: Option<IpAddr>, dst: SocketAddr) -> Result<Sender>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        Sender::connect(self.shape(), src, dst, Some(ring))
    }
}

impl Sender {
    /// Connects a sender of the builder's shape within its connect
    /// timeout, `within`, in all: the address, the route and the
    /// connection share it.
    fn connect<R>(
        (slot_size, slot_count, backpressure, within): (usize, u32, Wait, Duration),
        src: Option<IpAddr>,
        dst: SocketAddr,
        ring: Option<R>,
    ) -> Result<Sender>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        let geo = geometry(slot_size, slot_count)?;
        let deadline = Instant::now().checked_add(within);
        let conn = Connection::resolve(src.map(|ip| SocketAddr::new(ip, 0)), dst, within)?;
        let recvs = recv_depth(&geo);
        let mut link = match ring {
            Some(ring) => {
                Link::new(conn, End::Sender, &geo, recvs, ring).map_err(|failed| failed.0)?
            }
            None => Link::new(conn, End::Sender, &geo, recvs, anon_ring(&geo)?)
                .map_err(|failed| failed.0)?,
        };
        let hello = link.hello(&geo);
        let reply = link.conn.connect(
            bytemuck::bytes_of(&hello),
            deadline.map_or(within, |d| d.saturating_duration_since(Instant::now())),
        )?;
        let h = Hello::parse(&reply)?;
        check_peer(&h, End::Receiver, &geo)?;
        link.peer(&h);
        Ok(Sender {
            state: RefCell::new(SendState {
                link,
                ledger: Ledger::new(geo.slot_count),
                sent: vec![0; geo.slot_count as usize],
                reading: false,
                pull_at: Instant::now(),
                reported: false,
            }),
            geo,
            backpressure: Cell::new(backpressure),
            spin: Cell::new(crate::channel::DEFAULT_SPIN),
        })
    }

    /// The channel's shape (the same at both ends).
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The RDMA device and the local and peer addresses.
    pub fn endpoints(&self) -> (String, Option<SocketAddr>, Option<SocketAddr>) {
        self.state.borrow().link.endpoints()
    }

    /// What the link did so far: messages, credit writes and board reads
    /// and the slots each gave back, completion queue polls.
    pub fn stats(&self) -> LinkStats {
        self.state.borrow().link.stats
    }

    /// Bytes a message may have to be sent inline.
    pub fn max_inline(&self) -> u32 {
        self.state.borrow().link.conn.max_inline()
    }

    /// Changes what [`Sender::loan`] does when every slot is taken.
    pub fn set_backpressure(&self, wait: Wait) {
        self.backpressure.set(wait);
    }

    /// Busy-poll rounds before sleeping on the completion channel.
    pub fn set_spin(&self, rounds: u32) {
        self.spin.set(rounds);
    }

    /// Messages sent whose slot is not free again yet (the receiver has
    /// not given it back).
    pub fn in_flight(&self) -> u32 {
        let mut st = self.state.borrow_mut();
        if self.collect(&mut st).is_ok() {
            self.pull(&mut st);
        }
        st.ledger.in_flight()
    }

    /// A free slot, waiting as the backpressure setting says.
    pub fn loan(&self) -> Result<Loan<'_>> {
        self.loan_with(self.backpressure.get())
    }

    /// A free slot, or [`Error::Full`] at once.
    pub fn try_loan(&self) -> Result<Loan<'_>> {
        self.loan_with(Wait::Never)
    }

    /// A free slot, waiting as `wait` says. A dead or departed receiver
    /// ends the wait with [`Error::PeerDied`].
    pub fn loan_with(&self, wait: Wait) -> Result<Loan<'_>> {
        let index = self.take_slot(wait)?;
        Ok(SlotLoan {
            sender: self,
            index,
        })
    }

    /// A free slot of a sender kept in an `Rc`, waiting as the
    /// backpressure setting says: the loan holds the `Rc`, not a borrow,
    /// as [`crate::channel::Sender::loan_owned`] describes.
    pub fn loan_owned(self: &Rc<Self>) -> Result<OwnedLoan> {
        self.loan_owned_with(self.backpressure.get())
    }

    /// As [`Sender::loan_owned`], waiting as `wait` says.
    pub fn loan_owned_with(self: &Rc<Self>, wait: Wait) -> Result<OwnedLoan> {
        let index = self.take_slot(wait)?;
        Ok(SlotLoan {
            sender: Rc::clone(self),
            index,
        })
    }

    fn take_slot(&self, wait: Wait) -> Result<u32> {
        let mut st = self.state.borrow_mut();
        // The clock is read only once there is something to wait for, as
        // in `Link::reserve_send`.
        let mut deadline = None;
        let mut spins = 0;
        loop {
            self.collect(&mut st)?;
            self.check_broken(&mut st)?;
            if let Some(index) = st.ledger.loan() {
                return Ok(index);
            }
            // The board is pulled when the wait begins, and it and the
            // deadline once per LOOK_EVERY rounds of the spin and before
            // each sleep: the rounds between read no clock.
            let spinning = spins < self.spin.get();
            if spins % LOOK_EVERY == 0 || !spinning {
                self.pull(&mut st);
            }
            let Some(d) = *deadline.get_or_insert_with(|| wait.deadline()) else {
                return Err(Error::Full);
            };
            if deadline_due(spins, spinning) && d.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
            if spinning {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            // Wake for the next read of the board too.
            let until = match (d, st.reading) {
                (d, true) => d,
                (None, false) => Some(st.pull_at),
                (Some(d), false) => Some(d.min(st.pull_at)),
            };
            st.link.wait(until)?;
        }
    }

    /// Out of slots, or asked what is in flight: reads the receiver's
    /// board unless a read is on its way, or the last one freed nothing
    /// less than [`PULL_EVERY`] ago.
    fn pull(&self, st: &mut SendState) {
        if st.reading
            || st.ledger.in_flight() == 0
            || st.link.broken.is_some()
            || Instant::now() < st.pull_at
        {
            return;
        }
        match st.link.read_board() {
            Ok(()) => st.reading = true,
            Err(e) => st.link.break_with(e.to_string()),
        }
    }

    /// Settles CREDITED for each slot in `slots` that awaits it and whose
    /// board word (at `base + slot` of the local board) counts as many
    /// releases as sends; how many.
    fn credit_from(&self, st: &mut SendState, slots: std::ops::Range<u32>, base: u32) -> u64 {
        let mut n = 0;
        for i in slots {
            let released = st.link.board_word(base + i).load(Ordering::Acquire);
            if released == st.sent[i as usize] && st.ledger.awaits(i, CREDITED) {
                // Cannot fail: the slot awaits exactly this event.
                let _ = st.ledger.settle(i, CREDITED);
                n += 1;
            }
        }
        n
    }

    /// Copies `data` into a slot and sends it.
    pub fn send_copy(&self, data: &[u8]) -> Result<()> {
        Tx::send_copy(self, data)
    }

    fn check_broken(&self, st: &mut SendState) -> Result<()> {
        if st.link.broken.is_none() {
            return Ok(());
        }
        // Everything sent is gone with the receiver's memory.
        let freed = st.ledger.reclaim(|_| false);
        let reclaimed = if std::mem::replace(&mut st.reported, true) {
            0
        } else {
            freed
        };
        Err(Error::PeerDied {
            pid: st.link.peer_pid,
            reclaimed,
        })
    }

    fn collect(&self, st: &mut SendState) -> Result<()> {
        loop {
            st.link.poll()?;
            if st.link.wcs.is_empty() {
                return Ok(());
            }
            for i in 0..st.link.wcs.len() {
                let wc = st.link.wcs[i];
                if wc.status != IBV_WC_SUCCESS {
                    continue;
                }
                match wc.wr_id & KIND {
                    WR_RECV => {
                        if wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM {
                            return Err(Error::Corrupt("a message from the receiver"));
                        }
                        let slots = wc
                            .imm
                            .and_then(|imm| credit_range(imm, self.geo.slot_count))
                            .ok_or(Error::Corrupt("a credit for slots out of range"))?;
                        st.link.conn.post_recv(wc.wr_id)?;
                        st.link.stats.credit_writes += 1;
                        let n = self.credit_from(st, slots, 0);
                        st.link.stats.credited_by_writes += n;
                    }
                    WR_READ => {
                        st.reading = false;
                        let count = self.geo.slot_count;
                        let n = self.credit_from(st, 0..count, count);
                        st.link.stats.credited_by_reads += n;
                        let now = Instant::now();
                        st.pull_at = if n == 0 { now + PULL_EVERY } else { now };
                    }
                    _ => {}
                }
            }
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        // Orderly close: the close message goes after every write (RC keeps
        // the order); wait (bounded) until it is delivered or the receiver
        // has gone, then the connection drops (the QP is destroyed, the
        // receiver told).
        let st = self.state.get_mut();
        if st.link.conn.poll_events().is_err() || st.link.broken.is_some() {
            return;
        }
        if st.link.send_imm(WR_CLOSE, CLOSE).is_err() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if st.link.conn.poll_events().is_err() {
                return;
            }
            st.link.stash.clear();
            if st.link.poll_cq().is_err() {
                return;
            }
            if st.link.stash.iter().any(|w| w.wr_id == WR_CLOSE) {
                return;
            }
            if st.link.stash.is_empty() {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
    }
}

mod sealed {
    pub trait Sealed {}
}

/// How a loan holds on to its [`Sender`]: by borrowing it (a [`Loan`]) or
/// through an `Rc` (an [`OwnedLoan`]). Sealed.
pub trait SenderRef: Deref<Target = Sender> + sealed::Sealed {}

impl sealed::Sealed for &Sender {}
impl SenderRef for &Sender {}
impl sealed::Sealed for Rc<Sender> {}
impl SenderRef for Rc<Sender> {}

/// A loaned slot of an RDMA channel's sender: write in place, then send
/// with its length (see [`crate::channel::SlotLoan`]).
#[derive(Debug)]
pub struct SlotLoan<S: SenderRef> {
    sender: S,
    index: u32,
}

/// A slot loaned from a borrowed [`Sender`].
pub type Loan<'a> = SlotLoan<&'a Sender>;

/// A slot loaned from a [`Sender`] kept in an `Rc`: it borrows nothing.
pub type OwnedLoan = SlotLoan<Rc<Sender>>;

impl<S: SenderRef> SlotLoan<S> {
    /// The whole slot, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let st = self.sender.state.borrow();
        let p = st.link.slot(&self.sender.geo, self.index);
        // SAFETY: the slot lies inside the registered ring (index <
        // slot_count), which lives as long as the sender this loan holds;
        // it is Loaned, so no write reads it and no other loan names it;
        // the borrow of self bounds the slice's life.
        unsafe { std::slice::from_raw_parts_mut(p, self.sender.geo.slot_size as usize) }
    }

    /// Slot capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.sender.geo.capacity()
    }

    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Where the slot starts in the ring (the same at the receiver).
    pub fn offset(&self) -> u64 {
        self.sender.geo.slot_offset(self.index)
    }

    /// Writes the first `len` bytes of the slot into the same slot at the
    /// receiver. `len` past the slot is [`Error::TooLarge`] and the slot
    /// goes back unsent.
    pub fn send(self, len: usize) -> Result<()> {
        self.sender.geo.check_len(len)?;
        let (index, offset) = (self.index, self.offset());
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: the handle is moved out of `this` once, and `this` is
        // ManuallyDrop, so neither its Drop (which would give the slot
        // back) nor the handle's own drop runs for it again; the index
        // needs no drop.
        let sender: S = unsafe { std::ptr::read(&this.sender) };
        let mut st = sender.state.borrow_mut();
        let r = st.link.write(
            WR_WRITE | u64::from(index),
            offset,
            len as u32,
            Some(index),
            true,
        );
        if let Err(e) = r {
            st.ledger.unloan(index);
            st.link.break_with(e.to_string());
            return sender.check_broken(&mut st);
        }
        st.ledger.send(index, CREDITED);
        let sent = &mut st.sent[index as usize];
        *sent = sent.wrapping_add(1);
        st.link.stats.messages += 1;
        Ok(())
    }
}

impl<S: SenderRef> Drop for SlotLoan<S> {
    fn drop(&mut self) {
        let mut st = self.sender.state.borrow_mut();
        st.ledger.unloan(self.index);
    }
}

impl Tx for Sender {
    type Loan<'a> = Loan<'a>;
    type OwnedLoan = OwnedLoan;
    fn loan_with(&self, wait: Wait) -> Result<Loan<'_>> {
        Sender::loan_with(self, wait)
    }
    fn loan(&self) -> Result<Loan<'_>> {
        Sender::loan(self)
    }
    fn loan_owned_with(self: &Rc<Self>, wait: Wait) -> Result<OwnedLoan> {
        Sender::loan_owned_with(self, wait)
    }
    fn loan_owned(self: &Rc<Self>) -> Result<OwnedLoan> {
        Sender::loan_owned(self)
    }
    fn in_flight(&self) -> u32 {
        Sender::in_flight(self)
    }
    fn slot_size(&self) -> usize {
        self.geo.slot_size as usize
    }
}

impl<S: SenderRef> TxLoan for SlotLoan<S> {
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
