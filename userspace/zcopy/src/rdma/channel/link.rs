//! What both ends of an RDMA channel share: the handshake, the work
//! request ids, and [`Link`], the connection with its registered ring and
//! its credit board.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use memmap2::MmapMut;

use crate::channel::segment::MAX_SLOT_COUNT;
use crate::channel::{Error, Geometry, Result, TransportKind};
use crate::rdma::cm::{Connection, MrHandle, QpConfig};
use crate::rdma::verbs::{poll_in, Access, Completion, Region};

/// The immediate of the close message.
pub const CLOSE: u32 = u32::MAX;
/// How often a waiting end checks that a silent peer is still there.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// Most slots of an RDMA channel (one posted receive per slot).
pub const MAX_RDMA_SLOTS: u32 = 4096;
const _: () = assert!(MAX_RDMA_SLOTS <= MAX_SLOT_COUNT);
/// Bytes a message may have to go inline (copied into the work request).
pub(super) const INLINE: u32 = 256;
/// How long a receiver's accept may take.
pub(super) const CONNECT_TIMEOUT: Duration = crate::channel::DEFAULT_CONNECT_TIMEOUT;
/// How long a post waits for room in a full send queue.
const SEND_QUEUE_WAIT: Duration = Duration::from_secs(10);
/// How long a sender out of slots waits after a read of the receiver's
/// board that freed nothing before it reads again.
pub(super) const PULL_EVERY: Duration = Duration::from_millis(1);
/// A sender signals one message write in this many: the receiver's board,
/// not the write's completion, says when a slot is free again, so the
/// completions only give the send queue its room back.
pub const SIGNAL_EVERY: u32 = 64;
const _: () = assert!(SIGNAL_EVERY > 1, "one signal per write is what this saves");

pub(super) const MAGIC: [u8; 4] = *b"ZCRM";
pub(super) const VERSION: u32 = 2;

/// What each end tells the other when connecting (rdma_cm private data).
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
#[repr(C)]
pub(super) struct Hello {
    pub(super) magic: [u8; 4],
    pub(super) version: u32,
    pub(super) slot_size: u32,
    pub(super) slot_count: u32,
    pub(super) pid: u32,
    pub(super) rkey: u32,
    pub(super) addr: u64,
    /// The credit board: the receiver's own (the sender reads it), the
    /// sender's copy (the receiver writes into it).
    pub(super) board_addr: u64,
    pub(super) board_rkey: u32,
    pub(super) reserved: u32,
}

impl Hello {
    pub(super) fn parse(bytes: &[u8]) -> Result<Hello> {
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

/// The handshake's fields as a peer sees them, for tests that play a
/// peer (a test aid, only with the `test-aids` feature; not part of the
/// API).
#[cfg(feature = "test-aids")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerHello {
    /// Payload bytes per slot.
    pub slot_size: u32,
    /// Slots.
    pub slot_count: u32,
    /// The end's ring: address and remote key.
    pub ring: (u64, u32),
    /// The end's credit board: address and remote key.
    pub board: (u64, u32),
}

#[cfg(feature = "test-aids")]
impl PeerHello {
    /// The fields of a Hello an end sent (its private data).
    pub fn parse(bytes: &[u8]) -> Result<PeerHello> {
        let h = Hello::parse(bytes)?;
        Ok(PeerHello {
            slot_size: h.slot_size,
            slot_count: h.slot_count,
            ring: (h.addr, h.rkey),
            board: (h.board_addr, h.board_rkey),
        })
    }

    /// The Hello with these fields, from this process, as private data.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = Hello {
            magic: MAGIC,
            version: VERSION,
            slot_size: self.slot_size,
            slot_count: self.slot_count,
            pid: std::process::id(),
            rkey: self.ring.1,
            addr: self.ring.0,
            board_addr: self.board.0,
            board_rkey: self.board.1,
            reserved: 0,
        };
        bytemuck::bytes_of(&h).to_vec()
    }
}

// Work request ids: kind in the high half, slot in the low.
pub(super) const WR_WRITE: u64 = 1 << 32;
pub(super) const WR_CREDIT: u64 = 2 << 32;
pub(super) const WR_PROBE: u64 = 3 << 32;
pub(super) const WR_RECV: u64 = 4 << 32;
pub(super) const WR_CLOSE: u64 = 5 << 32;
pub(super) const WR_READ: u64 = 6 << 32;
pub(super) const KIND: u64 = 0xffff_ffff << 32;

pub(super) const IBV_WC_SUCCESS: u32 = 0;
pub(super) const IBV_WC_RECV_RDMA_WITH_IMM: u32 = 129;
pub(super) const IBV_WC_RECV: u32 = 128;

pub(super) fn geometry(slot_size: usize, slot_count: u32) -> Result<Geometry> {
    if slot_count > MAX_RDMA_SLOTS {
        return Err(Error::Config(format!(
            "slot count {slot_count}: an RDMA channel has at most {MAX_RDMA_SLOTS}"
        )));
    }
    Geometry::new(TransportKind::Shm, slot_size, slot_count)
}

/// Checks an RDMA channel's shape (slot size and count) without
/// connecting: what [`BuilderExt::connect_rdma`](crate::rdma::BuilderExt::connect_rdma) refuses with
/// [`Error::Config`].
pub fn check_geometry(slot_size: usize, slot_count: u32) -> Result<()> {
    geometry(slot_size, slot_count).map(|_| ())
}

/// The immediate of a credit write: the board words `first ..
/// first + count` changed.
pub(super) fn credit_imm(first: u32, count: u32) -> u32 {
    debug_assert!(first < MAX_RDMA_SLOTS && (1..=MAX_RDMA_SLOTS).contains(&count));
    (first << 16) | count
}

/// The board words a credit write names, if they lie within `slot_count`.
pub(super) fn credit_range(imm: u32, slot_count: u32) -> Option<std::ops::Range<u32>> {
    let (first, count) = (imm >> 16, imm & 0xffff);
    let end = first.checked_add(count)?;
    (count > 0 && end <= slot_count).then_some(first..end)
}

/// Counters of what a link did, for benchmarks and profiles.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Messages written (sender) or received (receiver).
    pub messages: u64,
    /// Message writes that asked for a completion (sender): one in
    /// [`SIGNAL_EVERY`] at most.
    pub signaled_writes: u64,
    /// Credit writes sent (receiver) or received (sender); each gives
    /// back any number of slots.
    pub credit_writes: u64,
    /// Slots given back by credit writes (sender: those that freed a
    /// slot).
    pub credited_by_writes: u64,
    /// Reads of the receiver's board (sender only).
    pub reads: u64,
    /// Probes of a silent peer (a zero-byte write each, signaled), one
    /// per [`PROBE_EVERY`] of waiting.
    pub probes: u64,
    /// Slots given back by those reads.
    pub credited_by_reads: u64,
    /// Polls of the completion queue.
    pub cq_polls: u64,
    /// Completions taken from the completion queue.
    pub completions: u64,
}

/// Which end of a channel a link is: what its peer may do to its memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    Sender,
    Receiver,
}

impl End {
    /// What the peer may do to this end's ring and to its board: the
    /// sender writes into the receiver's ring and reads its board, the
    /// receiver writes credits into the sender's board. Nothing else: a
    /// peer cannot change the slots a sender is sending from, or a
    /// receiver's counts.
    fn access(self) -> (Access, Access) {
        match self {
            End::Sender => (Access::Local, Access::RemoteWrite),
            End::Receiver => (Access::RemoteWrite, Access::RemoteRead),
        }
    }
}

/// The connection, the local ring and what is known of the peer's.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) conn: Connection,
    pub(super) ring: MrHandle,
    pub(super) base: *mut u8,
    pub(super) remote_addr: u64,
    pub(super) remote_rkey: u32,
    /// The credit board: 2 × slot_count words. At the receiver the first
    /// half counts the releases of each slot (the sender reads it); at the
    /// sender the first half is where the receiver's credit writes land,
    /// the second where its reads land.
    pub(super) board: MrHandle,
    board_base: *mut u8,
    board_words: u32,
    pub(super) remote_board: u64,
    pub(super) remote_board_rkey: u32,
    pub(super) stats: LinkStats,
    pub(super) peer_pid: u32,
    /// Why the connection ended (set once).
    pub(super) broken: Option<String>,
    pub(super) probe_at: Instant,
    pub(super) probing: bool,
    pub(super) wcs: Vec<Completion>,
    /// Completions taken from the CQ, not yet handled.
    pub(super) stash: Vec<Completion>,
    /// Requests posted and not yet retired by a completion: the send
    /// queue (and the CQ) never hold more than they have room for.
    pub(super) sq_used: u32,
    pub(super) sq_depth: u32,
    /// Unsignaled requests posted since the last signaled one.
    unsignaled: u32,
    /// For each signaled request not yet completed, oldest first: how many
    /// requests its completion retires (itself and the unsignaled ones
    /// before it; send completions come in posting order).
    retires: VecDeque<u32>,
}

/// What [`Link::set_up`] made on the connection.
struct Parts {
    ring: MrHandle,
    base: *mut u8,
    board: MrHandle,
    board_base: *mut u8,
    board_words: u32,
    sq_depth: u32,
}

// SAFETY: `base` and `board_base` point into regions the connection owns
// (registered and mapped for the connection's life); nothing here is tied
// to a thread.
unsafe impl Send for Link {}

impl Link {
    /// The link over `conn` at `end`: its queue pair, `ring` and the credit
    /// board registered for what the peer may do to them, `recvs` receives
    /// posted. On failure the connection comes back with the error, so
    /// that a receiver can still refuse it with a reason (dropped, the
    /// sender would learn nothing).
    pub(super) fn new<R>(
        mut conn: Connection,
        end: End,
        geo: &Geometry,
        recvs: u32,
        ring: R,
    ) -> std::result::Result<Link, Box<(Error, Connection)>>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        match Link::set_up(&mut conn, end, geo, recvs, ring) {
            Ok(parts) => Ok(Link::from_parts(conn, parts)),
            Err(e) => Err(Box::new((e, conn))),
        }
    }

    fn set_up<R>(
        conn: &mut Connection,
        end: End,
        geo: &Geometry,
        recvs: u32,
        ring: R,
    ) -> Result<Parts>
    where
        R: Region + Send + std::fmt::Debug + 'static,
    {
        // Every slot's write, a run of unsignaled writes, and a credit, a
        // read, a probe and the close.
        let sq_depth = geo.slot_count + SIGNAL_EVERY + 4;
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
        let (ring_access, board_access) = end.access();
        let ring = conn.register(ring, ring_access)?;
        let base = conn.region_ptr(ring);
        let board_words = 2 * geo.slot_count;
        let board = MmapMut::map_anon(board_words as usize * 4)
            .map_err(Error::io("mapping the credit board"))?;
        let board = conn.register(board, board_access)?;
        let board_base = conn.region_ptr(board);
        for i in 0..recvs {
            conn.post_recv(WR_RECV | u64::from(i))?;
        }
        Ok(Parts {
            ring,
            base,
            board,
            board_base,
            board_words,
            sq_depth,
        })
    }

    fn from_parts(conn: Connection, p: Parts) -> Link {
        Link {
            conn,
            ring: p.ring,
            base: p.base,
            remote_addr: 0,
            remote_rkey: 0,
            board: p.board,
            board_base: p.board_base,
            board_words: p.board_words,
            remote_board: 0,
            remote_board_rkey: 0,
            stats: LinkStats::default(),
            peer_pid: 0,
            broken: None,
            probe_at: Instant::now() + PROBE_EVERY,
            probing: false,
            wcs: Vec::new(),
            stash: Vec::new(),
            sq_used: 0,
            sq_depth: p.sq_depth,
            unsignaled: 0,
            retires: VecDeque::new(),
        }
    }

    pub(super) fn hello(&self, geo: &Geometry) -> Hello {
        Hello {
            magic: MAGIC,
            version: VERSION,
            slot_size: geo.slot_size,
            slot_count: geo.slot_count,
            pid: std::process::id(),
            rkey: self.ring.rkey,
            addr: self.ring.addr,
            board_addr: self.board.addr,
            board_rkey: self.board.rkey,
            reserved: 0,
        }
    }

    /// The RDMA device and the local and peer addresses.
    pub(super) fn endpoints(&self) -> (String, Option<SocketAddr>, Option<SocketAddr>) {
        let (local, peer) = self.conn.addrs();
        (self.conn.device(), local, peer)
    }

    pub(super) fn peer(&mut self, h: &Hello) {
        self.remote_addr = h.addr;
        self.remote_rkey = h.rkey;
        self.remote_board = h.board_addr;
        self.remote_board_rkey = h.board_rkey;
        self.peer_pid = h.pid;
    }

    /// Word `i` of the credit board (`i` < 2 × slot_count).
    pub(super) fn board_word(&self, i: u32) -> &AtomicU32 {
        assert!(
            i < self.board_words,
            "board word {i} of {}",
            self.board_words
        );
        // SAFETY: i < board_words (checked above), so the word lies inside
        // the board's mapping of board_words u32s.
        let p = unsafe { self.board_base.add(4 * i as usize) };
        // SAFETY: p is 4-aligned (the mapping is page-aligned), inside the
        // registered board the link keeps for its life (so for the borrow of
        // self); the device writes it too (the peer's credit writes, read
        // responses), so it is only ever reached through atomics, and a
        // u32 store by the device is seen whole or not at all on the
        // platforms rdma-core supports.
        unsafe { AtomicU32::from_ptr(p.cast()) }
    }

    /// The receiver's count of releases of slot `i`, bumped after the
    /// sample let go of the slot (Release: a read of the board that sees
    /// it sees the slot's last use done).
    pub(super) fn bump_release(&self, i: u32) {
        let w = self.board_word(i);
        w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
    }

    /// Writes board words `first .. first + count` into the same words of
    /// the peer's board, with their range as the immediate: one credit
    /// write for any number of released slots.
    pub(super) fn credit(&mut self, first: u32, count: u32) -> Result<()> {
        let (board, addr, rkey) = (
            self.board,
            self.remote_board + 4 * u64::from(first),
            self.remote_board_rkey,
        );
        self.post(true, |conn| {
            conn.post_write(
                WR_CREDIT | u64::from(first),
                board,
                4 * first as usize,
                4 * count as usize,
                addr,
                rkey,
                Some(credit_imm(first, count)),
                true,
            )
        })?;
        self.stats.credit_writes += 1;
        Ok(())
    }

    /// Reads the peer's board (slot_count words) into the second half of
    /// ours.
    pub(super) fn read_board(&mut self) -> Result<()> {
        let words = self.board_words / 2;
        let (board, addr, rkey) = (self.board, self.remote_board, self.remote_board_rkey);
        self.post(true, |conn| {
            conn.post_read(
                WR_READ,
                board,
                4 * words as usize,
                4 * words as usize,
                addr,
                rkey,
            )
        })?;
        self.stats.reads += 1;
        Ok(())
    }

    pub(super) fn break_with(&mut self, why: String) {
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
    pub(super) fn poll(&mut self) -> Result<()> {
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
    pub(super) fn poll_cq(&mut self) -> Result<usize> {
        let from = self.stash.len();
        let n = self.conn.poll(&mut self.stash, 16)?;
        self.stats.cq_polls += 1;
        self.stats.completions += n as u64;
        for i in from..self.stash.len() {
            if self.stash[i].wr_id & KIND == WR_RECV {
                continue;
            }
            if self.stash[i].status != IBV_WC_SUCCESS {
                // A failed request completes whether signaled or not, and
                // the QP then flushes the rest, each with a completion:
                // the link is broken and posts nothing more, so the
                // count has nothing left to guard.
                self.retires.clear();
                self.sq_used = 0;
                continue;
            }
            let retired = self.retires.pop_front().unwrap_or(1);
            self.sq_used = self.sq_used.saturating_sub(retired);
        }
        Ok(n)
    }

    /// A request went on the send queue (its room was reserved).
    fn posted(&mut self, signaled: bool) {
        if signaled {
            self.retires.push_back(self.unsignaled + 1);
            self.unsignaled = 0;
        } else {
            self.unsignaled += 1;
        }
    }

    /// Posts one request to the send queue through `post`, with room
    /// reserved first (given back if the post fails) and its completion,
    /// if `signaled`, counted to retire it and the unsignaled ones before.
    fn post(
        &mut self,
        signaled: bool,
        post: impl FnOnce(&mut Connection) -> crate::rdma::Result<()>,
    ) -> Result<()> {
        self.reserve_send()?;
        post(&mut self.conn).inspect_err(|_| self.sq_used -= 1)?;
        self.posted(signaled);
        Ok(())
    }

    /// Room for one more send: waits (boundedly) for sends to complete.
    /// Credits can outrun their acknowledgements, so the receiver's send
    /// queue fills up when the sender is quick.
    pub(super) fn reserve_send(&mut self) -> Result<()> {
        // The clock is read only once the queue is found full: where the
        // vDSO cannot read it (a TCG guest), each read is a system call,
        // and a post is on every message's path.
        let mut deadline = None;
        while self.sq_used >= self.sq_depth {
            if self.poll_cq()? == 0 {
                let d = *deadline.get_or_insert_with(|| Instant::now() + SEND_QUEUE_WAIT);
                if Instant::now() > d {
                    return Err(
                        crate::rdma::Error::Timeout("waiting for room in the send queue").into(),
                    );
                }
                std::thread::yield_now();
            }
        }
        self.sq_used += 1;
        Ok(())
    }

    /// Posts a zero-length SEND WITH IMMEDIATE.
    pub(super) fn send_imm(&mut self, wr_id: u64, imm: u32) -> Result<()> {
        self.post(true, |conn| conn.post_send_imm(wr_id, imm))
    }

    /// Posts an RDMA WRITE of `len` bytes from `offset` of the local ring
    /// to the same offset of the peer's, with `imm` when given: signaled,
    /// or for a `message` only every [`SIGNAL_EVERY`]th time (the
    /// receiver's board, not the write's completion, frees its slot).
    pub(super) fn write(
        &mut self,
        wr_id: u64,
        offset: u64,
        len: u32,
        imm: Option<u32>,
        message: bool,
    ) -> Result<()> {
        let signaled = !message || self.unsignaled + 1 >= SIGNAL_EVERY;
        let (ring, addr, rkey) = (self.ring, self.remote_addr + offset, self.remote_rkey);
        self.post(signaled, |conn| {
            conn.post_write(
                wr_id,
                ring,
                offset as usize,
                len as usize,
                addr,
                rkey,
                imm,
                signaled,
            )
        })?;
        self.stats.signaled_writes += u64::from(message && signaled);
        Ok(())
    }

    /// Waits until a completion or connection event may be there, at most
    /// until `deadline`; probes a silent peer on the way.
    pub(super) fn wait(&mut self, deadline: Option<Instant>) -> Result<()> {
        let now = Instant::now();
        if let Some(d) = deadline {
            if now >= d {
                return Ok(());
            }
        }
        if now >= self.probe_at && !self.probing && self.broken.is_none() {
            // Zero bytes to the peer's ring: fails only if the peer is gone.
            if self.write(WR_PROBE, 0, 0, None, false).is_ok() {
                self.probing = true;
                self.stats.probes += 1;
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
        self.check_events();
        Ok(())
    }

    /// Reads the connection's events without waiting: a disconnect marks
    /// the link broken.
    pub(super) fn check_events(&mut self) {
        if let Err(e) = self.conn.poll_events() {
            self.break_with(e.to_string());
        }
    }

    pub(super) fn slot(&self, geo: &Geometry, index: u32) -> *mut u8 {
        // SAFETY: index < slot_count (callers check), so the offset lies
        // inside the registered ring of slots_bytes bytes.
        unsafe { self.base.add(geo.slot_offset(index) as usize) }
    }
}

/// Receives posted at each end. One per slot is the need (messages one
/// way, at most one credit write per released slot the other) plus the
/// close; the rest is headroom, since an
/// empty receive queue makes the peer's Soft-RoCE answer with an RNR NAK
/// and retry.
pub(super) fn recv_depth(geo: &Geometry) -> u32 {
    2 * geo.slot_count + 8
}

/// Anonymous memory for a ring of this shape.
pub(super) fn anon_ring(geo: &Geometry) -> Result<MmapMut> {
    let len =
        usize::try_from(geo.slots_bytes).map_err(|_| Error::Config("ring too large".into()))?;
    MmapMut::map_anon(len).map_err(Error::io("mapping the ring"))
}

/// Checks the peer's half of the handshake against our geometry.
pub(super) fn check_peer(h: &Hello, from: End, geo: &Geometry) -> Result<()> {
    if h.slot_size != geo.slot_size || h.slot_count != geo.slot_count {
        return Err(Error::Layout(format!(
            "the peer has {} slots of {} bytes, this end {} of {}",
            h.slot_count, h.slot_size, geo.slot_count, geo.slot_size
        )));
    }
    // A sender's ring takes no remote access, so it has no remote key
    // (Soft-RoCE gives it 0); the receiver probes it with zero-byte
    // writes only, which need none.
    let ring_named = h.addr != 0 && (from == End::Sender || h.rkey != 0);
    if !ring_named || h.board_addr == 0 || h.board_rkey == 0 {
        return Err(Error::Layout(
            "the peer's ring has no address or key".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hello_fits_a_connect_requests_private_data() {
        // rdma_cm leaves 56 bytes of an RC connect request to the caller.
        assert_eq!(std::mem::size_of::<Hello>(), 48);
    }

    #[test]
    fn a_credit_immediate_names_its_board_words_and_nothing_outside() {
        for (first, count) in [(0, 1), (3, 5), (0, MAX_RDMA_SLOTS), (MAX_RDMA_SLOTS - 1, 1)] {
            let imm = credit_imm(first, count);
            assert_ne!(imm, CLOSE);
            assert_eq!(
                credit_range(imm, MAX_RDMA_SLOTS),
                Some(first..first + count)
            );
        }
        assert_eq!(credit_range(credit_imm(3, 5), 8), Some(3..8));
        assert_eq!(credit_range(credit_imm(3, 6), 8), None, "past the ring");
        assert_eq!(credit_range(3 << 16, 8), None, "no words");
        assert_eq!(credit_range(CLOSE, MAX_RDMA_SLOTS), None);
    }

    #[test]
    fn only_a_receivers_ring_needs_a_remote_key() {
        let geo = geometry(4096, 4).unwrap();
        let h = Hello {
            magic: MAGIC,
            version: VERSION,
            slot_size: 4096,
            slot_count: 4,
            pid: 1,
            rkey: 0,
            addr: 0x1000,
            board_addr: 0x2000,
            board_rkey: 7,
            reserved: 0,
        };
        assert!(check_peer(&h, End::Sender, &geo).is_ok());
        assert!(check_peer(&h, End::Receiver, &geo).is_err());
        let keyed = Hello { rkey: 5, ..h };
        assert!(check_peer(&keyed, End::Receiver, &geo).is_ok());
        for bad in [
            Hello { addr: 0, ..keyed },
            Hello {
                board_rkey: 0,
                ..keyed
            },
            Hello {
                board_addr: 0,
                ..keyed
            },
        ] {
            assert!(check_peer(&bad, End::Sender, &geo).is_err());
        }
    }
}
