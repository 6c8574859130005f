//! Property tests: random request sequences against a pure reference model of
//! guest memory and storage, and random malformed chains that must never
//! panic and always get a documented answer.

mod common;

use common::*;
use proptest::prelude::*;
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use zcard_vhost::virtio_zcard::*;
use zcard_vhost::zcard::Limits;

/// The working window: 256 KiB straddling the boundary between the two data regions.
const WIN: u64 = DATA + DATA_LEN / 2 - (128 << 10);
const WIN_LEN: u64 = 256 << 10;
const HALF: u64 = WIN_LEN / 2;

#[derive(Clone, Debug)]
enum Req {
    Nop,
    Flush,
    /// Sources in the low half, destinations in the high half of the window.
    Copy {
        src: Vec<(u64, u32)>,
        dst: Vec<(u64, u32)>,
    },
    Fill {
        dst: Vec<(u64, u32)>,
        pattern: u64,
    },
    Crc {
        src: Vec<(u64, u32)>,
        init: u32,
    },
    StorageWrite {
        src: Vec<(u64, u32)>,
        offset: u64,
    },
    StorageRead {
        dst: Vec<(u64, u32)>,
        offset: u64,
    },
}

/// Splits `total` bytes into 1..=4 segments placed at random offsets of `[lo, lo + span)`.
fn segs(total: u32, lo: u64, span: u64) -> impl Strategy<Value = Vec<(u64, u32)>> {
    (
        proptest::collection::vec(1u32..total.max(2), 0..3),
        proptest::collection::vec(0u64..span, 4),
    )
        .prop_map(move |(mut cuts, offsets)| {
            cuts.retain(|c| *c < total);
            cuts.sort_unstable();
            cuts.dedup();
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(total);
            bounds
                .windows(2)
                .zip(offsets)
                .map(|(w, off)| {
                    let len = w[1] - w[0];
                    (lo + off.min(span - u64::from(len)), len)
                })
                .collect()
        })
}

fn req() -> impl Strategy<Value = Req> {
    let blocks = (STORAGE / u64::from(BLOCK_SIZE)) as u32;
    prop_oneof![
        Just(Req::Nop),
        Just(Req::Flush),
        (1u32..8192)
            .prop_flat_map(|n| (segs(n, WIN, HALF), segs(n, WIN + HALF, HALF)))
            .prop_map(|(src, dst)| Req::Copy { src, dst }),
        (
            (1u32..8192).prop_flat_map(|n| segs(n, WIN, WIN_LEN)),
            any::<u64>()
        )
            .prop_map(|(dst, pattern)| Req::Fill { dst, pattern }),
        (
            (1u32..8192).prop_flat_map(|n| segs(n, WIN, WIN_LEN)),
            any::<u32>()
        )
            .prop_map(|(src, init)| Req::Crc { src, init }),
        (1u32..9, 0..blocks - 8)
            .prop_flat_map(|(k, b)| {
                (
                    segs(k * BLOCK_SIZE, WIN, WIN_LEN),
                    Just(u64::from(b) * u64::from(BLOCK_SIZE)),
                )
            })
            .prop_map(|(src, offset)| Req::StorageWrite { src, offset }),
        (1u32..9, 0..blocks - 8)
            .prop_flat_map(|(k, b)| {
                (
                    segs(k * BLOCK_SIZE, WIN, WIN_LEN),
                    Just(u64::from(b) * u64::from(BLOCK_SIZE)),
                )
            })
            .prop_map(|(dst, offset)| Req::StorageRead { dst, offset }),
    ]
}

/// Guest window and storage as the spec says they must be.
struct Model {
    mem: Vec<u8>,
    storage: Vec<u8>,
}

impl Model {
    fn gather(&self, segs: &[(u64, u32)]) -> Vec<u8> {
        segs.iter()
            .flat_map(|&(a, l)| {
                let o = (a - WIN) as usize;
                self.mem[o..o + l as usize].to_vec()
            })
            .collect()
    }

    fn scatter(&mut self, segs: &[(u64, u32)], mut bytes: &[u8]) {
        for &(a, l) in segs {
            let o = (a - WIN) as usize;
            self.mem[o..o + l as usize].copy_from_slice(&bytes[..l as usize]);
            bytes = &bytes[l as usize..];
        }
    }

    /// Applies `r`; returns the CRC result it must report.
    fn apply(&mut self, r: &Req) -> u32 {
        match r {
            Req::Nop | Req::Flush => 0,
            Req::Copy { src, dst } => {
                let b = self.gather(src);
                self.scatter(dst, &b);
                0
            }
            Req::Fill { dst, pattern } => {
                let n: usize = dst.iter().map(|s| s.1 as usize).sum();
                let b: Vec<u8> = (0..n).map(|i| pattern.to_le_bytes()[i % 8]).collect();
                self.scatter(dst, &b);
                0
            }
            Req::Crc { src, init } => crc32c::crc32c_append(*init, &self.gather(src)),
            Req::StorageWrite { src, offset } => {
                let b = self.gather(src);
                let o = *offset as usize;
                self.storage[o..o + b.len()].copy_from_slice(&b);
                0
            }
            Req::StorageRead { dst, offset } => {
                let n: usize = dst.iter().map(|s| s.1 as usize).sum();
                let o = *offset as usize;
                let b = self.storage[o..o + n].to_vec();
                self.scatter(dst, &b);
                0
            }
        }
    }
}

fn submit(rig: &mut Rig, r: &Req) -> (ReqStatus, u32) {
    let total = |s: &[(u64, u32)]| s.iter().map(|x| u64::from(x.1)).sum::<u64>();
    match r {
        Req::Nop => rig.run(hdr(Op::Nop, 0), &[], &[]),
        Req::Flush => rig.run(hdr(Op::Flush, 0), &[], &[]),
        Req::Copy { src, dst } => rig.run(hdr(Op::Copy, total(src)), src, dst),
        Req::Fill { dst, pattern } => rig.run(
            ReqHeader {
                pattern: *pattern,
                ..hdr(Op::Fill, total(dst))
            },
            &[],
            dst,
        ),
        Req::Crc { src, init } => rig.run(
            ReqHeader {
                pattern: u64::from(*init),
                ..hdr(Op::Crc32c, total(src))
            },
            src,
            &[],
        ),
        Req::StorageWrite { src, offset } => rig.run(
            ReqHeader {
                storage_offset: *offset,
                ..hdr(Op::StorageWrite, total(src))
            },
            src,
            &[],
        ),
        Req::StorageRead { dst, offset } => rig.run(
            ReqHeader {
                storage_offset: *offset,
                ..hdr(Op::StorageRead, total(dst))
            },
            &[],
            dst,
        ),
    }
}

fn written(r: &Req) -> u32 {
    let total = |s: &[(u64, u32)]| s.iter().map(|x| x.1).sum::<u32>();
    match r {
        Req::Copy { dst, .. } | Req::Fill { dst, .. } | Req::StorageRead { dst, .. } => total(dst),
        _ => 0,
    }
}

proptest! {
    #![proptest_config(zcopy_testkit::proptest_config("valid_sequences_match_the_model", 48))]
    #[test]
    fn valid_sequences_match_the_model(reqs in proptest::collection::vec(req(), 1..24), seed in any::<u8>()) {
        let mut rig = Rig::new(Limits::default());
        let init = pattern_bytes(WIN_LEN as usize, seed);
        rig.write(WIN, &init);
        let mut model = Model { mem: init, storage: vec![0; STORAGE as usize] };
        for (i, r) in reqs.iter().enumerate() {
            let want = model.apply(r);
            let (st, used) = submit(&mut rig, r);
            prop_assert_eq!(st.status, Status::Ok as u8, "request {} {:?}", i, r);
            prop_assert_eq!(st.result, want, "result of request {} {:?}", i, r);
            prop_assert_eq!(used, written(r) + REQ_STATUS_SIZE);
            prop_assert!(rig.read(WIN, WIN_LEN as usize) == model.mem, "guest memory after request {} {:?}", i, r);
        }
        let mut storage = vec![0; STORAGE as usize];
        rig.card().storage().read_bytes(0, &mut storage).unwrap();
        prop_assert!(storage == model.storage, "storage");
    }
}

/// A descriptor from fuzz-like parts: addresses mostly inside guest memory.
fn any_desc() -> impl Strategy<Value = (u64, u32, u16, u16)> {
    (
        prop_oneof![4 => DATA..END - 64, 1 => any::<u64>(), 1 => END - 64..END + 64],
        prop_oneof![4 => 0u32..256, 1 => any::<u32>(), 1 => Just(REQ_HEADER_SIZE)],
        0u16..8,
        0u16..(QSIZE + 4),
    )
}

proptest! {
    #![proptest_config(zcopy_testkit::proptest_config("malformed_chains_never_panic", 256))]
    #[test]
    fn malformed_chains_never_panic(
        chain in proptest::collection::vec(any_desc(), 1..40),
        header in proptest::collection::vec(any::<u8>(), 48),
    ) {
        let mut rig = Rig::new(Limits::default());
        // Some chains use a well-formed header somewhere in memory.
        rig.write(chain[0].0.clamp(DATA, END - 64), &header);
        let descs: Vec<RawDescriptor> = chain
            .iter()
            .map(|&(a, l, f, n)| RawDescriptor::from(Descriptor::new(a, l, f, n)))
            .collect();
        let head = rig.push_raw(0, &descs);
        rig.kick(0);
        let used = rig.used(0);
        prop_assert_eq!(used.len(), 1);
        prop_assert_eq!(used[0].0, head);
        let len = used[0].1;
        // Either dropped (0), or a status plus at most the bytes the chain offered.
        let offered: u64 = chain.iter().map(|c| u64::from(c.1)).sum();
        prop_assert!(len == 0 || (len >= REQ_STATUS_SIZE && u64::from(len) <= offered));
        let s = rig.card().stats().snapshot();
        prop_assert_eq!(s["dropped_chains"].as_u64().unwrap() + s["queues"][0]["requests"].as_u64().unwrap(), 1);
        // And the card still serves a good request afterwards.
        let (st, _) = rig.run(hdr(Op::Nop, 0), &[], &[]);
        prop_assert_eq!(st.status, Status::Ok as u8);
    }
}
