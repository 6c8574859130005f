//! Every op, and every malformed request of docs/zcard-spec.md, through the
//! backend's event handler on real guest memory.

mod common;

use common::*;
use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use vm_memory::{Address, Bytes, GuestAddress};
use zcard_vhost::virtio_zcard::*;
use zcard_vhost::zcard::Limits;

fn rig() -> Rig {
    Rig::new(Limits::default())
}

const A: u64 = DATA + 0x1000;
/// A range that crosses the boundary between the two data regions.
const CROSS: u64 = DATA + DATA_LEN / 2 - 100;
const B: u64 = DATA + 0x20_0000;

#[test]
fn nop_completes_with_only_a_status() {
    let mut r = rig();
    let (st, used) = r.run(hdr(Op::Nop, 0), &[], &[]);
    assert_eq!(st.status, Status::Ok as u8);
    assert_eq!(st.tag, hdr(Op::Nop, 0).tag);
    assert_eq!(used, REQ_STATUS_SIZE);
}

#[test]
fn copy_gathers_and_scatters_across_regions() {
    let mut r = rig();
    let data = pattern_bytes(5000, 3);
    r.write(A, &data[..1000]);
    r.write(CROSS, &data[1000..4000]);
    r.write(A + 0x10000, &data[4000..]);
    let (st, used) = r.run(
        hdr(Op::Copy, 5000),
        &[(A, 1000), (CROSS, 3000), (A + 0x10000, 1000)],
        &[(B, 2500), (B + 0x8000, 2500)],
    );
    assert_eq!(st.status, Status::Ok as u8);
    assert_eq!(used, 5000 + REQ_STATUS_SIZE);
    let mut out = r.read(B, 2500);
    out.extend(r.read(B + 0x8000, 2500));
    assert_eq!(out, data);
}

#[test]
fn a_header_and_status_anywhere_in_guest_memory_are_read_and_written() {
    // Unaligned inside one region, and across the boundary between the two
    // (CROSS + 100): the card translates them once where it can, and goes
    // through guest memory where it cannot.
    let boundary = CROSS + 100;
    let half = |len: u32| boundary - u64::from(len) / 2;
    for (ha, sa, what) in [
        (A + 3, A + 0x105, "unaligned"),
        (
            half(REQ_HEADER_SIZE),
            A + 0x200,
            "header across two regions",
        ),
        (
            A + 0x300,
            half(REQ_STATUS_SIZE),
            "status across two regions",
        ),
    ] {
        let mut r = rig();
        let h = hdr(Op::Copy, 100);
        r.mem.write_obj(h, GuestAddress(ha)).unwrap();
        r.write(sa, &[0xee; REQ_STATUS_SIZE as usize]);
        let data = pattern_bytes(100, 9);
        r.write(B, &data);
        let head = r.push(
            0,
            &[
                rd(ha, REQ_HEADER_SIZE),
                rd(B, 100),
                wr(B + 0x1000, 100),
                wr(sa, REQ_STATUS_SIZE),
            ],
        );
        r.kick(0);
        assert_eq!(r.used(0), [(head, 100 + REQ_STATUS_SIZE)], "{what}");
        let st = r.status_at(sa);
        assert_eq!((st.status, st.tag), (Status::Ok as u8, h.tag), "{what}");
        assert_eq!(r.read(B + 0x1000, 100), data, "{what}");
    }
}

#[test]
fn fill_continues_the_pattern_across_segments() {
    let mut r = rig();
    let pattern = 0x0807_0605_0403_0201u64;
    let mut h = hdr(Op::Fill, 4099);
    h.pattern = pattern;
    let (st, used) = r.run(h, &[], &[(A, 3), (CROSS, 4000), (B, 96)]);
    assert_eq!(st.status, Status::Ok as u8);
    assert_eq!(used, 4099 + REQ_STATUS_SIZE);
    let mut out = r.read(A, 3);
    out.extend(r.read(CROSS, 4000));
    out.extend(r.read(B, 96));
    let want: Vec<u8> = (0..4099).map(|i| pattern.to_le_bytes()[i % 8]).collect();
    assert_eq!(out, want);
}

#[test]
fn crc32c_matches_the_standard_check_value_and_chains() {
    let mut r = rig();
    r.write(A, b"123456789");
    let (st, used) = r.run(hdr(Op::Crc32c, 9), &[(A, 9)], &[]);
    assert_eq!(st.status, Status::Ok as u8);
    assert_eq!(st.result, 0xe306_9283, "CRC-32C check value");
    assert_eq!(used, REQ_STATUS_SIZE);
    // Split in two requests, the second continuing from the first's result.
    let (first, _) = r.run(hdr(Op::Crc32c, 4), &[(A, 4)], &[]);
    let mut h = hdr(Op::Crc32c, 5);
    h.pattern = u64::from(first.result);
    let (second, _) = r.run(h, &[(A + 4, 5)], &[]);
    assert_eq!(second.result, 0xe306_9283);
    // Large and region-crossing input agrees with the crc32c crate.
    let big = pattern_bytes(300_000, 9);
    r.write(CROSS - 200_000, &big);
    let (st, _) = r.run(hdr(Op::Crc32c, 300_000), &[(CROSS - 200_000, 300_000)], &[]);
    assert_eq!(st.result, crc32c::crc32c(&big));
}

#[test]
fn storage_round_trip_flush_and_range_checks() {
    let mut r = rig();
    let data = pattern_bytes(4096, 5);
    r.write(A, &data);
    let mut w = hdr(Op::StorageWrite, 4096);
    w.storage_offset = 8192;
    assert_eq!(
        r.run(w, &[(A, 1024), (A + 1024, 3072)], &[]).0.status,
        Status::Ok as u8
    );
    assert_eq!(
        r.run(hdr(Op::Flush, 0), &[], &[]).0.status,
        Status::Ok as u8
    );
    let mut rd = hdr(Op::StorageRead, 4096);
    rd.storage_offset = 8192;
    let (st, used) = r.run(rd, &[], &[(CROSS, 4096)]);
    assert_eq!(st.status, Status::Ok as u8);
    assert_eq!(used, 4096 + REQ_STATUS_SIZE);
    assert_eq!(r.read(CROSS, 4096), data);
    let mut stored = vec![0; 4096];
    r.card().storage().read_bytes(8192, &mut stored).unwrap();
    assert_eq!(stored, data);

    // Beyond capacity is an error, not zeros; so is a misaligned range.
    for (offset, len) in [
        (STORAGE - 512, 1024),
        (STORAGE, 512),
        (u64::MAX - 511, 512),
        (100, 512),
        (0, 100),
    ] {
        let mut rd = hdr(Op::StorageRead, len);
        rd.storage_offset = offset;
        r.write(B, &[0xaa; 1024]);
        let (st, used) = r.run(rd, &[], &[(B, len as u32)]);
        assert_eq!(st.status, Status::OutOfRange as u8, "read {offset}+{len}");
        assert_eq!(used, REQ_STATUS_SIZE);
        assert_eq!(
            r.read(B, len as usize),
            vec![0xaa; len as usize],
            "destination untouched"
        );
    }
}

#[test]
fn indirect_chains_are_served() {
    let mut r = rig();
    let data = pattern_bytes(256, 1);
    r.write(A, &data);
    let (ha, sa) = r.header(hdr(Op::Copy, 256));
    let table = r.meta(64);
    let entries = [
        Descriptor::new(ha, REQ_HEADER_SIZE, VRING_DESC_F_NEXT as u16, 1),
        Descriptor::new(A, 256, VRING_DESC_F_NEXT as u16, 2),
        Descriptor::new(B, 256, (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16, 3),
        Descriptor::new(sa, REQ_STATUS_SIZE, VRING_DESC_F_WRITE as u16, 0),
    ];
    for (i, d) in entries.iter().enumerate() {
        r.mem
            .write_obj(*d, GuestAddress(table + 16 * i as u64))
            .unwrap();
    }
    r.push_raw(
        0,
        &[RawDescriptor::from(Descriptor::new(
            table,
            64,
            VRING_DESC_F_INDIRECT as u16,
            0,
        ))],
    );
    r.kick(0);
    assert_eq!(r.used(0)[0].1, 256 + REQ_STATUS_SIZE);
    assert_eq!(r.status_at(sa).status, Status::Ok as u8);
    assert_eq!(r.read(B, 256), data);
}

/// Runs a request built from raw segments and returns its status code and used length.
fn run_segs(r: &mut Rig, segs: &[Seg]) -> (u8, u32, u64) {
    let status_addr = segs.last().unwrap().addr;
    let head = r.push(0, segs);
    r.kick(0);
    let used = r.used(0);
    assert_eq!(used.len(), 1);
    assert_eq!(used[0].0, head);
    (r.status_at(status_addr).status, used[0].1, status_addr)
}

fn rd(addr: u64, len: u32) -> Seg {
    Seg {
        addr,
        len,
        write: false,
    }
}
fn wr(addr: u64, len: u32) -> Seg {
    Seg {
        addr,
        len,
        write: true,
    }
}

#[test]
fn malformed_requests_get_their_documented_status() {
    let mut r = rig();
    let mut check = |name: &str, h: ReqHeader, mid: &[Seg], want: Status| {
        let (ha, sa) = r.header(h);
        let mut segs = vec![rd(ha, REQ_HEADER_SIZE)];
        segs.extend_from_slice(mid);
        segs.push(wr(sa, REQ_STATUS_SIZE));
        let (status, used, _) = run_segs(&mut r, &segs);
        assert_eq!(Status::from_code(status), Some(want), "{name}");
        assert_eq!(used, REQ_STATUS_SIZE, "{name}: only the status is written");
    };
    let copy = hdr(Op::Copy, 64);
    check(
        "unknown opcode",
        ReqHeader { opcode: 7, ..copy },
        &[rd(A, 64), wr(B, 64)],
        Status::Unsupported,
    );
    check(
        "flags",
        ReqHeader { flags: 1, ..copy },
        &[rd(A, 64), wr(B, 64)],
        Status::BadHeader,
    );
    check(
        "reserved",
        ReqHeader {
            reserved2: 1,
            ..copy
        },
        &[rd(A, 64), wr(B, 64)],
        Status::BadHeader,
    );
    check(
        "pattern on copy",
        ReqHeader { pattern: 1, ..copy },
        &[rd(A, 64), wr(B, 64)],
        Status::BadHeader,
    );
    check(
        "storage offset on copy",
        ReqHeader {
            storage_offset: 512,
            ..copy
        },
        &[rd(A, 64), wr(B, 64)],
        Status::BadHeader,
    );
    check(
        "crc init above 32 bits",
        ReqHeader {
            pattern: 1 << 32,
            ..hdr(Op::Crc32c, 64)
        },
        &[rd(A, 64)],
        Status::BadHeader,
    );
    check(
        "readable after writable",
        copy,
        &[rd(A, 32), wr(B, 64), rd(A, 32)],
        Status::BadDescriptor,
    );
    check(
        "zero-length segment",
        copy,
        &[rd(A, 64), rd(A, 0), wr(B, 64)],
        Status::BadDescriptor,
    );
    check(
        "fill with sources",
        hdr(Op::Fill, 64),
        &[rd(A, 64), wr(B, 64)],
        Status::BadDescriptor,
    );
    check(
        "crc with destinations",
        hdr(Op::Crc32c, 64),
        &[rd(A, 64), wr(B, 64)],
        Status::BadDescriptor,
    );
    check(
        "nop with segments",
        hdr(Op::Nop, 0),
        &[rd(A, 64)],
        Status::BadDescriptor,
    );
    check(
        "sources short",
        copy,
        &[rd(A, 60), wr(B, 64)],
        Status::BadLength,
    );
    check(
        "destinations long",
        copy,
        &[rd(A, 64), wr(B, 65)],
        Status::BadLength,
    );
    check("nop with a length", hdr(Op::Nop, 1), &[], Status::BadLength);
    check(
        "longer than max_request_bytes",
        hdr(Op::Fill, 65 << 20),
        &[
            wr(DATA, 8 << 20),
            wr(DATA, 8 << 20),
            wr(DATA, 8 << 20),
            wr(DATA, 8 << 20),
            wr(DATA, 8 << 20),
            wr(DATA, 8 << 20),
            wr(DATA, 8 << 20),
            wr(DATA, 8 << 20),
            wr(DATA, 1 << 20),
        ],
        Status::BadLength,
    );
    check(
        "absurd segment lengths",
        hdr(Op::Copy, 64),
        &[rd(A, 0x8000_0000), rd(A, 0x7000_0000), wr(B, 64)],
        Status::BadLength,
    );
    let seventeen: Vec<Seg> = (0..17)
        .map(|i| rd(A + 4 * i, 4))
        .chain([wr(B, 68)])
        .collect();
    check(
        "17 sources",
        hdr(Op::Copy, 68),
        &seventeen,
        Status::TooManySegments,
    );
    check(
        "source outside RAM",
        copy,
        &[rd(END, 64), wr(B, 64)],
        Status::BadAddress,
    );
    check(
        "source straddles the end of RAM",
        copy,
        &[rd(END - 32, 64), wr(B, 64)],
        Status::BadAddress,
    );
    check(
        "destination outside RAM",
        copy,
        &[rd(A, 64), wr(0xffff_ffff_ffff_ff00, 64)],
        Status::BadAddress,
    );

    // Header problems.
    let (_, sa) = r.header(copy);
    let (st, used, _) = run_segs(&mut r, &[wr(sa, REQ_STATUS_SIZE)]);
    assert_eq!(
        (Status::from_code(st), used),
        (Some(Status::BadHeader), REQ_STATUS_SIZE),
        "status only"
    );
    let (ha, sa) = r.header(copy);
    let (st, _, _) = run_segs(&mut r, &[rd(ha, 8), rd(A, 64), wr(B, 64), wr(sa, 16)]);
    assert_eq!(
        Status::from_code(st),
        Some(Status::BadHeader),
        "short header"
    );
    let (ha, sa) = r.header(copy);
    let (st, _, _) = run_segs(&mut r, &[wr(ha, 48), rd(A, 64), wr(B, 64), wr(sa, 16)]);
    assert_eq!(
        Status::from_code(st),
        Some(Status::BadDescriptor),
        "writable header"
    );
    let (_, sa) = r.header(copy);
    let (st, _, _) = run_segs(
        &mut r,
        &[rd(END + 4096, 48), rd(A, 64), wr(B, 64), wr(sa, 16)],
    );
    assert_eq!(
        Status::from_code(st),
        Some(Status::BadAddress),
        "header outside RAM"
    );
    // Opcode 7 and the four unreadable headers count under "unknown".
    let stats = r.card().stats().snapshot();
    assert_eq!(stats["ops"]["unknown"]["requests"], 5);
}

#[test]
fn chains_without_a_usable_status_are_returned_empty() {
    let mut r = rig();
    let (ha, sa) = r.header(hdr(Op::Nop, 0));
    for segs in [
        vec![rd(ha, 48), rd(sa, 16)], // status not writable
        vec![rd(ha, 48), wr(sa, 8)],  // status too short
        // Descriptors adding up to more than 4 GiB: virtio forbids it, the walk stops.
        vec![rd(ha, 48), rd(A, u32::MAX), rd(A, u32::MAX), wr(sa, 16)],
    ] {
        let (st, used, _) = run_segs(&mut r, &segs);
        assert_eq!(used, 0, "{segs:?}");
        assert_eq!(st, 0xee, "nothing written");
    }
    // A status outside guest memory cannot be written either: the request
    // is dropped before anything runs.
    let (ha, _) = r.header(hdr(Op::Fill, 64));
    r.write(B, &[7; 64]);
    let head = r.push(0, &[rd(ha, 48), wr(B, 64), wr(END, 16)]);
    r.kick(0);
    assert_eq!(r.used(0), [(head, 0)]);
    assert_eq!(r.read(B, 64), vec![7; 64], "nothing executed");
    assert_eq!(r.card().stats().snapshot()["dropped_chains"], 4);
}

#[test]
fn descriptor_loops_and_bad_links_never_hang_and_the_card_keeps_serving() {
    let mut r = rig();
    let (ha, sa) = r.header(hdr(Op::Nop, 0));
    let raw = |addr, len, flags: u32, next| {
        RawDescriptor::from(Descriptor::new(addr, len, flags as u16, next))
    };
    // Direct loop: 0 -> 1 -> 0.
    let at = r.next_index(0);
    r.push_raw(
        0,
        &[
            raw(ha, 48, VRING_DESC_F_NEXT, at + 1),
            raw(sa, 16, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, at),
        ],
    );
    // Next index beyond the queue.
    r.push_raw(0, &[raw(ha, 48, VRING_DESC_F_NEXT, QSIZE + 7)]);
    // Indirect table looping on itself, and one outside memory.
    let table = r.meta(32);
    r.mem
        .write_obj(
            Descriptor::new(ha, 48, VRING_DESC_F_NEXT as u16, 1),
            GuestAddress(table),
        )
        .unwrap();
    r.mem
        .write_obj(
            Descriptor::new(sa, 16, (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16, 0),
            GuestAddress(table + 16),
        )
        .unwrap();
    r.push_raw(0, &[raw(table, 32, VRING_DESC_F_INDIRECT, 0)]);
    r.push_raw(0, &[raw(END + 0x1000, 32, VRING_DESC_F_INDIRECT, 0)]);
    // An indirect table of a length that is not a multiple of 16.
    r.push_raw(0, &[raw(table, 24, VRING_DESC_F_INDIRECT, 0)]);
    r.kick(0);
    let used = r.used(0);
    assert_eq!(used.len(), 5);
    assert!(used.iter().all(|&(_, len)| len == 0), "{used:?}");
    assert_eq!(r.status_at(sa).status, 0xee);
    // Still serving.
    let (st, _) = r.run(hdr(Op::Nop, 0), &[], &[]);
    assert_eq!(st.status, Status::Ok as u8);
}

#[test]
fn a_broken_avail_ring_sets_needs_reset_until_reset() {
    let r = rig();
    let avail = r.rings[0].1;
    r.mem.write_obj(QSIZE + 5, avail.unchecked_add(2)).unwrap();
    r.kick(0);
    assert!(r.card().needs_reset());
    assert_eq!(
        r.card().config_space().device_state & STATE_NEEDS_RESET,
        STATE_NEEDS_RESET
    );
    r.card().reset();
    assert!(!r.card().needs_reset());
}

#[test]
fn a_broken_ring_never_spins_the_worker_even_with_event_idx() {
    // Avail index far ahead of the queue.
    let r = rig();
    r.set_event_idx(true);
    r.mem
        .write_obj(QSIZE + 5, r.rings[0].1.unchecked_add(2))
        .unwrap();
    r.kick(0);
    assert!(r.card().needs_reset());

    // A head index outside the descriptor table.
    let r = rig();
    r.set_event_idx(true);
    let avail = r.rings[0].1;
    r.mem.write_obj(QSIZE + 3, avail.unchecked_add(4)).unwrap();
    r.mem.write_obj(1u16, avail.unchecked_add(2)).unwrap();
    r.kick(0);
    assert!(r.card().needs_reset());
}

#[test]
fn event_idx_suppresses_notifications_the_driver_did_not_ask_for() {
    let count = |event_idx: bool| {
        let mut r = rig();
        r.set_event_idx(event_idx);
        let avail = r.rings[0].1;
        // used_event = 2: notify once the third completion is in the used ring.
        r.mem
            .write_obj(2u16, avail.unchecked_add(4 + 2 * u64::from(QSIZE)))
            .unwrap();
        for _ in 0..6 {
            let (ha, sa) = r.header(hdr(Op::Nop, 0));
            r.push(0, &[rd(ha, 48), wr(sa, 16)]);
        }
        r.kick(0);
        assert_eq!(r.used(0).len(), 6);
        let s = r.card().stats().snapshot();
        (
            s["queues"][0]["notifications"].as_u64().unwrap(),
            s["queues"][0]["suppressed_notifications"].as_u64().unwrap(),
        )
    };
    assert_eq!(count(false), (6, 0));
    let (sent, suppressed) = count(true);
    assert_eq!(sent + suppressed, 6);
    assert_eq!(sent, 1, "only the completion crossing used_event notifies");
}

#[test]
fn config_space_reads_are_exact_and_bounded() {
    let r = Rig::new(Limits {
        num_queues: 3,
        max_segments: 8,
        max_request_bytes: 1 << 20,
    });
    let cfg = r.card().read_config(0, CONFIG_SIZE as u32);
    assert_eq!(cfg.len(), CONFIG_SIZE);
    assert_eq!(&cfg[0..4], b"ZCRD");
    assert_eq!(
        u32::from_le_bytes(cfg[4..8].try_into().unwrap()),
        ZCARD_VERSION
    );
    assert_eq!(u16::from_le_bytes(cfg[8..10].try_into().unwrap()), 3);
    assert_eq!(u16::from_le_bytes(cfg[10..12].try_into().unwrap()), 8);
    assert_eq!(u64::from_le_bytes(cfg[16..24].try_into().unwrap()), STORAGE);
    assert_eq!(
        r.card().read_config(60, 8),
        vec![0; 8],
        "past the end reads as zero"
    );
    assert_eq!(r.card().read_config(1000, 4), vec![0; 4]);
    assert_eq!(
        r.card().read_config(0, u32::MAX).len(),
        4096,
        "size is capped"
    );
    assert_eq!(r.card().stats().config_reads(), 4);
}

#[test]
fn queues_are_independent() {
    let mut r = Rig::new(Limits {
        num_queues: 2,
        ..Limits::default()
    });
    r.write(A, &pattern_bytes(64, 1));
    let (st0, _) = r.run_on(0, hdr(Op::Copy, 64), &[(A, 64)], &[(B, 64)]);
    let (st1, _) = r.run_on(1, hdr(Op::Crc32c, 64), &[(A, 64)], &[]);
    assert_eq!((st0.status, st1.status), (0, 0));
    let s = r.card().stats().snapshot();
    assert_eq!(s["queues"][0]["requests"], 1);
    assert_eq!(s["queues"][1]["requests"], 1);
    assert_eq!(s["ops"]["copy"]["bytes"], 64);
}
