//! `zcopy pipeline`: serve a file from storage to a network peer six ways on
//! the same data in the same run, and measure each.
//!
//! The classic ways (`ways`) read a file and write a TCP socket; the
//! zero-copy ways (`staged`) have the card read its storage straight into
//! pool buffers that go out as they are, over RDMA or TCP with MSG_ZEROCOPY.
//! The far end (`sink`) is another process that checks length and CRC32C.
//! Each way runs `--runs` times; the run with the median time is reported.

pub mod sink;
mod staged;
mod ways;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use serde::Serialize;

use zcopy::card::{Buf, Card, Pool, Rings, Sqe};
use zcopy::channel::Builder;
use zcopy::rdma::BuilderExt;

use crate::failure::{self, Failure, Result};
use crate::output;

/// The reference claim the pipeline's figures are printed beside.
const REFERENCE_CLAIM: &str =
    "zero-copy cuts transfer time by about two thirds (70 -> 107 MB/s in one account)";
/// Where the reference claim comes from.
const REFERENCE_SOURCE: &str = "a common account of Linux zero-copy: mmap, sendfile, splice, DMA";
/// The goal: a zero-copy way takes at most this share of read+write's time.
const GOAL: f64 = 0.35;

/// One way to serve the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Way {
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

impl Way {
    const ALL: [Way; 6] = [
        Way::ReadWrite,
        Way::MmapWrite,
        Way::Sendfile,
        Way::Splice,
        Way::CardRdma,
        Way::CardTcp,
    ];

    fn name(self) -> &'static str {
        match self {
            Way::ReadWrite => "read+write",
            Way::MmapWrite => "mmap+write",
            Way::Sendfile => "sendfile",
            Way::Splice => "splice",
            Way::CardRdma => "card -> RDMA",
            Way::CardTcp => "card -> TCP zerocopy",
        }
    }

    /// CPU copies of the payload on the serving side, by construction:
    /// those the serving process makes itself, those the kernel makes for
    /// it, and how.
    fn copies(self) -> Copies {
        let (application, kernel, how) = match self {
            Way::ReadWrite => (
                0,
                2,
                "read: the kernel copies page cache -> buffer; write: buffer -> socket",
            ),
            Way::MmapWrite => (0, 1, "write: the kernel copies mapped page cache -> socket"),
            Way::Sendfile => (0, 0, "the socket references page-cache pages"),
            Way::Splice => (0, 0, "pages move by reference through a pipe"),
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
        };
        Copies {
            application,
            kernel,
            how,
        }
    }

    fn zero_copy(self) -> bool {
        matches!(self, Way::CardRdma | Way::CardTcp)
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
    /// Buffers in flight between the card and the sender (zero-copy ways).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(2..=1024))]
    pub buffers: u32,
    /// Runs per way; the run with the median time is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub runs: u32,
    /// The ways to run, comma separated [default: all six; a zero-copy way the platform
    /// cannot run is skipped with the reason].
    #[arg(long, value_enum, value_delimiter = ',')]
    pub ways: Vec<Way>,
    /// The file to serve (written with the run's data, removed afterwards)
    /// [default: a new file in $TMPDIR].
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
    /// Also write pipeline.json and pipeline.svg (time per way) into DIR.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as one line of JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// A way's CPU copies of the payload on the serving side.
#[derive(Debug, Clone, Copy)]
struct Copies {
    /// Made by the serving process itself.
    application: u32,
    /// Made by the kernel on its behalf (system calls, a software NIC).
    kernel: u32,
    how: &'static str,
}

/// One way's reported run.
#[derive(Debug, Clone, Serialize)]
struct Row {
    way: Way,
    name: &'static str,
    /// Wall time from the first byte read to the far end's last byte checked.
    seconds: f64,
    mb_per_s: f64,
    /// Server CPU time (user + system, every thread).
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
    /// What a counter showed, where one can.
    checked: String,
    /// Time relative to read+write (when it ran).
    vs_read_write: Option<f64>,
    /// Server CPU time relative to read+write's (when it ran).
    cpu_vs_read_write: Option<f64>,
    /// Every run's seconds.
    runs: Vec<f64>,
}

/// A way not run here, and why.
#[derive(Debug, Clone, Serialize)]
struct Skipped {
    way: Way,
    reason: String,
}

#[derive(Debug, Serialize)]
struct Report {
    bytes: u64,
    chunk: u64,
    buffers: u32,
    runs: u32,
    seed: u64,
    crc32c: u32,
    kernel: String,
    cpus: usize,
    ways: Vec<Row>,
    skipped: Vec<Skipped>,
    reference_claim: &'static str,
    reference_source: &'static str,
    /// The best zero-copy way's time as a share of read+write's.
    best_zero_copy_ratio: Option<f64>,
    /// The same for the serving process's CPU time.
    best_zero_copy_cpu_ratio: Option<f64>,
    goal_ratio: f64,
    goal_met: Option<bool>,
}

/// A run's measurements.
#[derive(Debug, Clone)]
struct Sample {
    seconds: f64,
    user: f64,
    system: f64,
    vcsw: i64,
    ivcsw: i64,
    checked: String,
    /// Kernel copies a counter showed, where it overrides the construction
    /// (MSG_ZEROCOPY sends the kernel copied after all).
    copies_seen: Option<u32>,
}

/// What the card ways need.
struct CardKit {
    card: Card,
    rings: Rings,
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
    let chosen: Vec<Way> = if a.ways.is_empty() {
        Way::ALL.to_vec()
    } else {
        a.ways.clone()
    };
    let explicit = !a.ways.is_empty();
    let mut skipped = Vec::new();

    // The platform: a card for the zero-copy ways, an RDMA device for one.
    let mut kit = None;
    if chosen.iter().any(|w| w.zero_copy()) {
        match open_card(a) {
            Ok(k) => kit = Some(k),
            Err(f) if f.code == failure::MISSING && !explicit => {
                for w in chosen.iter().filter(|w| w.zero_copy()) {
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

    let data = make_data(a.size, a.seed);
    let crc = crc32c::crc32c(&data);
    let (path, remove) = match &a.file {
        Some(p) => (p.clone(), false),
        None => (
            std::env::temp_dir().join(format!("zcopy-pipeline-{}.dat", std::process::id())),
            true,
        ),
    };
    std::fs::write(&path, &data)
        .map_err(|e| Failure::failed(format!("writing {}: {e}", path.display())))?;
    let _cleanup = RemoveOnDrop(remove.then(|| path.clone()));
    if let Some(k) = kit.as_mut() {
        load_storage(k, &data, a.chunk)?;
    }
    drop(data);

    let mut rows: Vec<Row> = Vec::new();
    for way in chosen {
        if skipped.iter().any(|s| s.way == way) {
            continue;
        }
        let mut samples = Vec::new();
        for _ in 0..a.runs {
            samples.push(run_once(a, way, &path, kit.as_mut(), crc)?);
        }
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by(|&x, &y| samples[x].seconds.total_cmp(&samples[y].seconds));
        let m = &samples[order[order.len() / 2]];
        let c = way.copies();
        let kernel = m.copies_seen.unwrap_or(c.kernel);
        rows.push(Row {
            way,
            name: way.name(),
            seconds: m.seconds,
            mb_per_s: a.size as f64 / m.seconds / 1e6,
            cpu_seconds: m.user + m.system,
            user_seconds: m.user,
            system_seconds: m.system,
            voluntary_switches: m.vcsw,
            involuntary_switches: m.ivcsw,
            cpu_copies: c.application + kernel,
            application_copies: c.application,
            kernel_copies: kernel,
            how: c.how,
            checked: m.checked.clone(),
            vs_read_write: None,
            cpu_vs_read_write: None,
            runs: samples.iter().map(|s| s.seconds).collect(),
        });
    }
    let base = rows
        .iter()
        .find(|r| r.way == Way::ReadWrite)
        .map(|r| (r.seconds, r.cpu_seconds));
    if let Some((t, cpu)) = base {
        for r in &mut rows {
            r.vs_read_write = Some(r.seconds / t);
            r.cpu_vs_read_write = (cpu > 0.0).then(|| r.cpu_seconds / cpu);
        }
    }
    let best = rows
        .iter()
        .filter(|r| r.way.zero_copy())
        .filter_map(|r| r.vs_read_write)
        .min_by(f64::total_cmp);
    let best_cpu = rows
        .iter()
        .filter(|r| r.way.zero_copy())
        .filter_map(|r| r.cpu_vs_read_write)
        .min_by(f64::total_cmp);
    let report = Report {
        bytes: a.size,
        chunk: a.chunk,
        buffers: a.buffers,
        runs: a.runs,
        seed: a.seed,
        crc32c: crc,
        kernel: nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ways: rows,
        skipped,
        reference_claim: REFERENCE_CLAIM,
        reference_source: REFERENCE_SOURCE,
        best_zero_copy_ratio: best,
        best_zero_copy_cpu_ratio: best_cpu,
        goal_ratio: GOAL,
        goal_met: best.map(|b| b <= GOAL),
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

/// `size` bytes from a xorshift generator seeded with `seed`.
fn make_data(size: u64, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut v = Vec::with_capacity(size as usize);
    while (v.len() as u64) < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size as usize);
    v
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

/// The far end, started and listening.
struct Peer {
    child: Child,
    out: BufReader<ChildStdout>,
    addr: SocketAddr,
}

impl Peer {
    fn start(kind: &str, addr: SocketAddr) -> Result<Peer> {
        let exe = std::env::current_exe()
            .map_err(|e| Failure::failed(format!("finding the zcopy binary: {e}")))?;
        let mut child = Command::new(exe)
            .args(["pipeline-sink", kind, &addr.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::failed(format!("starting the far end: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure::failed("the far end has no stdout"))?;
        let mut out = BufReader::new(stdout);
        let line = read_line(&mut out)?;
        let addr = line
            .strip_prefix("listening ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Failure::failed(format!("the far end did not start: {line:?}")))?;
        Ok(Peer { child, out, addr })
    }

    /// Waits for the far end's verdict: bytes and CRC32C it received.
    fn finish(mut self) -> Result<(u64, u32)> {
        let line = read_line(&mut self.out)?;
        let _ = self.child.wait();
        let mut it = line.strip_prefix("done ").unwrap_or("").split(' ');
        match (
            it.next().and_then(|s| s.parse().ok()),
            it.next().and_then(|s| s.parse().ok()),
        ) {
            (Some(b), Some(c)) => Ok((b, c)),
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

/// One run of `way`: connect, then serve and time until the far end checked
/// the last byte.
fn run_once(
    a: &PipelineArgs,
    way: Way,
    path: &Path,
    kit: Option<&mut CardKit>,
    crc: u32,
) -> Result<Sample> {
    let io = |what: &'static str| move |e: std::io::Error| Failure::failed(format!("{what}: {e}"));
    let chunk = a.chunk as usize;
    let mut checked = String::new();
    let mut copies_seen = None;
    let (peer, start, u0) = match way {
        Way::CardRdma => {
            let k = kit.ok_or_else(|| Failure::missing(failure::NO_CARD))?;
            let peer = Peer::start("--rdma", SocketAddr::new(a.rdma_to, 0))?;
            let card = |e: zcopy::card::Error| Failure::failed(format!("the card: {e}"));
            let pool = k
                .card
                .create_pool(a.chunk * u64::from(a.buffers))
                .map_err(card)?;
            let tx = Builder::new()
                .slot_size(a.chunk as usize)
                .slot_count(a.buffers)
                .connect_rdma_on(pool.map().map_err(card)?, Some(a.rdma_from), peer.addr)
                .map_err(|e| Failure::failed(format!("connecting over RDMA: {e}")))?;
            let c0 = k.card.counters().ok();
            let (start, u0) = (Instant::now(), usage());
            let work = staged_run(k, &pool, a, |h, r| {
                staged::send_rdma(&tx, a.size, a.chunk as u32, h, r)
            })?;
            drop(tx);
            checked = card_checked(&k.card, c0, work.0, a.size);
            (peer, start, u0)
        }
        Way::CardTcp => {
            let k = kit.ok_or_else(|| Failure::missing(failure::NO_CARD))?;
            let peer = Peer::start("--tcp", a.tcp)?;
            let card = |e: zcopy::card::Error| Failure::failed(format!("the card: {e}"));
            let pool = k
                .card
                .create_pool(a.chunk * u64::from(a.buffers))
                .map_err(card)?;
            let map = pool.map().map_err(card)?;
            let sock = TcpStream::connect(peer.addr).map_err(io("connecting"))?;
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
        _ => {
            let peer = Peer::start("--tcp", a.tcp)?;
            let mut file = File::open(path).map_err(io("opening the file"))?;
            let mut sock = TcpStream::connect(peer.addr).map_err(io("connecting"))?;
            let (start, u0) = (Instant::now(), usage());
            match way {
                Way::ReadWrite => ways::read_write(&mut file, &mut sock, chunk)?,
                Way::MmapWrite => ways::mmap_write(&file, &mut sock, chunk)?,
                Way::Sendfile => ways::send_file(&file, &sock, a.size, chunk)?,
                _ => ways::splice_file(&file, &sock, a.size, chunk)?,
            }
            drop(sock);
            (peer, start, u0)
        }
    };
    let (bytes, got) = peer.finish()?;
    let seconds = start.elapsed().as_secs_f64();
    let u1 = usage();
    if bytes != a.size || got != crc {
        return Err(Failure::failed(format!(
            "{}: the far end got {bytes} bytes with crc32c {got:#010x}; sent {} with {crc:#010x}",
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
        checked,
        copies_seen,
    })
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

fn table(r: &Report) -> String {
    let mut s = format!(
        "zcopy pipeline: serve {} from storage to a peer, {} ways; median of {} run{}; {} CPUs, kernel {}\n\n",
        output::human_bytes(r.bytes),
        r.ways.len(),
        r.runs,
        if r.runs == 1 { "" } else { "s" },
        r.cpus,
        r.kernel
    );
    s += &format!(
        "{:<22} {:>8} {:>8} {:>8} {:>7} {:>8} {:>6} {:>9} {:>9}\n",
        "way", "time s", "MB/s", "CPU s", "vol cs", "invol cs", "copies", "time/r+w", "CPU/r+w"
    );
    s += &format!("{:<68}(app+kernel)\n", "");
    for w in &r.ways {
        s += &format!(
            "{:<22} {:>8.3} {:>8.1} {:>8.3} {:>7} {:>8} {:>6} {:>9} {:>9}\n",
            w.name,
            w.seconds,
            w.mb_per_s,
            w.cpu_seconds,
            w.voluntary_switches,
            w.involuntary_switches,
            format!("{}+{}", w.application_copies, w.kernel_copies),
            percent(w.vs_read_write),
            percent(w.cpu_vs_read_write)
        );
    }
    s += "\ncopies: CPU copies of the payload on the serving side, by construction (a counter\n\
        overrides it where one shows more): made by the serving process + made by the kernel\n\
        for it. The classic ways read a file in the page cache; the card ways read the card's\n\
        storage, every byte through the device. The far end copies once more for TCP\n\
        (socket -> its buffer), not for RDMA.\n";
    for w in &r.ways {
        s += &format!("  {:<22} {}\n", w.name, w.how);
        if !w.checked.is_empty() {
            s += &format!("  {:<22} checked: {}\n", "", w.checked);
        }
    }
    for k in &r.skipped {
        s += &format!("skipped {}: {}\n", k.way.name(), k.reason);
    }
    s += &format!(
        "\nEvery run's data checked at the far end: {} bytes, crc32c {:#010x}.\n",
        r.bytes, r.crc32c
    );
    s += &format!(
        "The reference claim ({}): {}.\n",
        r.reference_source, r.reference_claim
    );
    match (r.best_zero_copy_ratio, r.goal_met) {
        (Some(b), Some(met)) => {
            s += &format!(
                "Measured: the best zero-copy way takes {:.0} % of read+write's time (a {:.0} % cut); goal <= {:.0} %: {}.\n",
                b * 100.0,
                (1.0 - b) * 100.0,
                r.goal_ratio * 100.0,
                if met { "met" } else { "not met" }
            );
        }
        _ => s += "Measured: no zero-copy way ran beside read+write here.\n",
    }
    if let Some(c) = r.best_zero_copy_cpu_ratio {
        s += &format!(
            "Server CPU time: the best zero-copy way uses {:.0} % of read+write's.\n",
            c * 100.0
        );
    }
    s
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
    if r.ways.is_empty() {
        // Nothing ran: no time to draw.
        return Ok(());
    }
    let chart = zcopy_plot::Bars {
        title: format!(
            "Serving {} from storage to a peer (lower is better)",
            output::human_bytes(r.bytes)
        ),
        note: format!(
            "median of {} runs, {} CPUs, kernel {}; CPU copies on the serving side \
             (app+kernel): {}",
            r.runs,
            r.cpus,
            r.kernel,
            r.ways
                .iter()
                .map(|w| format!("{} {}+{}", w.name, w.application_copies, w.kernel_copies))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        value: "time per way".into(),
        unit: zcopy_plot::Unit::Seconds,
        bars: r
            .ways
            .iter()
            .map(|w| (w.name.to_string(), w.seconds))
            .collect(),
    };
    let svg = zcopy_plot::bars(&chart).map_err(|e| Failure::failed(e.to_string()))?;
    let p = dir.join("pipeline.svg");
    let mut f = File::create(&p).map_err(|e| io(&p, e))?;
    f.write_all(svg.as_bytes()).map_err(|e| io(&p, e))
}
