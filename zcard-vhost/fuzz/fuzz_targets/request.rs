//! Fuzz target `request`: one descriptor chain, built from the input bytes,
//! served by `Card::process` on a small real guest memory.
//!
//! The card must never panic, hang or allocate without bound, whatever the
//! chain says, and its answer must be one docs/zcard-spec.md allows.
//!
//! Input (little-endian; once the input runs out every further byte reads as 0):
//!
//! | bytes | meaning |
//! | --- | --- |
//! | 1 | number of descriptors: `1 + b % MAX_DESCS` |
//! | 1 | fix-ups (`FIX_*` below), to reach past the first checks more often |
//! | 11 per descriptor | addr `u32`, len `u32`, flags `u8`, next `u8`, placement `u8` |
//! | the rest | guest memory contents, written at the first descriptor (the header) |
//!
//! Placement folds most addresses into guest memory (two 512 KiB regions back
//! to back, so segments may cross a region boundary) and sends a few across
//! its end or far outside it. The flags byte carries the virtio flags in its
//! low three bits and, in bits 3-4, how wide the length is.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use zcard_vhost::storage::Storage;
use zcard_vhost::virtio_zcard::{ReqHeader, ReqStatus, Status, REQ_STATUS_SIZE};
use zcard_vhost::zcard::{Card, Limits, Outcome};

/// Most descriptors in one chain: more than a valid request can have with the
/// default limits (2 * 16 segments + header + status), to reach `too_many_segments`.
const MAX_DESCS: usize = 40;
/// Size of each of the two guest memory regions.
const REGION: u64 = 512 << 10;
/// First address past guest memory.
const MEM_END: u64 = 2 * REGION;

/// Fix-up: NEXT on every descriptor but the last, links in order.
const FIX_LINKS: u8 = 1 << 0;
/// Fix-up: header length = total of the readable segments.
const FIX_LEN_SRC: u8 = 1 << 1;
/// Fix-up: header length = total of the writable segments (unless `FIX_LEN_SRC`).
const FIX_LEN_DST: u8 = 1 << 2;
/// Fix-up: header flags and reserved fields zero.
const FIX_RESERVED: u8 = 1 << 3;
/// Fix-up: no INDIRECT flag (the queue resolves indirect tables before the card sees them).
const FIX_NO_INDIRECT: u8 = 1 << 4;

/// One card for the whole run, as in the daemon (its storage persists across inputs).
fn card() -> &'static Card {
    static CARD: OnceLock<Card> = OnceLock::new();
    CARD.get_or_init(|| {
        let storage = Storage::temporary(1 << 20).expect("temporary storage");
        Card::new(Limits::default(), storage, 0).expect("card")
    })
}

/// Reads the input front to back; past its end every byte is zero.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
}

fn place(addr: u32, how: u8) -> u64 {
    let a = u64::from(addr);
    match how % 16 {
        // Across the end of guest memory, or just past it.
        13 => MEM_END - a % (64 << 10),
        // Far outside, with high bits set.
        14 => a << 32 | a,
        // At the very top of the address space (overflow of addr + len).
        15 => u64::MAX - a % 4096,
        _ => a % MEM_END,
    }
}

fn length(len: u32, flags: u8) -> u32 {
    match (flags >> 3) & 3 {
        // Whatever the input says, up to 4 GiB - 1 (sums past 4 GiB included).
        3 => len,
        // Up to 64 KiB.
        2 => len % (64 << 10),
        // Up to 4 KiB, zero included.
        _ => len % 4097,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Cursor(data);
    let n = 1 + usize::from(input.u8()) % MAX_DESCS;
    let fix = input.u8();

    let mut descs: Vec<Descriptor> = (0..n)
        .map(|_| {
            let addr = input.u32();
            let len = input.u32();
            let flags = input.u8();
            let next = input.u8();
            let how = input.u8();
            Descriptor::new(
                place(addr, how),
                length(len, flags),
                u16::from(flags & 7),
                u16::from(next),
            )
        })
        .collect();
    if fix & (FIX_LINKS | FIX_NO_INDIRECT) != 0 {
        for (i, d) in descs.iter_mut().enumerate() {
            let mut flags = u32::from(d.flags());
            if fix & FIX_NO_INDIRECT != 0 {
                flags &= !VRING_DESC_F_INDIRECT;
            }
            let mut next = d.next();
            if fix & FIX_LINKS != 0 {
                if i + 1 < n {
                    flags |= VRING_DESC_F_NEXT;
                    next = (i + 1) as u16;
                } else {
                    flags &= !VRING_DESC_F_NEXT;
                }
            }
            *d = Descriptor::new(d.addr().0, d.len(), flags as u16, next);
        }
    }

    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), REGION as usize),
        (GuestAddress(REGION), REGION as usize),
    ])
    .expect("guest memory");

    // The rest of the input is guest memory at the header's address.
    let head = descs[0].addr().0;
    if head < MEM_END {
        let rest = input.0;
        let room = usize::try_from(MEM_END - head).unwrap_or(usize::MAX);
        let _ = mem.write_slice(&rest[..rest.len().min(room)], GuestAddress(head));
    }
    if fix & (FIX_LEN_SRC | FIX_LEN_DST | FIX_RESERVED) != 0 {
        if let Ok(mut h) = mem.read_obj::<ReqHeader>(GuestAddress(head)) {
            let middle = &descs[1..n.saturating_sub(1).max(1)];
            let total = |write: bool| -> u64 {
                middle
                    .iter()
                    .filter(|d| d.is_write_only() == write)
                    .map(|d| u64::from(d.len()))
                    .sum()
            };
            if fix & FIX_LEN_SRC != 0 {
                h.length = total(false);
            } else if fix & FIX_LEN_DST != 0 {
                h.length = total(true);
            }
            if fix & FIX_RESERVED != 0 {
                h.flags = 0;
                h.reserved0 = 0;
                h.reserved1 = 0;
                h.reserved2 = 0;
            }
            let _ = mem.write_obj(h, GuestAddress(head));
        }
    }
    let header = mem.read_obj::<ReqHeader>(GuestAddress(head)).ok();
    let last = descs[n - 1];

    match card().process(&mem, descs.into_iter(), 0) {
        Outcome::Stall => panic!("a stall without a stall fault"),
        Outcome::Complete { used_len, notify } => {
            assert!(notify, "a lost interrupt without a fault");
            if used_len == 0 {
                // Dropped chain: nothing to check.
                return;
            }
            assert!(used_len >= REQ_STATUS_SIZE, "used length {used_len}");
            let usable = last.is_write_only()
                && u32::from(last.flags()) & VRING_DESC_F_NEXT == 0
                && last.len() >= REQ_STATUS_SIZE;
            assert!(usable, "completed through an unusable status descriptor");
            let status: ReqStatus = mem
                .read_obj(last.addr())
                .expect("a completed chain's status is in memory");
            assert!(
                Status::from_code(status.status).is_some(),
                "status code {}",
                status.status
            );
            assert_eq!(status.reserved, [0; 3]);
            if used_len > REQ_STATUS_SIZE {
                // Only a successful COPY, FILL or STORAGE_READ writes payload,
                // exactly `length` bytes of it.
                assert_eq!(status.status, Status::Ok as u8);
                let h = header.expect("payload written without a readable header");
                assert_eq!(u64::from(used_len - REQ_STATUS_SIZE), h.length);
            }
        }
    }
});
