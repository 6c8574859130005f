//! The card itself: request validation and the copy engine, with no vhost-user.
//!
//! [`Card::process`] takes one descriptor chain and returns what to put in the
//! used ring. It distrusts every byte the guest wrote: all lengths, counts and
//! addresses are checked before any payload is touched, a malformed request
//! becomes a status (docs/zcard-spec.md, "Validation order"), and nothing the
//! guest sends can panic the process or make it allocate without bound.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use log::{debug, warn};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, VolatileMemory,
    VolatileSlice,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::faults::{Actions, Faults};
use crate::stats::Stats;
use crate::storage::Storage;
use crate::virtio_zcard::*;

/// Guest memory as the card sees it.
pub type GuestMem = GuestMemoryMmap<()>;

/// Exit code of the daemon when a `crash` fault fires.
pub const CRASH_EXIT_CODE: i32 = 75;

/// Chunk size for CRC32C (the engine reads guest memory through a bounce buffer).
const CRC_CHUNK: usize = 64 << 10;

/// Limits a card is created with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Number of request queues (1..=64).
    pub num_queues: u16,
    /// Segments per direction per request (1..=256).
    pub max_segments: u16,
    /// Largest payload of one request (1..=1 GiB).
    pub max_request_bytes: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            num_queues: DEFAULT_QUEUES,
            max_segments: DEFAULT_MAX_SEGMENTS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// What to put in the used ring for one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Return the chain with this used length, notifying the driver or not.
    Complete {
        /// Bytes written into device-writable buffers.
        used_len: u32,
        /// False when a lost-interrupt fault fired.
        notify: bool,
    },
    /// A stall fault fired: leave the chain in the avail ring and stop serving the queue.
    Stall,
}

/// A request that passed every check: its segments are the chain's own
/// descriptors, each checked to lie in guest memory.
#[derive(Debug)]
struct Request<'m, 'c> {
    op: Op,
    header: ReqHeader,
    src: &'c [Descriptor],
    dst: &'c [Descriptor],
    /// The host memory of the only source and the only destination, when
    /// there is one of each and it lies in one memory region: translated
    /// once, while checking.
    one_to_one: Option<(VolatileSlice<'m, ()>, VolatileSlice<'m, ()>)>,
}

/// Descriptors a chain keeps without a heap allocation: a header, three
/// segments each way and a status, what almost every request has.
const INLINE_DESCS: usize = 8;

/// Where a [`Chain`] keeps its descriptors, inline up to [`INLINE_DESCS`]
/// and on the heap past that (requests of many segments only), and the
/// region of its header. The caller owns it, so the chain borrows both
/// instead of carrying them: every move of the chain would copy them.
#[derive(Debug)]
struct DescStore<'m> {
    inline: [Descriptor; INLINE_DESCS],
    heap: Vec<Descriptor>,
    region: HeaderRegion<'m>,
}

impl DescStore<'_> {
    fn new() -> Self {
        DescStore {
            inline: [Descriptor::default(); INLINE_DESCS],
            heap: Vec::new(),
            region: HeaderRegion::default(),
        }
    }
}

/// The guest memory region a request's header lies in, where its other
/// buffers almost always lie too. An address there is a subtraction and a
/// bounds check from its host memory; guest memory's own lookup searches
/// its regions through two pointers each time, and returns its slices
/// through memory that was just written piecewise, which stalls the load
/// that reads them back (store forwarding fails). Any other address takes
/// that lookup.
#[derive(Clone, Copy, Debug, Default)]
struct HeaderRegion<'m> {
    start: u64,
    host: Option<VolatileSlice<'m, ()>>,
}

impl<'m> HeaderRegion<'m> {
    /// The region holding `addr` (none: every address takes the full lookup).
    #[inline(always)]
    fn of(mem: &'m GuestMem, addr: GuestAddress) -> Self {
        let region = mem.find_region(addr);
        HeaderRegion {
            start: region.map_or(0, |r| r.start_addr().0),
            host: region.and_then(|r| GuestMemoryRegion::as_volatile_slice(r).ok()),
        }
    }

    /// The host memory of `len` bytes at `addr`, if they lie in one region
    /// of `mem` (what `mem.get_slice` gives).
    #[inline(always)]
    fn slice(
        &self,
        mem: &'m GuestMem,
        addr: GuestAddress,
        len: usize,
    ) -> Option<VolatileSlice<'m, ()>> {
        let off = addr
            .0
            .checked_sub(self.start)
            .and_then(|o| usize::try_from(o).ok());
        if let (Some(host), Some(off)) = (self.host, off) {
            if let Ok(s) = host.subslice(off, len) {
                return Some(s);
            }
        }
        elsewhere(mem, addr, len)
    }
}

/// [`HeaderRegion::slice`] of an address outside the header's region: kept
/// out of line, so that the common case stays in registers.
#[cold]
#[inline(never)]
fn elsewhere(mem: &GuestMem, addr: GuestAddress, len: usize) -> Option<VolatileSlice<'_, ()>> {
    mem.get_slice(addr, len).ok()
}

/// A descriptor chain walked to its end, ending on a usable status descriptor.
#[derive(Debug)]
struct Chain<'m, 's> {
    /// The first descriptors, as many as a valid request can have plus one.
    descs: &'s [Descriptor],
    /// How many descriptors the chain has in all.
    count: usize,
    /// The last descriptor: device-writable, large enough, in guest memory.
    status: Descriptor,
    /// Its host memory when it lies in one region (translated once).
    status_slice: Option<VolatileSlice<'m, ()>>,
    /// The region of its header.
    region: &'s HeaderRegion<'m>,
}

impl<'m, 's> Chain<'m, 's> {
    /// Walks the whole chain (the iterator bounds it by the queue or indirect
    /// table size), storing in `store` only as many descriptors as a valid
    /// request can have, plus one to notice too many. None when the chain
    /// cannot carry a status: it ends on a descriptor still flagged NEXT
    /// (cut short by a loop, a bad next index or an unreadable table:
    /// nothing in it is trusted), or its last descriptor is not a usable
    /// status descriptor.
    fn collect<I>(
        mem: &'m GuestMem,
        chain: I,
        max_segments: u16,
        store: &'s mut DescStore<'m>,
    ) -> Option<Chain<'m, 's>>
    where
        I: Iterator<Item = Descriptor>,
    {
        let keep = 2 * usize::from(max_segments) + 3;
        let mut count = 0usize;
        // The last descriptor when it is past those stored.
        let mut beyond = None;
        for d in chain {
            if count < INLINE_DESCS {
                store.inline[count] = d;
            } else if count < keep {
                if store.heap.is_empty() {
                    store.heap.extend_from_slice(&store.inline);
                }
                store.heap.push(d);
            } else {
                beyond = Some(d);
            }
            count += 1;
        }
        let stored = count.min(keep);
        let first = if stored <= INLINE_DESCS {
            store.inline[0]
        } else {
            store.heap[0]
        };
        store.region = HeaderRegion::of(mem, first.addr());
        let store: &'s DescStore<'m> = store;
        let descs = if stored <= INLINE_DESCS {
            &store.inline[..stored]
        } else {
            &store.heap[..]
        };
        let last = beyond.or_else(|| descs.last().copied());
        let status =
            last.filter(|d| !d.has_next() && d.is_write_only() && d.len() >= REQ_STATUS_SIZE)?;
        let region = &store.region;
        let status_slice = match region.slice(mem, status.addr(), REQ_STATUS_SIZE as usize) {
            Some(s) => Some(s),
            // Across two regions: written through guest memory instead.
            None if mem.check_range(status.addr(), REQ_STATUS_SIZE as usize) => None,
            None => return None,
        };
        Some(Chain {
            descs,
            count,
            status,
            status_slice,
            region,
        })
    }

    /// The stored descriptors between the header and the status.
    fn middle(&self) -> &'s [Descriptor] {
        &self.descs[1..self.descs.len() - 1]
    }
}

/// What a request came to, before its status is written.
#[derive(Debug)]
struct Verdict {
    op: Option<Op>,
    tag: u64,
    length: u64,
    status: Status,
    result: u32,
    /// Bytes written to the destinations.
    written: u32,
    /// A delay fault's wait before completing.
    delay: Option<Duration>,
    /// False when a lost-interrupt fault fired.
    notify: bool,
}

/// The emulated card: limits, storage, faults, counters and device state.
pub struct Card {
    limits: Limits,
    storage: Storage,
    faults: Faults,
    stats: Stats,
    device_state: AtomicU32,
    stalled: Vec<AtomicBool>,
    spurious: Vec<AtomicU32>,
    stray_used: Vec<AtomicBool>,
    wake: Vec<EventFd>,
    crash: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Card {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Card")
            .field("limits", &self.limits)
            .field("storage", &self.storage)
            .finish_non_exhaustive()
    }
}

impl Card {
    /// A card with these limits over `storage`; `seed` drives fault injection.
    pub fn new(limits: Limits, storage: Storage, seed: u64) -> std::io::Result<Card> {
        let n = usize::from(limits.num_queues);
        Ok(Card {
            limits,
            storage,
            faults: Faults::new(seed),
            stats: Stats::new(limits.num_queues),
            device_state: AtomicU32::new(0),
            stalled: (0..n).map(|_| AtomicBool::new(false)).collect(),
            spurious: (0..n).map(|_| AtomicU32::new(0)).collect(),
            stray_used: (0..n).map(|_| AtomicBool::new(false)).collect(),
            wake: (0..n)
                .map(|_| EventFd::new(EFD_NONBLOCK))
                .collect::<std::io::Result<_>>()?,
            crash: Box::new(|| {
                // SAFETY: _exit takes no pointers and never returns; skipping
                // destructors and atexit handlers is the point of this fault.
                unsafe { libc::_exit(CRASH_EXIT_CODE) }
            }),
        })
    }

    /// Replaces what a `crash` fault does (tests observe it instead of dying).
    pub fn set_crash_action(&mut self, action: Box<dyn Fn() + Send + Sync>) {
        self.crash = action;
    }

    /// The limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The fault rules.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The config space as the driver reads it now.
    pub fn config_space(&self) -> ConfigSpace {
        ConfigSpace {
            magic: ZCARD_MAGIC,
            version: ZCARD_VERSION,
            num_queues: self.limits.num_queues,
            max_segments: self.limits.max_segments,
            max_request_bytes: self.limits.max_request_bytes,
            storage_capacity: self.storage.capacity(),
            block_size: BLOCK_SIZE,
            supported_ops: SUPPORTED_OPS,
            device_state: self.device_state.load(Ordering::Acquire),
            max_queue_size: u32::from(MAX_QUEUE_SIZE),
            reserved: [0; 6],
        }
    }

    /// Exactly `size` bytes of config space from `offset`; bytes past the end read as zero.
    pub fn read_config(&self, offset: u32, size: u32) -> Vec<u8> {
        self.stats.config_read();
        let cfg = self.config_space();
        let bytes = vm_memory::ByteValued::as_slice(&cfg);
        let size = (size as usize).min(4096);
        let mut out = vec![0u8; size];
        if let Some(avail) = bytes.get(offset as usize..) {
            let n = avail.len().min(size);
            out[..n].copy_from_slice(&avail[..n]);
        }
        out
    }

    /// Whether NEEDS_RESET is set.
    pub fn needs_reset(&self) -> bool {
        self.device_state.load(Ordering::Acquire) & STATE_NEEDS_RESET != 0
    }

    /// Sets NEEDS_RESET: every request completes with `needs_reset` until [`Card::reset`].
    pub fn set_needs_reset(&self) {
        // Release pairs with the Acquire in needs_reset/config_space.
        self.device_state
            .fetch_or(STATE_NEEDS_RESET, Ordering::Release);
        warn!("card needs reset");
    }

    /// A device reset by the driver (or a new connection): clears the device
    /// state and every stall. Storage, rules and counters stay.
    pub fn reset(&self) {
        self.device_state.store(0, Ordering::Release);
        for s in &self.stalled {
            s.store(false, Ordering::Release);
        }
        self.stats.reset();
    }

    /// Whether `queue` is stalled.
    pub fn is_stalled(&self, queue: u16) -> bool {
        self.stalled
            .get(usize::from(queue))
            .is_some_and(|s| s.load(Ordering::Acquire))
    }

    /// Wakes the worker of `queue` (an existing queue) for what was just
    /// asked of it.
    fn wake_worker(&self, queue: u16) {
        if let Err(e) = self.wake[usize::from(queue)].write(1) {
            warn!("cannot wake queue {queue}: {e}");
        }
    }

    /// Stalls `queue` now (false if there is no such queue).
    pub fn stall(&self, queue: u16) -> bool {
        self.stalled
            .get(usize::from(queue))
            .map(|s| s.store(true, Ordering::Release))
            .is_some()
    }

    /// Releases a stalled `queue` and wakes its worker (false if there is no such queue).
    pub fn release(&self, queue: u16) -> bool {
        let Some(s) = self.stalled.get(usize::from(queue)) else {
            return false;
        };
        // Release pairs with the Acquire in is_stalled: the worker woken below
        // sees the queue released.
        s.store(false, Ordering::Release);
        self.wake_worker(queue);
        true
    }

    /// Asks the worker of `queue` to send `count` interrupts with nothing new
    /// on the used ring (false if there is no such queue).
    pub fn request_spurious(&self, queue: u16, count: u32) -> bool {
        let Some(s) = self.spurious.get(usize::from(queue)) else {
            return false;
        };
        s.fetch_add(count, Ordering::AcqRel);
        self.wake_worker(queue);
        true
    }

    /// Asks the worker of `queue` to put a used entry for descriptor 0 on
    /// its used ring, whatever is in flight, and interrupt: a card that
    /// completes a request it never had (false if there is no such queue).
    pub fn request_stray_used(&self, queue: u16) -> bool {
        let Some(s) = self.stray_used.get(usize::from(queue)) else {
            return false;
        };
        s.store(true, Ordering::Release);
        self.wake_worker(queue);
        true
    }

    /// Takes the stray used entry asked for on `queue`, if one was.
    pub fn take_stray_used(&self, queue: u16) -> bool {
        self.stray_used
            .get(usize::from(queue))
            .is_some_and(|s| s.swap(false, Ordering::AcqRel))
    }

    /// Takes the spurious interrupts asked for on `queue` so far.
    pub fn take_spurious(&self, queue: u16) -> u32 {
        self.spurious
            .get(usize::from(queue))
            .map_or(0, |s| s.swap(0, Ordering::AcqRel))
    }

    /// The eventfd that wakes the worker of `queue` (registered with its epoll loop).
    pub fn wake_fd(&self, queue: u16) -> Option<&EventFd> {
        self.wake.get(usize::from(queue))
    }

    /// Serves one descriptor chain taken from `queue`: collect the chain,
    /// decide what the request comes to, complete it.
    pub fn process<I>(&self, mem: &GuestMem, chain: I, queue: u16) -> Outcome
    where
        I: Iterator<Item = Descriptor>,
    {
        let mut store = DescStore::new();
        let Some(chain) = Chain::collect(mem, chain, self.limits.max_segments, &mut store) else {
            debug!("queue {queue}: chain without a usable status descriptor dropped");
            return self.drop_chain();
        };
        match self.decide(mem, &chain, queue) {
            Some(verdict) => self.complete(mem, &chain, verdict, queue),
            None => Outcome::Stall,
        }
    }

    /// What a collected request comes to: fault rules first (a crash, a
    /// NEEDS_RESET, a stall take effect here), then validation and execution.
    /// None when the queue stalls with the request left pending.
    fn decide(&self, mem: &GuestMem, chain: &Chain, queue: u16) -> Option<Verdict> {
        let header = read_header(mem, chain.region, chain.descs, chain.count);
        let op = header.as_ref().ok().and_then(|h| Op::from_opcode(h.opcode));
        let actions = self.faults.evaluate(op, queue);
        if actions.crash {
            warn!("fault: crash on queue {queue} mid-request");
            (self.crash)();
        }
        if actions.needs_reset {
            self.set_needs_reset();
        }
        if actions.stall {
            warn!("fault: queue {queue} stalled");
            self.stall(queue);
            return None;
        }
        let mut verdict = Verdict {
            op,
            tag: header.as_ref().map_or(0, |h| h.tag),
            length: header.as_ref().map_or(0, |h| h.length),
            status: Status::NeedsReset,
            result: 0,
            written: 0,
            delay: actions.delay,
            notify: !actions.lost_interrupt,
        };
        if !self.needs_reset() {
            let checked = header
                .and_then(|h| self.validate(mem, chain.region, h, chain.middle(), chain.count))
                .and_then(|req| actions.fail.map_or(Ok(req), Err));
            (verdict.status, verdict.result, verdict.written) = match checked {
                Ok(req) => self.execute(mem, &req, &actions),
                Err(status) => (status, 0, 0),
            };
        }
        Some(verdict)
    }

    /// Writes the status of a decided request and says what goes in the used ring.
    fn complete(&self, mem: &GuestMem, chain: &Chain, verdict: Verdict, queue: u16) -> Outcome {
        if let Some(delay) = verdict.delay {
            std::thread::sleep(delay);
        }
        let reply = ReqStatus {
            status: verdict.status as u8,
            reserved: [0; 3],
            result: verdict.result,
            tag: verdict.tag,
        };
        // The status slice found while walking the chain, written whole.
        let written = match chain.status_slice {
            Some(s) => s
                .get_ref::<[u64; 2]>(0)
                .map(|r| r.store(reply.to_words()))
                .is_ok(),
            None => mem.write_obj(reply, chain.status.addr()).is_ok(),
        };
        if !written {
            // The status descriptor lies outside guest memory.
            return self.drop_chain();
        }
        let bytes = if verdict.status == Status::Ok {
            verdict.length
        } else {
            0
        };
        self.stats.request(queue, verdict.op, verdict.status, bytes);
        Outcome::Complete {
            used_len: verdict.written + REQ_STATUS_SIZE,
            notify: verdict.notify,
        }
    }

    /// A chain returned with nothing written (docs/zcard-spec.md, "Dropped chains").
    fn drop_chain(&self) -> Outcome {
        self.stats.dropped_chain();
        Outcome::Complete {
            used_len: 0,
            notify: true,
        }
    }

    /// Checks a request whose header was read; `middle` are the descriptors
    /// between header and status (all of them unless `count` says more exist).
    fn validate<'m, 'c>(
        &self,
        mem: &'m GuestMem,
        region: &HeaderRegion<'m>,
        header: ReqHeader,
        middle: &'c [Descriptor],
        count: usize,
    ) -> Result<Request<'m, 'c>, Status> {
        let op = Op::from_opcode(header.opcode).ok_or(Status::Unsupported)?;
        if header.flags != 0
            || header.reserved0 != 0
            || header.reserved1 != 0
            || header.reserved2 != 0
        {
            return Err(Status::BadHeader);
        }
        let pattern_ok = match op {
            Op::Fill => true,
            Op::Crc32c => header.pattern >> 32 == 0,
            _ => header.pattern == 0,
        };
        let storage_op = matches!(op, Op::StorageRead | Op::StorageWrite);
        if !pattern_ok || (!storage_op && header.storage_offset != 0) {
            return Err(Status::BadHeader);
        }

        // Readable segments first, then writable ones, none empty.
        let split = middle
            .iter()
            .position(|d| d.is_write_only())
            .unwrap_or(middle.len());
        let (src, dst) = middle.split_at(split);
        if dst.iter().any(|d| !d.is_write_only()) || middle.iter().any(|d| d.len() == 0) {
            return Err(Status::BadDescriptor);
        }
        let max = usize::from(self.limits.max_segments);
        if count > middle.len() + 2 || src.len() > max || dst.len() > max {
            return Err(Status::TooManySegments);
        }
        if (!src.is_empty() && !op.has_sources()) || (!dst.is_empty() && !op.has_destinations()) {
            return Err(Status::BadDescriptor);
        }

        let total = |segs: &[Descriptor]| segs.iter().map(|d| u64::from(d.len())).sum::<u64>();
        let length_ok = header.length <= u64::from(self.limits.max_request_bytes)
            && (!op.has_sources() || total(src) == header.length)
            && (!op.has_destinations() || total(dst) == header.length)
            && (op.has_sources() || op.has_destinations() || header.length == 0);
        if !length_ok {
            return Err(Status::BadLength);
        }
        if storage_op {
            let block = u64::from(BLOCK_SIZE);
            if header.storage_offset % block != 0
                || header.length % block != 0
                || !self.storage.contains(header.storage_offset, header.length)
            {
                return Err(Status::OutOfRange);
            }
        }

        // Every segment in guest memory; a segment inside one region is
        // translated here, once.
        let mut slices = [None, None];
        for (i, d) in middle.iter().enumerate() {
            let slice = match region.slice(mem, d.addr(), d.len() as usize) {
                Some(s) => Some(s),
                None if mem.check_range(d.addr(), d.len() as usize) => None,
                None => return Err(Status::BadAddress),
            };
            if i == 0 && src.len() == 1 {
                slices[0] = slice;
            } else if i == split && dst.len() == 1 {
                slices[1] = slice;
            }
        }
        let one_to_one = match slices {
            [Some(s), Some(d)] => Some((s, d)),
            _ => None,
        };
        Ok(Request {
            op,
            header,
            src,
            dst,
            one_to_one,
        })
    }

    /// Runs a valid request; returns (status, result, bytes written to the guest).
    fn execute(&self, mem: &GuestMem, req: &Request, actions: &Actions) -> (Status, u32, u32) {
        let moved = u32::try_from(req.header.length).unwrap_or(u32::MAX);
        let res = match req.op {
            Op::Nop => Ok(0),
            Op::Copy => match req.one_to_one {
                // memmove semantics, as in copy().
                Some((from, to)) => {
                    from.copy_to_volatile_slice(to);
                    Ok(0)
                }
                None => copy(mem, req.src, req.dst).map(|()| 0),
            },
            Op::Fill => fill(mem, req.dst, req.header.pattern).map(|()| 0),
            Op::Crc32c => crc32c(mem, req.src, req.header.pattern as u32),
            Op::StorageRead => {
                let mut at = req.header.storage_offset;
                let mut failed = None;
                for_each_slice(mem, req.dst, |s| {
                    if failed.is_none() {
                        failed = self.storage.read_into(at, &s).err();
                    }
                    at += s.len() as u64;
                })
                .and_then(|()| storage_status(failed))
            }
            Op::StorageWrite => {
                let mut at = req.header.storage_offset;
                let mut failed = None;
                for_each_slice(mem, req.src, |s| {
                    if failed.is_none() {
                        failed = self.storage.write_from(at, &s).err();
                    }
                    at += s.len() as u64;
                })
                .and_then(|()| storage_status(failed))
            }
            Op::Flush => self.storage.flush().map(|()| 0).map_err(|e| {
                warn!("flush: {e}");
                Status::IoError
            }),
        };
        let result = match res {
            Ok(r) => r,
            Err(status) => return (status, 0, 0),
        };
        if let (Some(bit), Op::Copy, 1..) = (actions.flip_bit, req.op, req.header.length) {
            flip_bit(mem, req.dst, bit % (req.header.length * 8));
        }
        let written = if req.op.has_destinations() { moved } else { 0 };
        (Status::Ok, result, written)
    }
}

/// The outcome of a storage transfer: `io_error` (logged) if a part failed.
fn storage_status(failed: Option<crate::storage::StorageError>) -> Result<u32, Status> {
    match failed {
        None => Ok(0),
        Some(e) => {
            warn!("{e}");
            Err(Status::IoError)
        }
    }
}

/// Reads the header from the first descriptor, or says why not.
fn read_header(
    mem: &GuestMem,
    region: &HeaderRegion,
    descs: &[Descriptor],
    count: usize,
) -> Result<ReqHeader, Status> {
    let first = descs[0];
    if count < 2 {
        return Err(Status::BadHeader);
    }
    if first.is_write_only() {
        return Err(Status::BadDescriptor);
    }
    if first.len() < REQ_HEADER_SIZE {
        return Err(Status::BadHeader);
    }
    // One translation and one load of the whole header (any alignment),
    // rather than a copy through guest memory's region walk.
    match region.slice(mem, first.addr(), REQ_HEADER_SIZE as usize) {
        Some(s) => s
            .get_ref::<[u64; REQ_HEADER_WORDS]>(0)
            .map(|r| ReqHeader::from_words(r.load()))
            .ok(),
        // Across two regions: read through guest memory instead.
        None => mem.read_obj::<ReqHeader>(first.addr()).ok(),
    }
    .ok_or(Status::BadAddress)
}

/// The host slices of `segs`, in order, each an `Err` where a segment
/// leaves guest memory.
fn host_slices<'m, 'c>(
    mem: &'m GuestMem,
    segs: &'c [Descriptor],
) -> impl Iterator<Item = Result<VolatileSlice<'m, ()>, Status>> + use<'m, 'c> {
    segs.iter().flat_map(move |d| {
        mem.get_slices(d.addr(), d.len() as usize)
            .map(|s| s.map_err(|_| Status::BadAddress))
    })
}

/// Calls `f` on every host slice of `segs`, in order.
fn for_each_slice<'m, F>(mem: &'m GuestMem, segs: &[Descriptor], mut f: F) -> Result<(), Status>
where
    F: FnMut(VolatileSlice<'m, ()>),
{
    for slice in host_slices(mem, segs) {
        f(slice?);
    }
    Ok(())
}

/// Gathers `src` and scatters it over `dst` (equal totals, checked by the
/// caller), walking both lists of host slices once, with no allocation.
fn copy(mem: &GuestMem, src: &[Descriptor], dst: &[Descriptor]) -> Result<(), Status> {
    let mut from_all = host_slices(mem, src);
    let mut to_all = host_slices(mem, dst);
    let (mut from, mut to) = (None, None);
    loop {
        let f = match from.take() {
            Some(f) => f,
            None => match from_all.next() {
                Some(f) => f?,
                None => return Ok(()),
            },
        };
        let t = match to.take() {
            Some(t) => t,
            None => match to_all.next() {
                Some(t) => t?,
                None => return Ok(()),
            },
        };
        let n = f.len().min(t.len());
        let (head, rest) = (
            f.subslice(0, n).map_err(|_| Status::BadAddress)?,
            f.offset(n).map_err(|_| Status::BadAddress)?,
        );
        let to_here = t.subslice(0, n).map_err(|_| Status::BadAddress)?;
        // memmove semantics: overlapping guest ranges give defined host behaviour.
        head.copy_to_volatile_slice(to_here);
        if !rest.is_empty() {
            from = Some(rest);
        }
        let t_rest = t.offset(n).map_err(|_| Status::BadAddress)?;
        if !t_rest.is_empty() {
            to = Some(t_rest);
        }
    }
}

/// Writes the little-endian `pattern` over `dst`, continuing across segments.
fn fill(mem: &GuestMem, dst: &[Descriptor], pattern: u64) -> Result<(), Status> {
    const CHUNK: usize = 4096;
    const SMALL: usize = 256;
    let total: usize = dst.iter().map(|s| s.len() as usize).sum();
    // Room for any phase (0..8) plus the longest write, whole patterns only;
    // a small request fills a small buffer (no 4 KiB to clear first).
    let needed = (total.min(CHUNK) + 15) & !7;
    let mut small = [0u8; SMALL + 16];
    let mut big;
    let buf: &mut [u8] = if needed <= small.len() {
        &mut small[..needed]
    } else {
        big = [0u8; CHUNK + 16];
        &mut big[..needed]
    };
    let bytes = pattern.to_le_bytes();
    for chunk in buf.chunks_exact_mut(8) {
        chunk.copy_from_slice(&bytes);
    }
    let mut pos = 0usize;
    for_each_slice(mem, dst, |s| {
        let mut off = 0;
        while off < s.len() {
            let n = (s.len() - off).min(CHUNK);
            let phase = pos % 8;
            if let Ok(part) = s.subslice(off, n) {
                part.copy_from(&buf[phase..phase + n]);
            }
            off += n;
            pos += n;
        }
    })
}

thread_local! {
    /// Each worker's CRC32C bounce buffer, grown once to [`CRC_CHUNK`].
    static BOUNCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// CRC32C of `src`, continuing from `init`.
fn crc32c(mem: &GuestMem, src: &[Descriptor], init: u32) -> Result<u32, Status> {
    BOUNCE.with_borrow_mut(|bounce| crc32c_through(mem, src, init, bounce))
}

/// CRC32C of `src` read through `bounce` (grown to at most [`CRC_CHUNK`]).
fn crc32c_through(
    mem: &GuestMem,
    src: &[Descriptor],
    init: u32,
    bounce: &mut Vec<u8>,
) -> Result<u32, Status> {
    let total: usize = src.iter().map(|s| s.len() as usize).sum();
    if bounce.len() < total.min(CRC_CHUNK) {
        bounce.resize(total.min(CRC_CHUNK), 0);
    }
    let bounce = &mut bounce[..total.min(CRC_CHUNK)];
    let mut crc = init;
    for_each_slice(mem, src, |s| {
        let mut off = 0;
        while off < s.len() {
            let n = (s.len() - off).min(bounce.len());
            if let Ok(part) = s.subslice(off, n) {
                part.copy_to(&mut bounce[..n]);
                crc = crc32c::crc32c_append(crc, &bounce[..n]);
            }
            off += n;
        }
    })?;
    Ok(crc)
}

/// Flips bit `bit` of the destination byte stream.
fn flip_bit(mem: &GuestMem, dst: &[Descriptor], bit: u64) {
    let mut byte = bit / 8;
    for seg in dst {
        if byte < u64::from(seg.len()) {
            let addr = GuestAddress(seg.addr().0 + byte);
            if let Ok(v) = mem.read_obj::<u8>(addr) {
                let _ = mem.write_obj(v ^ (1 << (bit % 8)), addr);
            }
            return;
        }
        byte -= u64::from(seg.len());
    }
}

/// A card shared by the vhost-user backend, its workers and the control socket.
pub type SharedCard = Arc<Card>;
