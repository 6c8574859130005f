//! The zcard driver in the guest, end to end: zcard.ko on the emulated card,
//! used through the `zcopy::card` binding. Each op with its data checked;
//! the driver's checks against a reference model (proptest); two processes
//! sharing a pool; kill -9, close and unbind with requests in flight or
//! mappings live; the card's fault injections. After each test the driver's
//! counters are back to their baseline (nothing in flight, pinned or leaked).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, IoSlice};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use proptest::prelude::*;
use zcopy::card::uapi::{self, ZcardSqe};
use zcopy::card::{Buf, Card, Counters, Cqe, Interrupts, Rings, Sqe};
use zcopy_vm_tests::{crc32c_reference, read_attr, settle_zcard0, zcard_control, ExpectKernel};

const WAIT: Duration = Duration::from_secs(30);

fn card() -> Card {
    Card::open_index(0).unwrap_or_else(|e| panic!("{e} (is zcard.ko loaded on the card?)"))
}

fn run_one(rings: &mut Rings, sqe: Sqe) -> Cqe {
    let cqes = rings.run(&[sqe], WAIT).expect("ENTER");
    assert_eq!(cqes.len(), 1);
    cqes[0]
}

fn errno_of(c: &Cqe) -> Option<Errno> {
    (c.result < 0).then(|| Errno::from_raw(-c.result))
}

/// A fault rule on the card, cleared when dropped.
struct Fault(u64);

impl Fault {
    fn add(rule: &str) -> Fault {
        let r = zcard_control(&format!(r#"{{"cmd":"fault","rule":{rule}}}"#));
        assert_eq!(r["ok"], true, "fault rule refused: {r}");
        Fault(r["id"].as_u64().expect("rule id"))
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        zcard_control(&format!(r#"{{"cmd":"clear","id":{}}}"#, self.0));
    }
}

/// The card's queue stalls at the next request, and every queue is released
/// when this is dropped: requests stay in flight for as long as the test
/// needs them there, however slowly it runs (TCG), never for a fixed time.
/// The driver's timeout is a minute meanwhile, so they do not time out.
struct Stalled {
    rule: Option<Fault>,
    _timeout: TimeoutMs,
}

impl Stalled {
    fn at_next_request() -> Stalled {
        let timeout = TimeoutMs::set(60_000);
        Stalled {
            rule: Some(Fault::add(r#"{"kind":"stall","count":1}"#)),
            _timeout: timeout,
        }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        // The rule goes first: no request can stall after the release.
        drop(self.rule.take());
        let queues = zcard_control(r#"{"cmd":"config"}"#)["config"]["num_queues"]
            .as_u64()
            .unwrap_or(0);
        for q in 0..queues {
            zcard_control(&format!(r#"{{"cmd":"release","queue":{q}}}"#));
        }
    }
}

/// Sets the driver's request timeout, restored when dropped.
struct TimeoutMs(String);

const TIMEOUT_PARAM: &str = "/sys/module/zcard/parameters/timeout_ms";

impl TimeoutMs {
    fn set(ms: u32) -> TimeoutMs {
        let old = read_attr(TIMEOUT_PARAM).expect("zcard timeout_ms parameter");
        std::fs::write(TIMEOUT_PARAM, ms.to_string()).expect("timeout_ms writable");
        TimeoutMs(old)
    }
}

impl Drop for TimeoutMs {
    fn drop(&mut self) {
        let _ = std::fs::write(TIMEOUT_PARAM, &self.0);
    }
}

fn pattern_bytes(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn info_describes_the_card() {
    let card = card();
    let i = card.info();
    assert_eq!(i.size as usize, std::mem::size_of::<uapi::ZcardInfo>());
    assert_eq!(i.abi_version, uapi::ZCARD_ABI_VERSION);
    assert_eq!(i.card_version, 1 << 16);
    assert_eq!(i.num_queues, 2);
    assert_eq!(i.max_segments, 16);
    assert_eq!(i.block_size, 512);
    assert_eq!(i.storage_capacity, 64 << 20);
    assert_eq!(i.supported_ops, 0x7f);
    assert!(
        i.max_op_bytes >= 64 << 10,
        "max_op_bytes {}",
        i.max_op_bytes
    );
    assert_eq!(i.pool_align, 4096);
    assert_eq!(i.reserved, [0; 7]);
    settle_zcard0();
}

/// Linux 6.13 removed virtqueue_set_dma_premapped(): from there the ring
/// maps each request's pool pages, before it the driver maps a pool once
/// (driver/zcard_compat.h). A fresh probe's message must say the way the
/// running kernel takes, so a build that fell back to the other is caught.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_probe_maps_pools_the_way_the_kernel_allows() {
    let release = read_attr("/proc/sys/kernel/osrelease").unwrap();
    let mut nums = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let version = (nums.next().unwrap_or(0), nums.next().unwrap_or(0));
    let expect = if version >= (6, 13) {
        "pools mapped per request"
    } else {
        "pools mapped once"
    };
    let dev = bound_device();
    settle_zcard0();
    let mark = format!("zcard: probe check {}", std::process::id());
    std::fs::write("/dev/kmsg", &mark).expect("/dev/kmsg");
    rebind(&dev);
    let out = Command::new("dmesg").output().expect("dmesg");
    let log = String::from_utf8_lossy(&out.stdout);
    let after = log.rsplit_once(mark.as_str()).map_or("", |(_, a)| a);
    let line = after
        .lines()
        .find(|l| l.contains("zcard0:") && l.contains("pools mapped"))
        .unwrap_or_else(|| panic!("no probe message after the rebind:\n{after}"));
    println!("kernel {release}: {line}");
    assert!(
        line.trim_end().ends_with(expect),
        "kernel {release}: {line}"
    );
    settle_zcard0();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn each_op_moves_the_right_bytes() {
    let card = card();
    let before = settle_zcard0();
    let max = card.info().max_op_bytes;
    let a = card.create_pool(1 << 20).unwrap();
    let b = card.create_pool(1 << 20).unwrap();
    let (ma, mb) = (a.map().unwrap(), b.map().unwrap());
    let mut rings = card.setup_rings(16).unwrap();

    // COPY across pools, at offsets that straddle 64 KiB chunk boundaries.
    let data = pattern_bytes(7, max as usize);
    ma.write(65_000, &data).unwrap();
    let c = run_one(
        &mut rings,
        Sqe::copy(Buf::new(&a, 65_000), Buf::new(&b, 3), max).user_data(11),
    );
    assert_eq!((c.user_data, c.result), (11, max as i32));
    let mut got = vec![0u8; max as usize];
    mb.read(3, &mut got).unwrap();
    assert!(got == data, "COPY: destination differs from the source");
    let mut edge = [0u8; 3];
    mb.read(0, &mut edge).unwrap();
    assert_eq!(edge, [0, 0, 0], "COPY wrote before its destination");

    // FILL: the 8-byte pattern, little-endian, from the start of the range.
    let c = run_one(
        &mut rings,
        Sqe::fill(Buf::new(&b, 100), 1000, 0x0807_0605_0403_0201),
    );
    assert_eq!(c.result, 1000);
    let mut got = vec![0u8; 1002];
    mb.read(99, &mut got).unwrap();
    assert_eq!(got[0], data[96], "FILL wrote before its range");
    for (i, byte) in got[1..1001].iter().enumerate() {
        assert_eq!(*byte, (i % 8) as u8 + 1, "FILL byte {i}");
    }

    // CRC32C against the software reference, whole and continued.
    ma.write(0, b"123456789").unwrap();
    let c = run_one(&mut rings, Sqe::crc32c(Buf::new(&a, 0), 9, 0));
    assert_eq!((c.result, c.value), (9, 0xe306_9283));
    let c1 = run_one(&mut rings, Sqe::crc32c(Buf::new(&a, 65_000), 40_000, 0));
    let c2 = run_one(
        &mut rings,
        Sqe::crc32c(Buf::new(&a, 105_000), max - 40_000, c1.value as u32),
    );
    assert_eq!(c2.value, u64::from(crc32c_reference(0, &data)));

    // STORAGE_WRITE, FLUSH, STORAGE_READ round trip through the card's storage.
    let blocks = pattern_bytes(42, 8192);
    ma.write(4096, &blocks).unwrap();
    assert_eq!(
        run_one(
            &mut rings,
            Sqe::storage_write(Buf::new(&a, 4096), 1 << 20, 8192)
        )
        .result,
        8192
    );
    assert_eq!(run_one(&mut rings, Sqe::flush()).result, 0);
    assert_eq!(
        run_one(
            &mut rings,
            Sqe::storage_read(1 << 20, Buf::new(&b, 500_000), 8192)
        )
        .result,
        8192
    );
    let mut got = vec![0u8; 8192];
    mb.read(500_000, &mut got).unwrap();
    assert!(got == blocks, "storage round trip differs");
    assert_eq!(
        run_one(&mut rings, Sqe::nop().user_data(99)),
        Cqe {
            user_data: 99,
            result: 0,
            value: 0
        }
    );

    // A batch of 32 in one ENTER.
    let sqes: Vec<Sqe> = (0..32u32)
        .map(|i| {
            Sqe::fill(Buf::new(&b, u64::from(i) * 4096), 4096, u64::from(i)).user_data(u64::from(i))
        })
        .collect();
    let cqes = rings.run(&sqes, WAIT).unwrap();
    assert_eq!(cqes.len(), 32);
    assert!(cqes.iter().all(|c| c.result == 4096));
    drop((ma, mb, a, b, rings));
    let after = settle_zcard0();
    assert_eq!(after.errors, before.errors, "no request failed");
    assert_eq!(
        after.submitted,
        before.submitted + 41,
        "41 requests reached the card"
    );
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn bad_sqes_complete_at_once_with_their_errno() {
    let card = card();
    let before = settle_zcard0();
    let p = card.create_pool(64 << 10).unwrap();
    let id = p.id();
    let mut rings = card.setup_rings(32).unwrap();
    let copy = Sqe::copy(Buf::new(&p, 0), Buf::new(&p, 4096), 64).0;
    let cases: Vec<(&str, ZcardSqe, Errno)> = vec![
        (
            "unknown opcode",
            ZcardSqe { opcode: 7, ..copy },
            Errno::EINVAL,
        ),
        (
            "opcode 255",
            ZcardSqe {
                opcode: 255,
                ..copy
            },
            Errno::EINVAL,
        ),
        ("flags", ZcardSqe { flags: 1, ..copy }, Errno::EINVAL),
        (
            "reserved0",
            ZcardSqe {
                reserved0: 1,
                ..copy
            },
            Errno::EINVAL,
        ),
        (
            "reserved1",
            ZcardSqe {
                reserved1: 1 << 63,
                ..copy
            },
            Errno::EINVAL,
        ),
        (
            "pattern on COPY",
            ZcardSqe { pattern: 1, ..copy },
            Errno::EINVAL,
        ),
        (
            "storage offset on COPY",
            ZcardSqe {
                storage_offset: 512,
                ..copy
            },
            Errno::EINVAL,
        ),
        (
            "length on NOP",
            ZcardSqe {
                length: 1,
                ..Sqe::nop().0
            },
            Errno::EINVAL,
        ),
        (
            "source on FILL",
            ZcardSqe {
                src_pool: id,
                ..Sqe::fill(Buf::new(&p, 0), 8, 0).0
            },
            Errno::EINVAL,
        ),
        (
            "CRC seed high bits",
            ZcardSqe {
                pattern: 1 << 32,
                ..Sqe::crc32c(Buf::new(&p, 0), 8, 0).0
            },
            Errno::EINVAL,
        ),
        (
            "length over max_op_bytes",
            ZcardSqe {
                length: card.info().max_op_bytes + 1,
                ..copy
            },
            Errno::EINVAL,
        ),
        (
            "pool id 0",
            ZcardSqe {
                src_pool: 0,
                ..copy
            },
            Errno::ENOENT,
        ),
        (
            "foreign pool",
            ZcardSqe {
                dst_pool: id + 1000,
                ..copy
            },
            Errno::ENOENT,
        ),
        (
            "offset at the end",
            ZcardSqe {
                src_offset: 64 << 10,
                ..copy
            },
            Errno::ERANGE,
        ),
        (
            "range past the end",
            ZcardSqe {
                dst_offset: (64 << 10) - 63,
                ..copy
            },
            Errno::ERANGE,
        ),
        (
            "overflowing offset",
            ZcardSqe {
                src_offset: u64::MAX - 10,
                ..copy
            },
            Errno::ERANGE,
        ),
        (
            "storage misaligned",
            Sqe::storage_write(Buf::new(&p, 0), 100, 512).0,
            Errno::EINVAL,
        ),
        (
            "storage length misaligned",
            Sqe::storage_read(0, Buf::new(&p, 0), 100).0,
            Errno::EINVAL,
        ),
        (
            "storage past capacity",
            Sqe::storage_read(64 << 20, Buf::new(&p, 0), 512).0,
            Errno::ERANGE,
        ),
        (
            "storage overflowing",
            Sqe::storage_read(u64::MAX - 511, Buf::new(&p, 0), 512).0,
            Errno::ERANGE,
        ),
    ];
    for (i, (what, sqe, errno)) in cases.iter().enumerate() {
        let c = run_one(
            &mut rings,
            Sqe(ZcardSqe {
                user_data: i as u64,
                ..*sqe
            }),
        );
        assert_eq!(c.user_data, i as u64, "{what}");
        assert_eq!(errno_of(&c), Some(*errno), "{what}: result {}", c.result);
    }
    // The boundary itself is fine: the last byte, and a zero-length op at the end.
    let last = ZcardSqe {
        src_offset: (64 << 10) - 64,
        dst_offset: 0,
        ..copy
    };
    assert_eq!(run_one(&mut rings, Sqe(last)).result, 64);
    let empty = ZcardSqe {
        src_offset: 64 << 10,
        dst_offset: 64 << 10,
        length: 0,
        ..copy
    };
    assert_eq!(run_one(&mut rings, Sqe(empty)).result, 0);
    drop((p, rings));
    let after = settle_zcard0();
    assert_eq!(
        after.submitted,
        before.submitted + 2,
        "bad SQEs never reach the card"
    );
    assert_eq!(after.errors, before.errors + cases.len() as u64);
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn bad_ioctls_and_mappings_are_refused() {
    let card = card();
    settle_zcard0();
    let e = |r: zcopy::card::Result<zcopy::card::Pool>| r.map(|_| ()).unwrap_err().errno();
    assert_eq!(e(card.create_pool(0)), Some(Errno::EINVAL));
    assert_eq!(e(card.create_pool(4097)), Some(Errno::EINVAL));
    assert_eq!(e(card.create_pool(!4095u64)), Some(Errno::EINVAL));
    assert_eq!(
        card.destroy_pool_id(77).unwrap_err().errno(),
        Some(Errno::ENOENT)
    );
    assert_eq!(
        card.destroy_pool_id(0).unwrap_err().errno(),
        Some(Errno::ENOENT)
    );
    // Import of a descriptor that is not an exported pool, and of a closed one.
    let not_pool = std::fs::File::open("/dev/null").unwrap();
    assert_eq!(
        card.import_pool(not_pool.as_fd()).unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
    // SAFETY: descriptor 999 is not open in this process; the kernel rejects it.
    let closed = unsafe { std::os::fd::BorrowedFd::borrow_raw(999) };
    assert_eq!(
        card.import_pool(closed).unwrap_err().errno(),
        Some(Errno::EBADF)
    );

    // The pinned limit holds: pools beyond it fail with ENOMEM, not the machine.
    let limit = card.info().pinned_limit;
    let big = card.info().max_pool_bytes.min(64 << 20);
    let mut held = Vec::new();
    let mut total = 0;
    loop {
        match card.create_pool(big) {
            Ok(p) => {
                total += big;
                held.push(p);
                assert!(total <= limit, "pinned {total} over the limit {limit}");
            }
            Err(e) => {
                assert_eq!(e.errno(), Some(Errno::ENOMEM), "{e}");
                break;
            }
        }
    }
    // Under swiotlb=force the bounce buffers run out first: ENOMEM as well.
    let bounced = std::fs::read_to_string("/proc/cmdline")
        .unwrap_or_default()
        .contains("force");
    assert!(
        total + big > limit || bounced,
        "stopped at {total} of {limit}"
    );
    drop(held);

    let p = card.create_pool(8192).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/zcard0")
        .unwrap();
    let map =
        |off: u64, len: usize, prot: nix::sys::mman::ProtFlags, flags: nix::sys::mman::MapFlags| {
            // SAFETY: a fresh mapping chosen by the kernel (no fixed address);
            // unmapped at once if it succeeds.
            let r = unsafe {
                nix::sys::mman::mmap(
                    None,
                    std::num::NonZeroUsize::new(len).unwrap(),
                    prot,
                    flags,
                    card.as_fd(),
                    off as i64,
                )
            };
            r.map(|ptr| {
                // SAFETY: `ptr` is the mapping just made, `len` bytes long.
                unsafe { nix::sys::mman::munmap(ptr, len) }.unwrap();
            })
            .err()
        };
    use nix::sys::mman::{MapFlags, ProtFlags};
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    assert_eq!(
        map(p.mmap_offset(), 8192, rw, MapFlags::MAP_SHARED),
        None,
        "the right mapping works"
    );
    assert_eq!(
        map(p.mmap_offset(), 4096, rw, MapFlags::MAP_SHARED),
        Some(Errno::EINVAL),
        "short"
    );
    assert_eq!(
        map(p.mmap_offset(), 3 * 4096, rw, MapFlags::MAP_SHARED),
        Some(Errno::EINVAL),
        "long"
    );
    assert_eq!(
        map(p.mmap_offset() + 4096, 4096, rw, MapFlags::MAP_SHARED),
        Some(Errno::EINVAL),
        "inside"
    );
    assert_eq!(
        map(p.mmap_offset() + (1 << 32), 8192, rw, MapFlags::MAP_SHARED),
        Some(Errno::EINVAL),
        "no pool"
    );
    assert_eq!(
        map(p.mmap_offset(), 8192, rw, MapFlags::MAP_PRIVATE),
        Some(Errno::EINVAL),
        "private"
    );
    assert_eq!(
        map(
            p.mmap_offset(),
            8192,
            rw | ProtFlags::PROT_EXEC,
            MapFlags::MAP_SHARED
        ),
        Some(Errno::EPERM),
        "executable"
    );
    assert_eq!(
        map(0, 4096, rw, MapFlags::MAP_SHARED),
        Some(Errno::ENXIO),
        "rings before setup"
    );
    // A pool of another file is not reachable through this file.
    drop(file);

    // Rings: geometry checked, set up once.
    for bad in [0, 3, 8192] {
        assert_eq!(
            card.setup_rings(bad).unwrap_err().errno(),
            Some(Errno::EINVAL),
            "sq {bad}"
        );
    }
    assert_eq!(
        card.setup_rings_with(8, 4).unwrap_err().errno(),
        Some(Errno::EINVAL),
        "cq < sq"
    );
    let rings = card.setup_rings(8).unwrap();
    assert_eq!(rings.cq_entries(), 16);
    assert_eq!(card.setup_rings(8).unwrap_err().errno(), Some(Errno::EBUSY));
    assert_eq!(
        map(0, 8192, rw, MapFlags::MAP_SHARED),
        Some(Errno::EINVAL),
        "rings: wrong size"
    );
    assert_eq!(
        map(0, 4096, rw, MapFlags::MAP_SHARED),
        None,
        "rings: the size setup gave"
    );
    // Waiting for more than the CQ holds is refused, waiting with nothing in flight returns.
    assert_eq!(
        rings.wait(17, None).unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
    assert_eq!(
        rings.wait(1, None).unwrap_err().errno(),
        Some(Errno::EAGAIN)
    );
    drop((p, rings, card));
    settle_zcard0();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn eventfd_and_poll_report_completions() {
    let card = card();
    settle_zcard0();
    let p = card.create_pool(4096).unwrap();
    let mut rings = card.setup_rings(4).unwrap();
    let ev =
        nix::sys::eventfd::EventFd::from_flags(nix::sys::eventfd::EfdFlags::EFD_NONBLOCK).unwrap();
    card.set_eventfd(Some(ev.as_fd())).unwrap();
    let poll = |fd: std::os::fd::BorrowedFd<'_>| {
        let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO).unwrap();
        fds[0]
            .revents()
            .unwrap()
            .contains(nix::poll::PollFlags::POLLIN)
    };
    assert!(!poll(card.as_fd()), "no completion yet");
    rings.push(Sqe::fill(Buf::new(&p, 0), 4096, 1)).unwrap();
    rings.submit_and_wait(1, Some(WAIT)).unwrap();
    assert!(poll(card.as_fd()), "poll reports the CQE");
    assert!(ev.read().unwrap() >= 1, "the eventfd was signalled");
    assert_eq!(rings.pop().unwrap().result, 4096);
    assert!(!poll(card.as_fd()), "CQ drained");
    card.set_eventfd(None).unwrap();
    // The card's own descriptor is not an eventfd.
    assert_eq!(
        card.set_eventfd(Some(card.as_fd())).unwrap_err().errno(),
        Some(Errno::EINVAL)
    );
    drop((p, rings));
    settle_zcard0();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn two_processes_share_a_pool_through_an_exported_fd() {
    let card = card();
    settle_zcard0();
    let pool = card.create_pool(64 << 10).unwrap();
    let map = pool.map().unwrap();
    let msg = pattern_bytes(3, 300);
    map.write(0, &msg).unwrap();
    let hex: String = msg.iter().map(|b| format!("{b:02x}")).collect();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = peer(&["import", &hex], &theirs);
    let exported = pool.export().unwrap();
    sendmsg::<()>(
        ours.as_raw_fd(),
        &[IoSlice::new(b"p")],
        &[ControlMessage::ScmRights(&[exported.as_raw_fd()])],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
    drop(exported);
    let reply = read_reply(&ours);
    assert!(child.wait().unwrap().success());
    assert_eq!(
        reply,
        format!("ok {}", crc32c_reference(0, &msg)),
        "peer: {reply}"
    );
    // The peer's COPY landed in our mapping: the same pages, no copy.
    let mut got = vec![0u8; msg.len()];
    map.read(4096, &mut got).unwrap();
    assert_eq!(got, msg);
    drop((map, pool));
    settle_zcard0();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_process_without_the_fd_cannot_reach_the_pool() {
    let card = card();
    settle_zcard0();
    let pool = card.create_pool(64 << 10).unwrap();
    pool.map().unwrap().write(0, b"secret").unwrap();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = peer(&["snoop", &pool.mmap_offset().to_string()], &theirs);
    let reply = read_reply(&ours);
    assert!(child.wait().unwrap().success());
    // Its own file has no pool 1: mmap says EINVAL, the SQE ENOENT.
    assert_eq!(
        reply,
        format!("refused {} {}", libc::EINVAL, -libc::ENOENT),
        "peer: {reply}"
    );
    let mut got = [0u8; 6];
    pool.map().unwrap().read(0, &mut got).unwrap();
    assert_eq!(&got, b"secret");
    drop(pool);
    settle_zcard0();
}

/// Starts the peer binary with `sock` as its descriptor 3.
fn peer(args: &[&str], sock: &UnixStream) -> std::process::Child {
    zcopy_vm_tests::channel::spawn_with_fd3_to(
        env!("CARGO_BIN_EXE_zcard-peer"),
        args,
        sock,
        Stdio::inherit(),
    )
}

fn read_reply(sock: &UnixStream) -> String {
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(sock)
        .read_line(&mut line)
        .expect("a reply from the peer");
    line.trim().to_string()
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn kill_9_with_requests_in_flight_leaves_nothing_behind() {
    let before = settle_zcard0();
    // The card holds the requests, so they are surely in flight at the kill.
    let stalled = Stalled::at_next_request();
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = peer(&["flood"], &theirs);
    assert_eq!(read_reply(&ours), "flooding");
    assert!(
        Counters::read(0).unwrap().inflight > 0,
        "requests in flight at the kill"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stalled);
    let after = settle_zcard0();
    assert_eq!(after.timeouts, before.timeouts, "nothing timed out");
    assert_eq!(after.resets, before.resets, "no reset was needed");
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn close_with_requests_in_flight_and_munmap_in_any_order() {
    let before = settle_zcard0();
    {
        let _stalled = Stalled::at_next_request();
        let card = card();
        let p = card.create_pool(1 << 20).unwrap();
        let map = p.map().unwrap();
        let mut rings = card.setup_rings(32).unwrap();
        for i in 0..32 {
            rings
                .push(Sqe::fill(Buf::new(&p, i * 4096), 4096, i))
                .unwrap();
        }
        assert_eq!(rings.submit().unwrap(), 32);
        // The pool handle, then the rings and the file go while the card works;
        // the pool's mapping outlives them all.
        drop(p);
        drop(rings);
        drop(card);
        assert!(Counters::read(0).unwrap().inflight > 0);
        map.write(0, b"still memory").unwrap();
        let mut got = [0u8; 12];
        map.read(0, &mut got).unwrap();
        assert_eq!(&got, b"still memory");
    }
    let after = settle_zcard0();
    assert!(after.completed >= before.completed + 32);
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn card_faults_become_errnos_and_the_driver_recovers() {
    let card = card();
    let before = settle_zcard0();
    let p = card.create_pool(64 << 10).unwrap();
    let mut rings = card.setup_rings(8).unwrap();
    let fill = || {
        Sqe::fill(
            Buf {
                pool: p.id(),
                offset: 0,
            },
            4096,
            5,
        )
    };

    for (status, errno) in [
        ("io_error", Errno::EIO),
        ("bad_address", Errno::EFAULT),
        ("out_of_range", Errno::ERANGE),
        ("unsupported", Errno::EOPNOTSUPP),
    ] {
        let _f = Fault::add(&format!(
            r#"{{"kind":"fail","op":"fill","status":"{status}","count":1}}"#
        ));
        assert_eq!(
            errno_of(&run_one(&mut rings, fill())),
            Some(errno),
            "{status}"
        );
        assert_eq!(run_one(&mut rings, fill()).result, 4096, "after {status}");
    }
    {
        let _f = Fault::add(r#"{"kind":"delay","delay_us":300000,"count":1}"#);
        assert_eq!(
            run_one(&mut rings, fill()).result,
            4096,
            "a delay under the timeout is fine"
        );
    }
    {
        // The interrupt is lost: the watchdog finds the completion.
        let _t = TimeoutMs::set(2000);
        let _f = Fault::add(r#"{"kind":"lost_interrupt","count":1}"#);
        assert_eq!(run_one(&mut rings, fill()).result, 4096, "lost interrupt");
    }
    let resets = Counters::read(0).unwrap().resets;
    {
        // A stalled queue: the request times out, the card is reset.
        let _t = TimeoutMs::set(1000);
        let _f = Fault::add(r#"{"kind":"stall","count":1}"#);
        let c = run_one(&mut rings, fill());
        assert_eq!(errno_of(&c), Some(Errno::ETIMEDOUT), "stall: {}", c.result);
    }
    {
        // NEEDS_RESET: the request is cancelled, the card is reset.
        let _f = Fault::add(r#"{"kind":"needs_reset","count":1}"#);
        let c = run_one(&mut rings, fill());
        assert_eq!(
            errno_of(&c),
            Some(Errno::ECANCELED),
            "needs_reset: {}",
            c.result
        );
    }
    // Serving again after both resets.
    let deadline = Instant::now() + WAIT;
    while Counters::read(0).unwrap().resets < resets + 2 {
        assert!(Instant::now() < deadline, "two resets expected");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(run_one(&mut rings, fill()).result, 4096, "after the resets");
    assert_eq!(
        zcard_control(r#"{"cmd":"config"}"#)["config"]["device_state"],
        0
    );
    drop((p, rings));
    let after = settle_zcard0();
    assert_eq!(after.timeouts, before.timeouts + 1);
}

/// Interrupts the card has sent with nothing new on its used rings.
fn spurious_sent() -> u64 {
    let stats = zcard_control(r#"{"cmd":"stats"}"#);
    stats["stats"]["queues"]
        .as_array()
        .expect("per-queue stats")
        .iter()
        .map(|q| q["spurious_interrupts"].as_u64().expect("a count"))
        .sum()
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn interrupts_with_nothing_on_the_used_ring_are_harmless() {
    // The card runs on its INTx line: vhost-user-test-device-pci has one
    // MSI-X vector, and virtio-pci needs two (config and queues).
    let line = || match Interrupts::read(0).expect("the card's interrupt mode") {
        Interrupts::Intx {
            count: Some(count),
            spurious: Some(spurious),
            ..
        } => (count, spurious),
        other => panic!("the card is on INTx with /proc/irq/N/spurious: {other:?}"),
    };
    let card = card();
    let before = settle_zcard0();
    let queues = u64::from(card.info().num_queues);
    const EACH: u64 = 50;
    let send = || {
        let sent_before = spurious_sent();
        for q in 0..queues {
            let r = zcard_control(&format!(
                r#"{{"cmd":"interrupt","queue":{q},"count":{EACH}}}"#
            ));
            assert_eq!(r["ok"], true, "{r}");
        }
        sent_before + queues * EACH
    };

    // With nothing in flight the interrupts reach the guest (the line's
    // count rises; QEMU may fold several into one before the ISR is read)
    // and virtio-pci's vring_interrupt finds nothing new on any used ring,
    // so the callback never runs and nothing completes. Whether the kernel
    // calls them unclaimed depends on virtio-pci: 6.12.107's vp_interrupt
    // returns what vring_interrupt found (IRQ_NONE: the detector's
    // last_unhandled moves), 6.12.117's returns IRQ_HANDLED whenever the
    // ISR was set.
    let (count_before, spurious_before) = line();
    let all_sent = send();
    let deadline = Instant::now() + WAIT;
    while spurious_sent() < all_sent {
        assert!(Instant::now() < deadline, "the card sent its interrupts");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (count, spurious) = loop {
        let (count, spurious) = line();
        if count > count_before {
            break (count, spurious);
        }
        assert!(
            Instant::now() < deadline,
            "no interrupt reached the guest: line count {count}, {:?}",
            Interrupts::read(0)
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let unclaimed = spurious.last_unhandled_ms != spurious_before.last_unhandled_ms;
    assert_eq!(
        settle_zcard0().completed,
        before.completed,
        "no completion was made up"
    );

    // Requests in flight meanwhile complete as ever, and the line stays
    // enabled (the kernel disables one only when 99,900 of 100,000 go
    // unclaimed).
    let all_sent = send();
    let mut rings = card.setup_rings(2).unwrap();
    let mut done = 0;
    while spurious_sent() < all_sent {
        assert!(Instant::now() < deadline, "the card sent its interrupts");
        assert_eq!(run_one(&mut rings, Sqe::nop()).result, 0);
        done += 1;
    }
    assert_eq!(run_one(&mut rings, Sqe::nop()).result, 0);
    done += 1;
    drop(rings);
    let after = settle_zcard0();
    assert_eq!(after.completed, before.completed + done);
    assert_eq!(
        (after.errors, after.timeouts, after.resets),
        (before.errors, before.timeouts, before.resets),
        "nothing failed, timed out or reset"
    );
    println!(
        "{} interrupts on the line for {} sent idle, {} by the kernel ({spurious:?}), \
         then {done} NOPs beside {} more",
        count - count_before,
        queues * EACH,
        if unclaimed { "unclaimed" } else { "claimed" },
        queues * EACH
    );
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn cq_overflow_is_counted_never_silent() {
    let card = card();
    let before = settle_zcard0();
    let p = card.create_pool(64 << 10).unwrap();
    let mut rings = card.setup_rings(4).unwrap(); // CQ of 8
    let stalled = Stalled::at_next_request();
    for i in 0..4 {
        rings
            .push(Sqe::fill(Buf::new(&p, i * 4096), 4096, i))
            .unwrap();
    }
    assert_eq!(rings.submit().unwrap(), 4);
    // User space lies: it moves cq_head back so the CQ looks full, before
    // the card completes anything.
    rings.set_cq_head_raw(0u32.wrapping_sub(8));
    drop(stalled);
    let deadline = Instant::now() + WAIT;
    while Counters::read(0).unwrap().inflight > 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        rings.cq_overflow(),
        4,
        "each lost completion counted in the ring"
    );
    assert_eq!(
        Counters::read(0).unwrap().cq_overflows,
        before.cq_overflows + 4
    );
    drop((p, rings));
    settle_zcard0();
}

/// Maps `len` bytes at `off` of `fd`; the mapping or the errno.
fn map_raw(
    fd: std::os::fd::BorrowedFd<'_>,
    off: u64,
    len: usize,
    prot: nix::sys::mman::ProtFlags,
    flags: nix::sys::mman::MapFlags,
) -> Result<std::ptr::NonNull<std::ffi::c_void>, Errno> {
    // SAFETY: a fresh mapping at an address the kernel chooses; the caller
    // unmaps it with `unmap_raw` and the same length.
    unsafe {
        nix::sys::mman::mmap(
            None,
            std::num::NonZeroUsize::new(len).unwrap(),
            prot,
            flags,
            fd,
            off as i64,
        )
    }
}

fn unmap_raw(ptr: std::ptr::NonNull<std::ffi::c_void>, len: usize) {
    // SAFETY: `ptr` is a mapping of `len` bytes made by `map_raw` and not
    // used after this.
    unsafe { nix::sys::mman::munmap(ptr, len) }.unwrap();
}

/// Rebinds the driver to `dev`, for a fresh zcard0 after a test broke the card.
fn rebind(dev: &str) {
    std::fs::write("/sys/bus/virtio/drivers/zcard/unbind", dev).expect("unbind");
    std::fs::write("/sys/bus/virtio/drivers/zcard/bind", dev).expect("bind");
}

/// The card's debugfs directory (mounting debugfs if the guest has not).
fn debugfs(card: &str) -> PathBuf {
    let root = PathBuf::from("/sys/kernel/debug");
    if !root.join("zcard").exists() {
        let ok = Command::new("mount")
            .args(["-t", "debugfs", "debugfs"])
            .arg(&root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cannot mount debugfs");
    }
    root.join("zcard").join(card)
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_read_only_file_maps_rings_and_pools_read_only() {
    use nix::sys::mman::{MapFlags, ProtFlags};
    settle_zcard0();
    let ro = std::fs::File::open("/dev/zcard0").unwrap();
    let mut pc = uapi::ZcardPoolCreate {
        size: 8192,
        ..Default::default()
    };
    // SAFETY: `ro` is open and `pc` a valid struct zcard_pool_create.
    unsafe { uapi::zcard_ioc_pool_create(ro.as_raw_fd(), &mut pc) }.unwrap();
    let mut rs = uapi::ZcardRingSetup {
        sq_entries: 4,
        ..Default::default()
    };
    // SAFETY: as above, a valid struct zcard_ring_setup.
    unsafe { uapi::zcard_ioc_ring_setup(ro.as_raw_fd(), &mut rs) }.unwrap();
    let ring_len = rs.ring_size as usize;
    for (what, off, len) in [("pool", pc.mmap_offset, 8192), ("rings", 0, ring_len)] {
        let m = map_raw(
            ro.as_fd(),
            off,
            len,
            ProtFlags::PROT_READ,
            MapFlags::MAP_SHARED,
        )
        .unwrap_or_else(|e| panic!("{what}: MAP_SHARED, PROT_READ of an O_RDONLY file: {e}"));
        // SAFETY: the mapping is `len` readable bytes.
        let first = unsafe { std::ptr::read_volatile(m.as_ptr().cast::<u32>()) };
        assert_eq!(first, 0, "{what}: a zeroed pool, an sq_tail of 0");
        // Read-only for good: mprotect cannot make it writable.
        // SAFETY: changes the protection of the mapping just made, nothing else.
        let wr = unsafe {
            nix::sys::mman::mprotect(m, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE)
        };
        assert_eq!(wr, Err(Errno::EACCES), "{what}: mprotect to writable");
        unmap_raw(m, len);
        assert_eq!(
            map_raw(
                ro.as_fd(),
                off,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED
            )
            .err(),
            Some(Errno::EACCES),
            "{what}: writable shared map of a read-only file"
        );
        assert_eq!(
            map_raw(
                ro.as_fd(),
                off,
                len,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE
            )
            .err(),
            Some(Errno::EINVAL),
            "{what}: private"
        );
    }
    drop(ro);
    settle_zcard0();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn madvise_dontneed_gives_the_same_pages_back() {
    use nix::sys::mman::{madvise, MapFlags, MmapAdvise, ProtFlags};
    let card = card();
    settle_zcard0();
    let p = card.create_pool(64 << 10).unwrap();
    let map = p.map().unwrap();
    let data = pattern_bytes(9, 64 << 10);
    map.write(0, &data).unwrap();
    let base = std::ptr::NonNull::new(map.as_ptr().cast()).unwrap();
    // SAFETY: drops the page-table entries of this mapping only; the pool's
    // memory itself is untouched.
    unsafe { madvise(base, map.len(), MmapAdvise::MADV_DONTNEED) }.unwrap();
    let mut back = vec![0u8; data.len()];
    map.read(0, &mut back).unwrap();
    assert!(back == data, "the pool's contents after MADV_DONTNEED");
    // Still the pool's own pages: what the card writes shows in this mapping.
    let mut rings = card.setup_rings(4).unwrap();
    // SAFETY: as above, the first page, which the FILL then targets.
    unsafe { madvise(base, 4096, MmapAdvise::MADV_DONTNEED) }.unwrap();
    assert_eq!(
        run_one(
            &mut rings,
            Sqe::fill(Buf::new(&p, 0), 4096, 0x5a5a_5a5a_5a5a_5a5a)
        )
        .result,
        4096
    );
    let mut page = [0u8; 4096];
    map.read(0, &mut page).unwrap();
    assert!(
        page.iter().all(|&b| b == 0x5a),
        "the card's FILL is visible"
    );

    // The rings: a second view, written, dropped, read back.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/zcard0")
        .unwrap();
    let mut rs = uapi::ZcardRingSetup {
        sq_entries: 4,
        ..Default::default()
    };
    // SAFETY: `file` is open and `rs` a valid struct zcard_ring_setup.
    unsafe { uapi::zcard_ioc_ring_setup(file.as_raw_fd(), &mut rs) }.unwrap();
    let len = rs.ring_size as usize;
    let rw = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    let m = map_raw(file.as_fd(), 0, len, rw, MapFlags::MAP_SHARED).unwrap();
    // SAFETY: the SQE array lies inside the `len`-byte mapping (setup said so).
    let sqe = unsafe { m.as_ptr().cast::<u8>().add(rs.off.sqes as usize) };
    // SAFETY: `sqe` points at 4 SQEs of 64 writable bytes each.
    unsafe { std::ptr::write_bytes(sqe, 0xa7, 64) };
    // SAFETY: drops the page-table entries of this view only.
    unsafe { madvise(m, len, MmapAdvise::MADV_DONTNEED) }.unwrap();
    // SAFETY: as above.
    let again = unsafe { std::slice::from_raw_parts(sqe, 64) }.to_vec();
    assert_eq!(
        again,
        vec![0xa7; 64],
        "the ring's contents after MADV_DONTNEED"
    );
    unmap_raw(m, len);
    drop((file, rings, map, p, card));
    settle_zcard0();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn an_export_that_cannot_report_its_fd_leaves_none() {
    let card = card();
    settle_zcard0();
    let p = card.create_pool(4096).unwrap();
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let arg = read_only_arg(uapi::ZcardPoolExport {
        pool_id: p.id(),
        ..Default::default()
    });
    let pe = arg.as_ptr().cast::<uapi::ZcardPoolExport>();
    let before = fds();
    // SAFETY: the kernel reads a valid struct at `pe` and fails to write it back.
    let r = unsafe { uapi::zcard_ioc_pool_export(card.as_fd().as_raw_fd(), pe) };
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(fds(), before, "a failed export left a descriptor behind");
    // SAFETY: the anonymous page mapped by read_only_arg.
    unsafe { nix::sys::mman::munmap(arg, 4096) }.unwrap();
    // Export works again with a writable argument, and its descriptor holds the pool.
    let fd = p.export().unwrap();
    assert_eq!(fds(), before + 1);
    drop(p);
    assert_eq!(
        Counters::read(0).unwrap().pools,
        1,
        "the descriptor holds the pool"
    );
    drop((fd, card));
    settle_zcard0();
}

/// A page holding `value`, then made read-only: the kernel can read the
/// argument there and not write its answer back. Unmapped by the caller.
fn read_only_arg<T>(value: T) -> std::ptr::NonNull<std::ffi::c_void> {
    use nix::sys::mman::{mprotect, MapFlags, ProtFlags};
    assert!(std::mem::size_of::<T>() <= 4096);
    // SAFETY: a fresh anonymous page at an address the kernel chooses.
    let arg = unsafe {
        nix::sys::mman::mmap_anonymous(
            None,
            std::num::NonZeroUsize::new(4096).unwrap(),
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }
    .unwrap();
    // SAFETY: the start of a fresh, writable, page-aligned page, room for a T.
    unsafe { arg.as_ptr().cast::<T>().write(value) };
    // SAFETY: the page just mapped, nothing else.
    unsafe { mprotect(arg, 4096, ProtFlags::PROT_READ) }.unwrap();
    arg
}

/// A POOL_CREATE and a RING_SETUP that cannot write their answer back
/// fail with EFAULT and leave nothing made: no pool counted, no ring (a
/// RING_SETUP after works).
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_pool_or_ring_that_cannot_report_itself_is_not_made() {
    let card = card();
    let before = settle_zcard0();
    let arg = read_only_arg(uapi::ZcardPoolCreate {
        size: 64 << 10,
        ..Default::default()
    });
    let fd = card.as_fd().as_raw_fd();
    // SAFETY: the kernel reads a valid struct at `arg` and fails to write it back.
    let r = unsafe { uapi::zcard_ioc_pool_create(fd, arg.as_ptr().cast()) };
    assert_eq!(r, Err(Errno::EFAULT));
    assert_eq!(
        Counters::read(0).unwrap().pools,
        before.pools,
        "a pool left"
    );
    // SAFETY: the anonymous page mapped by read_only_arg.
    unsafe { nix::sys::mman::munmap(arg, 4096) }.unwrap();
    let p = card.create_pool(64 << 10).unwrap();
    assert_eq!(p.id(), 1, "the failed create's id is free again");
    drop(p);

    let arg = read_only_arg(uapi::ZcardRingSetup {
        sq_entries: 2,
        ..Default::default()
    });
    // SAFETY: as above.
    let r = unsafe { uapi::zcard_ioc_ring_setup(fd, arg.as_ptr().cast()) };
    assert_eq!(r, Err(Errno::EFAULT));
    // SAFETY: the anonymous page mapped by read_only_arg.
    unsafe { nix::sys::mman::munmap(arg, 4096) }.unwrap();
    let mut rings = card
        .setup_rings(2)
        .expect("RING_SETUP after the failed one");
    assert_eq!(run_one(&mut rings, Sqe::nop()).result, 0);
    drop((rings, card));
    settle_zcard0();
}

/// The zcard module reloaded with `params`, and reloaded with none on drop.
struct Reloaded;

impl Reloaded {
    fn with(params: &[&str]) -> Reloaded {
        settle_zcard0();
        reload_zcard(params);
        Reloaded
    }
}

impl Drop for Reloaded {
    fn drop(&mut self) {
        let _ = Counters::read(0).map(|_| settle_zcard0());
        reload_zcard(&[]);
    }
}

fn reload_zcard(params: &[&str]) {
    let ko = zcopy_vm_tests::repo_root().join("driver/zcard.ko");
    let run = |cmd: &mut Command| assert!(cmd.status().expect("kmod tools").success(), "{cmd:?}");
    run(Command::new("rmmod").arg("zcard"));
    run(Command::new("insmod").arg(&ko).args(params));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Card::open_index(0).is_err() {
        assert!(Instant::now() < deadline, "no /dev/zcard0 after insmod");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A cgroup v2 memory cgroup, removed on drop.
struct MemCgroup(PathBuf);

impl MemCgroup {
    fn new(name: &str, max: &str) -> MemCgroup {
        let root = PathBuf::from("/sys/fs/cgroup");
        if !root.join("cgroup.controllers").exists() {
            let st = Command::new("mount")
                .args(["-t", "cgroup2", "none"])
                .arg(&root)
                .status()
                .expect("mount");
            assert!(st.success(), "cannot mount cgroup2 on {}", root.display());
        }
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap();
        assert!(
            controllers.contains("memory"),
            "no memory controller: {controllers}"
        );
        std::fs::write(root.join("cgroup.subtree_control"), "+memory")
            .expect("enable the memory controller");
        let dir = root.join(name);
        if !dir.exists() {
            std::fs::create_dir(&dir).unwrap();
        }
        let cg = MemCgroup(dir);
        cg.set_max(max);
        cg
    }

    fn set_max(&self, max: &str) {
        std::fs::write(self.0.join("memory.max"), max).expect("memory.max");
    }

    fn add(&self, pid: u32) {
        std::fs::write(self.0.join("cgroup.procs"), pid.to_string()).expect("cgroup.procs");
    }

    fn current(&self) -> u64 {
        read_attr(self.0.join("memory.current").to_str().unwrap())
            .expect("memory.current")
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn destroyed_but_mapped_pools_stay_counted_and_charged() {
    const MIB16: u64 = 16 << 20;
    let _module = Reloaded::with(&["pinned_limit_mb=16"]);
    assert_eq!(card().info().pinned_limit, MIB16);
    let cg = MemCgroup::new("zcard-memcg-test", "64M");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = peer(&["memcg", "32", &MIB16.to_string()], &theirs);
    cg.add(child.id());
    let base = cg.current();
    let tell = |what: &str| {
        use std::io::Write;
        writeln!(&ours, "{what}").unwrap();
    };
    tell("go");
    // 32 rounds of {create 16 MiB, mmap, touch, destroy}, every mapping kept:
    // the first holds the whole limit, each later one would be the 17th MiB.
    let mut want = vec!["ok"];
    want.extend(std::iter::repeat_n("ENOMEM", 31));
    assert_eq!(read_reply(&ours), format!("held {}", want.join(",")));
    let c = Counters::read(0).unwrap();
    assert_eq!(
        (c.pools, c.pinned),
        (1, MIB16),
        "the destroyed, mapped pool counts"
    );
    let current = cg.current();
    assert!(
        current >= base + MIB16,
        "memory.current {current} holds the pool's 16 MiB (was {base})"
    );
    // Unmapped, the pool goes; 32 rounds that unmap each time all fit.
    tell("release");
    assert_eq!(read_reply(&ours), "released 32");
    // A pool that does not fit under the cgroup's memory.max: ENOMEM, no OOM
    // kill. (The last pool is freed from a work item: measure after it went.)
    settle_zcard0();
    cg.set_max(&(cg.current() + (4 << 20)).to_string());
    tell("tight");
    assert_eq!(read_reply(&ours), "tight ENOMEM");
    assert!(child.wait().unwrap().success());
    drop(ours);
    settle_zcard0();
    drop(cg);
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_failed_reset_wakes_an_idle_poller_with_err_and_hup() {
    let dev = bound_device();
    settle_zcard0();
    let card = card();
    let idle = card.setup_rings(4).unwrap();
    let file = card.as_fd().try_clone_to_owned().unwrap();
    let poller = std::thread::spawn(move || {
        let start = Instant::now();
        let mut fds = [nix::poll::PollFd::new(
            file.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(20_000u16)).unwrap();
        (fds[0].revents().unwrap(), start.elapsed())
    });
    // The poller sleeps in poll() on a file with nothing in flight when a
    // request of another file makes the card ask for a reset, and the
    // restart fails.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(debugfs("zcard0").join("fail_restarts"), "1").expect("fail_restarts");
    let other = Card::open_index(0).unwrap();
    let mut rings = other.setup_rings(2).unwrap();
    {
        let _f = Fault::add(r#"{"kind":"needs_reset","count":1}"#);
        let c = run_one(&mut rings, Sqe::nop());
        assert_eq!(
            errno_of(&c),
            Some(Errno::ECANCELED),
            "needs_reset: {}",
            c.result
        );
    }
    let (revents, waited) = poller.join().unwrap();
    let gone = nix::poll::PollFlags::POLLERR | nix::poll::PollFlags::POLLHUP;
    assert!(
        revents.contains(gone),
        "poll returned {revents:?} after {waited:?}, not POLLERR | POLLHUP"
    );
    assert!(
        waited < Duration::from_secs(10),
        "the poller slept {waited:?}"
    );
    assert_eq!(
        card.create_pool(4096).unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    drop((idle, card, rings, other));
    rebind(&dev);
    let fresh = Card::open_index(0).expect("zcard0 after rebind");
    let mut rings = fresh.setup_rings(2).unwrap();
    assert_eq!(run_one(&mut rings, Sqe::nop()).result, 0);
    drop((rings, fresh));
    settle_zcard0();
}

/// The card sets NEEDS_RESET with nothing in flight (the control port's
/// `needs_reset`): its config-change interrupt alone has the driver reset
/// it, before any request is sent.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_needs_reset_the_card_announces_resets_it_with_nothing_in_flight() {
    let card = card();
    let before = settle_zcard0();
    let r = zcard_control(r#"{"cmd":"needs_reset"}"#);
    assert_eq!(r["ok"], true, "needs_reset: {r}");
    let deadline = Instant::now() + WAIT;
    while Counters::read(0).unwrap().resets == before.resets {
        assert!(
            Instant::now() < deadline,
            "no reset {WAIT:?} after the card announced NEEDS_RESET (device_state {})",
            zcard_control(r#"{"cmd":"config"}"#)["config"]["device_state"]
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut rings = card.setup_rings(2).unwrap();
    assert_eq!(run_one(&mut rings, Sqe::nop()).result, 0, "after the reset");
    drop(rings);
    settle_zcard0();
}

/// The card puts a used entry for a descriptor it was never given on every
/// queue (the control port's `stray_used`, nothing in flight): each
/// virtqueue breaks (virtio's "is not a head"), and the driver resets the
/// card at once, after which every queue serves. Left broken, a queue took
/// no request again (ENTER said EBUSY, retry) until the driver was rebound.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_used_entry_the_card_was_never_given_resets_the_card() {
    let queues = card().info().num_queues;
    let before = settle_zcard0();
    let expected = ExpectKernel::lines("is not a head");
    // A queue at a time: each breaks its own virtqueue and the reset that
    // follows brings every queue back before the next one breaks.
    for q in 0..queues {
        let r = zcard_control(&format!(r#"{{"cmd":"stray_used","queue":{q}}}"#));
        assert_eq!(r["ok"], true, "stray_used: {r}");
        let deadline = Instant::now() + WAIT;
        while Counters::read(0).unwrap().resets < before.resets + u64::from(q) + 1 {
            assert!(
                Instant::now() < deadline,
                "no reset {WAIT:?} after the card broke queue {q}'s used ring"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // The counter moves as the reset starts; an ENTER waits for its end
        // (and a stray entry sent before would find the queues stopped).
        let file = card();
        let mut rings = file.setup_rings(2).unwrap();
        assert_eq!(run_one(&mut rings, Sqe::nop()).result, 0, "after reset {q}");
    }
    drop(expected);
    // virtio names the queue it found broken by the name the driver gave it
    // (which the virtqueue keeps a pointer to: freed, it printed garbage).
    let log = std::process::Command::new("dmesg").output().expect("dmesg");
    let log = String::from_utf8_lossy(&log.stdout);
    let since = log
        .rfind("zcopy-test: expecting /is not a head/")
        .expect("the mark");
    for q in 0..queues {
        assert!(
            log[since..].contains(&format!("req.{q}:id 0 is not a head")),
            "queue {q} named in the kernel log: {}",
            &log[since..]
        );
    }
    // One file per queue (files are spread over the queues): each serves.
    let mut files: Vec<_> = (0..queues)
        .map(|_| {
            let c = card();
            let r = c.setup_rings(2).unwrap();
            (c, r)
        })
        .collect();
    for (i, (_, rings)) in files.iter_mut().enumerate() {
        assert_eq!(
            run_one(rings, Sqe::nop()).result,
            0,
            "file {i} after the reset"
        );
    }
    drop(files);
    settle_zcard0();
}

/// A completion interrupt that comes while the card is being stopped, after
/// its requests were failed and `q->vq` cleared but before the virtqueues
/// are deleted (debugfs `late_interrupt` runs the queues' callback there):
/// the callback reaps its own, empty virtqueue, the reset finishes and the
/// card serves after. Reaping through `q->vq` oopsed here.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn an_interrupt_while_the_card_stops_reaps_nothing() {
    let card = card();
    let before = settle_zcard0();
    let p = card.create_pool(64 << 10).unwrap();
    let mut rings = card.setup_rings(8).unwrap();
    let knob = debugfs("zcard0").join("late_interrupt");
    std::fs::write(&knob, "1").expect("late_interrupt");
    {
        // Four requests held on a stalled queue time out; the reset that
        // follows stops the card with them still on it.
        let _t = TimeoutMs::set(1000);
        let _f = Fault::add(r#"{"kind":"stall","count":1}"#);
        let sqes: Vec<Sqe> = (0..4)
            .map(|i| Sqe::fill(Buf::new(&p, i * 4096), 4096, i))
            .collect();
        let cqes = rings.run(&sqes, WAIT).expect("ENTER");
        for c in &cqes {
            assert_eq!(errno_of(c), Some(Errno::ETIMEDOUT), "{c:?}");
        }
    }
    let deadline = Instant::now() + WAIT;
    while Counters::read(0).unwrap().resets < before.resets + 1 {
        assert!(Instant::now() < deadline, "no reset after the timeouts");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        read_attr(&knob).unwrap(),
        "0",
        "the reset's stop ran the late callback"
    );
    assert_eq!(run_one(&mut rings, Sqe::nop()).result, 0, "after the reset");
    drop((p, rings));
    settle_zcard0();
}

/// System sleep (the driver's freeze and restore, as the PM core calls them,
/// through debugfs `pm_cycle`) while a runtime reset is in progress: the
/// reset is held inside its stop of the card (the card finishes a delayed
/// request on one queue before it lets the stop through) when the freeze
/// comes. The freeze waits for the reset, every request ends with its
/// result or `-ECANCELED`, the card serves after, and the kernel log stays
/// clean (a freeze that took the reset's flag for its own stopped the card
/// twice at once).
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn system_sleep_waits_for_a_runtime_reset_in_progress() {
    const ROUNDS: u64 = 8;
    let card = card();
    settle_zcard0();
    let p = card.create_pool(64 << 10).unwrap();
    let map = p.map().unwrap();
    // Two files in a row: one on each of the card's queues.
    let held = Card::open_index(0).unwrap();
    let asker = Card::open_index(0).unwrap();
    let hp = held.create_pool(64 << 10).unwrap();
    let mut held_rings = held.setup_rings(2).unwrap();
    let mut asker_rings = asker.setup_rings(2).unwrap();
    let pm = debugfs("zcard0").join("pm_cycle");
    for round in 0..ROUNDS {
        let resets = Counters::read(0).unwrap().resets;
        // The card takes the FILL and holds it for a second: a stop of the
        // card (the reset's) waits that long for it.
        let _slow = Fault::add(r#"{"kind":"delay","op":"fill","delay_us":1000000,"count":1}"#);
        let _ask = Fault::add(r#"{"kind":"needs_reset","op":"nop","count":1}"#);
        held_rings
            .push(Sqe::fill(Buf::new(&hp, 0), 4096, round).user_data(1))
            .unwrap();
        assert_eq!(held_rings.submit().unwrap(), 1);
        std::thread::sleep(Duration::from_millis(100));
        // The other queue's NOP makes the card ask for a reset.
        let c = run_one(&mut asker_rings, Sqe::nop());
        assert_eq!(errno_of(&c), Some(Errno::ECANCELED), "needs_reset: {c:?}");
        // The reset is under way, stuck in its stop behind the FILL.
        std::thread::sleep(Duration::from_millis(200));
        std::fs::write(&pm, "1").unwrap_or_else(|e| panic!("pm_cycle, round {round}: {e}"));
        held_rings
            .wait(1, Some(WAIT))
            .unwrap_or_else(|e| panic!("waiting for the FILL, round {round}: {e}"));
        let c = held_rings.pop().expect("the FILL's CQE");
        assert!(
            c.result == 4096 || errno_of(&c) == Some(Errno::ECANCELED),
            "the held FILL ended with {c:?} in round {round}"
        );
        assert!(
            Counters::read(0).unwrap().resets > resets,
            "round {round}: no reset ran"
        );
    }
    // The card serves after: a FILL lands.
    let mut rings = card.setup_rings(4).unwrap();
    let c = run_one(
        &mut rings,
        Sqe::fill(Buf::new(&p, 4096), 4096, 0x5a5a_5a5a_5a5a_5a5a),
    );
    assert_eq!(c.result, 4096, "FILL after the cycles");
    let mut got = vec![0u8; 4096];
    map.read(4096, &mut got).unwrap();
    assert!(got.iter().all(|&b| b == 0x5a), "FILL's bytes");
    drop((map, p, rings, hp, held_rings, asker_rings, held, asker));
    settle_zcard0();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_pool_whose_page_array_does_not_fit_the_memcg_is_enomem() {
    settle_zcard0();
    // The largest pool's page array (a pointer per page: 512 KiB for 256 MiB)
    // is more than the memory cgroup's per-CPU charge stock, so it is the
    // allocation that meets memory.max.
    let size = card().info().max_pool_bytes;
    let cg = MemCgroup::new("zcard-memcg-array", "max");
    let (ours, theirs) = UnixStream::pair().unwrap();
    let mut child = peer(&["create", &size.to_string()], &theirs);
    cg.add(child.id());
    // The peer is resident and waiting: only the pool's own allocations
    // can meet the limit now.
    assert_eq!(read_reply(&ours), "ready");
    cg.set_max(&(cg.current() + (128 << 10)).to_string());
    {
        use std::io::Write;
        writeln!(&ours, "go").unwrap();
    }
    assert_eq!(read_reply(&ours), "create ENOMEM");
    assert!(child.wait().unwrap().success());
    drop(ours);
    settle_zcard0();
    drop(cg);
}

/// The virtio device the zcard driver is bound to.
fn bound_device() -> String {
    let dir = PathBuf::from("/sys/bus/virtio/drivers/zcard");
    std::fs::read_dir(&dir)
        .expect("zcard driver registered")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("virtio"))
        .expect("a device bound to zcard")
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn unbind_and_rebind_with_live_mappings_and_requests() {
    let dev = bound_device();
    settle_zcard0();
    let card = card();
    let p = card.create_pool(1 << 20).unwrap();
    let map = p.map().unwrap();
    map.write(0, b"before unbind").unwrap();
    let mut rings = card.setup_rings(16).unwrap();
    {
        let _slow = Fault::add(r#"{"kind":"delay","delay_us":20000}"#);
        for i in 0..16 {
            rings
                .push(Sqe::fill(Buf::new(&p, 4096 + i * 4096), 4096, i))
                .unwrap();
        }
        rings.submit().unwrap();
        std::fs::write("/sys/bus/virtio/drivers/zcard/unbind", &dev).expect("unbind");
    }
    // Every request completed, with its result or -ENODEV.
    let mut n = 0;
    while let Some(c) = rings.pop() {
        assert!(
            c.result == 4096 || c.result == -libc::ENODEV,
            "result {}",
            c.result
        );
        n += 1;
    }
    assert_eq!(n, 16);
    // The mapping is still memory; everything else says ENODEV.
    let mut got = [0u8; 13];
    map.read(0, &mut got).unwrap();
    assert_eq!(&got, b"before unbind");
    map.write(0, b"after unbind!").unwrap();
    assert_eq!(
        card.create_pool(4096).unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    rings.push(Sqe::nop()).unwrap();
    assert_eq!(rings.submit().unwrap_err().errno(), Some(Errno::ENODEV));
    assert!(!std::path::Path::new("/dev/zcard0").exists());

    std::fs::write("/sys/bus/virtio/drivers/zcard/bind", &dev).expect("bind");
    let fresh = Card::open_index(0).expect("zcard0 again after rebind");
    let mut fr = fresh.setup_rings(2).unwrap();
    let q = fresh.create_pool(4096).unwrap();
    assert_eq!(
        run_one(&mut fr, Sqe::fill(Buf::new(&q, 0), 4096, 1)).result,
        4096
    );
    drop((q, fr, fresh, rings, p, card));
    let mut got = [0u8; 13];
    map.read(0, &mut got).unwrap();
    assert_eq!(&got, b"after unbind!");
    drop(map);
    settle_zcard0();

    // With every file closed the module unloads and loads again cleanly.
    let ko = zcopy_vm_tests::repo_root().join("driver/zcard.ko");
    let run = |cmd: &mut Command| assert!(cmd.status().expect("kmod tools").success(), "{cmd:?}");
    run(Command::new("rmmod").arg("zcard"));
    assert!(!std::path::Path::new("/sys/module/zcard").exists());
    run(Command::new("insmod").arg(&ko));
    let again = Card::open_index(0).expect("zcard0 after insmod");
    assert_eq!(again.info().num_queues, 2);
    drop(again);
    settle_zcard0();
}

// ---- the reference model ----

/// Where an SQE's offset points, chosen relative to the pool at run time.
#[derive(Debug, Clone, Copy)]
enum Off {
    At(u64),
    EndMinusLen,
    End,
    Huge,
}

#[derive(Debug, Clone, Copy)]
enum Len {
    Bytes(u32),
    Blocks(u32),
    Zero,
    MaxOp,
    MaxOpPlusOne,
}

#[derive(Debug, Clone, Copy)]
enum Storage {
    Head(u32),
    Tail(u32),
    Misaligned(u32),
    Beyond,
    Huge,
}

#[derive(Debug, Clone, Copy)]
enum Corrupt {
    None,
    Opcode(u8),
    Flags(u8),
    Reserved0(u16),
    Reserved1(u64),
    Stray,
}

#[derive(Debug, Clone)]
enum Step {
    Create(u32),
    Destroy(usize),
    Write {
        pool: usize,
        at: u64,
        len: u32,
        seed: u8,
    },
    Op {
        opcode: u8,
        src: usize,
        dst: usize,
        src_off: Off,
        dst_off: Off,
        len: Len,
        storage: Storage,
        pattern: u64,
        corrupt: Corrupt,
    },
}

fn step() -> impl Strategy<Value = Step> {
    let off = prop_oneof![
        4 => (0u64..200_000).prop_map(Off::At),
        1 => Just(Off::EndMinusLen),
        1 => Just(Off::End),
        1 => Just(Off::Huge),
    ];
    let len = prop_oneof![
        4 => (1u32..70_000).prop_map(Len::Bytes),
        2 => (1u32..128).prop_map(Len::Blocks),
        1 => Just(Len::Zero),
        1 => Just(Len::MaxOp),
        1 => Just(Len::MaxOpPlusOne),
    ];
    let storage = prop_oneof![
        4 => (0u32..2048).prop_map(Storage::Head),
        2 => (0u32..2048).prop_map(Storage::Tail),
        1 => (1u32..512).prop_map(Storage::Misaligned),
        1 => Just(Storage::Beyond),
        1 => Just(Storage::Huge),
    ];
    let corrupt = prop_oneof![
        12 => Just(Corrupt::None),
        1 => (7u8..=255).prop_map(Corrupt::Opcode),
        1 => (1u8..=255).prop_map(Corrupt::Flags),
        1 => (1u16..=u16::MAX).prop_map(Corrupt::Reserved0),
        1 => (1u64..=u64::MAX).prop_map(Corrupt::Reserved1),
        1 => Just(Corrupt::Stray),
    ];
    prop_oneof![
        2 => (1u32..=40).prop_map(Step::Create),
        1 => (0usize..8).prop_map(Step::Destroy),
        2 => (0usize..8, 0u64..200_000, 1u32..20_000, any::<u8>())
            .prop_map(|(pool, at, len, seed)| Step::Write { pool, at, len, seed }),
        8 => (0u8..7, 0usize..10, 0usize..10, off.clone(), off, len, storage, any::<u64>(), corrupt).prop_map(
            |(opcode, src, dst, src_off, dst_off, len, storage, pattern, corrupt)| Step::Op {
                opcode, src, dst, src_off, dst_off, len, storage, pattern, corrupt
            }
        ),
    ]
}

const WINDOW: u64 = 2 << 20;

/// The model: pool contents by id, the two storage windows the case zeroed.
struct Model {
    pools: HashMap<u32, Vec<u8>>,
    head: Vec<u8>,
    tail: Vec<u8>,
    capacity: u64,
}

impl Model {
    fn storage(&mut self, off: u64, len: usize) -> &mut [u8] {
        if off + len as u64 <= WINDOW {
            &mut self.head[off as usize..off as usize + len]
        } else {
            let base = self.capacity - WINDOW;
            assert!(
                off >= base,
                "model: storage range {off}+{len} outside both windows"
            );
            &mut self.tail[(off - base) as usize..(off - base) as usize + len]
        }
    }

    /// The driver's checks, in its order: the errno the SQE must complete with.
    fn check(&self, info: &uapi::ZcardInfo, s: &ZcardSqe) -> Option<Errno> {
        if s.opcode >= uapi::ZCARD_OP_COUNT || s.flags != 0 || s.reserved0 != 0 || s.reserved1 != 0
        {
            return Some(Errno::EINVAL);
        }
        let (src, dst, storage, pattern, seed, nolen) = match s.opcode {
            uapi::ZCARD_OP_NOP | uapi::ZCARD_OP_FLUSH => (false, false, false, false, false, true),
            uapi::ZCARD_OP_COPY => (true, true, false, false, false, false),
            uapi::ZCARD_OP_FILL => (false, true, false, true, false, false),
            uapi::ZCARD_OP_CRC32C => (true, false, false, false, true, false),
            uapi::ZCARD_OP_STORAGE_READ => (false, true, true, false, false, false),
            _ => (true, false, true, false, false, false),
        };
        if (!src && (s.src_pool != 0 || s.src_offset != 0))
            || (!dst && (s.dst_pool != 0 || s.dst_offset != 0))
            || (!storage && s.storage_offset != 0)
            || (!pattern && !seed && s.pattern != 0)
            || (seed && s.pattern >> 32 != 0)
            || (nolen && s.length != 0)
            || s.length > info.max_op_bytes
        {
            return Some(Errno::EINVAL);
        }
        if storage {
            let bs = u64::from(info.block_size);
            if s.storage_offset % bs != 0 || u64::from(s.length) % bs != 0 {
                return Some(Errno::EINVAL);
            }
            if s.storage_offset > info.storage_capacity
                || u64::from(s.length) > info.storage_capacity - s.storage_offset
            {
                return Some(Errno::ERANGE);
            }
        }
        let range = |id: u32, off: u64| -> Option<Errno> {
            let Some(p) = self.pools.get(&id) else {
                return Some(Errno::ENOENT);
            };
            let size = p.len() as u64;
            (off > size || u64::from(s.length) > size - off).then_some(Errno::ERANGE)
        };
        if src {
            if let Some(e) = range(s.src_pool, s.src_offset) {
                return Some(e);
            }
        }
        if dst {
            if let Some(e) = range(s.dst_pool, s.dst_offset) {
                return Some(e);
            }
        }
        None
    }

    /// Applies a valid SQE; returns the CRC it yields (CRC32C) or 0.
    fn apply(&mut self, s: &ZcardSqe) -> u64 {
        let len = s.length as usize;
        let src = |m: &Model| -> Vec<u8> {
            m.pools[&s.src_pool][s.src_offset as usize..s.src_offset as usize + len].to_vec()
        };
        match s.opcode {
            uapi::ZCARD_OP_COPY => {
                let data = src(self);
                self.pools.get_mut(&s.dst_pool).unwrap()[s.dst_offset as usize..][..len]
                    .copy_from_slice(&data);
            }
            uapi::ZCARD_OP_FILL => {
                let pat = s.pattern.to_le_bytes();
                for (i, b) in self.pools.get_mut(&s.dst_pool).unwrap()[s.dst_offset as usize..]
                    [..len]
                    .iter_mut()
                    .enumerate()
                {
                    *b = pat[i % 8];
                }
            }
            uapi::ZCARD_OP_CRC32C => {
                return u64::from(crc32c_reference(s.pattern as u32, &src(self)))
            }
            uapi::ZCARD_OP_STORAGE_WRITE => {
                let data = src(self);
                self.storage(s.storage_offset, len).copy_from_slice(&data);
            }
            uapi::ZCARD_OP_STORAGE_READ => {
                let data = self.storage(s.storage_offset, len).to_vec();
                self.pools.get_mut(&s.dst_pool).unwrap()[s.dst_offset as usize..][..len]
                    .copy_from_slice(&data);
            }
            _ => {}
        }
        0
    }
}

/// Zeroes the storage windows the model tracks.
fn zero_windows(card: &Card, rings: &mut Rings) {
    let zero = card.create_pool(1 << 20).unwrap();
    let cap = card.info().storage_capacity;
    let max = u64::from(card.info().max_op_bytes).min(1 << 20);
    let mut sqes = Vec::new();
    for base in [0, cap - WINDOW] {
        let mut at = 0;
        while at < WINDOW {
            let n = max.min(WINDOW - at);
            sqes.push(Sqe::storage_write(Buf::new(&zero, 0), base + at, n as u32));
            at += n;
        }
    }
    for c in rings.run(&sqes, WAIT).unwrap() {
        assert!(c.result > 0, "zeroing the storage windows: {}", c.result);
    }
}

fn run_case(steps: &[Step]) -> Result<(), TestCaseError> {
    let card = card();
    let info = *card.info();
    let mut rings = card.setup_rings(8).unwrap();
    zero_windows(&card, &mut rings);
    let mut model = Model {
        pools: HashMap::new(),
        head: vec![0; WINDOW as usize],
        tail: vec![0; WINDOW as usize],
        capacity: info.storage_capacity,
    };
    let mut pools: Vec<(zcopy::card::Pool, zcopy::card::PoolMap)> = Vec::new();
    for (n, st) in steps.iter().enumerate() {
        match *st {
            Step::Create(pages) => {
                let p = card.create_pool(u64::from(pages) * 4096).unwrap();
                let m = p.map().unwrap();
                model.pools.insert(p.id(), vec![0; pages as usize * 4096]);
                pools.push((p, m));
            }
            Step::Destroy(i) if !pools.is_empty() => {
                let (p, _) = pools.remove(i % pools.len());
                model.pools.remove(&p.id());
            }
            Step::Write {
                pool,
                at,
                len,
                seed,
            } if !pools.is_empty() => {
                let (p, m) = &pools[pool % pools.len()];
                let size = p.size();
                let at = at % size;
                let len = u64::from(len).min(size - at) as usize;
                let data = pattern_bytes(seed, len);
                m.write(at, &data).unwrap();
                model.pools.get_mut(&p.id()).unwrap()[at as usize..][..len].copy_from_slice(&data);
            }
            Step::Op {
                opcode,
                src,
                dst,
                src_off,
                dst_off,
                len,
                storage,
                pattern,
                corrupt,
            } => {
                let id = |i: usize| -> u32 {
                    match i {
                        8 => 0,
                        9 => 4242,
                        _ if pools.is_empty() => 0,
                        _ => pools[i % pools.len()].0.id(),
                    }
                };
                let length = match len {
                    Len::Bytes(b) => b,
                    Len::Blocks(b) => b * 512,
                    Len::Zero => 0,
                    Len::MaxOp => info.max_op_bytes,
                    Len::MaxOpPlusOne => info.max_op_bytes + 1,
                };
                let off = |o: Off, pool: u32| -> u64 {
                    let size = model.pools.get(&pool).map_or(65_536, |p| p.len() as u64);
                    match o {
                        Off::At(a) => a % (size + 1),
                        Off::EndMinusLen => size.saturating_sub(u64::from(length)),
                        Off::End => size,
                        Off::Huge => u64::MAX - 7,
                    }
                };
                let storage_offset = match storage {
                    Storage::Head(k) => u64::from(k) * 512,
                    Storage::Tail(k) => info.storage_capacity - WINDOW + u64::from(k) * 512,
                    Storage::Misaligned(k) => u64::from(k),
                    Storage::Beyond => info.storage_capacity,
                    Storage::Huge => u64::MAX - 511,
                };
                let (sp, dp) = (id(src), id(dst));
                let mut s = match opcode {
                    uapi::ZCARD_OP_NOP => Sqe::nop().0,
                    uapi::ZCARD_OP_COPY => {
                        Sqe::copy(
                            Buf {
                                pool: sp,
                                offset: off(src_off, sp),
                            },
                            Buf {
                                pool: dp,
                                offset: off(dst_off, dp),
                            },
                            length,
                        )
                        .0
                    }
                    uapi::ZCARD_OP_FILL => {
                        Sqe::fill(
                            Buf {
                                pool: dp,
                                offset: off(dst_off, dp),
                            },
                            length,
                            pattern,
                        )
                        .0
                    }
                    uapi::ZCARD_OP_CRC32C => {
                        Sqe::crc32c(
                            Buf {
                                pool: sp,
                                offset: off(src_off, sp),
                            },
                            length,
                            pattern as u32,
                        )
                        .0
                    }
                    uapi::ZCARD_OP_STORAGE_READ => {
                        Sqe::storage_read(
                            storage_offset,
                            Buf {
                                pool: dp,
                                offset: off(dst_off, dp),
                            },
                            length,
                        )
                        .0
                    }
                    uapi::ZCARD_OP_STORAGE_WRITE => {
                        Sqe::storage_write(
                            Buf {
                                pool: sp,
                                offset: off(src_off, sp),
                            },
                            storage_offset,
                            length,
                        )
                        .0
                    }
                    _ => Sqe::flush().0,
                };
                match corrupt {
                    Corrupt::None => {}
                    Corrupt::Opcode(o) => s.opcode = o,
                    Corrupt::Flags(f) => s.flags = f,
                    Corrupt::Reserved0(r) => s.reserved0 = r,
                    Corrupt::Reserved1(r) => s.reserved1 = r,
                    Corrupt::Stray => s.pattern |= 1 << 40,
                }
                // Overlapping COPY within one pool has no defined result: skip it.
                if s.opcode == uapi::ZCARD_OP_COPY
                    && s.src_pool == s.dst_pool
                    && s.src_offset.max(s.dst_offset)
                        < s.src_offset
                            .min(s.dst_offset)
                            .saturating_add(u64::from(s.length))
                {
                    continue;
                }
                s.user_data = n as u64;
                let want = model.check(&info, &s);
                let c = run_one(&mut rings, Sqe(s));
                prop_assert_eq!(c.user_data, n as u64);
                match want {
                    Some(e) => {
                        prop_assert_eq!(c.result, -(e as i32), "step {} {:?}: expected {}", n, s, e)
                    }
                    None => {
                        let crc = model.apply(&s);
                        let bytes = if matches!(s.opcode, uapi::ZCARD_OP_NOP | uapi::ZCARD_OP_FLUSH)
                        {
                            0
                        } else {
                            s.length as i32
                        };
                        prop_assert_eq!(c.result, bytes, "step {} {:?}", n, s);
                        prop_assert_eq!(c.value, crc, "step {} CRC", n);
                    }
                }
            }
            _ => {}
        }
        // Every pool matches the model after every step.
        for (p, m) in &pools {
            let mut got = vec![0u8; p.size() as usize];
            m.read(0, &mut got).unwrap();
            prop_assert!(
                got == model.pools[&p.id()],
                "step {}: pool {} differs from the model",
                n,
                p.id()
            );
        }
    }
    Ok(())
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn pool_and_sqe_sequences_match_the_reference_model() {
    settle_zcard0();
    let config = zcopy_testkit::proptest_config("driver model", 16);
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(step(), 1..24), |steps| {
        run_case(&steps)
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    settle_zcard0();
}

/// userfaultfd (`<linux/userfaultfd.h>`, which libc does not carry): one
/// page whose writes wait, the kernel's own included, until it is let go.
mod uffd {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const UFFD_API: u64 = 0xAA;
    const UFFD_FEATURE_PAGEFAULT_FLAG_WP: u64 = 1 << 0;
    const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
    const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

    #[repr(C)]
    struct Api {
        api: u64,
        features: u64,
        ioctls: u64,
    }

    #[repr(C)]
    struct Range {
        start: u64,
        len: u64,
    }

    #[repr(C)]
    struct Register {
        range: Range,
        mode: u64,
        ioctls: u64,
    }

    #[repr(C)]
    struct WriteProtect {
        range: Range,
        mode: u64,
    }

    nix::ioctl_readwrite!(api, 0xAA, 0x3F, Api);
    nix::ioctl_readwrite!(register, 0xAA, 0x00, Register);
    nix::ioctl_readwrite!(write_protect, 0xAA, 0x06, WriteProtect);

    /// A page of anonymous memory, write-protected through userfaultfd.
    pub struct Page {
        uffd: OwnedFd,
        pub addr: *mut u8,
    }

    impl Page {
        /// A page holding `bytes`, then write-protected.
        pub fn protected(bytes: &[u8]) -> Page {
            assert!(bytes.len() <= 4096);
            // SAFETY: a new anonymous mapping; no memory of ours is touched.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert_ne!(addr, libc::MAP_FAILED, "mmap");
            let addr = addr.cast::<u8>();
            // SAFETY: the page is ours, writable, 4096 bytes long.
            unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr, bytes.len()) };
            // SAFETY: the syscall takes flags only; it returns a new fd or -1.
            let fd = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) };
            assert!(fd >= 0, "userfaultfd: {}", std::io::Error::last_os_error());
            // SAFETY: a new descriptor nothing else owns.
            let uffd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let mut a = Api {
                api: UFFD_API,
                features: UFFD_FEATURE_PAGEFAULT_FLAG_WP,
                ioctls: 0,
            };
            // SAFETY: the fd is a userfaultfd; `a` is a uffdio_api.
            unsafe { api(uffd.as_raw_fd(), &mut a) }.expect("UFFDIO_API with write-protect");
            let range = || Range {
                start: addr as u64,
                len: 4096,
            };
            let mut r = Register {
                range: range(),
                mode: UFFDIO_REGISTER_MODE_WP,
                ioctls: 0,
            };
            // SAFETY: as above; `r` is a uffdio_register over our page.
            unsafe { register(uffd.as_raw_fd(), &mut r) }.expect("UFFDIO_REGISTER");
            let page = Page { uffd, addr };
            page.protect(true);
            page
        }

        fn protect(&self, on: bool) {
            let mut w = WriteProtect {
                range: Range {
                    start: self.addr as u64,
                    len: 4096,
                },
                mode: if on { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 },
            };
            // SAFETY: `w` is a uffdio_writeprotect over the registered page;
            // mode 0 also wakes the writers waiting on it.
            unsafe { write_protect(self.uffd.as_raw_fd(), &mut w) }.expect("UFFDIO_WRITEPROTECT");
        }

        /// Waits (at most `limit`) until a write to the page is waiting.
        pub fn wait_for_a_writer(&self, limit: std::time::Duration) -> bool {
            let mut p = libc::pollfd {
                fd: self.uffd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, limit.as_millis() as i32) == 1 }
        }

        /// Lets the waiting writes through.
        pub fn release(&self) {
            self.protect(false);
        }
    }

    /// Lets the page's waiting writes through when dropped.
    pub struct Release<'a>(pub &'a Page);

    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.release();
        }
    }

    impl Drop for Page {
        fn drop(&mut self) {
            // SAFETY: the mapping Page made; nothing refers to it after this.
            unsafe { libc::munmap(self.addr.cast(), 4096) };
        }
    }
}

/// A POOL_CREATE whose copy-out waits on a page user space keeps
/// write-protected (userfaultfd), an ENTER of the same file meanwhile,
/// and a reset the card asks for: the reset finishes while the copy-out
/// waits, and all three end once the page is let go. The copy-out was
/// made holding the file's lock, which the ENTER waited for holding the
/// card's reset lock: the reset (and an unbind) waited as long as the
/// page did.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_copy_out_held_by_user_space_holds_back_no_reset() {
    let card = card();
    let before = settle_zcard0();
    let pc = uapi::ZcardPoolCreate {
        size: 64 << 10,
        ..Default::default()
    };
    // SAFETY: ZcardPoolCreate is plain old data of that size.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (&pc as *const uapi::ZcardPoolCreate).cast::<u8>(),
            std::mem::size_of_val(&pc),
        )
    };
    let page = uffd::Page::protected(bytes);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let entered = std::sync::atomic::AtomicBool::new(false);
    let (fd, at) = (card.as_fd().as_raw_fd(), page.addr as usize);
    let reset = std::thread::scope(|s| {
        let (card, entered) = (&card, &entered);
        let enter = s.spawn(move || {
            let mut rings = card.setup_rings(2).unwrap();
            // SAFETY: gettid takes nothing and cannot fail.
            ready_tx.send(unsafe { libc::gettid() }).unwrap();
            go_rx.recv().unwrap();
            let c = run_one(&mut rings, Sqe::nop());
            entered.store(true, std::sync::atomic::Ordering::Release);
            c
        });
        let tid = ready_rx.recv().unwrap();
        let create = s.spawn(move || {
            // SAFETY: an open zcard fd and a ZcardPoolCreate-sized page,
            // mapped until the scope ends.
            unsafe { uapi::zcard_ioc_pool_create(fd, at as *mut uapi::ZcardPoolCreate) }
        });
        // Whatever fails from here, the page is let go, so that the scope's
        // joins end.
        let release = uffd::Release(&page);
        assert!(
            page.wait_for_a_writer(WAIT),
            "POOL_CREATE's copy-out never reached the protected page"
        );
        go_tx.send(()).unwrap();
        // The ENTER is through, or waiting in the kernel (the file's lock).
        let deadline = Instant::now() + WAIT;
        let state = || {
            let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"));
            stat.ok()
                .and_then(|s| s.rsplit(") ").next().and_then(|r| r.chars().next()))
        };
        while !entered.load(std::sync::atomic::Ordering::Acquire) && state() != Some('D') {
            assert!(
                Instant::now() < deadline,
                "the ENTER neither ended nor waited"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let r = zcard_control(r#"{"cmd":"needs_reset"}"#);
        assert_eq!(r["ok"], true, "needs_reset: {r}");
        let deadline = Instant::now() + WAIT;
        let mut reset = false;
        while !reset && Instant::now() < deadline {
            reset = Counters::read(0).unwrap().resets > before.resets;
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(release);
        create.join().unwrap().expect("POOL_CREATE once let go");
        let c = enter.join().unwrap();
        assert!(
            c.result == 0 || errno_of(&c) == Some(Errno::ECANCELED),
            "the NOP: {c:?}"
        );
        reset
    });
    assert!(
        reset,
        "no reset within {WAIT:?} while a POOL_CREATE's copy-out waited"
    );
    // SAFETY: the page holds what POOL_CREATE wrote back.
    let made = unsafe { std::ptr::read(page.addr.cast::<uapi::ZcardPoolCreate>()) };
    card.destroy_pool_id(made.pool_id).unwrap();
    drop(page);
    settle_zcard0();
}
