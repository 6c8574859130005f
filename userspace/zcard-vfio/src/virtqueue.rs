//! The driver's side of one split virtqueue (virtio 1.x, 2.7), in DMA memory.
//!
//! The queue keeps its own record of every chain it posted (which
//! descriptors, which tag, how many bytes the card may write) and never
//! reads a descriptor back from memory: the card can only hand back what
//! was posted. A used entry naming a head that is not in flight, or a used
//! index that runs ahead of what was posted, breaks the queue for good (an
//! error on every later call, until the card is reset); a used length or a
//! status that does not fit its request marks that completion invalid.
//!
//! Per head there is a 64-byte slot next to the rings: the request header
//! (48 bytes) and the status (16 bytes) of the chain that starts there.

use std::sync::atomic::{fence, AtomicU16, Ordering};

use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_USED_F_NO_NOTIFY};

use crate::dma::DmaMemory;
use crate::wire::{ReqHeader, ReqStatus, Status, REQ_HEADER_SIZE, REQ_STATUS_SIZE};

/// Bytes per head slot: header, then status.
const SLOT: usize = 64;
/// The status byte a slot holds until the card writes it (no status has this code).
const STATUS_UNWRITTEN: u8 = 0xff;

/// Offsets of one queue's structures in DMA memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueLayout {
    /// Descriptor table (16 bytes per entry).
    pub desc: usize,
    /// Avail (driver) ring.
    pub avail: usize,
    /// Used (device) ring.
    pub used: usize,
    /// Header and status slots, one per head.
    pub slots: usize,
    /// Total bytes from `desc`.
    pub len: usize,
}

impl QueueLayout {
    /// The layout of a queue of `size` entries starting at `base` (aligned to 64).
    pub fn new(base: usize, size: u16) -> QueueLayout {
        let n = usize::from(size);
        let desc = base;
        let avail = desc + 16 * n;
        let used = (avail + 6 + 2 * n).next_multiple_of(4);
        let slots = (used + 6 + 8 * n).next_multiple_of(SLOT);
        QueueLayout {
            desc,
            avail,
            used,
            slots,
            len: slots + SLOT * n - base,
        }
    }
}

/// What the card did with one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The card wrote this status (anything but `Ok` means the request was not executed).
    Status(Status),
    /// The card returned the chain with used length 0, writing nothing (a dropped chain).
    Dropped,
    /// The card completed the request in a way the protocol does not allow.
    Invalid(String),
}

/// One completed request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The value the request was submitted with.
    pub user_data: u64,
    /// Queue it ran on.
    pub queue: u16,
    /// What happened.
    pub outcome: Outcome,
    /// `CRC32C`: the CRC. Otherwise 0.
    pub result: u32,
}

impl Completion {
    /// The status, when the card wrote one.
    pub fn status(&self) -> Option<Status> {
        match self.outcome {
            Outcome::Status(s) => Some(s),
            _ => None,
        }
    }

    /// Whether the request completed `Ok`.
    pub fn is_ok(&self) -> bool {
        self.status() == Some(Status::Ok)
    }
}

/// A queue that can no longer be trusted, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken(pub String);

/// A chain in flight.
struct Inflight<K> {
    user_data: u64,
    tag: u64,
    descs: Vec<u16>,
    /// Bytes the card writes on success (the destination total).
    written: u32,
    /// Whatever must live until the card is done (the buffers).
    _keep: K,
}

/// One segment of a request: device address and length.
pub type Seg = (u64, u32);

/// The driver side of one split virtqueue.
pub struct SplitQueue<K> {
    index: u16,
    size: u16,
    layout: QueueLayout,
    event_idx: bool,
    free: Vec<u16>,
    inflight: Vec<Option<Inflight<K>>>,
    in_flight: u16,
    avail_idx: u16,
    kicked: u16,
    last_used: u16,
    seq: u64,
    broken: Option<Broken>,
}

/// Whether an event index asks for a notification (virtio 2.7.10.2).
fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl<K> SplitQueue<K> {
    /// A queue of `size` entries (a power of two) over `layout` in `mem`,
    /// which it zeroes; the caller tells the card the addresses.
    pub fn new(
        mem: &DmaMemory,
        index: u16,
        size: u16,
        layout: QueueLayout,
        event_idx: bool,
    ) -> SplitQueue<K> {
        mem.write(layout.desc, &vec![0u8; layout.len]);
        SplitQueue {
            index,
            size,
            layout,
            event_idx,
            free: (0..size).rev().collect(),
            inflight: (0..size).map(|_| None).collect(),
            in_flight: 0,
            avail_idx: 0,
            kicked: 0,
            last_used: 0,
            seq: 0,
            broken: None,
        }
    }

    /// Queue size.
    pub fn size(&self) -> u16 {
        self.size
    }

    /// Where the queue lives in DMA memory.
    pub fn layout(&self) -> QueueLayout {
        self.layout
    }

    /// Requests posted and not completed.
    pub fn in_flight(&self) -> u16 {
        self.in_flight
    }

    /// Free descriptors.
    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Why the queue is broken, if it is.
    pub fn broken(&self) -> Option<&Broken> {
        self.broken.as_ref()
    }

    fn idx_atomic(mem: &DmaMemory, offset: usize) -> &AtomicU16 {
        let p = mem.ptr(offset);
        assert!(mem.contains(offset, 2) && (p as usize) % 2 == 0);
        // SAFETY: the two bytes at offset are inside the DMA mapping, aligned
        // (checked), and are only ever accessed atomically by this driver;
        // the mapping outlives the returned reference (tied to mem).
        unsafe { AtomicU16::from_ptr(p.cast()) }
    }

    fn write_u16(mem: &DmaMemory, offset: usize, v: u16) {
        mem.write(offset, &v.to_le_bytes());
    }

    fn write_desc(&self, mem: &DmaMemory, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        mem.write(self.layout.desc + 16 * usize::from(i), &d);
    }

    /// Descriptors a request with these segments takes.
    pub fn descriptors_for(src: usize, dst: usize) -> usize {
        src + dst + 2
    }

    /// Posts one request (made available at once; [`Self::needs_kick`] says
    /// whether to notify). `header.tag` is set here. Returns `false`, posting
    /// nothing, when there are not enough free descriptors.
    pub fn push(
        &mut self,
        mem: &DmaMemory,
        mut header: ReqHeader,
        src: &[Seg],
        dst: &[Seg],
        user_data: u64,
        keep: K,
    ) -> Result<bool, Broken> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        let n = Self::descriptors_for(src.len(), dst.len());
        if n > self.free.len() {
            return Ok(false);
        }
        let descs: Vec<u16> = (0..n).filter_map(|_| self.free.pop()).collect();
        let head = descs[0];
        self.seq = self.seq.wrapping_add(1);
        header.tag = (u64::from(self.index) << 48) | (self.seq & ((1 << 48) - 1));
        let slot = self.layout.slots + SLOT * usize::from(head);
        // The header in its wire order, then a status the card has not written.
        mem.write(slot, &header_bytes(&header));
        let mut unwritten = [0u8; REQ_STATUS_SIZE as usize];
        unwritten[0] = STATUS_UNWRITTEN;
        mem.write(slot + REQ_HEADER_SIZE as usize, &unwritten);

        let next_flag = VRING_DESC_F_NEXT as u16;
        let write_flag = VRING_DESC_F_WRITE as u16;
        let mut k = 0;
        self.write_desc(
            mem,
            descs[k],
            mem.iova(slot),
            REQ_HEADER_SIZE,
            next_flag,
            descs[k + 1],
        );
        k += 1;
        for &(addr, len) in src {
            self.write_desc(mem, descs[k], addr, len, next_flag, descs[k + 1]);
            k += 1;
        }
        for &(addr, len) in dst {
            self.write_desc(
                mem,
                descs[k],
                addr,
                len,
                next_flag | write_flag,
                descs[k + 1],
            );
            k += 1;
        }
        let status_at = mem.iova(slot + REQ_HEADER_SIZE as usize);
        self.write_desc(mem, descs[k], status_at, REQ_STATUS_SIZE, write_flag, 0);

        let written = dst.iter().map(|d| d.1).fold(0u32, u32::saturating_add);
        self.inflight[usize::from(head)] = Some(Inflight {
            user_data,
            tag: header.tag,
            descs,
            written,
            _keep: keep,
        });
        self.in_flight += 1;
        let ring = self.layout.avail + 4 + 2 * usize::from(self.avail_idx % self.size);
        Self::write_u16(mem, ring, head);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // Sync point (release): the descriptors, header and ring entry are
        // in memory before the card can see the new index.
        Self::idx_atomic(mem, self.layout.avail + 2).store(self.avail_idx, Ordering::Release);
        Ok(true)
    }

    /// Whether the card must be notified of what was posted since the last call.
    pub fn needs_kick(&mut self, mem: &DmaMemory) -> bool {
        if self.avail_idx == self.kicked {
            return false;
        }
        // Sync point: the new avail index is visible before the card's
        // event index / flags are read (pairs with the card's own full
        // barrier between publishing avail_event and re-reading the ring).
        fence(Ordering::SeqCst);
        let old = std::mem::replace(&mut self.kicked, self.avail_idx);
        if self.event_idx {
            let at = self.layout.used + 4 + 8 * usize::from(self.size);
            let event = Self::idx_atomic(mem, at).load(Ordering::Acquire);
            need_event(event, self.avail_idx, old)
        } else {
            let flags = Self::idx_atomic(mem, self.layout.used).load(Ordering::Acquire);
            flags & VRING_USED_F_NO_NOTIFY as u16 == 0
        }
    }

    /// Asks for an interrupt at the next completion (event-idx), and says
    /// whether completions are already waiting (then do not sleep).
    pub fn arm(&mut self, mem: &DmaMemory) -> bool {
        if self.event_idx {
            let at = self.layout.avail + 4 + 2 * usize::from(self.size);
            Self::idx_atomic(mem, at).store(self.last_used, Ordering::Release);
        }
        // Sync point: used_event is visible before the used index is re-read.
        fence(Ordering::SeqCst);
        Self::idx_atomic(mem, self.layout.used + 2).load(Ordering::Acquire) != self.last_used
    }

    fn fail(&mut self, why: String) -> Broken {
        let b = Broken(why);
        self.broken = Some(b.clone());
        b
    }

    /// Takes the next completion, if the card has put one in the used ring.
    pub fn pop(&mut self, mem: &DmaMemory) -> Result<Option<Completion>, Broken> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        // Sync point (acquire): pairs with the card's release of the used
        // index; the entry and the status it covers are read after it.
        let used_idx = Self::idx_atomic(mem, self.layout.used + 2).load(Ordering::Acquire);
        let pending = used_idx.wrapping_sub(self.last_used);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.in_flight {
            return Err(self.fail(format!(
                "queue {}: used index {used_idx} is {pending} entries past {} with {} requests in flight",
                self.index, self.last_used, self.in_flight
            )));
        }
        let mut e = [0u8; 8];
        mem.read(
            self.layout.used + 4 + 8 * usize::from(self.last_used % self.size),
            &mut e,
        );
        let id = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
        let len = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        let Some(flight) = usize::try_from(id)
            .ok()
            .and_then(|i| self.inflight.get_mut(i))
            .and_then(Option::take)
        else {
            return Err(self.fail(format!(
                "queue {}: used entry {} names head {id}, which is not in flight",
                self.index, self.last_used
            )));
        };
        self.last_used = self.last_used.wrapping_add(1);
        self.in_flight -= 1;
        self.free.extend(flight.descs.iter().rev());

        let slot = self.layout.slots + SLOT * id as usize + REQ_HEADER_SIZE as usize;
        let mut s = [0u8; REQ_STATUS_SIZE as usize];
        mem.read(slot, &mut s);
        let st = status_from_bytes(&s);
        let (outcome, result) = if len == 0 {
            (Outcome::Dropped, 0)
        } else {
            match Status::from_code(st.status) {
                None => (Outcome::Invalid(format!("status code {:#x}", st.status)), 0),
                Some(_) if st.tag != flight.tag => (
                    Outcome::Invalid(format!(
                        "status tag {:#x}, request tag {:#x}",
                        st.tag, flight.tag
                    )),
                    0,
                ),
                Some(code) => {
                    let want = if code == Status::Ok {
                        flight.written.saturating_add(REQ_STATUS_SIZE)
                    } else {
                        REQ_STATUS_SIZE
                    };
                    if len != want {
                        (
                            Outcome::Invalid(format!(
                                "used length {len}, {want} expected for {code}"
                            )),
                            0,
                        )
                    } else {
                        (Outcome::Status(code), st.result)
                    }
                }
            }
        };
        Ok(Some(Completion {
            user_data: flight.user_data,
            queue: self.index,
            outcome,
            result,
        }))
    }
}

/// The 48 wire bytes of a header.
fn header_bytes(h: &ReqHeader) -> [u8; REQ_HEADER_SIZE as usize] {
    let mut b = [0u8; REQ_HEADER_SIZE as usize];
    b[0] = h.opcode;
    b[1] = h.flags;
    b[2..4].copy_from_slice(&h.reserved0.to_le_bytes());
    b[4..8].copy_from_slice(&h.reserved1.to_le_bytes());
    b[8..16].copy_from_slice(&h.tag.to_le_bytes());
    b[16..24].copy_from_slice(&h.length.to_le_bytes());
    b[24..32].copy_from_slice(&h.storage_offset.to_le_bytes());
    b[32..40].copy_from_slice(&h.pattern.to_le_bytes());
    b[40..48].copy_from_slice(&h.reserved2.to_le_bytes());
    b
}

/// A status from its 16 wire bytes.
fn status_from_bytes(b: &[u8; REQ_STATUS_SIZE as usize]) -> ReqStatus {
    ReqStatus {
        status: b[0],
        reserved: [b[1], b[2], b[3]],
        result: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        tag: u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_matches_the_spec() {
        assert!(need_event(0, 1, 0));
        assert!(!need_event(5, 3, 0));
        assert!(need_event(0xffff, 0, 0xfffe));
        assert!(!need_event(10, 10, 10));
    }

    #[test]
    fn layout_is_aligned_and_packed() {
        let l = QueueLayout::new(4096, 64);
        assert_eq!(l.desc, 4096);
        assert_eq!(l.avail, 4096 + 1024);
        assert_eq!(l.used % 4, 0);
        assert!(l.used >= l.avail + 6 + 128);
        assert_eq!(l.slots % 64, 0);
        assert_eq!(l.len, l.slots + 64 * 64 - 4096);
    }
}
