//! `zcard-vfio`: the zcard driven from user space through VFIO.
//!
//! ```text
//! zcard-vfio list                       cards, their driver and IOMMU group
//! zcard-vfio bind [--bdf B]             hand the card to vfio-pci
//! zcard-vfio unbind [--bdf B]           give it back to virtio-pci (and zcard.ko)
//! zcard-vfio selftest [--poll] [...]    every op on every queue, data checked
//! zcard-vfio stream [--seconds N] [...] COPYs with data checked until stopped
//! zcard-vfio bench [--seconds N] [--json FILE]
//!                                       4 KiB COPY at depth 1 and 32, polled and with interrupts
//! ```
//!
//! Root only (VFIO, hugepages, /proc/self/pagemap). Exit status: 0 done,
//! 1 failed, 2 usage.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use zcard_vfio::selftest::{op_suite, pattern};
use zcard_vfio::sysfs::Sysfs;
use zcard_vfio::{Card, Options, Request};

#[derive(Parser)]
#[command(
    name = "zcard-vfio",
    version,
    about = "The zcard driven from user space through VFIO"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Cards, their driver and IOMMU group.
    List,
    /// Hands the card to vfio-pci (its IOMMU group must hold it alone).
    Bind(Which),
    /// Gives the card back to its kernel driver (virtio-pci).
    Unbind(Which),
    /// Every operation on every queue, data checked.
    Selftest(Open),
    /// COPYs with data checked, `--depth` in flight (at most an eighth of
    /// the queue size), until stopped or `--seconds` pass.
    Stream {
        #[command(flatten)]
        open: Open,
        /// Stop after this many seconds (0: never).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Requests in flight.
        #[arg(long, default_value_t = 8)]
        depth: usize,
    },
    /// 4 KiB COPY at queue depth 1 and 32 (a batch, one doorbell, all
    /// completions waited for, as zcard-bench does through zcard.ko),
    /// polled and with interrupts: ops/s and per-op latency.
    Bench {
        #[command(flatten)]
        which: Which,
        /// Seconds per depth and mode.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
        seconds: u64,
        /// Also write the results as JSON here.
        #[arg(long)]
        json: Option<std::path::PathBuf>,
    },
}

#[derive(Args)]
struct Which {
    /// PCI address (default: the first card).
    #[arg(long)]
    bdf: Option<String>,
}

#[derive(Args)]
struct Open {
    #[command(flatten)]
    which: Which,
    /// Poll the used rings instead of sleeping on the MSI-X eventfd.
    #[arg(long)]
    poll: bool,
    /// Do not negotiate VIRTIO_RING_F_EVENT_IDX.
    #[arg(long)]
    no_event_idx: bool,
    /// Largest queue size to use (a COPY takes 4 descriptors).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u16).range(4..=32768))]
    queue_size: u16,
}

impl Open {
    fn options(&self) -> Options {
        Options {
            bdf: self.which.bdf.clone(),
            queue_size: self.queue_size,
            interrupts: !self.poll,
            event_idx: !self.no_event_idx,
            ..Options::default()
        }
    }
}

fn list() -> Result<(), String> {
    let cards = Sysfs::default().cards().map_err(|e| e.to_string())?;
    if cards.is_empty() {
        return Err("no zcard on the PCI bus".into());
    }
    for c in cards {
        let group = c.iommu_group.map_or("none".to_string(), |g| g.to_string());
        println!(
            "{} driver={} iommu_group={group}",
            c.bdf,
            c.driver.as_deref().unwrap_or("none")
        );
    }
    Ok(())
}

fn rebind(which: &Which, to_vfio: bool) -> Result<(), String> {
    let s = Sysfs::default();
    let card = s.find(which.bdf.as_deref()).map_err(|e| e.to_string())?;
    let now = if to_vfio {
        s.bind_vfio(&card)
    } else {
        s.unbind_vfio(&card)
    }
    .map_err(|e| e.to_string())?;
    println!(
        "{} driver={}",
        now.bdf,
        now.driver.as_deref().unwrap_or("none")
    );
    Ok(())
}

fn selftest(open: &Open) -> Result<(), String> {
    let card = Card::open(&open.options()).map_err(|e| e.to_string())?;
    let mode = if open.poll { "polled" } else { "interrupts" };
    for q in 0..card.num_queues() {
        op_suite(&card, q).map_err(|e| e.to_string())?;
        println!(
            "queue {q}: every op ok ({mode}, queue size {})",
            card.queue_size(q).map_err(|e| e.to_string())?
        );
    }
    Ok(())
}

fn stream(open: &Open, seconds: u64, depth: usize) -> Result<(), String> {
    let e = |e: zcard_vfio::Error| e.to_string();
    let card = Card::open(&open.options()).map_err(e)?;
    let len = 64 << 10;
    // A copy takes 4 descriptors, more when a buffer spans two hugepages.
    let room = usize::from(card.queue_size(0).map_err(e)?) / 8;
    let depth = depth.clamp(1, room.max(1));
    let pairs: Vec<_> = (0..depth)
        .map(|i| {
            let (s, d) = (card.alloc(len)?, card.alloc(len)?);
            s.write(0, &pattern(len, i as u8))?;
            Ok((s, d))
        })
        .collect::<Result<_, zcard_vfio::Error>>()
        .map_err(e)?;
    let reqs: Vec<_> = pairs
        .iter()
        .enumerate()
        .map(|(i, (s, d))| Request::copy(s.all(), d.all()).user_data(i as u64))
        .collect();
    card.submit(0, &reqs).map_err(e)?;
    let start = Instant::now();
    let mut done = 0u64;
    loop {
        let c = card.wait(0, Duration::from_secs(10)).map_err(e)?;
        let i = c.user_data as usize;
        if !c.is_ok() || pairs[i].1.to_vec() != pattern(len, i as u8) {
            return Err(format!("copy {done}: {:?} or wrong data", c.outcome));
        }
        done += 1;
        if done == 1 {
            println!("streaming");
        }
        if seconds > 0 && start.elapsed() >= Duration::from_secs(seconds) {
            break;
        }
        card.submit(0, &reqs[i..=i]).map_err(e)?;
    }
    println!("{done} copies of {len} bytes");
    Ok(())
}

/// One bench run: a mode at a depth.
struct BenchRun {
    mode: &'static str,
    depth: usize,
    ops: u64,
    secs: f64,
    lat_us: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench_one(
    card: &Card,
    mode: &'static str,
    depth: usize,
    secs: u64,
) -> Result<BenchRun, zcard_vfio::Error> {
    const OP: usize = 4096;
    let (src, dst) = (card.alloc(OP * depth)?, card.alloc(OP * depth)?);
    src.write(0, &pattern(OP * depth, 3))?;
    let reqs: Vec<Request> = (0..depth)
        .map(|i| {
            Ok(Request::copy(src.slice(i * OP, OP)?, dst.slice(i * OP, OP)?).user_data(i as u64))
        })
        .collect::<Result<_, zcard_vfio::Error>>()?;
    let mut lat_us = Vec::new();
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let t = Instant::now();
        card.submit(0, &reqs)?;
        for _ in 0..depth {
            let c = card.wait(0, Duration::from_secs(10))?;
            if !c.is_ok() {
                return Err(zcard_vfio::Error::Device(format!(
                    "COPY failed: {:?}",
                    c.outcome
                )));
            }
            lat_us.push(t.elapsed().as_secs_f64() * 1e6);
            ops += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if dst.to_vec() != src.to_vec() {
        return Err(zcard_vfio::Error::Device("the copies' data differs".into()));
    }
    lat_us.sort_by(f64::total_cmp);
    Ok(BenchRun {
        mode,
        depth,
        ops,
        secs,
        lat_us,
    })
}

fn bench(which: &Which, secs: u64, json: Option<&std::path::Path>) -> Result<(), String> {
    let e = |e: zcard_vfio::Error| e.to_string();
    let mut runs = Vec::new();
    for (mode, interrupts) in [("polled", false), ("interrupts", true)] {
        let card = Card::open(&Options {
            bdf: which.bdf.clone(),
            interrupts,
            queue_size: 1024,
            ..Options::default()
        })
        .map_err(e)?;
        // Checked before the first run, so a refusal costs no runs.
        let room = usize::from(card.queue_size(0).map_err(e)?) / 4;
        if room < 32 {
            return Err(format!(
                "queue 0 holds {room} copies, depth 32 asked (vq_size too small)"
            ));
        }
        for depth in [1, 32] {
            runs.push(bench_one(&card, mode, depth, secs).map_err(e)?);
        }
    }
    println!("| driver | queue depth | ops/s | p50 µs | p99 µs |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    let mut out = Vec::new();
    for r in &runs {
        let rate = r.ops as f64 / r.secs;
        let (p50, p99) = (percentile(&r.lat_us, 0.5), percentile(&r.lat_us, 0.99));
        println!(
            "| vfio {} | {} | {rate:.0} | {p50:.1} | {p99:.1} |",
            r.mode, r.depth
        );
        out.push(format!(
            r#"{{"driver":"vfio","mode":"{}","op":"copy","bytes":4096,"depth":{},"ops":{},"seconds":{:.3},"ops_per_sec":{rate:.1},"p50_us":{p50:.2},"p99_us":{p99:.2}}}"#,
            r.mode, r.depth, r.ops, r.secs
        ));
    }
    if let Some(path) = json {
        std::fs::write(path, format!("[{}]\n", out.join(",")))
            .map_err(|err| format!("{}: {err}", path.display()))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.cmd {
        Cmd::List => list(),
        Cmd::Bind(w) => rebind(w, true),
        Cmd::Unbind(w) => rebind(w, false),
        Cmd::Selftest(o) => selftest(o),
        Cmd::Stream {
            open,
            seconds,
            depth,
        } => stream(open, *seconds, *depth),
        Cmd::Bench {
            which,
            seconds,
            json,
        } => bench(which, *seconds, json.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zcard-vfio: {e}");
            ExitCode::FAILURE
        }
    }
}
