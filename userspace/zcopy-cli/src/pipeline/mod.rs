//! `zcopy pipeline`: serve a file from storage to a peer many ways on the
//! same data in the same run, and measure each.
//!
//! Two kinds of peer, two tables. A local peer (another process on this
//! machine) gets the file over a Unix socket by the classic ways
//! (`ways`: read+write, sendfile, splice), through a shared-memory channel
//! whose slots the file is read into (one copy), or through a card channel
//! whose slots the card reads its storage into (`staged`: no copy at all;
//! the peer reads the slots in place). A network peer gets it over TCP by
//! the classic ways, or from card-pool buffers over RDMA or over TCP with
//! MSG_ZEROCOPY.
//!
//! The far end (`sink`) is another process that checks length and
//! checksum (XXH64, as `zcopy recv` does) of every byte, and times its
//! check apart. Each run of a way is done twice: once checked (the whole
//! time) and once with a far end that takes the data without reading the
//! payload (the transfer time). The runs go in `--runs` rounds, every way
//! once in each; the medians are reported.

pub mod sink;
mod staged;
mod ways;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;

use zcopy::card::{Buf, Card, Pool, Rings, Sqe};
use zcopy::channel::Builder;
use zcopy::rdma::BuilderExt;
use zcopy_units::verdict::{judge_interval, quartiles, Verdict, MIN_RUNS};

use crate::failure::{self, Failure, Result};
use crate::output;
use crate::transfer::Checksum;

/// Where the reference claim comes from.
const REFERENCE_SOURCE: &str = "a common account of Linux zero-copy: mmap, sendfile, splice, DMA";
/// The reference claim, printed beside our figures.
const REFERENCE_CLAIM: &str =
    "zero-copy cuts transfer time by about two thirds (70 -> 107 MB/s in one account)";
/// The goal: a zero-copy way takes at most this share of read+write's
/// transfer time, and of its serving CPU time.
const GOAL: f64 = 0.35;

/// Who the file is served to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reach {
    /// Another process on this machine.
    Local,
    /// A peer over a network transport (TCP, RDMA).
    Network,
}

impl Reach {
    fn title(self) -> &'static str {
        match self {
            Reach::Local => "to a local peer (another process on this machine)",
            Reach::Network => "to a network peer (TCP on loopback, RDMA on Soft-RoCE)",
        }
    }
}

/// One way to serve the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Way {
    /// read() into a buffer, write() to a Unix socket.
    UnixReadWrite,
    /// sendfile() from the file to a Unix socket.
    UnixSendfile,
    /// splice() file -> pipe -> Unix socket.
    UnixSplice,
    /// read() the file into loaned slots of a shared-memory channel.
    Shm,
    /// The card reads storage into the slots of a card channel; the peer reads them in place.
    CardChannel,
    /// read() into a buffer, write() to a TCP socket.
    ReadWrite,
    /// mmap() the file, write() the mapping to a TCP socket.
    MmapWrite,
    /// sendfile() from the file to a TCP socket.
    Sendfile,
    /// splice() file -> pipe -> TCP socket.
    Splice,
    /// The card reads storage into pool slots that go out by RDMA WRITE.
    CardRdma,
    /// The card reads storage into pool buffers sent with MSG_ZEROCOPY over TCP.
    CardTcp,
}

/// Copies of the payload, by construction: by the process itself, by the
/// kernel for it, and how.
type CopySpec = (u32, u32, &'static str);

impl Way {
    const ALL: [Way; 11] = [
        Way::UnixReadWrite,
        Way::UnixSendfile,
        Way::UnixSplice,
        Way::Shm,
        Way::CardChannel,
        Way::ReadWrite,
        Way::MmapWrite,
        Way::Sendfile,
        Way::Splice,
        Way::CardRdma,
        Way::CardTcp,
    ];

    fn name(self) -> &'static str {
        match self {
            Way::UnixReadWrite => "read+write (unix)",
            Way::UnixSendfile => "sendfile (unix)",
            Way::UnixSplice => "splice (unix)",
            Way::Shm => "shm channel",
            Way::CardChannel => "card channel",
            Way::ReadWrite => "read+write",
            Way::MmapWrite => "mmap+write",
            Way::Sendfile => "sendfile",
            Way::Splice => "splice",
            Way::CardRdma => "card -> RDMA",
            Way::CardTcp => "card -> TCP zerocopy",
        }
    }

    fn reach(self) -> Reach {
        match self {
            Way::UnixReadWrite
            | Way::UnixSendfile
            | Way::UnixSplice
            | Way::Shm
            | Way::CardChannel => Reach::Local,
            _ => Reach::Network,
        }
    }

    /// The classic way each table measures the others against.
    fn is_baseline(self) -> bool {
        matches!(self, Way::UnixReadWrite | Way::ReadWrite)
    }

    /// CPU copies of the payload on the serving side.
    fn copies(self) -> CopySpec {
        match self {
            Way::UnixReadWrite | Way::ReadWrite => (
                0,
                2,
                "read: the kernel copies page cache -> buffer; write: buffer -> socket",
            ),
            Way::MmapWrite => (0, 1, "write: the kernel copies mapped page cache -> socket"),
            Way::UnixSendfile | Way::Sendfile => (0, 0, "the socket references page-cache pages"),
            Way::UnixSplice | Way::Splice => (0, 0, "pages move by reference through a pipe"),
            Way::Shm => (
                0,
                1,
                "read: the kernel copies page cache -> the loaned slot (shared memory)",
            ),
            Way::CardChannel => (0, 0, "the card DMAs storage -> slot (card pool memory)"),
            Way::CardRdma => (
                0,
                1,
                "the card DMAs storage -> slot; the NIC is Soft-RoCE (software): its kernel \
                 driver copies the slot into every packet (a hardware RNIC reads it by DMA: 0)",
            ),
            Way::CardTcp => (
                0,
                0,
                "the card DMAs storage -> buffer; the socket references it",
            ),
        }
    }

    /// CPU copies of the payload at the far end, before its check reads it.
    fn far_copies(self) -> CopySpec {
        match self {
            Way::Shm | Way::CardChannel => (0, 0, "reads the slot in place"),
            Way::CardRdma => (
                0,
                1,
                "Soft-RoCE's kernel driver copies every packet into the slot (a hardware RNIC \
                 writes it by DMA: 0); reads the slot in place",
            ),
            _ => (0, 1, "the kernel copies socket -> its buffer"),
        }
    }

    /// The project's zero-copy ways, which the goal is about.
    fn zero_copy(self) -> bool {
        matches!(
            self,
            Way::Shm | Way::CardChannel | Way::CardRdma | Way::CardTcp
        )
    }

    fn needs_card(self) -> bool {
        matches!(self, Way::CardChannel | Way::CardRdma | Way::CardTcp)
    }
}

/// `zcopy pipeline`.
#[derive(Debug, Args)]
pub struct PipelineArgs {
    /// Bytes to serve: a multiple of 4K; K, M, G suffixes. At most the card's storage.
    #[arg(long, default_value = "32M", value_parser = zcopy_units::parse_size)]
    pub size: u64,
    /// Bytes per read, per buffer and per message: a multiple of 4K, at most the card's
    /// largest request.
    #[arg(long, default_value = "512K", value_parser = zcopy_units::parse_size)]
    pub chunk: u64,
    /// Buffers (channel slots) in flight between the reader and the far end (channel and
    /// card ways; the socket ways' send buffer is asked for as much). --chunk × --buffers is
    /// at most 16G and half the memory available.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub buffers: u32,
    /// Runs per way (each a checked run and a transfer run); the medians are reported. A
    /// verdict needs at least 3.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// The ways to run, comma separated [default: all eleven; a card or RDMA way the
    /// platform cannot run is skipped with the reason].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub ways: Vec<Way>,
    /// The file to serve: a path that does not exist yet, created with the
    /// run's data and removed afterwards [default: a new file in $TMPDIR].
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Seed of the data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The TCP peer's address (loopback by default).
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR:PORT")]
    pub tcp: SocketAddr,
    /// The RDMA peer's address: an address of an RDMA device.
    #[arg(long, default_value = "169.254.77.1", value_name = "IP")]
    pub rdma_to: IpAddr,
    /// The local RDMA address to send from.
    #[arg(long, default_value = "169.254.77.2", value_name = "IP")]
    pub rdma_from: IpAddr,
    /// Also write pipeline.json, pipeline-local.svg and pipeline-network.svg into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as one line of JSON instead of the tables.
    #[arg(long)]
    pub json: bool,
}

impl PipelineArgs {
    /// Bytes in flight between the reader and the far end: what a channel's
    /// or a card pool's buffers hold, and a socket's send buffer is asked for.
    fn in_flight(&self) -> u64 {
        self.chunk * u64::from(self.buffers)
    }
}

/// Refuses `in_flight` bytes of buffers beyond a channel's limit or half of
/// `avail`, the memory available (when known): the shm way touches every
/// page of them.
fn check_in_flight(in_flight: u64, avail: Option<u64>) -> Result<()> {
    let max = zcopy::channel::segment::MAX_SLOTS_BYTES;
    if in_flight > max {
        return Err(Failure::usage(format!(
            "--chunk × --buffers is {in_flight} bytes in flight: more than a channel holds ({max})"
        )));
    }
    match avail {
        Some(avail) if in_flight > avail / 2 => Err(Failure::usage(format!(
            "--chunk × --buffers is {in_flight} bytes in flight: more than half the memory \
             available ({avail} bytes)"
        ))),
        _ => Ok(()),
    }
}

/// One way's reported figures.
#[derive(Debug, Clone, Serialize)]
struct Row {
    way: Way,
    name: &'static str,
    reach: Reach,
    /// Wall time from the first byte read to the far end's last byte
    /// checked (median of the checked runs).
    seconds: f64,
    /// Wall time of the same transfer when the far end takes the data
    /// without reading the payload (median of the transfer runs).
    transfer_seconds: f64,
    /// The far end's time in its check (XXH64), median of the checked runs.
    check_seconds: f64,
    /// Bytes over the transfer time.
    mb_per_s: f64,
    /// Serving CPU time (user + system, every thread) of the median transfer run.
    cpu_seconds: f64,
    user_seconds: f64,
    system_seconds: f64,
    voluntary_switches: i64,
    involuntary_switches: i64,
    /// CPU copies of the payload on the serving side (by construction, or
    /// as a counter showed): the two below together.
    cpu_copies: u32,
    /// Of those, made by the serving process itself.
    application_copies: u32,
    /// Of those, made by the kernel (system calls, a software NIC).
    kernel_copies: u32,
    how: &'static str,
    /// CPU copies at the far end before its check: by the process itself.
    far_application_copies: u32,
    /// ... and by the kernel for it.
    far_kernel_copies: u32,
    far_how: &'static str,
    /// What a counter showed, where one can.
    checked: String,
    /// Bytes the far end got in every checked run.
    far_end_bytes: u64,
    /// The XXH64 the far end computed over them (every checked run: a run
    /// that disagrees with the file fails the command), 16 hex digits.
    far_end_xxh64: String,
    /// Transfer time relative to read+write's in the same table.
    vs_read_write: Option<f64>,
    /// Serving CPU time relative to read+write's in the same table.
    cpu_vs_read_write: Option<f64>,
    /// Whole time relative to read+write's in the same table.
    whole_vs_read_write: Option<f64>,
    /// Every checked run's seconds.
    runs: Vec<f64>,
    /// Every transfer run's seconds.
    transfer_runs: Vec<f64>,
    /// Every transfer run's serving CPU seconds.
    cpu_runs: Vec<f64>,
}

/// A way not run here, and why.
#[derive(Debug, Clone, Serialize)]
struct Skipped {
    way: Way,
    reason: String,
}

/// A table's goal: its best zero-copy way against read+write.
#[derive(Debug, Clone, Serialize)]
struct Goal {
    reach: Reach,
    /// What is measured.
    goal: String,
    /// The best zero-copy way: the one whose larger ratio is smallest.
    way: Option<Way>,
    name: Option<&'static str>,
    /// Its transfer time as a share of read+write's (medians).
    transfer_ratio: Option<f64>,
    /// Its serving CPU time as a share of read+write's (medians).
    cpu_ratio: Option<f64>,
    /// The transfer ratio's interval from the runs' quartiles (3 runs:
    /// the lowest and highest any pairing gives).
    transfer_ratio_range: Option<(f64, f64)>,
    /// The same for CPU time.
    cpu_ratio_range: Option<(f64, f64)>,
    goal_ratio: f64,
    /// Met, not met, or no verdict (too few runs, or the runs straddle it).
    met: Option<bool>,
    verdict: String,
    /// The goal with its measured value and verdict, as the report prints it.
    summary: String,
}

#[derive(Debug, Serialize)]
struct Report {
    bytes: u64,
    chunk: u64,
    buffers: u32,
    runs: u32,
    seed: u64,
    /// XXH64 of the file, 16 hex digits (as `zcopy send --json` gives it).
    xxh64: String,
    kernel: String,
    cpus: usize,
    /// The CPUs the serving process and the far end ran on (None: one CPU,
    /// both shared it).
    pinned: Option<(usize, usize)>,
    ways: Vec<Row>,
    skipped: Vec<Skipped>,
    reference_claim: &'static str,
    reference_source: &'static str,
    goals: Vec<Goal>,
}

/// A run's measurements.
#[derive(Debug, Clone)]
struct Sample {
    seconds: f64,
    user: f64,
    system: f64,
    vcsw: i64,
    ivcsw: i64,
    /// The far end's time in its check.
    check_seconds: f64,
    /// What the far end got: bytes, and their XXH64 (checked runs).
    got: (u64, u64),
    checked: String,
    /// Kernel copies a counter showed, where it overrides the construction
    /// (MSG_ZEROCOPY sends the kernel copied after all).
    copies_seen: Option<u32>,
}

impl Sample {
    fn cpu(&self) -> f64 {
        self.user + self.system
    }
}

/// What the card ways need.
struct CardKit {
    card: Card,
    rings: Rings,
}

/// The sample with the median seconds.
fn median(samples: &[Sample]) -> &Sample {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by(|&x, &y| samples[x].seconds.total_cmp(&samples[y].seconds));
    &samples[order[order.len() / 2]]
}

fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Runs `zcopy pipeline`.
pub fn run(a: &PipelineArgs) -> Result<()> {
    if a.size == 0 || a.size % 4096 != 0 {
        return Err(Failure::usage("--size must be a positive multiple of 4K"));
    }
    if a.chunk == 0 || a.chunk % 4096 != 0 || a.chunk > 1 << 30 {
        return Err(Failure::usage(
            "--chunk must be a multiple of 4K, at most 1G",
        ));
    }
    // Checked before any way runs: a channel refuses more, and the shm way
    // touches every page.
    check_in_flight(a.in_flight(), crate::platform::mem_room())?;
    let chosen: Vec<Way> = if a.ways.is_empty() {
        Way::ALL.to_vec()
    } else {
        a.ways.clone()
    };
    let explicit = !a.ways.is_empty();
    let mut skipped = Vec::new();
    // Every way with the same placement: this thread (and the threads it
    // starts, none yet) on one CPU, the far end on another.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pinned = pin_ends();

    // The platform: a card for the card ways, an RDMA device for one.
    let mut kit = None;
    if chosen.iter().any(|w| w.needs_card()) {
        match open_card(a) {
            Ok(k) => kit = Some(k),
            Err(f) if f.code == failure::MISSING && !explicit => {
                for w in chosen.iter().filter(|w| w.needs_card()) {
                    skipped.push(Skipped {
                        way: *w,
                        reason: f.message.clone(),
                    });
                }
            }
            Err(f) => return Err(f),
        }
    }
    if kit.is_some() && chosen.contains(&Way::CardRdma) {
        if let Err(f) = crate::platform::rdma_for(a.rdma_to, Some(a.rdma_to)) {
            if explicit {
                return Err(f);
            }
            skipped.push(Skipped {
                way: Way::CardRdma,
                reason: f.message,
            });
        }
    }

    if let Some(dir) = &a.out {
        // Checked before the runs, which a bad directory would waste.
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::failed(format!("--out {}: {e}", dir.display())))?;
    }
    let create = |path: &Path| {
        crate::signals::create_removed_on_signal(path, || {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
        })
    };
    let (path, file) = match &a.file {
        Some(p) => (p.clone(), create(p)),
        None => default_file(&std::env::temp_dir(), create),
    };
    let mut file = match file {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Failure::usage(format!(
                "--file {} exists: the pipeline writes its own data there and removes it \
                 afterwards, so it takes a path that does not exist",
                path.display()
            )))
        }
        Err(e) => {
            let hint = if a.file.is_none() {
                " (--file chooses the path)"
            } else {
                ""
            };
            return Err(Failure::failed(format!(
                "creating {}: {e}{hint}",
                path.display()
            )));
        }
    };
    // Created here, so removed at the end, whatever happens between (a
    // signal that ends the run too: above).
    let _cleanup = RemoveOnDrop(Some(path.clone()));
    let data = make_data(a.size, a.seed)?;
    let sum = Checksum::of(&data);
    std::io::Write::write_all(&mut file, &data)
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    drop(file);
    if let Some(k) = kit.as_mut() {
        load_storage(k, &data, a.chunk)?;
    }
    drop(data);

    let ran: Vec<Way> = chosen
        .into_iter()
        .filter(|w| !skipped.iter().any(|s| s.way == *w))
        .collect();
    // Rounds: each runs every way once, a checked run and a transfer run,
    // so that a slow spell of the machine falls on every way alike rather
    // than on all the runs of one.
    let mut samples: Vec<(Vec<Sample>, Vec<Sample>)> = vec![(Vec::new(), Vec::new()); ran.len()];
    for _ in 0..a.runs {
        for (way, (whole, bare)) in ran.iter().zip(samples.iter_mut()) {
            whole.push(run_once(a, *way, &path, kit.as_mut(), sum, true)?);
            bare.push(run_once(a, *way, &path, kit.as_mut(), sum, false)?);
        }
    }
    let mut rows: Vec<Row> = Vec::new();
    for (way, (whole, bare)) in ran.into_iter().zip(samples) {
        let m = median(&whole);
        let t = median(&bare);
        let (application, kernel, how) = way.copies();
        let kernel = whole
            .iter()
            .chain(&bare)
            .filter_map(|s| s.copies_seen)
            .max()
            .unwrap_or(kernel);
        let (far_application, far_kernel, far_how) = way.far_copies();
        rows.push(Row {
            way,
            name: way.name(),
            reach: way.reach(),
            seconds: m.seconds,
            transfer_seconds: t.seconds,
            check_seconds: median_of(whole.iter().map(|s| s.check_seconds).collect()),
            mb_per_s: a.size as f64 / t.seconds / 1e6,
            cpu_seconds: t.cpu(),
            user_seconds: t.user,
            system_seconds: t.system,
            voluntary_switches: t.vcsw,
            involuntary_switches: t.ivcsw,
            cpu_copies: application + kernel,
            application_copies: application,
            kernel_copies: kernel,
            how,
            far_application_copies: far_application,
            far_kernel_copies: far_kernel,
            far_how,
            checked: m.checked.clone(),
            far_end_bytes: m.got.0,
            far_end_xxh64: format!("{:016x}", m.got.1),
            vs_read_write: None,
            cpu_vs_read_write: None,
            whole_vs_read_write: None,
            runs: whole.iter().map(|s| s.seconds).collect(),
            transfer_runs: bare.iter().map(|s| s.seconds).collect(),
            cpu_runs: bare.iter().map(Sample::cpu).collect(),
        });
    }
    let mut goals = Vec::new();
    for reach in [Reach::Local, Reach::Network] {
        let base = rows
            .iter()
            .find(|r| r.reach == reach && r.way.is_baseline())
            .cloned();
        if let Some(b) = &base {
            for r in rows.iter_mut().filter(|r| r.reach == reach) {
                r.vs_read_write = Some(r.transfer_seconds / b.transfer_seconds);
                r.cpu_vs_read_write = (b.cpu_seconds > 0.0).then(|| r.cpu_seconds / b.cpu_seconds);
                r.whole_vs_read_write = Some(r.seconds / b.seconds);
            }
        }
        if rows.iter().any(|r| r.reach == reach) {
            goals.push(goal(reach, base.as_ref(), &rows, a.runs));
        }
    }
    let report = Report {
        bytes: a.size,
        chunk: a.chunk,
        buffers: a.buffers,
        runs: a.runs,
        seed: a.seed,
        xxh64: format!("{sum:016x}"),
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpus,
        pinned,
        ways: rows,
        skipped,
        reference_claim: REFERENCE_CLAIM,
        reference_source: REFERENCE_SOURCE,
        goals,
    };
    if let Some(dir) = &a.out {
        write_files(dir, &report)?;
    }
    if a.json {
        output::print_json(&report)
    } else {
        output::print(&table(&report))
    }
}

/// The interval of the ratio `num / den` the runs' quartiles give: from the
/// lower quartile of `num` over the upper of `den` to the other way round.
fn ratio_range(num: &[f64], den: &[f64]) -> Option<(f64, f64)> {
    let (n1, n3) = quartiles(num)?;
    let (d1, d3) = quartiles(den)?;
    (d1 > 0.0).then(|| (n1 / d3, n3 / d1))
}

/// The goal of one table: its best zero-copy way at most `GOAL` of
/// read+write's transfer time and of its serving CPU, judged by the
/// benches' rule ([`zcopy_units::verdict`]) on the intervals the runs'
/// quartiles give ([`ratio_range`]). A short run therefore gives the
/// verdict a longer one gives, or none.
fn goal(reach: Reach, base: Option<&Row>, rows: &[Row], runs: u32) -> Goal {
    let mut g = measure_goal(reach, base, rows, runs);
    g.summary = goal_line(&g);
    g
}

fn measure_goal(reach: Reach, base: Option<&Row>, rows: &[Row], runs: u32) -> Goal {
    let pct = |v: f64| format!("{:.0} %", v * 100.0);
    let text = format!(
        "the best {} zero-copy way <= {} of read+write's transfer time and of its serving CPU time",
        match reach {
            Reach::Local => "local",
            Reach::Network => "network",
        },
        pct(GOAL)
    );
    let mut g = Goal {
        reach,
        goal: text,
        way: None,
        name: None,
        transfer_ratio: None,
        cpu_ratio: None,
        transfer_ratio_range: None,
        cpu_ratio_range: None,
        goal_ratio: GOAL,
        met: None,
        verdict: String::new(),
        summary: String::new(),
    };
    let Some(base) = base else {
        g.verdict = "no verdict: read+write did not run".into();
        return g;
    };
    let worst = |r: &Row| {
        r.vs_read_write
            .unwrap_or(f64::INFINITY)
            .max(r.cpu_vs_read_write.unwrap_or(f64::INFINITY))
    };
    let Some(best) = rows
        .iter()
        .filter(|r| r.reach == reach && r.way.zero_copy())
        .min_by(|x, y| worst(x).total_cmp(&worst(y)))
    else {
        g.verdict = "no verdict: no zero-copy way ran".into();
        return g;
    };
    g.way = Some(best.way);
    g.name = Some(best.name);
    g.transfer_ratio = best.vs_read_write;
    g.cpu_ratio = best.cpu_vs_read_write;
    g.transfer_ratio_range = ratio_range(&best.transfer_runs, &base.transfer_runs);
    g.cpu_ratio_range = ratio_range(&best.cpu_runs, &base.cpu_runs);
    let (Some(t), Some(c)) = (g.transfer_ratio_range, g.cpu_ratio_range) else {
        g.verdict = "no verdict: read+write's serving CPU time measured 0".into();
        return g;
    };
    let runs = runs as usize;
    let within = |r: f64| r <= GOAL;
    let verdict = judge_interval(runs, t, within).and(judge_interval(runs, c, within));
    g.met = verdict.met();
    g.verdict = match verdict {
        Verdict::Met => "met".into(),
        Verdict::NotMet => "not met".into(),
        Verdict::TooFew(n) => format!(
            "no verdict: {n} run{} per way, a verdict needs {MIN_RUNS}",
            if n == 1 { "" } else { "s" }
        ),
        Verdict::Straddles(..) => format!(
            "no verdict: the runs fall on both sides of it (transfer {}-{}, CPU {}-{})",
            pct(t.0),
            pct(t.1),
            pct(c.0),
            pct(c.1)
        ),
    };
    g
}

/// The pipeline's own file in `dir` ($TMPDIR), made by `create`: named by this
/// process's pid, with a number after it where that name is taken (a run
/// in another pid namespace sharing the directory, or a dead run's
/// leftover): a file already there is never touched.
fn default_file(
    dir: &Path,
    create: impl Fn(&Path) -> std::io::Result<File>,
) -> (PathBuf, std::io::Result<File>) {
    let pid = std::process::id();
    crate::files::create_unique(
        dir,
        |n| match n {
            0 => format!("zcopy-pipeline-{pid}.dat").into(),
            n => format!("zcopy-pipeline-{pid}-{n}.dat").into(),
        },
        create,
    )
}

/// Removes a file when dropped (the generated data file).
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn open_card(a: &PipelineArgs) -> Result<CardKit> {
    let card = crate::platform::open_card()?;
    let info = *card.info();
    if a.size > info.storage_capacity {
        return Err(Failure::usage(format!(
            "--size {} is more than the card's storage ({} bytes)",
            a.size, info.storage_capacity
        )));
    }
    if a.chunk > u64::from(info.max_op_bytes) {
        return Err(Failure::usage(format!(
            "--chunk {} is more than the card's largest request ({} bytes)",
            a.chunk, info.max_op_bytes
        )));
    }
    let entries = a.buffers.next_power_of_two().min(info.max_ring_entries);
    let rings = card
        .setup_rings(entries)
        .map_err(|e| Failure::failed(format!("setting up the card's rings: {e}")))?;
    Ok(CardKit { card, rings })
}

/// `size` bytes from a xorshift generator seeded with `seed`. The run
/// holds them in memory and the file's pages in the page cache: a size
/// above half the memory available ([`crate::platform::mem_room`]) is
/// refused before anything is made.
fn make_data(size: u64, seed: u64) -> Result<Vec<u8>> {
    let too_big = |why: String| {
        Failure::usage(format!(
            "--size {size}: {why}; the run holds the data in memory"
        ))
    };
    if let Some(avail) = crate::platform::mem_room() {
        if size > avail / 2 {
            return Err(too_big(format!(
                "more than half the memory available ({avail} bytes)"
            )));
        }
    }
    let mut v = Vec::new();
    usize::try_from(size)
        .ok()
        .and_then(|n| v.try_reserve_exact(n).ok())
        .ok_or_else(|| too_big("cannot be allocated".into()))?;
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while (v.len() as u64) < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size as usize);
    Ok(v)
}

/// Puts `data` into the card's storage at 0 (STORAGE_WRITE from a pool).
fn load_storage(k: &mut CardKit, data: &[u8], chunk: u64) -> Result<()> {
    let card = |e: zcopy::card::Error| Failure::failed(format!("loading the card's storage: {e}"));
    let pool = k.card.create_pool(chunk).map_err(card)?;
    let map = pool.map().map_err(card)?;
    for (i, part) in data.chunks(chunk as usize).enumerate() {
        map.write(0, part).map_err(card)?;
        let sqe = Sqe::storage_write(Buf::new(&pool, 0), i as u64 * chunk, part.len() as u32);
        let cqes = k.rings.run(&[sqe], Duration::from_secs(30)).map_err(card)?;
        cqes[0].bytes().map_err(card)?;
    }
    Ok(())
}

/// The CPU the far end runs on (set once by [`pin_ends`]).
static FAR_CPU: std::sync::OnceLock<usize> = std::sync::OnceLock::new();

/// With two CPUs or more allowed: pins the calling thread (run before
/// the pipeline starts any other, which then inherit it) to the first and
/// notes the last for the far end, so that every way runs its two ends on
/// the same two CPUs (the scheduler otherwise puts them together in some
/// runs and apart in others, which moved read+write's time by 1.7x). One
/// CPU, or affinity refused, leaves both ends where the scheduler puts
/// them (said on stderr when refused).
fn pin_ends() -> Option<(usize, usize)> {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0))
        .inspect_err(|e| eprintln!("zcopy pipeline: reading the allowed CPUs: {e}; not pinning"))
        .ok()?;
    let cpus: Vec<usize> = (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect();
    let (&serve, &far) = (cpus.first()?, cpus.last()?);
    if serve == far {
        return None;
    }
    let mut set = CpuSet::new();
    set.set(serve)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set))
        .inspect_err(|e| eprintln!("zcopy pipeline: pinning to CPU {serve}: {e}; not pinning"))
        .ok()?;
    // The first run in this process decides (a second keeps its CPU).
    Some((serve, *FAR_CPU.get_or_init(|| far)))
}

/// The far end, started and listening.
struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
    /// Where it listens: a socket address, or a Unix socket's path.
    addr: String,
}

/// A new Unix socket path for a local far end to listen on.
fn socket_path() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir()
        .join(format!(
            "zcopy-pipeline-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ))
        .display()
        .to_string()
}

impl Peer {
    /// Starts `zcopy pipeline-sink KIND ADDR`, checking the payload or not.
    fn start(kind: &str, addr: &str, check: bool) -> Result<Peer> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::failed(format!("finding the zcopy binary: {e}")))?;
        let mut cmd = Command::new(exe);
        cmd.args(["pipeline-sink", kind, addr]);
        if !check {
            cmd.arg("--no-check");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::failed(format!("starting the far end: {e}")))?;
        if let Some(&cpu) = FAR_CPU.get() {
            // Before it does any work: it waits for our connection first.
            let mut set = nix::sched::CpuSet::new();
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            if let Err(e) = set
                .set(cpu)
                .and_then(|()| nix::sched::sched_setaffinity(pid, &set))
            {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::failed(format!(
                    "pinning the far end to CPU {cpu}, which this process may use: {e}"
                )));
            }
        }
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure::failed("the far end has no stdout"))?;
        let mut out = BufReader::new(stdout);
        let line = read_line(&mut out)?;
        let addr = line
            .strip_prefix("listening ")
            .ok_or_else(|| Failure::failed(format!("the far end did not start: {line:?}")))?
            .to_string();
        Ok(Peer { child, out, addr })
    }

    /// Waits until the far end has the connection (and the channel).
    fn ready(&mut self) -> Result<()> {
        let line = read_line(&mut self.out)?;
        if line == "ready" {
            Ok(())
        } else {
            Err(Failure::failed(format!(
                "the far end failed to connect ({line:?}); see above"
            )))
        }
    }

    /// The far end's TCP or RDMA address.
    fn socket_addr(&self) -> Result<SocketAddr> {
        self.addr
            .parse()
            .map_err(|_| Failure::failed(format!("the far end listens on {:?}", self.addr)))
    }

    /// Waits for the far end's verdict: bytes and XXH64 it received, and
    /// the seconds its check took.
    fn finish(mut self) -> Result<(u64, u64, f64)> {
        let line = read_line(&mut self.out)?;
        let _ = self.child.wait();
        let mut it = line.strip_prefix("done ").unwrap_or("").split(' ');
        match (
            it.next().and_then(|s| s.parse().ok()),
            it.next().and_then(|s| s.parse().ok()),
            it.next().and_then(|s| s.parse().ok()),
        ) {
            (Some(b), Some(c), Some(t)) => Ok((b, c, t)),
            _ => Err(Failure::failed(format!(
                "the far end failed ({line:?}); see above"
            ))),
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_line(out: &mut BufReader<ChildStdout>) -> Result<String> {
    let mut line = String::new();
    out.read_line(&mut line)
        .map_err(|e| Failure::failed(format!("reading from the far end: {e}")))?;
    Ok(line.trim_end().to_string())
}

/// CPU time and context switches of this process so far.
fn usage() -> (f64, f64, i64, i64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (
                secs(u.user_time()),
                secs(u.system_time()),
                u.voluntary_context_switches(),
                u.involuntary_context_switches(),
            )
        }
        Err(_) => (0.0, 0.0, 0, 0),
    }
}

/// One run of `way`: connect, then serve and time until the far end
/// checked the last byte (`check`), or took it without reading it.
fn run_once(
    a: &PipelineArgs,
    way: Way,
    path: &Path,
    kit: Option<&mut CardKit>,
    sum: u64,
    check: bool,
) -> Result<Sample> {
    let io = |what: &'static str| move |e: std::io::Error| Failure::failed(format!("{what}: {e}"));
    let card = |e: zcopy::card::Error| Failure::failed(format!("the card: {e}"));
    let chan = |e: zcopy::channel::Error| Failure::failed(format!("the channel: {e}"));
    let chunk = a.chunk as usize;
    let mut checked = String::new();
    let mut copies_seen = None;
    let (peer, start, u0) = match way {
        Way::CardChannel => {
            let k = kit.ok_or_else(|| Failure::missing(failure::NO_CARD))?;
            let mut peer = Peer::start("--card", &socket_path(), check)?;
            let tx = Builder::new()
                .slot_size(chunk)
                .slot_count(a.buffers)
                .create_on_card(&k.card)
                .map_err(chan)?;
            // A wait for a returned slot sleeps after its short spin, as a
            // socket way's write() sleeps: a yielding guest vCPU would hold
            // a host core the card's device model needs, and count as
            // serving CPU.
            tx.set_yield(Duration::ZERO);
            let sock = UnixStream::connect(&peer.addr).map_err(io("connecting"))?;
            tx.share(&sock).map_err(chan)?;
            peer.ready()?;
            let c0 = k.card.counters().ok();
            let (start, u0) = (Instant::now(), usage());
            let (work, ()) = staged_run(k, tx.pool(), a, |h, r| {
                staged::send_channel(&tx, a.size, a.chunk as u32, h, r)
            })?;
            drop(tx);
            checked = card_checked(&k.card, c0, work, a.size);
            (peer, start, u0)
        }
        Way::Shm => {
            let mut peer = Peer::start("--shm", &socket_path(), check)?;
            let tx = Builder::new()
                .slot_size(chunk)
                .slot_count(a.buffers)
                .create()
                .map_err(chan)?;
            // As the card channel's serving end.
            tx.set_yield(Duration::ZERO);
            let sock = UnixStream::connect(&peer.addr).map_err(io("connecting"))?;
            tx.share(&sock).map_err(chan)?;
            ways::warm(&tx)?;
            peer.ready()?;
            let mut file = File::open(path).map_err(io("opening the file"))?;
            let (start, u0) = (Instant::now(), usage());
            ways::read_into_slots(&mut file, &tx, chunk)?;
            drop(tx);
            (peer, start, u0)
        }
        Way::UnixReadWrite | Way::UnixSendfile | Way::UnixSplice => {
            let mut peer = Peer::start("--unix", &socket_path(), check)?;
            let mut file = File::open(path).map_err(io("opening the file"))?;
            let mut sock = UnixStream::connect(&peer.addr).map_err(io("connecting"))?;
            let asked = a.in_flight();
            let room = ways::size_send_buffer(&sock, asked);
            peer.ready()?;
            checked = format!(
                "SO_SNDBUF {room} (asked for {asked}, the channels' room; Linux doubles it for \
                 its bookkeeping)"
            );
            let (start, u0) = (Instant::now(), usage());
            classic(way, &mut file, &mut sock, a.size, chunk)?;
            drop(sock);
            (peer, start, u0)
        }
        Way::CardRdma => {
            let k = kit.ok_or_else(|| Failure::missing(failure::NO_CARD))?;
            let mut peer =
                Peer::start("--rdma", &SocketAddr::new(a.rdma_to, 0).to_string(), check)?;
            let pool = k.card.create_pool(a.in_flight()).map_err(card)?;
            let tx = Builder::new()
                .slot_size(chunk)
                .slot_count(a.buffers)
                .connect_rdma_on(
                    pool.map().map_err(card)?,
                    Some(a.rdma_from),
                    peer.socket_addr()?,
                )
                .map_err(|e| Failure::failed(format!("connecting over RDMA: {e}")))?;
            peer.ready()?;
            let c0 = k.card.counters().ok();
            let (start, u0) = (Instant::now(), usage());
            let work = staged_run(k, &pool, a, |h, r| {
                staged::send_channel(&tx, a.size, a.chunk as u32, h, r)
            })?;
            drop(tx);
            checked = card_checked(&k.card, c0, work.0, a.size);
            (peer, start, u0)
        }
        Way::CardTcp => {
            let k = kit.ok_or_else(|| Failure::missing(failure::NO_CARD))?;
            let mut peer = Peer::start("--tcp", &a.tcp.to_string(), check)?;
            let pool = k.card.create_pool(a.in_flight()).map_err(card)?;
            let map = pool.map().map_err(card)?;
            let sock = TcpStream::connect(peer.socket_addr()?).map_err(io("connecting"))?;
            peer.ready()?;
            let c0 = k.card.counters().ok();
            let (start, u0) = (Instant::now(), usage());
            let (work, zc) = staged_run(k, &pool, a, |h, r| {
                staged::send_tcp(&sock, &map, a.size, a.chunk as u32, a.buffers, h, r)
            })?;
            drop(sock);
            checked = card_checked(&k.card, c0, work, a.size);
            if !zc.enabled || zc.copied > 0 {
                copies_seen = Some(1);
            }
            checked += &if !zc.enabled {
                "; MSG_ZEROCOPY refused by the socket: sent by copy".to_string()
            } else if zc.copied > 0 {
                format!(
                    "; MSG_ZEROCOPY: the kernel copied {} of {} sends (a local peer gets a copy)",
                    zc.copied, zc.sends
                )
            } else {
                format!("; MSG_ZEROCOPY: {} sends, none copied", zc.sends)
            };
            (peer, start, u0)
        }
        Way::ReadWrite | Way::MmapWrite | Way::Sendfile | Way::Splice => {
            let mut peer = Peer::start("--tcp", &a.tcp.to_string(), check)?;
            let mut file = File::open(path).map_err(io("opening the file"))?;
            let mut sock = TcpStream::connect(peer.socket_addr()?).map_err(io("connecting"))?;
            peer.ready()?;
            let (start, u0) = (Instant::now(), usage());
            classic(way, &mut file, &mut sock, a.size, chunk)?;
            drop(sock);
            (peer, start, u0)
        }
    };
    let (bytes, got, check_seconds) = peer.finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let u1 = usage();
    if bytes != a.size || (check && got != sum) {
        return Err(Failure::failed(format!(
            "{}: the far end got {bytes} bytes with XXH64 {got:#018x}; sent {} with {sum:#018x}",
            way.name(),
            a.size
        )));
    }
    Ok(Sample {
        seconds,
        user: u1.0 - u0.0,
        system: u1.1 - u0.1,
        vcsw: u1.2 - u0.2,
        ivcsw: u1.3 - u0.3,
        check_seconds,
        got: (bytes, got),
        checked,
        copies_seen,
    })
}

/// A classic way over a stream socket (TCP or Unix).
fn classic<S: Write + std::os::fd::AsFd>(
    way: Way,
    file: &mut File,
    sock: &mut S,
    size: u64,
    chunk: usize,
) -> Result<()> {
    match way {
        Way::ReadWrite | Way::UnixReadWrite => ways::read_write(file, sock, chunk),
        Way::MmapWrite => ways::mmap_write(file, sock, chunk),
        Way::Sendfile | Way::UnixSendfile => ways::send_file(file, &*sock, size, chunk),
        _ => ways::splice_file(file, &*sock, size, chunk),
    }
}

/// Runs the reader on its own thread and `send` on this one.
fn staged_run<T: Send>(
    k: &mut CardKit,
    pool: &Pool,
    a: &PipelineArgs,
    send: impl FnOnce(&staged::Handoff, &OnceLock<std::thread::Thread>) -> Result<T>,
) -> Result<(staged::CardWork, T)> {
    let h = staged::Handoff::new(a.buffers as usize);
    let reader_thread = OnceLock::new();
    let rings = &mut k.rings;
    std::thread::scope(|s| {
        let r = s.spawn(|| {
            h.fail(staged::reader(
                rings,
                pool,
                a.size,
                a.chunk as u32,
                &h,
                &reader_thread,
            ))
        });
        let sent = h.fail(send(&h, &reader_thread));
        let read = r
            .join()
            .unwrap_or_else(|_| Err(Failure::failed("the reader thread panicked")));
        // The sender's error says more (the reader only saw it stop).
        let sent = sent?;
        Ok((read?, sent))
    })
}

/// What the card's counters show for a run.
fn card_checked(
    card: &Card,
    before: Option<zcopy::card::Counters>,
    work: staged::CardWork,
    size: u64,
) -> String {
    let mut s = format!(
        "the card's STORAGE_READs put {} of {} bytes into buffers",
        work.bytes, size
    );
    if let (Some(b), Ok(c)) = (before, card.counters()) {
        s += &format!(" (driver counter: {} requests)", c.completed - b.completed);
    }
    s
}

/// " (serving on CPU 0, the far end on CPU 1)", or nothing when unpinned.
fn placement(r: &Report) -> String {
    match r.pinned {
        Some((serve, far)) => format!(" (serving on CPU {serve}, the far end on CPU {far})"),
        None => String::new(),
    }
}

fn table(r: &Report) -> String {
    let mut s = format!(
        "zcopy pipeline: serve {} from storage to a peer, {} ways; median of {} run{} each \
         (checked, and transfer alone); {} CPUs{}, kernel {}\n",
        output::human_bytes(r.bytes),
        r.ways.len(),
        r.runs,
        if r.runs == 1 { "" } else { "s" },
        r.cpus,
        placement(r),
        r.kernel
    );
    for reach in [Reach::Local, Reach::Network] {
        let rows: Vec<&Row> = r.ways.iter().filter(|w| w.reach == reach).collect();
        if rows.is_empty() {
            continue;
        }
        s += &format!("\n{}\n", reach.title());
        s += &format!(
            "{:<22} {:>8} {:>10} {:>8} {:>8} {:>8} {:>6} {:>7} {:>10} {:>9}\n",
            "way",
            "time s",
            "transfer s",
            "check s",
            "MB/s",
            "CPU s",
            "copies",
            "far end",
            "transfer/",
            "CPU/"
        );
        s += &format!(
            "{:<22} {:>8} {:>10} {:>8} {:>8} {:>8} {:>14} {:>10} {:>9}\n",
            "", "", "", "", "", "", "(app+kernel)", "read+write", "read+write"
        );
        for w in &rows {
            s += &format!(
                "{:<22} {:>8.3} {:>10.3} {:>8.3} {:>8.1} {:>8.3} {:>6} {:>7} {:>10} {:>9}\n",
                w.name,
                w.seconds,
                w.transfer_seconds,
                w.check_seconds,
                w.mb_per_s,
                w.cpu_seconds,
                format!("{}+{}", w.application_copies, w.kernel_copies),
                format!("{}+{}", w.far_application_copies, w.far_kernel_copies),
                percent(w.vs_read_write),
                percent(w.cpu_vs_read_write)
            );
        }
        for w in &rows {
            s += &format!("  {:<22} serving: {}\n", w.name, w.how);
            s += &format!("  {:<22} far end: {}\n", "", w.far_how);
            if !w.checked.is_empty() {
                s += &format!("  {:<22} checked: {}\n", "", w.checked);
            }
        }
    }
    s += "\ntime: first byte read to the far end's last byte checked (XXH64); transfer: the same \
        with a far\nend that takes the data without reading it (a stream into its buffer, a \
        channel's slots as\nthey are); check: the far end's time in its XXH64. MB/s and CPU \
        (the serving process, user +\nsystem, every thread) are the transfer run's. copies: CPU \
        copies of the payload, by construction\n(a counter overrides it where one shows more): \
        made by the process itself + made by the kernel\nfor it; copies on the serving side, \
        then at the far end. The classic ways and shm read a file\nin the page cache; the card \
        ways read the card's storage, every byte through the device.\nMSG_ZEROCOPY does not \
        apply to a Unix socket (the kernel refuses SO_ZEROCOPY there); over TCP\nto a local \
        peer the kernel copies, and says so (card -> TCP zerocopy).\n";
    for k in &r.skipped {
        s += &format!("skipped {}: {}\n", k.way.name(), k.reason);
    }
    s += &format!(
        "\nEvery run's data checked at the far end: {} bytes, XXH64 {}.\n",
        r.bytes, r.xxh64
    );
    s += &format!(
        "The reference claim ({}): {}.\n",
        r.reference_source, r.reference_claim
    );
    for g in &r.goals {
        s += &g.summary;
        s += "\n";
    }
    s
}

/// One goal with its measured value and verdict.
fn goal_line(g: &Goal) -> String {
    let who = match g.reach {
        Reach::Local => "local",
        Reach::Network => "network",
    };
    match (g.name, g.transfer_ratio) {
        (Some(name), Some(t)) => format!(
            "Goal ({who}): the best zero-copy way, {name}, takes {} of read+write's transfer time \
             and {} of its serving CPU; goal <= {:.0} % of both: {}.",
            percent(Some(t)),
            percent(g.cpu_ratio),
            g.goal_ratio * 100.0,
            g.verdict
        ),
        _ => format!("Goal ({who}): {}: {}.", g.goal, g.verdict),
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0} %", v * 100.0))
}

fn write_files(dir: &Path, r: &Report) -> Result<()> {
    let io = |p: &Path, e: std::io::Error| Failure::failed(format!("writing {}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| Failure::failed(format!("encoding JSON: {e}")))?;
    let p = dir.join("pipeline.json");
    std::fs::write(&p, json + "\n").map_err(|e| io(&p, e))?;
    for (reach, file) in [
        (Reach::Local, "pipeline-local.svg"),
        (Reach::Network, "pipeline-network.svg"),
    ] {
        let rows: Vec<&Row> = r.ways.iter().filter(|w| w.reach == reach).collect();
        if rows.is_empty() {
            // Nothing ran: no time to draw.
            continue;
        }
        let chart = zcopy_plot::Bars {
            title: format!(
                "Serving {} from storage to {} (lower is better)",
                output::human_bytes(r.bytes),
                match reach {
                    Reach::Local => "a local peer",
                    Reach::Network => "a network peer",
                }
            ),
            note: format!(
                "median of {} run{}, {} CPUs{}, kernel {}; each way: the transfer alone, then the \
                 whole time with the far end's XXH64 check",
                r.runs,
                if r.runs == 1 { "" } else { "s" },
                r.cpus,
                placement(r),
                r.kernel,
            ),
            value: "time per way".into(),
            unit: zcopy_plot::Unit::Seconds,
            bars: rows
                .iter()
                .flat_map(|w| {
                    [
                        (format!("{}: transfer", w.name), w.transfer_seconds),
                        (format!("{}: checked", w.name), w.seconds),
                    ]
                })
                .collect(),
        };
        let svg = zcopy_plot::bars(&chart).map_err(|e| Failure::failed(e.to_string()))?;
        let p = dir.join(file);
        let mut f = File::create(&p).map_err(|e| io(&p, e))?;
        f.write_all(svg.as_bytes()).map_err(|e| io(&p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_never_takes_one_that_is_there() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("zcopy-default-file-{}-{nanos}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let create = |p: &Path| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(p)
        };
        let theirs = dir.join(format!("zcopy-pipeline-{}.dat", std::process::id()));
        std::fs::write(&theirs, b"another run's").unwrap();
        let (path, made) = default_file(&dir, create);
        assert!(made.is_ok());
        assert_ne!(path, theirs);
        assert_eq!(std::fs::read(&theirs).unwrap(), b"another run's");
        let (next, made) = default_file(&dir, create);
        assert!(made.is_ok());
        assert!(next != path && next != theirs, "{next:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn buffers_in_flight_fit_a_channel_and_half_the_memory() {
        let (gib, max) = (1u64 << 30, zcopy::channel::segment::MAX_SLOTS_BYTES);
        assert!(check_in_flight(8 * gib, None).is_ok());
        assert!(check_in_flight(8 * gib, Some(16 * gib)).is_ok());
        for (in_flight, avail, says) in [
            (16 * gib, Some(24 * gib), "more than half the memory"),
            (max + 1, None, "more than a channel holds"),
        ] {
            let f = check_in_flight(in_flight, avail).unwrap_err();
            assert_eq!(f.code, crate::failure::USAGE, "{}", f.message);
            assert!(f.message.contains(says), "{}", f.message);
        }
    }

    #[test]
    fn the_ratio_interval_spans_the_quartiles_of_both_sides() {
        // 3 runs: every pairing.
        assert_eq!(
            ratio_range(&[1.0, 2.0, 3.0], &[10.0, 20.0, 40.0]),
            Some((1.0 / 40.0, 3.0 / 10.0))
        );
        // 5 runs: one outlier on each side is left out.
        let (lo, hi) =
            ratio_range(&[1.0, 2.0, 2.0, 2.0, 9.0], &[1.0, 10.0, 10.0, 10.0, 50.0]).unwrap();
        assert_eq!((lo, hi), (0.2, 0.2));
        // A zero time below cannot be divided by, and no runs give nothing.
        assert_eq!(ratio_range(&[1.0], &[0.0]), None);
        assert_eq!(ratio_range(&[], &[1.0]), None);
    }
}
