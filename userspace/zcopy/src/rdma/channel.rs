//! The RDMA transport of the channel API.
//!
//! Both ends register a ring of `slot_count` slots of the same layout. A
//! loan is a slot of the sender's ring; sending it posts one RDMA WRITE
//! WITH IMMEDIATE (immediate = slot number) from that slot into the same
//! slot of the receiver's ring: no CPU copy at either end, small messages
//! inline. The write consumes one posted receive at the receiver, whose
//! completion says which slot and how many bytes. When the receiver drops
//! a sample it posts a zero-length SEND WITH IMMEDIATE (slot number) back:
//! the credit. A sender slot is free again once its write completed and its
//! credit came; with none free, a loan waits (or fails: backpressure).
//!
//! An orderly close is a SEND WITH IMMEDIATE of [`CLOSE`] after the last
//! write (RC keeps the order), then a disconnect. A dead peer shows as an
//! rdma_cm DISCONNECTED event (its kernel closes the connection on kill
//! -9) or, when it vanished without a word (link down), as a failed probe:
//! a waiting end writes zero bytes to the peer every [`PROBE_EVERY`], which
//! fails after the transport retries (`RETRY_COUNT` × `ACK_TIMEOUT`).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use memmap2::MmapMut;

use super::cm::{Connection, MrHandle, QpConfig};
use super::verbs::{poll_in, Completion, Region};
use crate::channel::ledger::{Events, Ledger, Misstep};
use crate::channel::segment::MAX_SLOT_COUNT;
use crate::channel::{
    Builder, Error, Geometry, Result, Rx, RxSample, TransportKind, Tx, TxLoan, Wait,
};

/// The immediate of the close message.
pub const CLOSE: u32 = u32::MAX;
/// How often a waiting end checks that a silent peer is still there.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Most slots of an RDMA channel (one posted receive per slot).
pub const MAX_RDMA_SLOTS: u32 = 4096;
const _: () = assert!(MAX_RDMA_SLOTS <= MAX_SLOT_COUNT);
/// Bytes a message may have to go inline (copied into the work request).
const INLINE: u32 = 256;
/// How long connection steps may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

const MAGIC: [u8; 4] = *b"ZCRM";
const VERSION: u32 = 1;

/// What each end tells the other when connecting (rdma_cm private data).
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
struct Hello {
    magic: [u8; 4],
    version: u32,
    slot_size: u32,
    slot_count: u32,
    pid: u32,
    rkey: u32,
    addr: u64,
}

impl Hello {
    fn parse(bytes: &[u8]) -> Result<Hello> {
        let size = std::mem::size_of::<Hello>();
        let h: Hello = bytes
            .get(..size)
            .map(bytemuck::pod_read_unaligned)
            .ok_or(Error::NotAChannel)?;
        if h.magic != MAGIC {
            return Err(Error::NotAChannel);
        }
        if h.version != VERSION {
            return Err(Error::Version {
                found: h.version,
                expected: VERSION,
            });
        }
        Ok(h)
    }
}

// Work request ids: kind in the high half, slot in the low.
const WR_WRITE: u64 = 1 << 32;
const WR_CREDIT: u64 = 2 << 32;
const WR_PROBE: u64 = 3 << 32;
const WR_RECV: u64 = 4 << 32;
const WR_CLOSE: u64 = 5 << 32;
const KIND: u64 = 0xffff_ffff << 32;

const IBV_WC_SUCCESS: u32 = 0;
const IBV_WC_RECV_RDMA_WITH_IMM: u32 = 129;
const IBV_WC_RECV: u32 = 128;

fn geometry(slot_size: u32, slot_count: u32) -> Result<Geometry> {
    if slot_count > MAX_RDMA_SLOTS {
        return Err(Error::Config(format!(
            "slot count {slot_count}: an RDMA channel has at most {MAX_RDMA_SLOTS}"
        )));
    }
    Geometry::new(TransportKind::Shm, slot_size, slot_count)
}

/// Checks an RDMA channel's shape (slot size and count) without
/// connecting: what [`BuilderExt::connect_rdma`] refuses with
/// [`Error::Config`].
pub fn check_geometry(slot_size: u32, slot_count: u32) -> Result<()> {
    geometry(slot_size, slot_count).map(|_| ())
}

/// The connection, the local ring and what is known of the peer's.
#[derive(Debug)]
struct Link {
    conn: Connection,
    ring: MrHandle,
    base: *mut u8,
    remote_addr: u64,
    remote_rkey: u32,
    peer_pid: u32,
    /// Why the connection ended (set once).
    broken: Option<String>,
    probe_at: Instant,
    probing: bool,
    wcs: Vec<Completion>,
    /// Completions taken from the CQ, not yet handled.
    stash: Vec<Completion>,
    /// Sends posted whose completion has not been taken from the CQ: the
    /// send queue (and the CQ) never hold more than they have room for.
    sq_used: u32,
    sq_depth: u32,
}

// SAFETY: `base` points into the ring the connection owns (registered and
// mapped for the connection's life); nothing here is tied to a thread.
unsafe impl Send for Link {}

impl Link {
    fn new<R>(mut conn: Connection, geo: &Geometry, recvs: u32, ring: R) -> Result<Link>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        let sq_depth = geo.slot_count + 4;
        conn.create_qp(QpConfig {
            send_depth: sq_depth,
            recv_depth: recvs,
            max_inline: INLINE,
            events: true,
        })?;
        if (ring.len() as u64) < geo.slots_bytes {
            return Err(Error::Config(format!(
                "the ring memory has {} bytes; {} slots of {} need {}",
                ring.len(),
                geo.slot_count,
                geo.slot_size,
                geo.slots_bytes
            )));
        }
        let ring = conn.register(ring)?;
        let base = conn.region_ptr(ring);
        for i in 0..recvs {
            conn.post_recv(WR_RECV | u64::from(i))?;
        }
        Ok(Link {
            conn,
            ring,
            base,
            remote_addr: 0,
            remote_rkey: 0,
            peer_pid: 0,
            broken: None,
            probe_at: Instant::now() + PROBE_EVERY,
            probing: false,
            wcs: Vec::new(),
            stash: Vec::new(),
            sq_used: 0,
            sq_depth,
        })
    }

    fn hello(&self, geo: &Geometry) -> Hello {
        Hello {
            magic: MAGIC,
            version: VERSION,
            slot_size: geo.slot_size,
            slot_count: geo.slot_count,
            pid: std::process::id(),
            rkey: self.ring.rkey,
            addr: self.ring.addr,
        }
    }

    fn peer(&mut self, h: &Hello) {
        self.remote_addr = h.addr;
        self.remote_rkey = h.rkey;
        self.peer_pid = h.pid;
    }

    fn break_with(&mut self, why: String) {
        if self.broken.is_none() {
            // Stop the QP at once (rdma_disconnect moves it to the error
            // state): left alone it would retransmit to a dead peer whose
            // QP number a new connection may already have reused.
            self.conn.disconnect();
            if std::env::var_os("ZCOPY_RDMA_DEBUG").is_some() {
                eprintln!("zcopy rdma: pid {}: link broken: {why}", std::process::id());
            }
            self.broken = Some(why);
        }
    }

    /// Takes completions into `wcs`; failures mark the link broken.
    fn poll(&mut self) -> Result<()> {
        self.wcs.clear();
        if self.stash.is_empty() {
            self.poll_cq()?;
        }
        std::mem::swap(&mut self.wcs, &mut self.stash);
        for i in 0..self.wcs.len() {
            let wc = self.wcs[i];
            if wc.status != IBV_WC_SUCCESS {
                let why = format!("work completion: {}", wc.status_str());
                self.break_with(why);
            } else if wc.wr_id & KIND == WR_PROBE {
                self.probing = false;
            }
        }
        Ok(())
    }

    /// Moves completions from the CQ to the stash; how many.
    fn poll_cq(&mut self) -> Result<usize> {
        let from = self.stash.len();
        let n = self.conn.poll(&mut self.stash, 16)?;
        for wc in &self.stash[from..] {
            if wc.wr_id & KIND != WR_RECV {
                self.sq_used -= 1;
            }
        }
        Ok(n)
    }

    /// Room for one more send: waits (boundedly) for sends to complete.
    /// Credits can outrun their acknowledgements, so the receiver's send
    /// queue fills up when the sender is quick.
    fn reserve_send(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.sq_used >= self.sq_depth {
            if self.poll_cq()? == 0 {
                if Instant::now() > deadline {
                    return Err(super::Error::Timeout("waiting for room in the send queue").into());
                }
                std::thread::yield_now();
            }
        }
        self.sq_used += 1;
        Ok(())
    }

    /// Posts a zero-length SEND WITH IMMEDIATE.
    fn send_imm(&mut self, wr_id: u64, imm: u32) -> Result<()> {
        self.reserve_send()?;
        self.conn
            .post_send_imm(wr_id, imm)
            .inspect_err(|_| self.sq_used -= 1)?;
        Ok(())
    }

    /// Posts an RDMA WRITE of `len` bytes from `offset` of the local ring to
    /// the same offset of the peer's, with `imm` when given.
    fn write(&mut self, wr_id: u64, offset: u64, len: u32, imm: Option<u32>) -> Result<()> {
        self.reserve_send()?;
        let (ring, addr, rkey) = (self.ring, self.remote_addr + offset, self.remote_rkey);
        self.conn
            .post_write(wr_id, ring, offset as usize, len as usize, addr, rkey, imm)
            .inspect_err(|_| self.sq_used -= 1)?;
        Ok(())
    }

    /// Waits until a completion or connection event may be there, at most
    /// until `deadline`; probes a silent peer on the way.
    fn wait(&mut self, deadline: Option<Instant>) -> Result<()> {
        let now = Instant::now();
        if let Some(d) = deadline {
            if now >= d {
                return Ok(());
            }
        }
        if now >= self.probe_at && !self.probing && self.broken.is_none() {
            // Zero bytes to the peer's ring: fails only if the peer is gone.
            if self.write(WR_PROBE, 0, 0, None).is_ok() {
                self.probing = true;
            }
            self.probe_at = now + PROBE_EVERY;
        }
        self.conn.cq()?.arm()?;
        // A completion that came before arming raises no event: look again.
        if self.poll_cq()? > 0 {
            return Ok(());
        }
        let mut left = self.probe_at.saturating_duration_since(now);
        if let Some(d) = deadline {
            left = left.min(d.saturating_duration_since(now));
        }
        let cq_fd = self.conn.cq_fd().expect("the CQ is in event mode");
        poll_in(&[cq_fd, self.conn.event_fd()], left)?;
        self.conn.cq()?.take_event()?;
        if let Err(e) = self.conn.poll_events() {
            self.break_with(e.to_string());
        }
        Ok(())
    }

    fn slot(&self, geo: &Geometry, index: u32) -> *mut u8 {
        // SAFETY: index < slot_count (callers check), so the offset lies
        // inside the registered ring of slots_bytes bytes.
        unsafe { self.base.add((u64::from(index) * geo.slot_stride) as usize) }
    }
}

/// Receives posted at each end. One per slot is the need (messages one
/// way, credits the other) plus the close; the rest is headroom, since an
/// empty receive queue makes the peer's Soft-RoCE answer with an RNR NAK
/// and retry.
fn recv_depth(geo: &Geometry) -> u32 {
    2 * geo.slot_count + 8
}

/// Anonymous memory for a ring of this shape.
fn anon_ring(geo: &Geometry) -> Result<MmapMut> {
    let len =
        usize::try_from(geo.slots_bytes).map_err(|_| Error::Config("ring too large".into()))?;
    MmapMut::map_anon(len).map_err(Error::io("mapping the ring"))
}

/// Checks the peer's half of the handshake against our geometry.
fn check_peer(h: &Hello, geo: &Geometry) -> Result<()> {
    if h.slot_size != geo.slot_size || h.slot_count != geo.slot_count {
        return Err(Error::Layout(format!(
            "the peer has {} slots of {} bytes, this end {} of {}",
            h.slot_count, h.slot_size, geo.slot_count, geo.slot_size
        )));
    }
    if h.addr == 0 || h.rkey == 0 {
        return Err(Error::Layout(
            "the peer's ring has no address or key".into(),
        ));
    }
    Ok(())
}

/// What a sent slot waits for: its write completed here ...
const WRITTEN: Events = 1;
/// ... and the receiver's credit for it came.
const CREDITED: Events = 2;

#[derive(Debug)]
struct SendState {
    link: Link,
    ledger: Ledger,
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
    /// An RDMA channel to the [`Listener`] at `dst`, from the local address
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
        let (slot_size, slot_count, backpressure) = self.shape();
        Sender::connect::<MmapMut>(slot_size, slot_count, backpressure, src, dst, None)
    }

    fn connect_rdma_on<R>(self, ring: R, src: Option<IpAddr>, dst: SocketAddr) -> Result<Sender>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        let (slot_size, slot_count, backpressure) = self.shape();
        Sender::connect(slot_size, slot_count, backpressure, src, dst, Some(ring))
    }
}

impl Sender {
    fn connect<R>(
        slot_size: u32,
        slot_count: u32,
        backpressure: Wait,
        src: Option<IpAddr>,
        dst: SocketAddr,
        ring: Option<R>,
    ) -> Result<Sender>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        let geo = geometry(slot_size, slot_count)?;
        let conn = Connection::resolve(src.map(|ip| SocketAddr::new(ip, 0)), dst, CONNECT_TIMEOUT)?;
        let recvs = recv_depth(&geo);
        let mut link = match ring {
            Some(ring) => Link::new(conn, &geo, recvs, ring)?,
            None => Link::new(conn, &geo, recvs, anon_ring(&geo)?)?,
        };
        let hello = link.hello(&geo);
        let reply = link
            .conn
            .connect(bytemuck::bytes_of(&hello), CONNECT_TIMEOUT)?;
        let h = Hello::parse(&reply)?;
        check_peer(&h, &geo)?;
        link.peer(&h);
        Ok(Sender {
            state: RefCell::new(SendState {
                link,
                ledger: Ledger::new(geo.slot_count),
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
        let st = self.state.borrow();
        let (l, p) = st.link.conn.addrs();
        (st.link.conn.device(), l, p)
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
    /// not given it back, or its write has not completed here).
    pub fn in_flight(&self) -> u32 {
        let mut st = self.state.borrow_mut();
        let _ = self.collect(&mut st);
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
        let mut st = self.state.borrow_mut();
        let deadline = wait.deadline();
        let mut spins = 0;
        loop {
            self.collect(&mut st)?;
            self.check_broken(&mut st)?;
            if let Some(index) = st.ledger.loan() {
                return Ok(Loan {
                    sender: self,
                    index,
                    len: 0,
                });
            }
            let Some(d) = deadline else {
                return Err(Error::Full);
            };
            if d.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
            if spins < self.spin.get() {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            st.link.wait(d)?;
        }
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
                    WR_WRITE => {
                        let index = (wc.wr_id & 0xffff_ffff) as u32;
                        self.settle(st, index, true)?;
                    }
                    WR_RECV => {
                        let index = wc.imm.ok_or(Error::Corrupt("a credit without a slot"))?;
                        if wc.opcode != IBV_WC_RECV {
                            return Err(Error::Corrupt(
                                "the receiver wrote into the sender's ring",
                            ));
                        }
                        st.link.conn.post_recv(wc.wr_id)?;
                        self.settle(st, index, false)?;
                    }
                    _ => {}
                }
            }
        }
    }

    /// A write completed (`write`) or a credit came for `index`.
    fn settle(&self, st: &mut SendState, index: u32, write: bool) -> Result<()> {
        let event = if write { WRITTEN } else { CREDITED };
        st.ledger.settle(index, event).map_err(|m| {
            Error::Corrupt(match m {
                Misstep::OutOfRange => "a credit for a slot out of range",
                Misstep::NotInFlight => "a credit for a slot not in flight",
                Misstep::Twice => "a slot credited twice",
            })
        })?;
        Ok(())
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

/// A loaned slot of an RDMA channel's sender: write in place, then send.
#[derive(Debug)]
pub struct Loan<'a> {
    sender: &'a Sender,
    index: u32,
    len: u32,
}

impl Loan<'_> {
    /// The whole slot, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let st = self.sender.state.borrow();
        let p = st.link.slot(&self.sender.geo, self.index);
        // SAFETY: the slot lies inside the registered ring (index <
        // slot_count); it is Loaned, so no write reads it and no other Loan
        // names it; the borrow of self bounds the slice's life.
        unsafe { std::slice::from_raw_parts_mut(p, self.sender.geo.slot_size as usize) }
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

    /// True when the message is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Where the slot starts in the ring (the same at the receiver).
    pub fn offset(&self) -> u64 {
        u64::from(self.index) * self.sender.geo.slot_stride
    }

    /// Writes the message into the same slot at the receiver.
    pub fn send(self) -> Result<()> {
        let this = std::mem::ManuallyDrop::new(self);
        let sender = this.sender;
        let mut st = sender.state.borrow_mut();
        let offset = this.offset();
        let r = st.link.write(
            WR_WRITE | u64::from(this.index),
            offset,
            this.len,
            Some(this.index),
        );
        if let Err(e) = r {
            st.ledger.unloan(this.index);
            st.link.break_with(e.to_string());
            drop(st);
            let mut st = sender.state.borrow_mut();
            return sender.check_broken(&mut st);
        }
        st.ledger.send(this.index, WRITTEN | CREDITED);
        Ok(())
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        let mut st = self.sender.state.borrow_mut();
        st.ledger.unloan(self.index);
    }
}

/// Listens for RDMA channel senders.
#[derive(Debug)]
pub struct Listener {
    cm: super::cm::Listener,
}

impl Listener {
    /// Listens on `addr`: an address of an RDMA device's netdev (port 0:
    /// any free port, see [`Listener::local_addr`]).
    pub fn bind(addr: SocketAddr) -> Result<Listener> {
        Ok(Listener {
            cm: super::cm::Listener::bind(addr)?,
        })
    }

    /// The address listened on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.cm.local_addr()
    }

    /// The next sender, waiting at most `timeout` (None: forever). A
    /// request that is not a zcopy channel of a shape this end accepts is
    /// refused (the sender learns why) and reported here.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Receiver> {
        let (conn, private) = self.cm.next_request(timeout)?;
        let h = match Hello::parse(&private)
            .and_then(|h| geometry(h.slot_size, h.slot_count).map(|g| (h, g)))
        {
            Ok(hg) => hg,
            Err(e) => {
                conn.reject(&e.to_string());
                return Err(e);
            }
        };
        let (h, geo) = h;
        let ring = match anon_ring(&geo) {
            Ok(r) => r,
            Err(e) => {
                conn.reject(&e.to_string());
                return Err(e);
            }
        };
        let mut link = Link::new(conn, &geo, recv_depth(&geo), ring)?;
        link.peer(&h);
        let hello = link.hello(&geo);
        link.conn
            .accept(bytemuck::bytes_of(&hello), CONNECT_TIMEOUT)?;
        Ok(Receiver {
            state: RefCell::new(RecvState {
                link,
                slots: vec![RecvSlot::Free; geo.slot_count as usize],
                queue: VecDeque::new(),
                closed: false,
                deferred: None,
            }),
            geo,
            spin: Cell::new(crate::channel::DEFAULT_SPIN),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RecvSlot {
    Free,
    Queued,
    Held,
}

#[derive(Debug)]
struct RecvState {
    link: Link,
    slots: Vec<RecvSlot>,
    queue: VecDeque<(u32, u32)>,
    closed: bool,
    deferred: Option<Error>,
}

/// The receiving end of an RDMA channel: from [`Listener::accept`].
#[derive(Debug)]
pub struct Receiver {
    state: RefCell<RecvState>,
    geo: Geometry,
    spin: Cell<u32>,
}

impl Receiver {
    /// The channel's shape.
    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    /// The RDMA device and the local and peer addresses.
    pub fn endpoints(&self) -> (String, Option<SocketAddr>, Option<SocketAddr>) {
        let st = self.state.borrow();
        let (l, p) = st.link.conn.addrs();
        (st.link.conn.device(), l, p)
    }

    /// Busy-poll rounds before sleeping on the completion channel.
    pub fn set_spin(&self, rounds: u32) {
        self.spin.set(rounds);
    }

    /// The next message, waiting as long as it takes.
    pub fn recv(&self) -> Result<Sample<'_>> {
        Rx::recv(self)
    }

    /// The next message if one is there.
    pub fn try_recv(&self) -> Result<Option<Sample<'_>>> {
        self.recv_with(Wait::Never)
    }

    /// The next message, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Sample<'_>> {
        Rx::recv_timeout(self, timeout)
    }

    /// The next message, waiting as `wait` says. After the last message:
    /// [`Error::Closed`] when the sender closed, [`Error::PeerDied`] when
    /// it died or the link broke.
    pub fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_>>> {
        let mut st = self.state.borrow_mut();
        if let Some(e) = st.deferred.take() {
            return Err(e);
        }
        let deadline = wait.deadline();
        let mut spins = 0;
        loop {
            self.collect(&mut st)?;
            if let Some((index, len)) = st.queue.pop_front() {
                st.slots[index as usize] = RecvSlot::Held;
                return Ok(Some(Sample {
                    receiver: self,
                    index,
                    len,
                }));
            }
            if st.closed {
                return Err(Error::Closed);
            }
            if st.link.broken.is_some() {
                return Err(Error::PeerDied {
                    pid: st.link.peer_pid,
                    reclaimed: 0,
                });
            }
            let Some(d) = deadline else {
                return Ok(None);
            };
            if d.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
            if spins < self.spin.get() {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            st.link.wait(d)?;
        }
    }

    fn collect(&self, st: &mut RecvState) -> Result<()> {
        loop {
            st.link.poll()?;
            if st.link.wcs.is_empty() {
                return Ok(());
            }
            for i in 0..st.link.wcs.len() {
                let wc = st.link.wcs[i];
                if wc.status != IBV_WC_SUCCESS || wc.wr_id & KIND != WR_RECV {
                    continue;
                }
                st.link.conn.post_recv(wc.wr_id)?;
                match (wc.opcode, wc.imm) {
                    (IBV_WC_RECV, Some(CLOSE)) => st.closed = true,
                    (IBV_WC_RECV_RDMA_WITH_IMM, Some(index)) => {
                        let slot = st
                            .slots
                            .get_mut(index as usize)
                            .ok_or(Error::Corrupt("a message in a slot out of range"))?;
                        if *slot != RecvSlot::Free {
                            return Err(Error::Corrupt("a message into a slot in use"));
                        }
                        if wc.byte_len > self.geo.slot_size {
                            return Err(Error::Corrupt("a message longer than its slot"));
                        }
                        *slot = RecvSlot::Queued;
                        st.queue.push_back((index, wc.byte_len));
                    }
                    _ => return Err(Error::Corrupt("an unexpected message from the sender")),
                }
            }
        }
    }

    fn release(&self, index: u32) {
        let mut st = self.state.borrow_mut();
        st.slots[index as usize] = RecvSlot::Free;
        if st.link.broken.is_some() || st.closed {
            return;
        }
        if let Err(e) = st.link.send_imm(WR_CREDIT | u64::from(index), index) {
            st.link.break_with(e.to_string());
        }
    }
}

/// A message received over RDMA, in place in the receiver's ring; its
/// slot is credited back to the sender when this drops.
#[derive(Debug)]
pub struct Sample<'a> {
    receiver: &'a Receiver,
    index: u32,
    len: u32,
}

impl std::ops::Deref for Sample<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        let st = self.receiver.state.borrow();
        let p = st.link.slot(&self.receiver.geo, self.index);
        // SAFETY: index < slot_count and len ≤ slot_size were checked when
        // the completion came; the slot is Held until this Sample drops, and
        // the sender writes it again only after the credit sent then.
        unsafe { std::slice::from_raw_parts(p, self.len as usize) }
    }
}

impl Sample<'_> {
    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Where the slot starts in the ring (the same at the sender).
    pub fn offset(&self) -> u64 {
        u64::from(self.index) * self.receiver.geo.slot_stride
    }
}

impl Drop for Sample<'_> {
    fn drop(&mut self) {
        self.receiver.release(self.index);
    }
}

impl Tx for Sender {
    type Loan<'a> = Loan<'a>;
    fn loan_with(&self, wait: Wait) -> Result<Loan<'_>> {
        Sender::loan_with(self, wait)
    }
    fn loan(&self) -> Result<Loan<'_>> {
        Sender::loan(self)
    }
    fn in_flight(&self) -> u32 {
        Sender::in_flight(self)
    }
    fn slot_size(&self) -> usize {
        self.geo.slot_size as usize
    }
}

impl TxLoan for Loan<'_> {
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

impl Rx for Receiver {
    type Sample<'a> = Sample<'a>;
    fn recv_with(&self, wait: Wait) -> Result<Option<Sample<'_>>> {
        Receiver::recv_with(self, wait)
    }
    fn slot_size(&self) -> usize {
        self.geo.slot_size as usize
    }
}

impl RxSample for Sample<'_> {
    fn offset(&self) -> u64 {
        Sample::offset(self)
    }
}
