//! A small driver for tests: real guest memory, split queues written with
//! `virtio_queue::mock::MockSplitQueue`, and the backend's event handler
//! called directly (no vhost-user socket).

#![allow(dead_code)]

use std::sync::Arc;

use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Address, Bytes, GuestAddress, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use zcard_vhost::storage::Storage;
use zcard_vhost::vhu_zcard::ZcardBackend;
use zcard_vhost::virtio_zcard::*;
use zcard_vhost::zcard::{Card, Limits};

/// Queue size used by the rig.
pub const QSIZE: u16 = 256;
/// First byte of the data area (requests, payloads).
pub const DATA: u64 = 0x10_0000;
/// Size of the data area: two regions of 8 MiB, back to back.
pub const DATA_LEN: u64 = 16 << 20;
/// First address past guest memory.
pub const END: u64 = DATA + DATA_LEN;
/// Where the rig writes request headers and statuses (outside payload space).
pub const META: u64 = DATA + DATA_LEN - (1 << 20);
/// Storage size of the rig's card.
pub const STORAGE: u64 = 1 << 20;

/// One segment of a request as the driver writes it.
#[derive(Clone, Copy, Debug)]
pub struct Seg {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

/// A card, its backend, and queues in real guest memory.
pub struct Rig {
    pub mem: GuestMemoryMmap<()>,
    pub backend: ZcardBackend,
    pub vrings: Vec<VringRwLock>,
    /// (descriptor table, avail ring, used ring) of each queue.
    pub rings: Vec<(GuestAddress, GuestAddress, GuestAddress)>,
    next_desc: Vec<u16>,
    seen_used: Vec<u16>,
    meta_next: u64,
}

fn queue_base(q: u16) -> GuestAddress {
    GuestAddress(u64::from(q) * 0x1_0000)
}

impl Rig {
    pub fn new(limits: Limits) -> Rig {
        Self::with_card(Card::new(limits, Storage::temporary(STORAGE).unwrap(), 42).unwrap())
    }

    pub fn with_card(card: Card) -> Rig {
        let num_queues = card.limits().num_queues;
        let mem = GuestMemoryMmap::<()>::from_ranges(&[
            (GuestAddress(0), DATA as usize),
            (GuestAddress(DATA), (DATA_LEN / 2) as usize),
            (GuestAddress(DATA + DATA_LEN / 2), (DATA_LEN / 2) as usize),
        ])
        .unwrap();
        let atomic = GuestMemoryAtomic::new(mem.clone());
        let backend = ZcardBackend::new(Arc::new(card));
        backend.update_memory(atomic.clone()).unwrap();
        let mut vrings = Vec::new();
        let mut rings = Vec::new();
        for q in 0..num_queues {
            // Creating the mock initialises the rings in guest memory: once only.
            let mock = MockSplitQueue::create(&mem, queue_base(q), QSIZE);
            rings.push((mock.desc_table_addr(), mock.avail_addr(), mock.used_addr()));
            let vring = VringRwLock::new(atomic.clone(), QSIZE).unwrap();
            vring.set_queue_size(QSIZE);
            vring
                .set_queue_info(
                    mock.desc_table_addr().0,
                    mock.avail_addr().0,
                    mock.used_addr().0,
                )
                .unwrap();
            vring.set_queue_ready(true);
            vring.set_enabled(true);
            vrings.push(vring);
        }
        Rig {
            mem,
            backend,
            vrings,
            rings,
            next_desc: vec![0; usize::from(num_queues)],
            seen_used: vec![0; usize::from(num_queues)],
            meta_next: META,
        }
    }

    pub fn card(&self) -> &Card {
        self.backend.card()
    }

    pub fn set_event_idx(&self, on: bool) {
        self.backend.set_event_idx(on);
        for v in &self.vrings {
            v.set_queue_event_idx(on);
        }
    }

    /// Scratch space for headers and statuses, never reused within a rig.
    pub fn meta(&mut self, len: u64) -> u64 {
        let at = self.meta_next;
        self.meta_next += len.next_multiple_of(64);
        if self.meta_next >= END {
            self.meta_next = META;
            return self.meta(len);
        }
        at
    }

    /// Places raw descriptors (next fields as given) in queue `q`'s table and
    /// makes the first one available; returns the head index.
    pub fn push_raw(&mut self, q: u16, descs: &[RawDescriptor]) -> u16 {
        let (table, avail, _) = self.rings[usize::from(q)];
        let head = self.next_desc[usize::from(q)];
        for (i, d) in descs.iter().enumerate() {
            let at = table.unchecked_add(16 * u64::from((head + i as u16) % QSIZE));
            self.mem.write_obj(*d, at).unwrap();
        }
        let idx: u16 = self.mem.read_obj(avail.unchecked_add(2)).unwrap();
        self.mem
            .write_obj(head, avail.unchecked_add(4 + 2 * u64::from(idx % QSIZE)))
            .unwrap();
        self.mem
            .write_obj(idx.wrapping_add(1), avail.unchecked_add(2))
            .unwrap();
        self.next_desc[usize::from(q)] = (head + descs.len().max(1) as u16) % QSIZE;
        head
    }

    /// Index in queue `q`'s table where the next pushed chain starts.
    pub fn next_index(&self, q: u16) -> u16 {
        self.next_desc[usize::from(q)]
    }

    /// Places a well-linked chain of segments and makes it available.
    pub fn push(&mut self, q: u16, segs: &[Seg]) -> u16 {
        let head = self.next_desc[usize::from(q)];
        if usize::from(head) + segs.len() > usize::from(QSIZE) {
            // Keep chains contiguous: start again at the table's beginning.
            self.next_desc[usize::from(q)] = 0;
        }
        let head = self.next_desc[usize::from(q)];
        let descs: Vec<RawDescriptor> = segs
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut flags = if s.write {
                    VRING_DESC_F_WRITE as u16
                } else {
                    0
                };
                let last = i + 1 == segs.len();
                if !last {
                    flags |= VRING_DESC_F_NEXT as u16;
                }
                let next = if last { 0 } else { head + i as u16 + 1 };
                RawDescriptor::from(Descriptor::new(s.addr, s.len, flags, next))
            })
            .collect();
        self.push_raw(q, &descs)
    }

    /// Runs queue `q`'s worker as a kick would.
    pub fn kick(&self, q: u16) {
        self.backend
            .handle_event(
                0,
                EventSet::IN,
                &self.vrings[usize::from(q)..=usize::from(q)],
                usize::from(q),
            )
            .unwrap();
    }

    /// Used elements (head, len) that appeared on queue `q` since the last call.
    pub fn used(&mut self, q: u16) -> Vec<(u16, u32)> {
        let (_, _, used) = self.rings[usize::from(q)];
        let idx: u16 = self.mem.read_obj(used.unchecked_add(2)).unwrap();
        let mut out = Vec::new();
        let seen = &mut self.seen_used[usize::from(q)];
        while *seen != idx {
            let at = used.unchecked_add(4 + 8 * u64::from(*seen % QSIZE));
            let id: u32 = self.mem.read_obj(at).unwrap();
            let len: u32 = self.mem.read_obj(at.unchecked_add(4)).unwrap();
            out.push((id as u16, len));
            *seen = seen.wrapping_add(1);
        }
        out
    }

    /// Writes a header and a status slot, returning (header addr, status addr).
    pub fn header(&mut self, h: ReqHeader) -> (u64, u64) {
        let ha = self.meta(64);
        let sa = self.meta(64);
        self.mem.write_obj(h, GuestAddress(ha)).unwrap();
        self.mem
            .write_obj(
                ReqStatus {
                    status: 0xee,
                    ..Default::default()
                },
                GuestAddress(sa),
            )
            .unwrap();
        (ha, sa)
    }

    pub fn status_at(&self, addr: u64) -> ReqStatus {
        self.mem.read_obj(GuestAddress(addr)).unwrap()
    }

    /// Submits one request on queue 0 and runs it: (status, used len).
    pub fn run(
        &mut self,
        h: ReqHeader,
        src: &[(u64, u32)],
        dst: &[(u64, u32)],
    ) -> (ReqStatus, u32) {
        self.run_on(0, h, src, dst)
    }

    pub fn run_on(
        &mut self,
        q: u16,
        h: ReqHeader,
        src: &[(u64, u32)],
        dst: &[(u64, u32)],
    ) -> (ReqStatus, u32) {
        let (ha, sa) = self.header(h);
        let mut segs = vec![Seg {
            addr: ha,
            len: REQ_HEADER_SIZE,
            write: false,
        }];
        segs.extend(src.iter().map(|&(addr, len)| Seg {
            addr,
            len,
            write: false,
        }));
        segs.extend(dst.iter().map(|&(addr, len)| Seg {
            addr,
            len,
            write: true,
        }));
        segs.push(Seg {
            addr: sa,
            len: REQ_STATUS_SIZE,
            write: true,
        });
        let head = self.push(q, &segs);
        self.kick(q);
        let used = self.used(q);
        assert_eq!(used.len(), 1, "one completion expected, got {used:?}");
        assert_eq!(used[0].0, head);
        (self.status_at(sa), used[0].1)
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) {
        self.mem.write_slice(bytes, GuestAddress(addr)).unwrap();
    }

    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }
}

/// A header for `op` with `length` bytes; other fields zero.
pub fn hdr(op: Op, length: u64) -> ReqHeader {
    ReqHeader {
        opcode: op as u8,
        tag: 0x7a67_0000 + u64::from(op as u8),
        length,
        ..Default::default()
    }
}

/// Deterministic test bytes.
pub fn pattern_bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}
