//! Zero-copy channels: a process loans a slot, writes its message in place
//! and sends it; the receiver reads the same bytes in place, and the slot
//! goes back to the sender when the receiver drops it. No copy of the
//! payload, across processes.
//!
//! A channel is one sender and one receiver. Its control segment (a versioned
//! header and two SPSC index rings, see [`segment`]) is shared memory; its
//! slots live where the [`Transport`] puts them: in the segment ([`Shm`]) or
//! in a zcard pool the card can DMA into ([`CardSlots`]). The submit ring
//! carries `slot | length` from sender to receiver, the return ring carries
//! freed slots back; each side keeps its own record of which slot is where
//! and checks every index the other side hands it.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use zcopy::channel::{Builder, Receiver, Shm};
//!
//! // Sender side: a sealed memfd channel of 8 slots of 4 KiB.
//! let tx = Builder::new().slot_size(4096).slot_count(8).create()?;
//! // Hand it to the receiver over a Unix socket (here: within one process).
//! let (a, b) = UnixStream::pair()?;
//! tx.share(&a)?;
//! let rx = Receiver::<Shm>::from_socket(&(), &b)?;
//!
//! let mut loan = tx.loan()?;           // a free slot, writable in place
//! loan.as_mut_slice()[..5].copy_from_slice(b"hello");
//! loan.set_len(5)?;
//! loan.send()?;                        // `loan` is gone: cannot be sent twice
//!
//! let sample = rx.recv()?;             // the same bytes, read in place
//! assert_eq!(&*sample, b"hello");
//! drop(sample);                        // the slot goes back to the sender
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A peer that dies is noticed (through a pidfd) the next time the survivor
//! has to wait on it: a sender gets [`Error::PeerDied`] with the slots the
//! dead receiver held reclaimed (and a new receiver may attach), a receiver
//! gets the messages already sent and then [`Error::PeerDied`].

pub mod api;
mod liveness;
pub mod segment;
pub mod transport;

use std::cell::{Cell, RefCell};
use std::io::{IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use crate::ring::{Consumer, Producer, RingError};
use crate::sync::Ordering;
pub use api::{Rx, RxSample, Tx, TxLoan};
use liveness::Watch;
pub use segment::{
    check_name, list, remove_stale, ChannelInfo, Geometry, TransportKind, MAX_NAME_LEN,
};
use segment::{Segment, FLAG_SENDER_CLOSED};
pub use transport::{CardSlots, Shm, Transport};

/// What a channel operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A channel name with characters outside `A-Z a-z 0-9 . _ -`.
    #[error("channel name {0:?}: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ - and do not start with a dot")]
    BadName(String),
    /// Slot size or count out of range.
    #[error("channel configuration: {0}")]
    Config(String),
    /// The segment does not start with the channel magic.
    #[error("not a zcopy channel segment")]
    NotAChannel,
    /// The segment was written by another format version.
    #[error("channel segment version {found}; this library reads version {expected}")]
    Version {
        /// Version in the segment.
        found: u32,
        /// Version this library speaks.
        expected: u32,
    },
    /// The segment's recorded layout is not the one its parameters give.
    #[error("channel segment layout: {0}")]
    Layout(String),
    /// The segment's creator has not finished writing it.
    #[error("the channel is still being created; try again")]
    NotReady,
    /// A segment passed by descriptor is not sealed against shrinking.
    #[error("the channel segment is not sealed against shrinking; refusing it")]
    Unsealed,
    /// A channel of that name exists and its sender is alive.
    #[error("channel {name:?} exists (sender pid {pid})")]
    Exists {
        /// The name.
        name: String,
        /// Its sender (0 when the file is not a readable channel).
        pid: u32,
    },
    /// A channel of that name exists but its sender is gone.
    #[error("channel {name:?} is stale: its sender (pid {pid}) is gone; remove it with zcopy::channel::remove_stale or `zcopy channel clean`")]
    Stale {
        /// The name.
        name: String,
        /// The dead sender's pid.
        pid: u32,
    },
    /// No channel of that name.
    #[error("no channel named {0:?}")]
    NotFound(String),
    /// Another receiver is attached.
    #[error("channel already has a receiver (pid {pid}{})", if *.alive { "" } else { ", dead: the sender reclaims its slots when it next waits" })]
    ReceiverAttached {
        /// The attached receiver.
        pid: u32,
        /// Whether it is still running.
        alive: bool,
    },
    /// The peer process died.
    #[error("the peer (pid {pid}) died; {reclaimed} slots it held were reclaimed")]
    PeerDied {
        /// The dead peer.
        pid: u32,
        /// Slots returned to the free list.
        reclaimed: u32,
    },
    /// The sender closed the channel and every message has been received.
    #[error("the sender closed the channel")]
    Closed,
    /// No free slot, and the caller chose not to wait.
    #[error("no free slot (the receiver holds or has not yet read them all)")]
    Full,
    /// The wait timed out.
    #[error("timed out")]
    Timeout,
    /// A message longer than a slot.
    #[error("{len} bytes do not fit a {capacity}-byte slot")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// Slot capacity.
        capacity: usize,
    },
    /// A payload type that does not fit the message or slot.
    #[error("payload type {ty}: {why}")]
    Type {
        /// The type's name.
        ty: &'static str,
        /// What does not fit.
        why: String,
    },
    /// The peer wrote something impossible into shared memory.
    #[error("the peer corrupted the channel: {0}")]
    Corrupt(&'static str),
    /// A card operation failed (card transport).
    #[error(transparent)]
    Card(#[from] crate::card::Error),
    /// An RDMA operation failed (RDMA transport).
    #[error(transparent)]
    Rdma(#[from] crate::rdma::Error),
}

impl Error {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { op, source }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn corrupt(what: &'static str) -> impl FnOnce(RingError) -> Error {
    move |_| Error::Corrupt(what)
}

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
            Wait::Timeout(d) => Some(Some(Instant::now() + d)),
        }
    }
}

/// How long one sleep lasts before the peer's liveness is checked again:
/// the bound on noticing a dead peer while waiting.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(20);
/// Default busy-poll rounds before sleeping.
pub const DEFAULT_SPIN: u32 = 256;

/// Sleeps on `ring` until it has an entry, the deadline passes, or one
/// liveness slice ends. Spins `spin` rounds first.
fn wait_on(ring: &mut Consumer, spin: u32, deadline: Option<Instant>) -> Result<()> {
    for _ in 0..spin {
        if ring.ready().map_err(corrupt("ring indices out of range"))? {
            return Ok(());
        }
        std::hint::spin_loop();
    }
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

/// Builds a channel: slot size and count, then where it lives.
#[derive(Debug, Clone)]
pub struct Builder {
    slot_size: u32,
    slot_count: u32,
    backpressure: Wait,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// 64 slots of 4 KiB, blocking when full.
    pub fn new() -> Builder {
        Builder {
            slot_size: 4096,
            slot_count: 64,
            backpressure: Wait::Forever,
        }
    }

    /// Payload bytes per slot.
    pub fn slot_size(mut self, bytes: u32) -> Builder {
        self.slot_size = bytes;
        self
    }

    /// Slots that can be loaned or in flight at once.
    pub fn slot_count(mut self, n: u32) -> Builder {
        self.slot_count = n;
        self
    }

    /// Slots sized for one `P`.
    pub fn slot_for<P: bytemuck::Pod>(self) -> Builder {
        self.slot_size(u32::try_from(std::mem::size_of::<P>().max(1)).unwrap_or(u32::MAX))
    }

    /// What [`Sender::loan`] does when every slot is taken (default: wait).
    pub fn backpressure(mut self, wait: Wait) -> Builder {
        self.backpressure = wait;
        self
    }

    /// An RDMA channel to the [`crate::rdma::Listener`] at `dst`, from the
    /// local address `src` (None: wherever the routing table says). Both
    /// ends register a ring of this shape; messages move by RDMA WRITE
    /// WITH IMMEDIATE, slot to slot.
    pub fn connect_rdma(
        self,
        src: Option<std::net::IpAddr>,
        dst: std::net::SocketAddr,
    ) -> Result<crate::rdma::Sender> {
        crate::rdma::Sender::connect::<memmap2::MmapMut>(
            self.slot_size,
            self.slot_count,
            self.backpressure,
            src,
            dst,
            None,
        )
    }

    /// As [`Builder::connect_rdma`], with the sender's slots in `ring`
    /// (slot `i` at `i × stride`): a zcard pool mapping, say, so the card's
    /// STORAGE_READ lands in a loaned slot that then goes out by RDMA with
    /// no CPU copy ([`crate::rdma::Loan::offset`] names the slot).
    pub fn connect_rdma_on<R>(
        self,
        ring: R,
        src: Option<std::net::IpAddr>,
        dst: std::net::SocketAddr,
    ) -> Result<crate::rdma::Sender>
    where
        R: crate::rdma::verbs::Region + Send + std::fmt::Debug + 'static,
    {
        crate::rdma::Sender::connect(
            self.slot_size,
            self.slot_count,
            self.backpressure,
            src,
            dst,
            Some(ring),
        )
    }

    /// An shm channel in a sealed memfd, shared by [`Sender::share`].
    pub fn create(self) -> Result<Sender<Shm>> {
        self.create_with::<Shm>(&())
    }

    /// An shm channel named `/dev/shm/zcopy.<name>`, opened by
    /// [`Receiver::open_named`]. The name goes when the sender drops. A stale
    /// one (its sender crashed) gives [`Error::Stale`]: remove it with
    /// [`remove_stale`]. Named segments are files (0600) and cannot be
    /// sealed; share by descriptor where the peer is not trusted.
    pub fn create_named(self, name: &str) -> Result<Sender<Shm>> {
        let geo = Geometry::new(TransportKind::Shm, self.slot_size, self.slot_count)?;
        let seg = Segment::create_named(name, geo)?;
        let slots = Shm::create(&(), &seg, geo.slots_bytes)?;
        Ok(Sender::new(seg, slots, self.backpressure))
    }

    /// A channel whose slots live in a new pool on `card`.
    pub fn create_on_card(self, card: &crate::card::Card) -> Result<Sender<CardSlots>> {
        self.create_with::<CardSlots>(card)
    }

    /// A channel over transport `T` (segment in a sealed memfd).
    pub fn create_with<T: Transport>(self, ctx: &T::Context) -> Result<Sender<T>> {
        let geo = Geometry::new(T::KIND, self.slot_size, self.slot_count)?;
        let seg = Segment::create_memfd(geo)?;
        let slots = T::create(ctx, &seg, geo.slots_bytes)?;
        Ok(Sender::new(seg, slots, self.backpressure))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Free,
    Loaned,
    InFlight,
}

#[derive(Debug)]
struct SendState {
    submit: Producer,
    returns: Consumer,
    free: Vec<u32>,
    slots: Vec<Slot>,
    in_flight: u32,
    receiver: Option<Watch>,
}

/// The sending end of a channel.
#[derive(Debug)]
pub struct Sender<T: Transport> {
    seg: Segment,
    slots: T,
    geo: Geometry,
    state: RefCell<SendState>,
    backpressure: Cell<Wait>,
    spin: Cell<u32>,
}

/// Message prefix of a shared channel on the socket.
const SHARE_TAG: &[u8; 14] = b"zcopy-channel\x01";

impl<T: Transport> Sender<T> {
    fn new(seg: Segment, slots: T, backpressure: Wait) -> Sender<T> {
        let geo = *seg.geometry();
        // Fresh rings (all zero): attaching cannot fail.
        let submit = Producer::attach(seg.submit_ring()).expect("fresh ring");
        let returns = Consumer::attach(seg.return_ring()).expect("fresh ring");
        Sender {
            state: RefCell::new(SendState {
                submit,
                returns,
                free: (0..geo.slot_count).rev().collect(),
                slots: vec![Slot::Free; geo.slot_count as usize],
                in_flight: 0,
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
        st.in_flight
    }

    /// Sends the channel (segment and transport descriptors) over a Unix
    /// socket, for [`Receiver::from_socket`] at the other end.
    pub fn share(&self, sock: &UnixStream) -> Result<()> {
        let mut fds: Vec<RawFd> = vec![self.seg.fd().as_raw_fd()];
        fds.extend(self.slots.fds().iter().map(|f| f.as_raw_fd()));
        let mut msg = SHARE_TAG.to_vec();
        msg.extend_from_slice(&(T::KIND as u32).to_le_bytes());
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&msg)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| Error::io("sending the channel descriptors")(e.into()))?;
        Ok(())
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
            if let Some(index) = st.free.pop() {
                st.slots[index as usize] = Slot::Loaned;
                return Ok(Loan {
                    sender: self,
                    index,
                    len: 0,
                });
            }
            self.collect(&mut st)?;
            if !st.free.is_empty() {
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
            match st.slots.get(index as usize) {
                Some(Slot::InFlight) => {}
                _ => {
                    return Err(Error::Corrupt(
                        "the receiver returned a slot that was not sent",
                    ))
                }
            }
            st.slots[index as usize] = Slot::Free;
            st.free.push(index);
            st.in_flight -= 1;
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
            if st.slots.get(index) != Some(&Slot::InFlight) || queued[index] {
                return Err(Error::Corrupt(
                    "the submit ring holds a slot that was not sent",
                ));
            }
            queued[index] = true;
        }
        let mut n = 0;
        for (index, slot) in st.slots.iter_mut().enumerate() {
            if *slot == Slot::InFlight && !queued[index] {
                *slot = Slot::Free;
                st.free.push(index as u32);
                st.in_flight -= 1;
                n += 1;
            }
        }
        Ok(n)
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

fn check_pod<P>(ptr: *const u8, capacity: usize) -> Result<()> {
    let ty = std::any::type_name::<P>();
    if std::mem::size_of::<P>() > capacity {
        return Err(Error::Type {
            ty,
            why: format!(
                "{} bytes do not fit a {capacity}-byte slot",
                std::mem::size_of::<P>()
            ),
        });
    }
    if ptr.align_offset(std::mem::align_of::<P>()) != 0 {
        return Err(Error::Type {
            ty,
            why: format!("needs {}-byte alignment", std::mem::align_of::<P>()),
        });
    }
    Ok(())
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
        st.slots[this.index as usize] = Slot::InFlight;
        st.in_flight += 1;
        let entry = u64::from(this.index) | u64::from(this.len) << 32;
        // The ring has room for every slot, so Full means the receiver's
        // head is lying.
        st.submit
            .push(entry)
            .map_err(|_| Error::Corrupt("submit ring full: impossible head index"))
    }
}

impl<T: Transport> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        let mut st = self.sender.state.borrow_mut();
        st.slots[self.index as usize] = Slot::Free;
        st.free.push(self.index);
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

#[derive(Debug)]
struct RecvState {
    submit: Consumer,
    returns: Producer,
    held: Vec<bool>,
    sender: Watch,
    /// A failure while giving a slot back in Drop, reported by the next call.
    deferred: Option<Error>,
}

/// The receiving end of a channel.
#[derive(Debug)]
pub struct Receiver<T: Transport> {
    seg: Segment,
    slots: T,
    geo: Geometry,
    state: RefCell<RecvState>,
    spin: Cell<u32>,
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
    /// Receives a channel a [`Sender::share`] sent over `sock`.
    pub fn from_socket(ctx: &T::Context, sock: &UnixStream) -> Result<Receiver<T>> {
        let mut buf = [0u8; 32];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| Error::io("receiving the channel descriptors")(e.into()))?;
            let mut fds = Vec::new();
            for c in msg
                .cmsgs()
                .map_err(|e| Error::io("reading the control message")(e.into()))?
            {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: SCM_RIGHTS just installed these descriptors in
                    // this process; nothing else owns them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            (msg.bytes, fds)
        };
        let mut fds = fds.into_iter();
        let (Some(seg_fd), true) = (
            fds.next(),
            n == SHARE_TAG.len() + 4 && buf.starts_with(SHARE_TAG),
        ) else {
            return Err(Error::NotAChannel);
        };
        let kind = u32::from_le_bytes(buf[SHARE_TAG.len()..n].try_into().expect("4 bytes"));
        if kind != T::KIND as u32 {
            return Err(Error::Layout(format!(
                "the channel's transport is {kind}, this receiver's is {:?}",
                T::KIND
            )));
        }
        let seg = Segment::open(seg_fd, true, None)?;
        Receiver::attach(ctx, seg, fds.collect())
    }

    fn attach(ctx: &T::Context, seg: Segment, fds: Vec<OwnedFd>) -> Result<Receiver<T>> {
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
            deferred: None,
        };
        Ok(Receiver {
            seg,
            slots,
            geo,
            state: RefCell::new(state),
            spin: Cell::new(DEFAULT_SPIN),
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

    /// Busy-poll rounds before sleeping (0: sleep at once).
    pub fn set_spin(&self, rounds: u32) {
        self.spin.set(rounds);
    }

    /// The next message, waiting as long as it takes.
    pub fn recv(&self) -> Result<Sample<'_, T>> {
        self.recv_with(Wait::Forever)?.ok_or(Error::Timeout)
    }

    /// The next message if one is there.
    pub fn try_recv(&self) -> Result<Option<Sample<'_, T>>> {
        self.recv_with(Wait::Never)
    }

    /// The next message, waiting at most `timeout` ([`Error::Timeout`]).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_, T>> {
        self.recv_with(Wait::Timeout(timeout))?
            .ok_or(Error::Timeout)
    }

    /// The next message, waiting as `wait` says (`None`: nothing there and
    /// `Wait::Never`).
    pub fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_, T>>> {
        let mut st = self.state.borrow_mut();
        if let Some(e) = st.deferred.take() {
            return Err(e);
        }
        let mut deadline = None;
        loop {
            if let Some(v) = st.submit.pop().map_err(corrupt("submit ring indices"))? {
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
                return Ok(Some(Sample {
                    receiver: self,
                    index,
                    len,
                }));
            }
            let d = *deadline.get_or_insert_with(|| wait.deadline());
            let Some(d) = d else {
                return Ok(None);
            };
            // CLOSED (acquire): pairs with the sender's fetch_or in Drop;
            // the ring was found empty after... so re-check it once more.
            if self.seg.header().flags.load(Ordering::Acquire) & FLAG_SENDER_CLOSED != 0 {
                if st.submit.ready().map_err(corrupt("submit ring indices"))? {
                    continue;
                }
                return Err(Error::Closed);
            }
            if st.sender.gone() {
                if st.submit.ready().map_err(corrupt("submit ring indices"))? {
                    continue;
                }
                return Err(Error::PeerDied {
                    pid: st.sender.pid,
                    reclaimed: 0,
                });
            }
            wait_on(&mut st.submit, self.spin.get(), d)?;
        }
    }

    fn release(&self, index: u32) {
        let mut st = self.state.borrow_mut();
        st.held[index as usize] = false;
        if st.returns.push(u64::from(index)).is_err() {
            st.deferred = Some(Error::Corrupt("return ring full: impossible head index"));
        }
    }

    fn slot(&self, index: u32) -> *const u8 {
        self.slots
            .base()
            .as_ptr()
            .wrapping_add(index as usize * self.geo.slot_stride as usize)
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
        u64::from(self.index) * self.receiver.geo.slot_stride
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
    fn drop(&mut self) {
        self.receiver.release(self.index);
    }
}

impl Sender<CardSlots> {
    /// The pool the slots live in (this process's import).
    pub fn pool(&self) -> &crate::card::Pool {
        self.slots.pool()
    }
}

impl Receiver<CardSlots> {
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

impl<T: Transport> Rx for Receiver<T> {
    type Sample<'a>
        = Sample<'a, T>
    where
        T: 'a;
    fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_, T>>> {
        Receiver::recv_with(self, wait)
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
