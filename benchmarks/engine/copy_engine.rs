//! The card's engine against memcpy, host-native, in-process guest memory.
//!
//! `cargo bench -p zcopy-bench --bench copy_engine` (or `make bench`): COPY
//! throughput for 4 KiB … 4 MiB segments beside plain memcpy of the same
//! sizes in the same run (alternating rounds; thread CPU time, so that a
//! loaded machine's other processes do not count), CPU time per small
//! request (rounds, taking turns), and CRC32C throughput; then the goals,
//! each judged by the benches' rule on its rounds, with the quartiles it
//! read and the verdict. Prints a table and writes JSON and a plot of
//! the COPY figures to target/bench/ (zcard-engine.json, zcard-engine.svg).
//! `-- small` runs the small requests alone (for a profiler); `-- --out DIR`
//! writes the JSON and the plot into DIR instead (`make demo` does).

use std::hint::black_box;
use std::time::{Duration, Instant};

use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use zcard_vhost::storage::Storage;
use zcard_vhost::virtio_zcard::{Op, ReqHeader, ReqStatus, REQ_HEADER_SIZE, REQ_STATUS_SIZE};
use zcard_vhost::zcard::{Card, Limits, Outcome};
use zcopy_units::verdict::{judge, quartiles, Verdict, MIN_RUNS};

const MEM: usize = 64 << 20;
const SRC: u64 = 0x10_0000;
const DST: u64 = 0x210_0000;
/// Where the headers lie: each request made ready its own, 0x100 apart
/// below STATUS, so that several can be ready before any is timed.
const HDR: u64 = 0x1000;
const STATUS: u64 = 0x2000;

fn chain(header: u64, len: u32, src: bool, dst: bool) -> Vec<Descriptor> {
    let next = VRING_DESC_F_NEXT as u16;
    let write = VRING_DESC_F_WRITE as u16;
    let mut d = vec![Descriptor::new(header, REQ_HEADER_SIZE, next, 0)];
    if src {
        d.push(Descriptor::new(SRC, len, next, 0));
    }
    if dst {
        d.push(Descriptor::new(DST, len, next | write, 0));
    }
    d.push(Descriptor::new(STATUS, REQ_STATUS_SIZE, write, 0));
    d
}

/// Rounds of (card, memcpy) per COPY size, alternating, and rounds of the
/// small requests, taking turns. Many short rounds rather than a few long
/// ones: a burst of another process's work on a shared machine spoils a
/// round or two, and the verdict reads the rounds' quartiles (the
/// benches' rule, `zcopy_units::verdict`), which leave them out.
const ROUNDS: usize = 15;

/// Wall time of one round (a tenth of it with `ZCOPY_BENCH_QUICK`).
const ROUND: Duration = Duration::from_millis(20);

/// Fixed cost a NOP may take (goal).
const NOP_GOAL_US: f64 = 0.050;

/// COPY against memcpy: (smallest size, least ratio) goals, each holding
/// from its size up to the next one's.
const COPY_GOALS: [(u32, f64); 3] = [(4 << 10, 0.40), (16 << 10, 0.70), (256 << 10, 0.90)];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Calls between two looks at the clock, at most: a clock read costs
/// about as much as a small request, so reading it after every call
/// would add the same fixed cost to the card's and memcpy's figures and
/// pull their ratio towards 1.
const MAX_BATCH: u64 = 1024;

/// Runs `f` repeatedly for about `budget` of wall time, returning this
/// thread's CPU seconds per call: time the scheduler gives to other
/// processes on a loaded machine does not count (their cache damage does).
/// The calls go in batches that double up to [`MAX_BATCH`], the clock read
/// once per batch.
fn time<F: FnMut()>(budget: Duration, mut f: F) -> f64 {
    f();
    let (mut n, mut batch) = (0u64, 1u64);
    let start = Instant::now();
    let cpu = thread_cpu();
    while start.elapsed() < budget {
        for _ in 0..batch {
            f();
        }
        n += batch;
        batch = (batch * 2).min(MAX_BATCH);
    }
    (thread_cpu() - cpu) / n as f64
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
    let args: Vec<String> = std::env::args().collect();
    let small_only = args.iter().any(|a| a == "small");
    let dir = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(
            || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench"),
            std::path::PathBuf::from,
        );
    let budget = if quick { ROUND / 10 } else { ROUND };
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM)]).unwrap();
    let card = Card::new(Limits::default(), Storage::temporary(16 << 20).unwrap(), 0).unwrap();
    let (mem, card) = (&mem, &card);
    let headers = std::cell::Cell::new(HDR);
    let run = |op: Op, len: u32, src: bool, dst: bool| {
        let header = headers.get();
        assert!(header < STATUS, "more requests made ready than header room");
        headers.set(header + 0x100);
        let h = ReqHeader {
            opcode: op as u8,
            length: u64::from(len),
            ..Default::default()
        };
        mem.write_obj(h, GuestAddress(header)).unwrap();
        let descs = chain(header, len, src, dst);
        // The chain is iterated in place, as the vhost-user path iterates a
        // DescriptorChain: the harness allocates nothing per request.
        move || {
            let out = card.process(mem, descs.iter().copied(), 0);
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
    let mut ratios = Vec::new();
    for shift in [12, 14, 16, 18, 20, 22] {
        if small_only {
            break;
        }
        let len = 1u32 << shift;
        let mut req = run(Op::Copy, len, true, true);
        let n = len as usize;
        let mut memcpy = || {
            // SAFETY: SRC..SRC+4 MiB and DST..DST+4 MiB lie inside the 64 MiB
            // mapping, do not overlap, and nothing else touches them meanwhile.
            unsafe { std::ptr::copy_nonoverlapping(black_box(src_p), dst_p, n) };
            black_box(dst_p);
        };
        let (mut cards, mut memcpys) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            cards.push(time(budget, &mut req));
            memcpys.push(time(budget, &mut memcpy));
        }
        // Each round's ratio against the memcpy round beside it: both saw
        // the same state of the machine.
        let paired: Vec<f64> = memcpys.iter().zip(&cards).map(|(m, c)| m / c).collect();
        let (t_card, t_memcpy) = (median(cards), median(memcpys));
        let gbs = |t: f64| f64::from(len) / t / 1e9;
        card_line.push((f64::from(len), f64::from(len) / t_card));
        memcpy_line.push((f64::from(len), f64::from(len) / t_memcpy));
        let ratio = median(paired.clone());
        ratios.push((len, paired));
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

    // The small requests take turns round by round, as card and memcpy do
    // above; the table gives each one's median and the NOP's verdict reads
    // its rounds' quartiles.
    let smalls = [
        ("nop", Op::Nop, 0, false, false),
        ("copy 64 B", Op::Copy, 64, true, true),
        ("fill 64 B", Op::Fill, 64, false, true),
        ("crc32c 64 B", Op::Crc32c, 64, true, false),
    ];
    let mut reqs: Vec<_> = smalls
        .iter()
        .map(|&(_, op, len, src, dst)| run(op, len, src, dst))
        .collect();
    let mut times = vec![Vec::new(); smalls.len()];
    for _ in 0..ROUNDS {
        for (req, t) in reqs.iter_mut().zip(&mut times) {
            t.push(time(budget, req));
        }
    }
    let mut small = Vec::new();
    let mut nop_rounds = None;
    for (((name, ..), t), req) in smalls.iter().zip(times).zip(&mut reqs) {
        // A status no request writes, so that Ok can only be this one's.
        let unset = ReqStatus {
            status: u8::MAX,
            ..Default::default()
        };
        mem.write_obj(unset, GuestAddress(STATUS)).unwrap();
        req();
        let status: ReqStatus = mem.read_obj(GuestAddress(STATUS)).unwrap();
        assert_eq!(status.status, 0, "{name} did not complete with Ok");
        let t_us: Vec<f64> = t.iter().map(|x| x * 1e6).collect();
        let (q1, q3) = quartiles(&t_us).expect("ROUNDS > 0");
        let us = median(t_us.clone());
        println!("{name:>14}: {us:.3} µs CPU per request (quartiles {q1:.3}–{q3:.3})");
        small.push(format!(
            r#"{{"request":"{name}","cpu_us":{us:.4},"q1_us":{q1:.4},"q3_us":{q3:.4}}}"#
        ));
        nop_rounds.get_or_insert(t_us);
    }
    if small_only {
        return;
    }

    let len = 1u32 << 20;
    let mut req = run(Op::Crc32c, len, true, false);
    let t = time(budget, &mut req);
    let crc_gbs = f64::from(len) / t / 1e9;
    println!("{:>14}: {crc_gbs:.2} GB/s (1 MiB requests)", "crc32c");
    let status: ReqStatus = mem.read_obj(GuestAddress(STATUS)).unwrap();
    assert_eq!(status.status, 0);

    let mut goals = Vec::new();
    println!("\ngoals (against memcpy measured in this run):");
    // Every goal by the benches' rule on this run's rounds; a quick run
    // is a smoke run, as the other benches' are: its figures, no verdict.
    let mut goal = |name: String, value: String, verdict: Verdict| {
        let (said, met) = match verdict {
            _ if quick => ("not judged (a quick run)".to_owned(), "null"),
            Verdict::Met => ("met".to_owned(), "true"),
            Verdict::NotMet => ("NOT met".to_owned(), "false"),
            Verdict::Straddles(..) => (
                "no verdict: the rounds lie on both sides".to_owned(),
                "null",
            ),
            Verdict::TooFew(n) => (
                format!("no verdict: {n} rounds, a verdict needs {MIN_RUNS}"),
                "null",
            ),
        };
        println!("  {name:<48} {value:<22} {said}");
        goals.push(format!(
            r#"{{"goal":"{name}","value":"{value}","met":{met},"verdict":"{said}"}}"#
        ));
    };
    if let Some(t_us) = nop_rounds {
        let (q1, q3) = quartiles(&t_us).expect("ROUNDS > 0");
        goal(
            format!("NOP fixed cost ≤ {:.0} ns", NOP_GOAL_US * 1e3),
            format!("{:.0}–{:.0} ns", q1 * 1e3, q3 * 1e3),
            judge(&t_us, |us| us <= NOP_GOAL_US),
        );
    }
    for (i, &(from, least)) in COPY_GOALS.iter().enumerate() {
        let upto = COPY_GOALS.get(i + 1).map_or(u32::MAX, |g| g.0);
        let held: Vec<&(u32, Vec<f64>)> = ratios
            .iter()
            .filter(|(len, _)| (from..upto).contains(len))
            .collect();
        let sizes: Vec<String> = held
            .iter()
            .map(|r| zcopy_plot::size(f64::from(r.0)))
            .collect();
        let range = if upto == u32::MAX {
            format!("from {} up", zcopy_plot::size(f64::from(from)))
        } else {
            format!("at {}", sizes.join(" and "))
        };
        // Every size must meet it.
        let judged: Vec<(u32, Verdict, (f64, f64))> = held
            .iter()
            .filter_map(|(len, r)| Some((*len, judge(r, |x| x >= least), quartiles(r)?)))
            .collect();
        let verdict = match judged.len() {
            0 => Verdict::TooFew(0),
            _ => judged.iter().map(|j| j.1).fold(Verdict::Met, Verdict::and),
        };
        // The value is the size that decides the verdict: one not met,
        // else one with no verdict, else the one whose lower quartile is
        // least.
        let rank = |v: Verdict| match v {
            Verdict::NotMet => 0,
            Verdict::Straddles(..) | Verdict::TooFew(_) => 1,
            Verdict::Met => 2,
        };
        let worst = judged
            .iter()
            .min_by(|a, b| rank(a.1).cmp(&rank(b.1)).then(a.2 .0.total_cmp(&b.2 .0)))
            .map(|&(len, _, q)| (len, q));
        let value = worst.map_or("no rounds".to_owned(), |(len, (q1, q3))| {
            format!(
                "{:.0}–{:.0} % at {}",
                q1 * 100.0,
                q3 * 100.0,
                zcopy_plot::size(f64::from(len))
            )
        });
        goal(
            format!("COPY ≥ {:.0} % of memcpy {range}", least * 100.0),
            value,
            verdict,
        );
    }
    let json = format!(
        "{{\"bench\":\"zcard-engine\",\"quick\":{quick},\"copy\":[{}],\"small_requests\":[{}],\"crc32c_gbps\":{crc_gbs:.3},\"goals\":[{}]}}\n",
        rows.join(","),
        small.join(","),
        goals.join(",")
    );
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
    println!(
        "JSON and plot: {}, {}",
        dir.join("zcard-engine.json").display(),
        dir.join("zcard-engine.svg").display()
    );
}
