//! The card's engine against memcpy, host-native, in-process guest memory.
//!
//! `cargo bench -p zcard-vhost` (or `make bench`): COPY throughput for
//! 4 KiB … 4 MiB segments beside plain memcpy of the same sizes in the same
//! run, CPU time per small request, and CRC32C throughput. Prints a table and
//! writes JSON and a plot of the COPY figures to target/bench/
//! (zcard-engine.json, zcard-engine.svg).

use std::hint::black_box;
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use zcard_vhost::storage::Storage;
use zcard_vhost::virtio_zcard::{Op, ReqHeader, ReqStatus, REQ_HEADER_SIZE, REQ_STATUS_SIZE};
use zcard_vhost::zcard::{Card, Limits, Outcome};

const MEM: usize = 64 << 20;
const SRC: u64 = 0x10_0000;
const DST: u64 = 0x210_0000;
const HDR: u64 = 0x1000;
const STATUS: u64 = 0x2000;

fn chain(op: Op, len: u32, src: bool, dst: bool) -> Vec<Descriptor> {
    let next = VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let mut d = vec![Descriptor::new(HDR, REQ_HEADER_SIZE, next, 0)];
    if src {
        d.push(Descriptor::new(SRC, len, next, 0));
    }
    if dst {
        d.push(Descriptor::new(DST, len, next | write, 0));
    }
    d.push(Descriptor::new(STATUS, REQ_STATUS_SIZE, write, 0));
    let _ = op;
    d
}

/// Runs `f` repeatedly for about `budget`, returning seconds per call.
fn time<F: FnMut()>(budget: Duration, mut f: F) -> f64 {
    f();
    let mut n = 0u64;
    let start = Instant::now();
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed().as_secs_f64() / n as f64
}

/// CPU seconds this thread has used.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid, writable timespec; the clock id is a constant.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let quick = std::env::var_os("ZCOPY_BENCH_QUICK").is_some();
    let budget = Duration::from_millis(if quick { 50 } else { 300 });
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let card = Card::new(Limits::default(), Storage::temporary(16 << 20).unwrap(), 0).unwrap();
    let (mem, card) = (&mem, &card);
    let run = |op: Op, len: u32, src: bool, dst: bool| {
        let h = ReqHeader {
            opcode: op as u8,
            length: u64::from(len),
            ..Default::default()
        };
        mem.write_obj(h, GuestAddress(HDR)).unwrap();
        let descs = chain(op, len, src, dst);
        move || {
            let out = card.process(mem, descs.clone().into_iter(), 0);
            assert!(matches!(out, Outcome::Complete { .. }));
        }
    };

    let mut rows = Vec::new();
    let (mut card_line, mut memcpy_line) = (Vec::new(), Vec::new());
    println!(
        "{:>10} {:>14} {:>14} {:>8}",
        "bytes", "card GB/s", "memcpy GB/s", "ratio"
    );
    // The baseline copies between the same guest-memory pages the card uses,
    // so both see the same page backing and cache state.
    mem.write_slice(&vec![1u8; 4 << 20], GuestAddress(SRC))
        .unwrap();
    let src_p = mem.get_host_address(GuestAddress(SRC)).unwrap() as *const u8;
    let dst_p = mem.get_host_address(GuestAddress(DST)).unwrap();
    for shift in [12, 14, 16, 18, 20, 22] {
        let len = 1u32 << shift;
        let mut req = run(Op::Copy, len, true, true);
        let t_card = time(budget, &mut req);
        let n = len as usize;
        let t_memcpy = time(budget, || {
            // SAFETY: SRC..SRC+4 MiB and DST..DST+4 MiB lie inside the 64 MiB
            // mapping, do not overlap, and nothing else touches them meanwhile.
            unsafe { std::ptr::copy_nonoverlapping(black_box(src_p), dst_p, n) };
            black_box(dst_p);
        });
        let gbs = |t: f64| f64::from(len) / t / 1e9;
        card_line.push((f64::from(len), f64::from(len) / t_card));
        memcpy_line.push((f64::from(len), f64::from(len) / t_memcpy));
        let ratio = t_memcpy / t_card;
        println!(
            "{:>10} {:>14.2} {:>14.2} {:>7.0}%",
            len,
            gbs(t_card),
            gbs(t_memcpy),
            ratio * 100.0
        );
        rows.push(format!(
            r#"{{"op":"copy","bytes":{len},"card_gbps":{:.3},"memcpy_gbps":{:.3},"ratio":{ratio:.3}}}"#,
            gbs(t_card),
            gbs(t_memcpy)
        ));
    }

    let mut small = Vec::new();
    for (name, op, len, src, dst) in [
        ("nop", Op::Nop, 0, false, false),
        ("copy 64 B", Op::Copy, 64, true, true),
        ("fill 64 B", Op::Fill, 64, false, true),
        ("crc32c 64 B", Op::Crc32c, 64, true, false),
    ] {
        let req = run(op, len, src, dst);
        let iters = if quick { 20_000 } else { 200_000 };
        let c0 = thread_cpu();
        for _ in 0..iters {
            req();
        }
        let us = (thread_cpu() - c0) / f64::from(iters) * 1e6;
        println!("{name:>14}: {us:.3} µs CPU per request");
        small.push(format!(r#"{{"request":"{name}","cpu_us":{us:.4}}}"#));
    }

    let len = 1u32 << 20;
    let mut req = run(Op::Crc32c, len, true, false);
    let t = time(budget, &mut req);
    let crc_gbs = f64::from(len) / t / 1e9;
    println!("{:>14}: {crc_gbs:.2} GB/s (1 MiB requests)", "crc32c");
    let status: ReqStatus = mem.read_obj(GuestAddress(STATUS)).unwrap();
    assert_eq!(status.status, 0);

    let json = format!(
        "{{\"copy\":[{}],\"small_requests\":[{}],\"crc32c_gbps\":{crc_gbs:.3}}}\n",
        rows.join(","),
        small.join(",")
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("zcard-engine.json"), &json).unwrap();
    let chart = zcopy_plot::Lines {
        title: "The card's engine against memcpy: COPY (higher is better)".into(),
        note: format!(
            "host-native, in-process guest memory; one request of one segment each way; \
             memcpy between the same pages{}",
            if quick { " (QUICK RUN)" } else { "" }
        ),
        value: "throughput".into(),
        sizes: "request size (one segment)".into(),
        unit: zcopy_plot::Unit::BytesPerSecond,
        series: vec![
            zcopy_plot::Series {
                name: "card COPY".into(),
                points: card_line,
            },
            zcopy_plot::Series {
                name: "memcpy".into(),
                points: memcpy_line,
            },
        ],
    };
    let svg = zcopy_plot::lines(&chart).unwrap();
    std::fs::write(dir.join("zcard-engine.svg"), svg).unwrap();
    println!("JSON and plot: target/bench/zcard-engine.json, target/bench/zcard-engine.svg");
}
