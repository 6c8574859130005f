//! zcopy-rdma-bench: the RDMA channel against perftest on the same Soft-RoCE
//! devices in the same boot (the guest's zrxe0/zrxe1 pair; make bench).
//!
//! - Bandwidth, 4 KiB ... 4 MiB: `ib_write_bw` against the channel moving
//!   the same bytes (one process sends, another receives and drops each
//!   message), in perftest's columns: `#bytes #iterations BW peak BW average
//!   MsgRate`, bandwidth in perftest's MB/sec (2^20 bytes; also the JSON's
//!   `bw_*_mb_s`). `ib_send_bw` beside them: its messages, like the
//!   channel's, each consume a receive and complete at the receiver, where
//!   `ib_write_bw`'s server learns of nothing.
//! - Latency: `ib_send_lat` and `ib_write_lat` against a channel ping-pong
//!   (one-way = half the round trip, as perftest reports, each round trip
//!   timed by the CPU's time-stamp counter as perftest times its; the
//!   channel's default ring each way, `--lat-slots`), in perftest's
//!   columns: `t_min t_max t_typical t_avg t_stdev 99% 99.9%`. perftest
//!   reports in cycles of that counter (`-C`), and both programs' counts
//!   become µs by one scale, the counter against the monotonic clock from
//!   the start of the run ([`clock`]): perftest's own calibration, a few
//!   short samples, fails under TCG noise and voids the run's figures.
//!
//! - Files: `zcopy send` / `zcopy recv` of a `--file-size` file over RDMA
//!   at each `--file-slots` slot size (the CLI's default slot count),
//!   against `ib_write_bw` at the same message size; the sender's own
//!   timing (its `--json` summary), the file and its copy in /dev/shm.
//!
//! Every comparison with `ib_write_bw` or `ib_write_lat` (bandwidth,
//! latency, files) runs `--rounds` times, the two alternating. The verdict
//! is the benches' rule (`zcopy_units::verdict`) on the rounds' ratios: met
//! or not met when the interval between their quartiles lies on one side
//! of the goal, no verdict when it lies on both. The tables show the
//! median's round and, with more than one round, a line under each lists
//! every round's ratio.
//!
//! Each bandwidth and latency row also gives the channel's counters per
//! message: credit writes, reads of the receiver's board, completion queue
//! polls. The latency runs busy-poll at both ends, as perftest does. In the
//! bandwidth runs both ends of the channel wait as it does by default
//! (spin, then sleep: `--tx-spin`, `--rx-spin`); perftest's client
//! busy-polls and its server polls nothing. Table on stdout, every
//! goal with its value and verdict, JSON and an SVG plot in `--out`. Under TCG the absolute figures are indicative: the
//! ratio to perftest is the figure.

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::{json, Value};
use xxhash_rust::xxh64::Xxh64;
use zcopy::channel::{Builder, Error, Wait};
use zcopy::rdma::{BuilderExt, LinkStats, Listener};
use zcopy_units::parse_usize;
use zcopy_units::verdict::{judge, Verdict, MIN_RUNS};

const A: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 1);
const B: Ipv4Addr = Ipv4Addr::new(169, 254, 77, 2);
/// Busy-poll rounds before sleeping: effectively always busy, like perftest.
const SPIN: u32 = 1 << 30;
/// perftest's "MB" in its MB/sec columns: 2^20 bytes (its format_factor
/// 0x100000), so the channel's bandwidth is counted in the same unit.
const PERFTEST_MB: f64 = (1u64 << 20) as f64;

/// Bandwidth in perftest's MB/sec.
fn mb_per_sec(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / PERFTEST_MB
}

#[derive(Parser, Debug)]
#[command(about = "The zcopy RDMA channel against perftest on the same rxe devices")]
struct Args {
    /// Bandwidth message sizes (K and M suffixes) [default: 4K,16K,64K,256K,1M,4M;
    /// --quick: 4K,64K].
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<String>>,
    /// Bytes moved per bandwidth size (iterations = this / size, at least 100)
    /// [default: 128M; --quick: 4M].
    #[arg(long)]
    volume: Option<String>,
    /// Latency message sizes [default: 64,4K; --quick: 64].
    #[arg(long, value_delimiter = ',')]
    lat_sizes: Option<Vec<String>>,
    /// Round trips per latency size [default: 2000; --quick: 200].
    #[arg(long)]
    lat_iters: Option<u32>,
    /// Rounds of each comparison: perftest and the channel alternate, the
    /// verdict reads the quartiles of the rounds' ratios (a verdict needs
    /// 3), and the tables show the round of the median [default: 5;
    /// --quick: 1]. perftest's own figures move by a tenth and more
    /// between runs under TCG; with 5 rounds one outlier at each end does
    /// not decide.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: Option<u32>,
    /// Slots of the bandwidth runs' channel [default: perftest's 128
    /// messages where 64 MiB allows, never fewer than
    /// `zcopy::channel::stream_slot_count`].
    #[arg(long)]
    bw_slots: Option<u32>,
    /// Slots each way of the latency ping-pong [default: the channel's
    /// default]. The receiver gives slots back every half ring, so a small
    /// ring sends a credit write every few messages.
    #[arg(long)]
    lat_slots: Option<u32>,
    /// File size of the `zcopy send` / `zcopy recv` runs (0: none).
    #[arg(long, default_value = "64M")]
    file_size: String,
    /// Slot sizes of the `zcopy send` / `zcopy recv` runs.
    #[arg(long, value_delimiter = ',', default_value = "64K,1M")]
    file_slots: Vec<String>,
    /// Slots in flight of the `zcopy send` / `zcopy recv` runs (the CLI's
    /// `--slots`) [default: the CLI's own].
    #[arg(long)]
    file_slot_count: Option<u32>,
    /// The zcopy binary (default: beside this one).
    #[arg(long)]
    zcopy: Option<PathBuf>,
    /// The receiver's busy-poll rounds before it sleeps, in the bandwidth
    /// runs (the default is the channel's own, `zcopy::channel::DEFAULT_SPIN`).
    /// perftest's ib_write_bw server polls nothing during the run; a
    /// receiver that spins on (1073741824: always busy) takes one of the
    /// guest's two vCPUs from Soft-RoCE's kernel work.
    #[arg(long, default_value_t = zcopy::channel::DEFAULT_SPIN)]
    rx_spin: u32,
    /// The sender's busy-poll rounds before it sleeps when out of slots, in
    /// the bandwidth runs (the default is the channel's own). perftest's client
    /// busy-polls its completions; a channel sender that does the same
    /// (1073741824) takes a vCPU from Soft-RoCE while it waits for slots.
    #[arg(long, default_value_t = zcopy::channel::DEFAULT_SPIN)]
    tx_spin: u32,
    /// A smoke run: the small settings above where no option sets them, its
    /// figures printed and no goal judged.
    #[arg(long)]
    quick: bool,
    /// Where the JSON and the plot go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Internal: the receiving process of the bandwidth run.
    #[arg(long, hide = true)]
    serve_bw: bool,
    /// Internal: the echoing process of the latency run.
    #[arg(long, hide = true)]
    serve_lat: Option<String>,
}

fn main() {
    let args = Args::parse();
    let r = if args.serve_bw {
        serve_bw(args.rx_spin)
    } else if let Some(spec) = &args.serve_lat {
        serve_lat(spec, args.lat_slots)
    } else {
        run(&args)
    };
    if let Err(e) = r {
        eprintln!("zcopy-rdma-bench: {e}");
        std::process::exit(1);
    }
}

/// One bandwidth row, perftest's columns (the channel's also its
/// counters).
#[derive(Debug, Clone, Copy)]
struct Bw {
    bytes: usize,
    iters: u64,
    peak: f64,
    avg: f64,
    rate: f64,
    counters: Option<LinkStats>,
    /// How busy the guest's CPUs were over the middle 80 % of the
    /// transfer (bandwidth runs).
    busy: Option<f64>,
    /// The channel's slot count (zcopy's rows).
    slots: Option<u32>,
}

/// Counters per message of a channel run, as printed and in the JSON.
fn per_message(s: &LinkStats) -> Value {
    let m = s.messages.max(1) as f64;
    json!({
        "signaled_writes_per_message": s.signaled_writes as f64 / m,
        "messages": s.messages,
        "credit_writes_per_message": s.credit_writes as f64 / m,
        "slots_per_credit_write": s.credited_by_writes as f64 / s.credit_writes.max(1) as f64,
        "board_reads_per_message": s.reads as f64 / m,
        "slots_credited_by_reads": s.credited_by_reads,
        "cq_polls_per_message": s.cq_polls as f64 / m,
        "completions_per_message": s.completions as f64 / m,
    })
}

fn counters_line(who: &str, s: &LinkStats) -> String {
    let m = s.messages.max(1) as f64;
    format!(
        "{who}: {} messages, {:.3} credit writes/msg ({:.1} slots each), {:.3} board reads/msg, \
         {:.1} CQ polls/msg, {:.2} completions/msg",
        s.messages,
        s.credit_writes as f64 / m,
        s.credited_by_writes as f64 / s.credit_writes.max(1) as f64,
        s.reads as f64 / m,
        s.cq_polls as f64 / m,
        s.completions as f64 / m
    )
}

/// One latency row, perftest's columns (µs).
#[derive(Debug, Clone, Copy)]
struct Lat {
    bytes: usize,
    iters: u64,
    min: f64,
    max: f64,
    typical: f64,
    avg: f64,
    stdev: f64,
    p99: f64,
    p999: f64,
    /// The pinging end's counters: its sender's, its receiver's.
    counters: Option<(LinkStats, LinkStats)>,
}

/// One file transfer: the sender's figures.
#[derive(Debug, Clone, Copy)]
struct FileRun {
    slot: usize,
    bytes: u64,
    seconds: f64,
    /// In perftest's MB/sec.
    bw: f64,
    /// The file work of each end alone, no RDMA (s): the sender's reads
    /// into a slot and checksum, the receiver's checksum and writes.
    send_work: f64,
    recv_work: f64,
    /// When `zcopy send` exited.
    ended: Instant,
    /// The guest's CPUs' busy share during the transfer (ib_write_bw's
    /// of the same bytes is its [`Bw`]'s).
    busy: Option<f64>,
}

/// Samples the guest's CPU time (/proc/stat's first line: every CPU,
/// user and kernel, where Soft-RoCE's copies are) every 10 ms in a
/// thread, to tell how busy the CPUs were during a transfer.
struct CpuSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    samples: std::sync::Arc<std::sync::Mutex<Vec<(Instant, u64, u64)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CpuSampler {
    fn start() -> CpuSampler {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some((busy, total)) = cpu_ticks() {
                    v.lock().unwrap().push((Instant::now(), busy, total));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        CpuSampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    /// The share of the CPUs' time that was busy from `from` to `to`
    /// (the samples nearest inside), or None with fewer than two samples
    /// there.
    fn busy(&self, from: Instant, to: Instant) -> Option<f64> {
        let v = self.samples.lock().unwrap();
        let inside: Vec<_> = v.iter().filter(|(t, ..)| *t >= from && *t <= to).collect();
        let (first, last) = (inside.first()?, inside.last()?);
        let total = last.2.checked_sub(first.2).filter(|&t| t > 0)?;
        Some((last.1 - first.1) as f64 / total as f64)
    }
}

impl Drop for CpuSampler {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// (busy, all) ticks of every CPU so far: all but idle and iowait, and all.
fn cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal (guest time is in user).
    let [user, nice, system, idle, iowait, irq, softirq, steal, ..] = ticks[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// The middle 80 % of the `secs` before `ended`: where a transfer that
/// took `secs` and ended when its sender exited ran, clear of its start
/// and its end.
fn transfer_window(ended: Instant, secs: f64) -> (Instant, Instant) {
    let d = Duration::from_secs_f64(secs);
    (ended - d.mul_f64(0.9), ended - d.mul_f64(0.1))
}

fn run(args: &Args) -> Result<(), String> {
    // The latency figures' scale runs from here.
    clock();
    let q = args.quick;
    let list =
        |given: &Option<Vec<String>>, full: &str, quick: &str| -> Result<Vec<usize>, String> {
            match given {
                Some(v) => v.iter().map(|s| parse_usize(s)).collect(),
                None => (if q { quick } else { full })
                    .split(',')
                    .map(parse_usize)
                    .collect(),
            }
        };
    let sizes = list(&args.sizes, "4K,16K,64K,256K,1M,4M", "4K,64K")?;
    let volume = parse_usize(
        args.volume
            .as_deref()
            .unwrap_or(if q { "4M" } else { "128M" }),
    )?;
    let lat_sizes = list(&args.lat_sizes, "64,4K", "64")?;
    let lat_iters = args.lat_iters.unwrap_or(if q { 200 } else { 2000 });
    let rounds = args.rounds.unwrap_or(if q { 1 } else { 5 });
    let mut spread = Vec::new();
    let mtu = zcopy::rdma::devices()
        .map_err(|e| e.to_string())?
        .iter()
        .find(|d| d.name == "zrxe0")
        .and_then(|d| d.ports.first().map(|p| p.active_mtu))
        .ok_or("no zrxe0: run in the zcopy guest (qemu/run.sh sets up the Soft-RoCE pair)")?;
    println!(
        "== RDMA bandwidth: zcopy channel vs ib_write_bw (zrxe1 -> zrxe0, IB MTU {mtu}, zcopy's sender {}, receiver {})",
        spin_mode(args.tx_spin),
        spin_mode(args.rx_spin)
    );
    let (mut bw, mut sends) = (Vec::new(), Vec::new());
    for &size in &sizes {
        let iters = (volume / size).max(100) as u64;
        // A reference beside the goal's, once: its failure leaves a gap,
        // not the run.
        let send = perftest_bw("ib_send_bw", size, iters)
            .inspect_err(|e| eprintln!("{e}: ib_send_bw not measured at {size} B"))
            .ok();
        let runs = measured(rounds, &format!("bandwidth at {size} B"), || {
            let cpu = CpuSampler::start();
            let Some((perf, ended)) = baseline(perftest_bw_timed("ib_write_bw", size, iters))?
            else {
                return Ok(None);
            };
            let secs = (iters * size as u64) as f64 / PERFTEST_MB / perf.avg;
            let (a, b) = transfer_window(ended, secs);
            let perf = Bw {
                busy: cpu.busy(a, b),
                ..perf
            };
            Ok(Some((perf, zcopy_bw(size, iters, args, &cpu)?)))
        })?;
        let (pair, ratios) = median_round(runs, Better::Higher, |(p, z)| z.avg / p.avg);
        spread.push(("bandwidth", size, "ib_write_bw", ratios));
        bw.push(pair);
        sends.push(send);
    }
    print_bw(&bw, &sends);
    print_rounds(&spread, "bandwidth");
    for (p, z) in &bw {
        if let Some(c) = &z.counters {
            println!(" {:>9} B: {}", z.bytes, counters_line("sender", c));
        }
        println!(
            " {:>9} B: the guest's CPUs busy (all of them, user and kernel; the middle 80 % of each run): ib_write_bw {}, zcopy {} ({} slots)",
            z.bytes,
            busy_pct(p.busy),
            busy_pct(z.busy),
            z.slots.unwrap_or(0)
        );
    }
    println!();
    println!(
        "== RDMA latency: zcopy channel ping-pong vs ib_send_lat and ib_write_lat (one-way, usec; {} slots each way)",
        args.lat_slots.unwrap_or(zcopy::channel::DEFAULT_SLOT_COUNT)
    );
    let mut lat = Vec::new();
    for &size in &lat_sizes {
        let send = perftest_lat("ib_send_lat", size, lat_iters)?;
        let runs = measured(rounds, &format!("latency at {size} B"), || {
            let Some(write) = baseline(perftest_lat("ib_write_lat", size, lat_iters))? else {
                return Ok(None);
            };
            Ok(Some((write, zcopy_lat(size, lat_iters, args.lat_slots)?)))
        })?;
        let ((write, ours), ratios) =
            median_round(runs, Better::Lower, |(w, z)| z.typical / w.typical);
        spread.push(("latency", size, "ib_write_lat", ratios));
        lat.push((send, write, ours));
    }
    print_lat(&lat);
    print_rounds(&spread, "latency");
    for (_, _, z) in &lat {
        if let Some((t, r)) = &z.counters {
            println!(" {:>7} B: {}", z.bytes, counters_line("ping sender", t));
            println!(" {:>7} B: {}", z.bytes, counters_line("pong receiver", r));
        }
    }
    let file_size = if args.quick {
        0
    } else {
        parse_usize(&args.file_size)?
    };
    let mut files = Vec::new();
    let zcopy = match &args.zcopy {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("zcopy"),
    };
    if file_size > 0 && !zcopy.is_file() {
        println!();
        println!(
            "== Files: skipped, no zcopy binary at {} (cargo build --release -p zcopy-cli, or --zcopy)",
            zcopy.display()
        );
    } else if file_size > 0 {
        println!();
        println!(
            "== Files: zcopy send / zcopy recv of {} MiB over RDMA vs ib_write_bw at the slot size",
            file_size >> 20
        );
        for s in &args.file_slots {
            let slot = parse_usize(s)?;
            // ib_write_bw moving the file's bytes, the CPUs sampled
            // through both runs.
            let round = || -> Result<Option<(Bw, FileRun)>, String> {
                let cpu = CpuSampler::start();
                let iters = (file_size / slot).max(1) as u64;
                let Some((perf, perf_ended)) =
                    baseline(perftest_bw_timed("ib_write_bw", slot, iters))?
                else {
                    return Ok(None);
                };
                let run = zcopy_file(&zcopy, file_size, slot, args.file_slot_count)?;
                let perf_secs = file_size as f64 / PERFTEST_MB / perf.avg;
                let (a, b) = transfer_window(perf_ended, perf_secs);
                let perf = Bw {
                    busy: cpu.busy(a, b),
                    ..perf
                };
                let (a, b) = transfer_window(run.ended, run.seconds);
                let busy = cpu.busy(a, b);
                Ok(Some((perf, FileRun { busy, ..run })))
            };
            let runs = measured(rounds, &format!("files at {slot} B"), round)?;
            let ((perf, run), ratios) = median_round(runs, Better::Higher, |(p, f)| f.bw / p.avg);
            let file_rounds = [("file", slot, "ib_write_bw", ratios)];
            println!(
                " slot {:>8}: zcopy send {:.2} MB/sec ({:.3} s), ib_write_bw {:.2} MB/sec ({:.3} s): {:.1}%",
                slot,
                run.bw,
                run.seconds,
                perf.avg,
                run.bytes as f64 / PERFTEST_MB / perf.avg,
                100.0 * run.bw / perf.avg
            );
            println!(
                " {:>13}  the file work alone, no RDMA: the sender's read + checksum (XXH64) {:.3} s, the receiver's checksum + write {:.3} s",
                "", run.send_work, run.recv_work
            );
            println!(
                " {:>13}  the guest's CPUs busy during the transfer (all of them, user and kernel; the middle 80 % of each run): ib_write_bw {}, zcopy send/recv {}",
                "",
                busy_pct(perf.busy),
                busy_pct(run.busy)
            );
            print_rounds(&file_rounds, "file");
            spread.extend(file_rounds);
            files.push((perf, run));
        }
    }
    report(
        &args.out,
        mtu,
        (args.tx_spin, args.rx_spin),
        &bw,
        &sends,
        &lat,
        &files,
        &spread,
        rounds,
        q,
    )
}

/// Which way a ratio of zcopy to its baseline is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Better {
    /// A higher ratio is better (bandwidth).
    Higher,
    /// A lower ratio is better (latency).
    Lower,
}

/// A CPUs' busy share as printed.
fn busy_pct(b: Option<f64>) -> String {
    b.map_or("not measured".into(), |b| format!("{:.0} %", 100.0 * b))
}

/// The round whose ratio is the median of `runs` (of an even count, the
/// middle one worse for zcopy), and every round's ratio in the order they
/// ran. `runs` is not empty.
fn median_round<T>(mut runs: Vec<T>, better: Better, ratio: impl Fn(&T) -> f64) -> (T, Vec<f64>) {
    let ratios: Vec<f64> = runs.iter().map(&ratio).collect();
    let mut order: Vec<usize> = (0..runs.len()).collect();
    // Worst for zcopy first, so the lower middle is the worse one.
    order.sort_by(|&a, &b| match better {
        Better::Higher => ratios[a].total_cmp(&ratios[b]),
        Better::Lower => ratios[b].total_cmp(&ratios[a]),
    });
    let mid = order[(order.len() - 1) / 2];
    (runs.swap_remove(mid), ratios)
}

/// A baseline's figures; None when perftest ran and gave none in all its
/// tries (said on stderr): that round of the comparison is left out, and
/// the verdict reads the rounds that were measured. A perftest that could
/// not be run or read fails the bench.
fn baseline<T>(run: Result<T, PerftestError>) -> Result<Option<T>, String> {
    match run {
        Ok(v) => Ok(Some(v)),
        Err(PerftestError::NoResult(e)) => {
            eprintln!("{e}\nthis round is left out");
            Ok(None)
        }
        Err(PerftestError::Broken(e)) => Err(e),
    }
}

/// Runs `rounds` rounds of `what` and keeps those whose baseline ran
/// (`round` gives None for the others); an error when none did, or at
/// once when a round fails.
fn measured<T>(
    rounds: u32,
    what: &str,
    mut round: impl FnMut() -> Result<Option<T>, String>,
) -> Result<Vec<T>, String> {
    let mut kept = Vec::new();
    for _ in 0..rounds {
        kept.extend(round()?);
    }
    if kept.is_empty() {
        return Err(format!(
            "{what}: perftest gave no result in any of {rounds} rounds (above)"
        ));
    }
    if kept.len() < rounds as usize {
        eprintln!("{what}: {} of {rounds} rounds measured", kept.len());
    }
    Ok(kept)
}

/// What one comparison's rounds gave: its kind, size, baseline, and
/// zcopy's ratio to the baseline in each round.
type Rounds = (&'static str, usize, &'static str, Vec<f64>);

/// The rounds' ratios of `kind`, when there was more than one.
fn print_rounds(spread: &[Rounds], kind: &str) {
    for (k, size, base, ratios) in spread.iter().filter(|r| r.0 == kind) {
        if ratios.len() < 2 {
            continue;
        }
        let list: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        println!(
            " {k} {size} B, zcopy / {base} in each round: {} (the row above is the median's)",
            list.join(", ")
        );
    }
}

/// `zcopy recv` in the background, `zcopy send` of a `size`-byte file in
/// `slot`-byte slots; the sender's summary.
fn zcopy_file(
    zcopy: &Path,
    size: usize,
    slot: usize,
    count: Option<u32>,
) -> Result<FileRun, String> {
    let dir = Path::new("/dev/shm");
    let src = dir.join(format!("zcopy-rdma-bench-{}.src", std::process::id()));
    let dst = dir.join(format!("zcopy-rdma-bench-{}.dst", std::process::id()));
    let _gone = RemoveOnDrop([src.clone(), dst.clone()]);
    let mut data = vec![0u8; size];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i.wrapping_mul(0x9e37_79b9) >> 13) as u8;
    }
    std::fs::write(&src, &data).map_err(|e| format!("{}: {e}", src.display()))?;
    drop(data);
    let listen = SocketAddr::from((A, 7479));
    let mut recv = Command::new(zcopy)
        .args([
            "recv",
            "--via",
            "rdma",
            "--timeout",
            "60",
            "--json",
            "--listen",
        ])
        .arg(listen.to_string())
        .arg(&dst)
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "{}: {e} (build it: cargo build --release -p zcopy-cli)",
                zcopy.display()
            )
        })?;
    // The receiver needs a moment to listen.
    std::thread::sleep(Duration::from_millis(1500));
    let mut send = Command::new(zcopy);
    send.arg("send");
    if let Some(n) = count {
        send.arg("--slots").arg(n.to_string());
    }
    let out = send
        .args(["--via", "rdma", "--json", "--timeout", "60", "--from"])
        .arg(B.to_string())
        .arg("--to")
        .arg(listen.to_string())
        .arg("--slot-size")
        .arg(slot.to_string())
        .arg(&src)
        .output()
        .map_err(|e| format!("{}: {e}", zcopy.display()))?;
    let ended = Instant::now();
    let _ = wait_or_kill(&mut recv, Duration::from_secs(60));
    if !out.status.success() {
        return Err(format!(
            "zcopy send: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let (send_work, recv_work) = file_work(&src, &dst, slot)?;
    let v: Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("zcopy send --json: {e}"))?;
    let seconds = v["seconds"]
        .as_f64()
        .ok_or("zcopy send --json: no seconds")?;
    let bytes = v["bytes"].as_u64().ok_or("zcopy send --json: no bytes")?;
    Ok(FileRun {
        slot,
        bytes,
        seconds,
        bw: mb_per_sec(bytes, seconds),
        send_work,
        recv_work,
        ended,
        busy: None,
    })
}

/// Files removed when this goes, however the run ends.
struct RemoveOnDrop<const N: usize>([PathBuf; N]);

impl<const N: usize> Drop for RemoveOnDrop<N> {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// What `zcopy send` and `zcopy recv` do besides RDMA, each alone and
/// timed (s, wall clock): read `src` in `slot`-byte pieces into one buffer
/// and checksum each (XXH64, as `zcopy send` does); checksum each piece
/// and write it to `dst`.
fn file_work(src: &Path, dst: &Path, slot: usize) -> Result<(f64, f64), String> {
    use std::io::{Read, Write};
    fn e(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
        move |e| format!("{}: {e}", p.display())
    }
    let mut buf = vec![0u8; slot];
    let mut file = std::fs::File::open(src).map_err(e(src))?;
    let (t, mut sum) = (Instant::now(), Xxh64::new(0));
    loop {
        let n = file.read(&mut buf).map_err(e(src))?;
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
    }
    let send = t.elapsed().as_secs_f64();
    let data = std::fs::read(src).map_err(e(src))?;
    let mut out = std::fs::File::create(dst).map_err(e(dst))?;
    let (t, mut back) = (Instant::now(), Xxh64::new(0));
    for piece in data.chunks(slot) {
        back.update(piece);
        out.write_all(piece).map_err(e(dst))?;
    }
    let recv = t.elapsed().as_secs_f64();
    if back.digest() != sum.digest() {
        return Err("the file work's two checksums differ".into());
    }
    Ok((send, recv))
}

/// The bandwidth table: per size ib_write_bw, ib_send_bw (whose every
/// message, like the channel's, consumes a receive and completes at the
/// server) and the channel, with the channel's ratio to each.
fn print_bw(rows: &[(Bw, Bw)], sends: &[Option<Bw>]) {
    println!(
        " {:<10} {:>9} {:>12} {:>17} {:>16} {:>15}   {:>11} {:>11}",
        "",
        "#bytes",
        "#iterations",
        "BW peak[MB/sec]",
        "BW average[MB/sec]",
        "MsgRate[Mpps]",
        "zcopy/write",
        "zcopy/send"
    );
    for ((p, z), s) in rows.iter().zip(sends) {
        let lines = [
            ("ib_write_bw", Some(p)),
            ("ib_send_bw", s.as_ref()),
            ("zcopy", Some(z)),
        ];
        for (name, r) in lines {
            let Some(r) = r else {
                println!(" {name:<10} {:>9} {:>12} not measured", p.bytes, p.iters);
                continue;
            };
            let ratio = if name == "zcopy" {
                let send = s
                    .as_ref()
                    .map_or("—".into(), |s| format!("{:.1}%", 100.0 * z.avg / s.avg));
                format!("{:>10.1}% {send:>11}", 100.0 * z.avg / p.avg)
            } else {
                String::new()
            };
            println!(
                " {:<10} {:>9} {:>12} {:>17.2} {:>18.2} {:>15.6}   {}",
                name, r.bytes, r.iters, r.peak, r.avg, r.rate, ratio
            );
        }
    }
}

fn print_lat(rows: &[(Lat, Lat, Lat)]) {
    println!(
        " {:<12} {:>7} {:>11} {:>8} {:>8} {:>10} {:>8} {:>8} {:>8} {:>8}   {:>13}",
        "",
        "#bytes",
        "#iterations",
        "t_min",
        "t_max",
        "t_typical",
        "t_avg",
        "t_stdev",
        "99%",
        "99.9%",
        "typ vs write"
    );
    for (s, w, z) in rows {
        for (name, r) in [("ib_send_lat", s), ("ib_write_lat", w), ("zcopy", z)] {
            let ratio = if name == "zcopy" {
                format!("{:>12.2}x", z.typical / w.typical)
            } else {
                String::new()
            };
            // perftest gives no standard deviation in cycles.
            let stdev = if r.stdev.is_nan() {
                "n/a".to_string()
            } else {
                format!("{:.2}", r.stdev)
            };
            println!(
                " {:<12} {:>7} {:>11} {:>8.2} {:>8.2} {:>10.2} {:>8.2} {:>8} {:>8.2} {:>8.2}   {}",
                name, r.bytes, r.iters, r.min, r.max, r.typical, r.avg, stdev, r.p99, r.p999, ratio
            );
        }
    }
}

/// What perftest prints when it cannot calibrate its cycle counter against
/// the clock (under TCG the samples can be that noisy); its figures are then
/// 0.00.
const UNCALIBRATED: &str = "Correlation coefficient r^2";

/// Runs of one perftest measurement: for a server slow to listen, or a clock
/// calibration that failed.
const PERFTEST_TRIES: u64 = 3;

/// What one perftest client run gave.
#[derive(Debug, PartialEq)]
enum Run {
    /// The numbers under the `#bytes` header.
    Row(Vec<f64>),
    /// The clock calibration failed: the figures mean nothing; run it again.
    Uncalibrated,
    /// No result line (the server was not listening yet, or a real failure).
    Nothing,
}

/// What a perftest client run gave. A run in cycles (`cycles`: `-C`)
/// uses no calibration of perftest's, so a failed one (perftest 6.x
/// calibrates anyway, and says so) voids nothing.
fn classify(stdout: &str, stderr: &str, cycles: bool) -> Result<Run, String> {
    if !cycles && (stdout.contains(UNCALIBRATED) || stderr.contains(UNCALIBRATED)) {
        return Ok(Run::Uncalibrated);
    }
    result_row(stdout).map_or(Ok(Run::Nothing), |row| row.map(Run::Row))
}

/// The TCP port perftest's server listens on for its client (its default).
const PERFTEST_PORT: u16 = 18515;

/// Whether a TCP socket listens on `port` (IPv4 or IPv6) per /proc/net.
fn is_listening(port: u16) -> bool {
    // Columns: sl local_address rem_address st ...; st 0A is LISTEN.
    let want = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f).is_ok_and(|t| {
            t.lines().skip(1).any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.len() > 3 && c[1].ends_with(&want) && c[3] == "0A"
            })
        })
    })
}

/// Waits until a socket listens on `port`, at most `limit`; whether one does.
fn wait_listening(port: u16, limit: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < limit {
        if is_listening(port) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Runs a perftest server on zrxe0 and its client on zrxe1; the client's
/// result line (the numbers under the `#bytes` header). A run whose clock
/// calibration failed is run again (said on stderr), up to PERFTEST_TRIES
/// runs in all.
fn perftest(tool: &str, extra: &[String]) -> Result<Vec<f64>, PerftestError> {
    perftest_timed(tool, extra).map(|(v, _)| v)
}

/// Why a perftest measurement gave no figures.
#[derive(Debug, PartialEq)]
enum PerftestError {
    /// It ran every try and none gave a usable result (its clock
    /// calibration failed, its server never listened): a round of a
    /// comparison can go without it ([`baseline`]).
    NoResult(String),
    /// It could not be run, or what it printed could not be read: the
    /// bench cannot go on.
    Broken(String),
}

impl From<String> for PerftestError {
    fn from(e: String) -> PerftestError {
        PerftestError::Broken(e)
    }
}

impl std::fmt::Display for PerftestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PerftestError::NoResult(e) | PerftestError::Broken(e) => f.write_str(e),
        }
    }
}

impl From<PerftestError> for String {
    fn from(e: PerftestError) -> String {
        e.to_string()
    }
}

/// [`perftest`], and when its client exited.
fn perftest_timed(tool: &str, extra: &[String]) -> Result<(Vec<f64>, Instant), PerftestError> {
    let common = |dev: &str| -> Vec<String> {
        let mut v: Vec<String> = ["-d", dev, "-x", "1", "-F"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend_from_slice(extra);
        v
    };
    let mut last = String::new();
    for attempt in 1..=PERFTEST_TRIES {
        let mut server = Command::new(tool)
            .args(common("zrxe0"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{tool}: {e} (perftest is in the guest toolbox)"))?;
        // The server needs a moment to listen, seconds on a loaded TCG
        // guest: wait until its port is open (and a moment more, for the
        // rest of its setup to follow the listen).
        let listening = wait_listening(PERFTEST_PORT, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(if listening {
            200
        } else {
            1000 * attempt
        }));
        let mut args = common("zrxe1");
        args.push(A.to_string());
        let (text, err, ended) = run_client(tool, &args)?;
        let _ = wait_or_kill(&mut server, Duration::from_secs(30));
        let cycles = extra.iter().any(|a| a == "-C");
        match classify(&text, &err, cycles).map_err(|e| format!("{tool}: {e}"))? {
            Run::Row(v) => return Ok((v, ended)),
            Run::Uncalibrated => eprintln!(
                "{tool} {}: clock calibration failed under emulation noise (r^2 < 0.9), \
                 figures void; run {attempt} of {PERFTEST_TRIES}",
                extra.join(" ")
            ),
            Run::Nothing => {}
        }
        last = format!("{text}{err}");
    }
    Err(PerftestError::NoResult(format!(
        "{tool}: no usable result in {PERFTEST_TRIES} runs; the last said:\n{last}"
    )))
}

/// Runs a perftest client to its end: its stdout, its stderr, and when
/// its result row (the line under `#bytes`) came, which is when the
/// transfer ended, before the client's own teardown (or its exit, if no
/// row came). Its stdout is line-buffered (`stdbuf -oL`, coreutils), or a
/// pipe would hold the row until the exit.
fn run_client(tool: &str, args: &[String]) -> Result<(String, String, Instant), String> {
    let mut child = Command::new("stdbuf")
        .arg("-oL")
        .arg(tool)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("stdbuf -oL {tool}: {e} (stdbuf is coreutils')"))?;
    let mut stderr = child.stderr.take().expect("piped");
    let errs = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut v);
        v
    });
    let (mut text, mut header, mut row) = (String::new(), false, None);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line.map_err(|e| format!("{tool}: {e}"))?;
        if header && row.is_none() && !line.trim().is_empty() {
            row = Some(Instant::now());
        }
        header |= line.trim_start().starts_with("#bytes");
        text.push_str(&line);
        text.push('\n');
    }
    child.wait().map_err(|e| format!("{tool}: {e}"))?;
    let ended = row.unwrap_or_else(Instant::now);
    Ok((text, errs.join().unwrap_or_default(), ended))
}

/// The numbers under perftest's `#bytes` header line.
fn result_row(text: &str) -> Option<Result<Vec<f64>, String>> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("#bytes"));
    lines.next()?;
    let row = lines.next()?;
    Some(
        row.split_whitespace()
            .map(|v| v.parse::<f64>().map_err(|_| format!("cannot read {row:?}")))
            .collect(),
    )
}

fn wait_or_kill(child: &mut Child, limit: Duration) -> std::io::Result<()> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait().map(|_| ())
}

/// `tool` (ib_write_bw, ib_send_bw) moving `iters` messages of `size`.
fn perftest_bw(tool: &str, size: usize, iters: u64) -> Result<Bw, PerftestError> {
    perftest_bw_timed(tool, size, iters).map(|(bw, _)| bw)
}

/// [`perftest_bw`], and when its client exited.
fn perftest_bw_timed(tool: &str, size: usize, iters: u64) -> Result<(Bw, Instant), PerftestError> {
    let (v, ended) = perftest_timed(
        tool,
        &[
            "-s".into(),
            size.to_string(),
            "-n".into(),
            iters.to_string(),
        ],
    )?;
    match v[..] {
        [bytes, iters, peak, avg, rate, ..] => Ok((
            Bw {
                bytes: bytes as usize,
                iters: iters as u64,
                peak,
                avg,
                rate,
                counters: None,
                busy: None,
                slots: None,
            },
            ended,
        )),
        _ => Err(format!("{tool}: unexpected columns {v:?}").into()),
    }
}

/// Whether perftest's cycles are [`ticks`]: on x86_64 both read the
/// time-stamp counter. Elsewhere perftest reads another counter and
/// reports in its own µs.
const PERFTEST_CYCLES: bool = cfg!(target_arch = "x86_64");

/// `tool` (ib_write_lat, ib_send_lat): `iters` round trips of `size`,
/// reported in cycles of the time-stamp counter (`-C`, so perftest's own
/// calibration decides nothing) and turned into µs by [`clock`].
fn perftest_lat(tool: &str, size: usize, iters: u32) -> Result<Lat, PerftestError> {
    let v = perftest(tool, &lat_args(size, iters, PERFTEST_CYCLES))?;
    let scale = if PERFTEST_CYCLES {
        clock().us_per_tick()
    } else {
        1.0
    };
    lat_from_cycles(&v, scale).map_err(|e| format!("{tool}: {e}").into())
}

/// A perftest latency run's own arguments: `size`, `iters`, and `-C`
/// when it is to report `cycles`.
fn lat_args(size: usize, iters: u32, cycles: bool) -> Vec<String> {
    let mut v: Vec<String> = if cycles { vec!["-C".into()] } else { vec![] };
    v.extend([
        "-s".into(),
        size.to_string(),
        "-n".into(),
        iters.to_string(),
    ]);
    v
}

/// A perftest latency row in cycles (`-C`), in µs at `us_per_cycle`. Its
/// standard deviation in cycles is printed as `-nan` by perftest 6.x; it
/// stays NaN (the table prints it, the JSON gives null).
fn lat_from_cycles(v: &[f64], us_per_cycle: f64) -> Result<Lat, String> {
    match *v {
        [bytes, iters, min, max, typical, avg, stdev, p99, p999, ..] => Ok(Lat {
            bytes: bytes as usize,
            iters: iters as u64,
            min: min * us_per_cycle,
            max: max * us_per_cycle,
            typical: typical * us_per_cycle,
            avg: avg * us_per_cycle,
            stdev: stdev * us_per_cycle,
            p99: p99 * us_per_cycle,
            p999: p999 * us_per_cycle,
            counters: None,
        }),
        _ => Err(format!("unexpected columns {v:?}")),
    }
}

/// The other process of a run: this binary with a hidden flag.
fn spawn_self(args: &[String]) -> Result<(Child, SocketAddr), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("the serving process said {line:?}"))?;
    Ok((child, addr))
}

/// Slots per channel: perftest's window (128 messages), and never fewer
/// than a stream's ([`zcopy::channel::stream_slot_count`]: 1024 at 4 KiB,
/// 256 at 16 KiB), since a slot comes back later than a write's
/// acknowledgement; within 64 MiB (at least 8 slots).
fn window(size: usize) -> u32 {
    let cap = ((64usize << 20) / size.max(1)).max(8) as u32;
    let perftest = cap.min(128);
    perftest.max(zcopy::channel::stream_slot_count(size).min(cap))
}

/// The receiving process of a bandwidth run (the sender decides the
/// channel's shape): receives and drops until the sender closes.
fn serve_bw(spin: u32) -> Result<(), String> {
    let l = Listener::bind((A, 0).into()).map_err(|e| e.to_string())?;
    println!("listening {}", l.local_addr().ok_or("no address")?);
    let rx = l
        .accept(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    rx.set_spin(spin);
    loop {
        match rx.recv() {
            Ok(s) => drop(s),
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// How long the last messages of a bandwidth run may take to come back.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Waits until the receiver has given back every slot. A receiver that
/// died or broke the link gives none back: the loan's wait notices it
/// (`PeerDied`), and the wait is bounded.
fn drain(tx: &zcopy::rdma::Sender, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + DRAIN_LIMIT;
    // Each slot loaned as it comes back (unsent: they go back when
    // dropped), so the wait is the channel's own: it spins, then sleeps,
    // and leaves the vCPUs to Soft-RoCE while the last window drains.
    let mut held = Vec::new();
    loop {
        // Counted before the loan: a dead receiver's loan reclaims them.
        let out = tx.in_flight();
        if out == 0 {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tx.loan_with(Wait::Timeout(left)) {
            Ok(loan) => held.push(loan),
            Err(Error::Timeout) => {
                return Err(format!(
                    "{out} messages not given back within {} s",
                    DRAIN_LIMIT.as_secs()
                ))
            }
            Err(e) => {
                let status = child.try_wait().map_err(|e| e.to_string())?;
                return Err(format!(
                    "the receiving process ({}) left {out} messages not given back: {e}",
                    status.map_or("still running".into(), |s| s.to_string()),
                ));
            }
        }
    }
    Ok(())
}

/// The channel moving `iters` messages of `size`; the CPUs' busy share
/// during the transfer is read from `cpu`, sampling meanwhile.
fn zcopy_bw(size: usize, iters: u64, args: &Args, cpu: &CpuSampler) -> Result<Bw, String> {
    let (rx_spin, tx_spin) = (args.rx_spin, args.tx_spin);
    let count = args.bw_slots.unwrap_or_else(|| window(size));
    let (mut child, addr) =
        spawn_self(&["--serve-bw".into(), "--rx-spin".into(), rx_spin.to_string()])?;
    let tx = Builder::new()
        .slot_size(size)
        .slot_count(count)
        .connect_rdma(Some(IpAddr::V4(B)), addr)
        .map_err(|e| e.to_string())?;
    tx.set_spin(tx_spin);
    let start = Instant::now();
    let sent = (0..iters).try_for_each(|_| {
        let loan = tx.loan().map_err(|e| e.to_string())?;
        loan.send(size).map_err(|e| e.to_string())
    });
    if let Err(e) = sent.and_then(|()| drain(&tx, &mut child)) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let ended = Instant::now();
    let secs = (ended - start).as_secs_f64();
    let counters = tx.stats();
    drop(tx);
    wait_or_kill(&mut child, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    let avg = mb_per_sec(iters * size as u64, secs);
    // Not sampled per completion as perftest does: the peak column
    // repeats the average.
    Ok(Bw {
        bytes: size,
        iters,
        peak: avg,
        avg,
        rate: iters as f64 / secs / 1e6,
        counters: Some(counters),
        slots: Some(count),
        busy: {
            let (a, b) = transfer_window(ended, secs);
            cpu.busy(a, b)
        },
    })
}

/// How an end of the bandwidth runs waits, given its spin.
fn spin_mode(spin: u32) -> String {
    if spin == SPIN {
        "busy-polling".to_string()
    } else {
        format!("spins {spin} rounds, then sleeps")
    }
}

/// A channel builder of `size`-byte slots, `slots` of them (None: the
/// channel's default count).
fn lat_builder(size: usize, slots: Option<u32>) -> Builder {
    let b = Builder::new().slot_size(size);
    match slots {
        Some(n) => b.slot_count(n),
        None => b,
    }
}

fn serve_lat(spec: &str, slots: Option<u32>) -> Result<(), String> {
    let size: usize = spec.parse().map_err(|_| "--serve-lat SIZE")?;
    let l = Listener::bind((A, 0).into()).map_err(|e| e.to_string())?;
    println!("listening {}", l.local_addr().ok_or("no address")?);
    let rx = l
        .accept(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    // The pong channel goes back to the pinging process's listener, whose
    // port comes in the first message.
    let first = rx.recv().map_err(|e| e.to_string())?;
    let port = u16::from_le_bytes([first[0], first[1]]);
    drop(first);
    let tx = lat_builder(size, slots)
        .connect_rdma(Some(IpAddr::V4(A)), (B, port).into())
        .map_err(|e| e.to_string())?;
    rx.set_spin(SPIN);
    tx.set_spin(SPIN);
    loop {
        let ping = match rx.recv() {
            Ok(s) => s,
            Err(Error::Closed) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let pong = tx.loan().map_err(|e| e.to_string())?;
        let len = ping.len();
        drop(ping);
        pong.send(len).map_err(|e| e.to_string())?;
    }
}

fn zcopy_lat(size: usize, iters: u32, slots: Option<u32>) -> Result<Lat, String> {
    let mut args = vec!["--serve-lat".into(), size.max(2).to_string()];
    if let Some(n) = slots {
        args.extend(["--lat-slots".into(), n.to_string()]);
    }
    let (mut child, addr) = spawn_self(&args)?;
    let back = Listener::bind((B, 0).into()).map_err(|e| e.to_string())?;
    let port = back.local_addr().ok_or("no address")?.port();
    let tx = lat_builder(size.max(2), slots)
        .connect_rdma(Some(IpAddr::V4(B)), addr)
        .map_err(|e| e.to_string())?;
    let mut hello = tx.loan().map_err(|e| e.to_string())?;
    hello.as_mut_slice()[..2].copy_from_slice(&port.to_le_bytes());
    hello.send(2).map_err(|e| e.to_string())?;
    let rx = back
        .accept(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    tx.set_spin(SPIN);
    rx.set_spin(SPIN);
    let mut rtts = Vec::with_capacity(iters as usize);
    for i in 0..iters + iters / 10 {
        let t = ticks();
        let ping = tx.loan().map_err(|e| e.to_string())?;
        ping.send(size).map_err(|e| e.to_string())?;
        let pong = rx.recv().map_err(|e| e.to_string())?;
        let rtt = ticks().wrapping_sub(t);
        drop(pong);
        // The first tenth warms up, as perftest's does.
        if i >= iters / 10 {
            rtts.push(rtt);
        }
    }
    let us_per_tick = clock().us_per_tick();
    let one_way = rtts.iter().map(|&t| t as f64 * us_per_tick / 2.0).collect();
    let counters = (tx.stats(), rx.stats());
    drop((tx, rx));
    wait_or_kill(&mut child, Duration::from_secs(30)).map_err(|e| e.to_string())?;
    Ok(Lat {
        counters: Some(counters),
        ..lat_stats(size, one_way)
    })
}

/// A reading of the CPU's time-stamp counter, as perftest times each
/// round trip: no system call, where the guest's vDSO cannot read the
/// clock and every `Instant::now` is one (on other CPUs, nanoseconds of
/// the monotonic clock).
fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: RDTSC reads a counter; it touches no memory and every
    // x86_64 CPU has it.
    unsafe {
        std::arch::x86_64::_rdtsc()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// The scale of [`ticks`], calibrated against the monotonic clock from
/// its start to each reading.
struct Ticks {
    ticks: u64,
    at: Instant,
}

impl Ticks {
    fn start() -> Ticks {
        Ticks {
            ticks: ticks(),
            at: Instant::now(),
        }
    }

    /// Microseconds per tick, from the start to now.
    fn us_per_tick(&self) -> f64 {
        let us = self.at.elapsed().as_secs_f64() * 1e6;
        us / ticks().wrapping_sub(self.ticks).max(1) as f64
    }
}

/// The scale every latency figure of the run is converted with, the
/// channel's and perftest's alike: started with the run (`run` reads it
/// first), so by the latency runs it spans seconds to minutes and the
/// clock reads at its ends weigh nothing.
fn clock() -> &'static Ticks {
    static CLOCK: std::sync::OnceLock<Ticks> = std::sync::OnceLock::new();
    CLOCK.get_or_init(Ticks::start)
}

fn lat_stats(size: usize, mut v: Vec<f64>) -> Lat {
    v.sort_by(f64::total_cmp);
    let n = v.len().max(1) as f64;
    let avg = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - avg).powi(2)).sum::<f64>() / n;
    let pct = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    Lat {
        bytes: size,
        iters: v.len() as u64,
        min: v[0],
        max: v[v.len() - 1],
        typical: pct(0.5),
        avg,
        stdev: var.sqrt(),
        p99: pct(0.99),
        p999: pct(0.999),
        counters: None,
    }
}

/// One size's figures for a goal: the size, the median round's ratio and
/// every round's ratio.
type SizeRounds<'a> = (usize, f64, &'a [f64]);

/// One goal over several sizes: each size's rounds must pass `ok`, judged
/// by the benches' rule ([`zcopy_units::verdict`]) on the quartiles of
/// their ratios. Not met when one measured size is not; met only when
/// every size of `sizes` was measured and met; otherwise no verdict (the
/// rounds of a size fall on both sides of the goal, too few rounds, a
/// size left out, a quick run), and the `verdict` says which.
fn goal(
    name: &str,
    sizes: &[usize],
    measured: &[SizeRounds],
    ok: fn(f64) -> bool,
    quick: bool,
) -> Value {
    let latency = name.contains("latency");
    let shown = |r: f64| {
        if latency {
            format!("{r:.2}×")
        } else {
            format!("{:.0} %", r * 100.0)
        }
    };
    // The worst size: the lowest bandwidth ratio, the highest latency one.
    let sign = if latency { -1.0 } else { 1.0 };
    let worst = measured
        .iter()
        .map(|&(size, r, _)| (size, r))
        .min_by(|a, b| (sign * a.1).total_cmp(&(sign * b.1)));
    let every = sizes.iter().all(|s| measured.iter().any(|m| m.0 == *s));
    let each: Vec<(usize, Verdict)> = measured
        .iter()
        .map(|&(size, _, rounds)| (size, judge(rounds, ok)))
        .collect();
    let overall = each.iter().fold(Verdict::Met, |all, &(_, v)| all.and(v));
    let straddle: Vec<String> = each
        .iter()
        .filter_map(|&(size, v)| match v {
            Verdict::Straddles(lo, hi) => Some(format!(
                "{} ({})",
                zcopy_plot::size(size as f64),
                if latency {
                    format!("{lo:.2}–{hi:.2}×")
                } else {
                    format!("{:.0}–{:.0} %", lo * 100.0, hi * 100.0)
                }
            )),
            _ => None,
        })
        .collect();
    let (met, verdict) = match overall {
        _ if quick => (None, "not judged (a quick run)".to_string()),
        Verdict::NotMet => (Some(false), "NOT met".into()),
        Verdict::Met if every => (Some(true), "met".into()),
        Verdict::Met => (None, "not judged (not every size measured)".into()),
        Verdict::Straddles(..) => (
            None,
            format!(
                "no verdict: the rounds fall on both sides of it at {}",
                straddle.join(", ")
            ),
        ),
        Verdict::TooFew(n) => (
            None,
            format!(
                "no verdict: {n} round{} per size, a verdict needs {MIN_RUNS}",
                if n == 1 { "" } else { "s" }
            ),
        ),
    };
    let value = if measured.is_empty() {
        "not measured in this run".to_string()
    } else {
        measured
            .iter()
            .map(|&(size, r, _)| format!("{} {}", zcopy_plot::size(size as f64), shown(r)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    json!({
        "goal": name,
        "value": value,
        "worst_ratio": worst.map(|w| w.1),
        "worst_size": worst.map(|w| w.0),
        "every_size_measured": every,
        "met": met,
        "verdict": verdict,
    })
}

/// Each comparison's rounds for the JSON: every comparison ran `rounds`
/// rounds, and those whose perftest gave nothing are left out of its
/// ratios (`measured`): `left_out` counts them.
fn rounds_json(spread: &[Rounds], rounds: u32) -> Vec<Value> {
    spread
        .iter()
        .map(|(kind, size, base, ratios)| {
            json!({
                "kind": kind, "bytes": size, "baseline": base, "ratios": ratios,
                "left_out": (rounds as usize).saturating_sub(ratios.len())
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn report(
    out: &Path,
    mtu: u32,
    (tx_spin, rx_spin): (u32, u32),
    bw: &[(Bw, Bw)],
    sends: &[Option<Bw>],
    lat: &[(Lat, Lat, Lat)],
    files: &[(Bw, FileRun)],
    spread: &[Rounds],
    rounds: u32,
    quick: bool,
) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let bw_json = |b: &Bw| json!({"bytes": b.bytes, "iterations": b.iters, "bw_peak_mb_s": b.peak, "bw_avg_mb_s": b.avg, "msg_rate_mpps": b.rate, "counters": b.counters.as_ref().map(per_message), "cpu_busy": b.busy, "slots": b.slots});
    let lat_json = |l: &Lat| json!({"bytes": l.bytes, "iterations": l.iters, "t_min_us": l.min, "t_max_us": l.max, "t_typical_us": l.typical, "t_avg_us": l.avg, "t_stdev_us": l.stdev, "p99_us": l.p99, "p999_us": l.p999, "counters": l.counters.as_ref().map(|(t, r)| json!({"ping_sender": per_message(t), "pong_receiver": per_message(r)}))});
    // Each size's median ratio (the round the tables show) and its rounds.
    let rounds_of = |kind: &str, size: usize| -> &[f64] {
        spread
            .iter()
            .find(|r| r.0 == kind && r.1 == size)
            .map_or(&[], |r| &r.3[..])
    };
    let bw_rounds: Vec<SizeRounds> = bw
        .iter()
        .map(|(p, z)| (p.bytes, z.avg / p.avg, rounds_of("bandwidth", p.bytes)))
        .collect();
    let lat_rounds: Vec<SizeRounds> = lat
        .iter()
        .map(|(_, w, z)| {
            (
                w.bytes,
                z.typical / w.typical,
                rounds_of("latency", w.bytes),
            )
        })
        .collect();
    let mut goals: Vec<Value> = vec![
        goal(
            "bandwidth ≥ 95 % of ib_write_bw at every size from 4 KiB to 4 MiB",
            &[4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20],
            &bw_rounds,
            |r| r >= 0.95,
            quick,
        ),
        goal(
            "typical latency ≤ 1.1 × ib_write_lat at 64 B and 4 KiB",
            &[64, 4 << 10],
            &lat_rounds,
            |r| r <= 1.1,
            quick,
        ),
    ];
    if !files.is_empty() {
        let slots: Vec<usize> = files.iter().map(|(_, f)| f.slot).collect();
        let file_rounds: Vec<SizeRounds> = files
            .iter()
            .map(|(p, f)| (f.slot, f.bw / p.avg, rounds_of("file", f.slot)))
            .collect();
        goals.push(goal(
            "zcopy send/recv of a file ≥ 95 % of ib_write_bw at the slot size",
            &slots,
            &file_rounds,
            |r| r >= 0.95,
            quick,
        ));
    }
    let doc = json!({
        "bench": "rdma",
        "quick": quick,
        "ib_mtu": mtu,
        "bandwidth_sender_spin": tx_spin,
        "bandwidth_receiver_spin": rx_spin,
        "devices": ["zrxe1 (sender)", "zrxe0 (receiver)"],
        "bandwidth": bw.iter().zip(sends).map(|((p, z), s)| json!({"ib_write_bw": bw_json(p), "ib_send_bw": s.as_ref().map(bw_json), "zcopy": bw_json(z), "ratio": z.avg / p.avg, "ratio_to_send": s.as_ref().map(|s| z.avg / s.avg)})).collect::<Vec<_>>(),
        "latency": lat.iter().map(|(s, w, z)| json!({"ib_send_lat": lat_json(s), "ib_write_lat": lat_json(w), "zcopy": lat_json(z), "ratio_vs_write_lat": z.typical / w.typical, "ratio_vs_send_lat": z.typical / s.typical})).collect::<Vec<_>>(),
        "files": files.iter().map(|(p, f)| json!({"slot": f.slot, "bytes": f.bytes, "seconds": f.seconds, "zcopy_send_mb_s": f.bw, "ib_write_bw": bw_json(p), "ratio": f.bw / p.avg, "send_file_work_s": f.send_work, "recv_file_work_s": f.recv_work, "cpu_busy": f.busy})).collect::<Vec<_>>(),
        "goals": goals,
        "rounds": rounds_json(spread, rounds),
    });
    let json_path = out.join("rdma.json");
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&doc).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", json_path.display()))?;
    let chart = zcopy_plot::Lines {
        title: "RDMA bandwidth on Soft-RoCE, same boot and devices (higher is better)".into(),
        note: format!(
            "zcopy: one sender ({}), one receiver ({}); IB MTU {mtu}; the channel's \
             average beside ib_write_bw's and ib_send_bw's",
            spin_mode(tx_spin),
            spin_mode(rx_spin)
        ),
        value: "bandwidth, average".into(),
        sizes: "message size".into(),
        unit: zcopy_plot::Unit::BinaryBytesPerSecond,
        series: vec![
            zcopy_plot::Series {
                name: "ib_write_bw".into(),
                points: bw
                    .iter()
                    .map(|(p, _)| (p.bytes as f64, p.avg * PERFTEST_MB))
                    .collect(),
            },
            zcopy_plot::Series {
                name: "ib_send_bw".into(),
                points: sends
                    .iter()
                    .flatten()
                    .map(|s| (s.bytes as f64, s.avg * PERFTEST_MB))
                    .collect(),
            },
            zcopy_plot::Series {
                name: "zcopy RDMA channel".into(),
                points: bw
                    .iter()
                    .map(|(_, z)| (z.bytes as f64, z.avg * PERFTEST_MB))
                    .collect(),
            },
        ],
    };
    let svg = zcopy_plot::lines(&chart).map_err(|e| e.to_string())?;
    let svg_path = out.join("rdma-bandwidth.svg");
    std::fs::write(&svg_path, svg).map_err(|e| format!("{}: {e}", svg_path.display()))?;
    println!();
    println!("goals (against perftest in this run):");
    for g in &goals {
        println!(
            "  {}: {} -> {}",
            g["goal"].as_str().unwrap_or(""),
            g["value"].as_str().unwrap_or(""),
            g["verdict"].as_str().unwrap_or("")
        );
    }
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_scale_to_the_time_that_passed() {
        let clock = Ticks::start();
        let t = ticks();
        std::thread::sleep(Duration::from_millis(50));
        let us = ticks().wrapping_sub(t) as f64 * clock.us_per_tick();
        assert!(
            (45_000.0..100_000.0).contains(&us),
            "50 ms timed as {us} µs"
        );
    }

    #[test]
    fn the_median_round_is_the_middle_ratio_and_every_ratio_is_kept() {
        for better in [Better::Higher, Better::Lower] {
            let (pick, all) = median_round(vec![3.0, 1.0, 2.0], better, |&r| r);
            assert_eq!((pick, all), (2.0, vec![3.0, 1.0, 2.0]));
            assert_eq!(median_round(vec![7.0], better, |&r| r).0, 7.0);
        }
        // Of two, the one worse for zcopy.
        let two = || vec![(0, 0.9), (1, 0.8)];
        assert_eq!(median_round(two(), Better::Higher, |&(_, r)| r).0 .0, 1);
        assert_eq!(median_round(two(), Better::Lower, |&(_, r)| r).0 .0, 0);
    }

    #[test]
    fn the_window_is_a_streams_within_64_mib() {
        let w = |k: usize| window(k << 10);
        assert_eq!(
            [w(4), w(16), w(64), w(256), w(1024), w(4096), w(8192)],
            [1024, 256, 128, 128, 64, 16, 8]
        );
    }

    #[test]
    fn bandwidth_is_counted_in_perftests_megabytes() {
        // ib_write_bw reports 1 MiB moved in one second as 1.00 MB/sec.
        assert_eq!(mb_per_sec(1 << 20, 1.0), 1.0);
        assert_eq!(mb_per_sec(128 << 20, 2.0), 64.0);
    }

    #[test]
    fn a_listening_port_is_seen_and_a_closed_one_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(is_listening(port));
        assert!(wait_listening(port, Duration::from_secs(1)));
        drop(l);
        assert!(!is_listening(port));
    }

    /// A size whose three rounds all gave `r`.
    fn steady(size: usize, r: f64) -> (usize, f64, Vec<f64>) {
        (size, r, vec![r, r, r])
    }

    fn judged(name: &str, sizes: &[usize], m: &[(usize, f64, Vec<f64>)], quick: bool) -> Value {
        let ok: fn(f64) -> bool = if name.contains("latency") {
            |x| x <= 1.1
        } else {
            |x| x >= 0.95
        };
        let m: Vec<SizeRounds> = m.iter().map(|(s, r, v)| (*s, *r, &v[..])).collect();
        goal(name, sizes, &m, ok, quick)
    }

    #[test]
    fn a_goal_over_sizes_is_judged_only_on_what_was_measured() {
        let every = [4096, 65536];
        let bw = |m: &[(usize, f64, Vec<f64>)], quick| judged("bandwidth", &every, m, quick);
        let g = bw(&[steady(4096, 0.69), steady(65536, 0.97)], false);
        assert_eq!(g["met"], false, "one size fails: not met");
        assert_eq!(g["verdict"], "NOT met");
        assert_eq!(
            (g["worst_size"].as_u64(), g["worst_ratio"].as_f64()),
            (Some(4096), Some(0.69))
        );
        assert_eq!(g["value"], "4 KiB 69 %, 64 KiB 97 %");
        let g = bw(&[steady(4096, 0.99), steady(65536, 0.97)], false);
        assert_eq!(
            (g["met"].as_bool(), g["verdict"].as_str()),
            (Some(true), Some("met"))
        );
        let g = bw(&[steady(4096, 0.99)], false);
        assert!(g["met"].is_null(), "a size left out: not judged");
        assert_eq!(g["verdict"], "not judged (not every size measured)");
        let g = bw(&[steady(4096, 0.5), steady(65536, 0.5)], true);
        assert!(g["met"].is_null(), "quick: not judged");
        assert_eq!(g["verdict"], "not judged (a quick run)");
        let lat = judged("latency", &[64], &[steady(64, 1.58)], false);
        assert_eq!(
            (lat["met"].as_bool(), lat["value"].as_str()),
            (Some(false), Some("64 B 1.58×"))
        );
    }

    #[test]
    fn rounds_on_both_sides_of_a_goal_give_no_verdict() {
        let every = [4096, 65536];
        // Medians that meet it (1.02 and 0.97), rounds that fall on both
        // sides: the spread decides, so there is no verdict.
        let g = judged(
            "bandwidth",
            &every,
            &[
                (4096, 1.02, vec![0.93, 1.37, 1.02]),
                (65536, 0.97, vec![0.97, 0.90, 1.10]),
            ],
            false,
        );
        assert!(g["met"].is_null(), "{g}");
        assert_eq!(
            g["verdict"],
            "no verdict: the rounds fall on both sides of it at 4 KiB (93–137 %), \
             64 KiB (90–110 %)"
        );
        // A size whose every round fails decides, whatever the others do.
        let g = judged(
            "bandwidth",
            &every,
            &[
                (4096, 1.02, vec![0.93, 1.37, 1.02]),
                (65536, 0.86, vec![0.86, 0.80, 0.90]),
            ],
            false,
        );
        assert_eq!(g["met"], false, "{g}");
        let lat = judged(
            "latency",
            &[64],
            &[(64, 1.14, vec![1.19, 1.07, 1.14])],
            false,
        );
        assert!(lat["met"].is_null(), "{lat}");
        assert_eq!(
            lat["verdict"],
            "no verdict: the rounds fall on both sides of it at 64 B (1.07–1.19×)"
        );
        let one = judged("latency", &[64], &[(64, 1.5, vec![1.5])], false);
        assert_eq!(
            (one["met"].as_bool(), one["verdict"].as_str()),
            (
                None,
                Some("no verdict: 1 round per size, a verdict needs 3")
            )
        );
    }

    const ROW: &str = " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]\n \
                       65536      500              812.50             811.93               0.012991\n";

    #[test]
    fn the_json_counts_the_rounds_left_out() {
        let spread: Vec<Rounds> = vec![
            ("bandwidth", 4096, "ib_write_bw", vec![1.0, 0.9, 1.1]),
            ("file", 65536, "ib_write_bw", vec![0.97]),
        ];
        let j = rounds_json(&spread, 3);
        assert_eq!(j[0]["left_out"], 0);
        assert_eq!(j[1]["left_out"], 2);
        assert_eq!(j[1]["ratios"], json!([0.97]));
        assert_eq!(j[1]["kind"], "file");
    }

    #[test]
    fn rounds_without_a_baseline_are_left_out_and_none_left_fails() {
        // `measured` over rounds that give these results in turn, and how
        // many rounds it ran.
        fn over(results: Vec<Result<Option<u8>, String>>) -> (Result<Vec<u8>, String>, usize) {
            let n = results.len() as u32;
            let mut it = results.into_iter();
            let mut ran = 0;
            let r = measured(n, "files at 65536 B", || {
                ran += 1;
                it.next().unwrap()
            });
            (r, ran)
        }
        assert_eq!(
            over(vec![Ok(Some(1)), Ok(None), Ok(Some(3))]),
            (Ok(vec![1, 3]), 3)
        );
        assert_eq!(over(vec![Ok(Some(2))]), (Ok(vec![2]), 1));
        let (r, _) = over(vec![Ok(None), Ok(None)]);
        let e = r.unwrap_err();
        assert!(
            e.contains("files at 65536 B") && e.contains("2 rounds"),
            "{e}"
        );
        // A round that fails ends the comparison there.
        let (r, ran) = over(vec![
            Ok(Some(1)),
            Err("zcopy send: refused".into()),
            Ok(Some(3)),
        ]);
        assert_eq!((r, ran), (Err("zcopy send: refused".into()), 2));
        let none = PerftestError::NoResult("ib_write_bw: no usable result".into());
        assert_eq!(baseline::<u8>(Err(none)), Ok(None));
        let broken = PerftestError::Broken("ib_write_bw: No such file".into());
        assert_eq!(
            baseline::<u8>(Err(broken)),
            Err("ib_write_bw: No such file".into())
        );
        assert_eq!(baseline::<u8>(Ok(4)), Ok(Some(4)));
    }

    #[test]
    fn a_failed_clock_calibration_is_recognised_and_never_a_figure() {
        let noisy = format!(
            "Correlation coefficient r^2: 0.785514 < 0.9\n{}",
            ROW.replace("812.50", "0.00")
        );
        assert_eq!(classify(&noisy, "", false), Ok(Run::Uncalibrated));
        assert_eq!(
            classify(ROW, "Correlation coefficient r^2: 0.5 < 0.9\n", false),
            Ok(Run::Uncalibrated),
            "on stderr too"
        );
        assert_eq!(
            classify(ROW, "", false),
            Ok(Run::Row(vec![65536.0, 500.0, 812.5, 811.93, 0.012991]))
        );
        assert_eq!(
            classify("Couldn't connect to 169.254.77.1\n", "", false),
            Ok(Run::Nothing)
        );
    }

    #[test]
    fn a_latency_row_in_cycles_becomes_microseconds_by_the_runs_scale() {
        // ib_write_lat -C (perftest 6.24): the header still says usec.
        let out = " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    \
                   t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] \n \
                   64      2000          189605.00        18084622.50      259025.00  \t       \
                   420947.31     \t-nan   \t\t4676425.00 \t\t14804179.00\n";
        // perftest 6.24 calibrates even then, and may say it failed: the
        // cycles do not depend on it.
        let Ok(Run::Row(v)) = classify(out, "Correlation coefficient r^2: 0.6 < 0.9\n", true)
        else {
            panic!("no row in {out:?}");
        };
        // A 2.5 GHz counter: 400 ps per cycle.
        let l = lat_from_cycles(&v, 0.0004).unwrap();
        assert_eq!((l.bytes, l.iters), (64, 2000));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(l.min, 75.842), "{l:?}");
        assert!(close(l.typical, 103.61), "{l:?}");
        assert!(close(l.p999, 5921.6716), "{l:?}");
        assert!(l.stdev.is_nan(), "perftest's -nan stays unknown: {l:?}");
        assert!(lat_from_cycles(&v[..5], 0.0004).is_err());
    }

    #[test]
    fn perftest_latency_runs_report_cycles() {
        // Without -C perftest calibrates its counter itself, and under
        // TCG that fails often enough to void whole latency runs. The
        // arguments perftest_lat passes, on the CPU the guest runs:
        #[cfg(target_arch = "x86_64")]
        assert_eq!(
            lat_args(64, 2000, PERFTEST_CYCLES),
            ["-C", "-s", "64", "-n", "2000"]
        );
        assert_eq!(lat_args(64, 2000, false), ["-s", "64", "-n", "2000"]);
    }
}
