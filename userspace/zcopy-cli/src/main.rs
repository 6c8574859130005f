//! zcopy: the command line tool.
//!
//! ```text
//! zcopy info [--json]                  cards, RDMA devices and ports, named channels
//! zcopy send FILE --via shm|card|rdma  send a file to a `zcopy recv`, zero-copy
//! zcopy recv OUTFILE --via ...         receive it, check length and checksum
//! zcopy channel list [--json]          named channels in /dev/shm, live and stale
//! zcopy channel clean [NAME...]        remove stale channels (all stale ones without NAME)
//! zcopy bench shm|card|rdma|all        the benchmarks, with their baselines, tables and plots
//! zcopy pipeline                       serve a file to a local and a network peer, eleven ways
//! ```
//!
//! Exit codes: 0 done, 1 failed, 2 bad usage, 3 the platform is missing
//! something (no zcard, no RDMA device): [`failure`].
//!
//! The layout: this file is the command line (clap) and its checks;
//! `info` the report, `channels` the channel list, `endpoints` how each
//! transport's two ends meet, `transfer` the file transfer written once
//! over the channel traits, `bench` the benchmarks, `pipeline` the
//! zero-copy experiment, `platform` what the machine offers (card, RDMA, perftest),
//! `failure` the exit codes and hints, `output` stdout.

mod bench;
mod channels;
mod endpoints;
mod failure;
mod files;
mod info;
mod output;
mod pipeline;
mod platform;
mod signals;
mod transfer;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use failure::{exit_codes_help, Failure, Result};
use zcopy_units::parse_size;

#[derive(Debug, Parser)]
#[command(
    name = "zcopy",
    version,
    about = "zero-copy data movement on Linux",
    after_help = exit_codes_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// What this machine offers: zcard devices, RDMA devices and ports, named channels.
    #[command(after_help = exit_codes_help())]
    Info {
        /// One JSON object {"cards": [...], "rdma": [...], "channels": [...], "hints": {...}}
        /// on one line instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Sends a file to `zcopy recv`: read straight into the channel's slots, no copy on the way.
    #[command(
        after_help = exit_codes_help(),
        long_about = "Sends a file to `zcopy recv` over a zero-copy channel: each chunk is read \
from the file straight into a loaned slot and sent; the receiver writes it out from the same \
slot. A header (file size) goes first, a trailer (size, XXH64 checksum) last; the receiver checks both.\n\n\
Examples:\n  \
zcopy send big.bin --via shm --name demo           (then: zcopy recv out.bin --via shm --name demo)\n  \
zcopy send big.bin --via card --name demo          (slots in a zcard pool; socket /run/zcopy/demo.sock)\n  \
zcopy send big.bin --via rdma --to 169.254.77.1:7471 --from 169.254.77.2"
    )]
    Send(SendArgs),
    /// Receives a file from `zcopy send` and checks its length and checksum (XXH64).
    #[command(
        after_help = exit_codes_help(),
        long_about = "Receives a file from `zcopy send`, reading each chunk in place in the \
channel's slot, and checks its length and XXH64 checksum against the sender's. OUTFILE appears only \
when both match (it is written under a temporary name beside it first); on any failure it is \
not created and an existing OUTFILE is left as it was. A symbolic link is written through (the \
file it names is replaced). An OUTFILE that is not a regular file (a device, a FIFO, \
/dev/stdout on a pipe), or that is standard output itself (/dev/stdout on a file: `>> log` \
appends), is written in place as the data comes, checked only at the end; when it is standard \
output, the summary goes to stderr.\n\n\
Examples:\n  \
zcopy recv out.bin --via shm --name demo --timeout 30\n  \
zcopy recv out.bin --via card --name demo\n  \
zcopy recv out.bin --via rdma --listen 169.254.77.1:7471"
    )]
    Recv(RecvArgs),
    /// Runs the benchmarks: shm (IPC), card (zcard.ko's rings), rdma (vs perftest), or all.
    #[command(after_help = exit_codes_help(), long_about = bench::LONG_ABOUT)]
    Bench(bench::BenchArgs),
    /// Named shared-memory channels (/dev/shm/zcopy.*).
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Serves a file from storage to a local and a network peer, eleven ways, and measures each.
    #[command(
        after_help = exit_codes_help(),
        long_about = "Serves the same file from storage eleven ways in one run and measures each, \
in two tables.\n\n\
To a local peer (another process on this machine): read+write, sendfile and splice to a Unix \
socket; the shm channel, where the file is read into loaned shared-memory slots (one copy, the \
kernel's) that the peer reads in place; and the card channel, where the card reads its storage \
(STORAGE_READ) straight into the channel's slots in a card pool, which the peer reads in place \
(no copy anywhere). MSG_ZEROCOPY does not apply to a Unix socket.\n\n\
To a network peer: read+write, mmap+write, sendfile and splice to a TCP peer, and the card's \
pool buffers sent as they are, over RDMA (the buffers are the channel's slots) and over TCP \
with MSG_ZEROCOPY.\n\n\
The card ways run as an asynchronous pipeline: a reader thread keeps many card reads in flight \
into free buffers, the sender sends full ones in order, and lock-free queues hand buffers \
between them.\n\n\
The far end is a separate process that checks length and checksum (XXH64) of every byte and times its \
check apart. Each run is made twice: checked (the whole time: first byte read to the far end's \
last byte checked) and with a far end that takes the data without reading it (the transfer \
time); the runs go in rounds, every way once in each. For each way: both times, the check's time, MB/s, the serving process's CPU time and \
context switches (getrusage), and the CPU copies of the payload on the serving side and at the \
far end, each split into the process's own and the kernel's, by construction, with what a \
counter showed where one can (the card's completed requests, MSG_ZEROCOPY's copied flag). The \
same data (seeded) is in a file (classic ways, shm) and in the card's storage (card ways).\n\n\
Each table's goal: its best zero-copy way at most 35 % of read+write's transfer time and of \
its serving CPU time. A verdict needs 3 runs, and the ratio on one side of the goal from \
the lower to the upper quartile of the runs (3 runs: every pairing of them); otherwise none.\n\n\
Needs /dev/zcard0 for the card ways and an RDMA device on --rdma-to/--rdma-from for \
card -> RDMA; without them those ways are skipped (exit 3 when asked for by --ways).\n\n\
Examples:\n  \
zcopy pipeline                                   (32 MiB, all eleven ways, 3 runs each)\n  \
zcopy pipeline --size 8M --runs 1 --out target/demo\n  \
zcopy pipeline --ways unix-read-write,shm,card-channel --json"
    )]
    Pipeline(pipeline::PipelineArgs),
    /// The far end of `zcopy pipeline` (started by it).
    #[command(hide = true)]
    PipelineSink(pipeline::sink::SinkArgs),
}

#[derive(Debug, Subcommand)]
enum ChannelCmd {
    /// Lists named channels: sender, receiver, shape, and whether stale.
    #[command(after_help = exit_codes_help())]
    List {
        /// One line of JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Removes stale channels (their sender is gone); live ones are kept.
    #[command(after_help = exit_codes_help())]
    Clean {
        /// Channels to remove (default: every stale one).
        #[arg(value_parser = parse_name)]
        names: Vec<String>,
    },
}

/// The transport a file goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Shared memory: a named channel in /dev/shm (same machine).
    Shm,
    /// Slots in a zcard pool, the card can DMA into them (needs /dev/zcard0; same machine).
    Card,
    /// RDMA WRITE slot to slot (needs an RDMA device, e.g. Soft-RoCE).
    Rdma,
}

impl Via {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Via::Shm => "shm",
            Via::Card => "card",
            Via::Rdma => "rdma",
        }
    }
}

/// `zcopy send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The file to send (a regular file).
    pub file: PathBuf,
    /// The transport.
    #[arg(long, value_enum)]
    pub via: Via,
    /// shm, card: the channel's name (shm: /dev/shm/zcopy.NAME, card: /run/zcopy/NAME.sock)
    /// [default: zcopy-send].
    #[arg(long, value_parser = parse_name)]
    pub name: Option<String>,
    /// rdma: the receiver's listen address.
    #[arg(long, value_name = "ADDR:PORT")]
    pub to: Option<SocketAddr>,
    /// rdma: the local address to send from, an address of an RDMA device
    /// (default: wherever the routing table says).
    #[arg(long, value_name = "IP")]
    pub from: Option<IpAddr>,
    /// Bytes per slot, i.e. per message: 64 to 1G; K, M, G suffixes (powers of 1024).
    #[arg(long, value_name = "N", default_value = "256K", value_parser = parse_slot_size)]
    pub slot_size: u32,
    /// Slots in the channel: how many messages can be in flight at once (rdma: at most 4096)
    /// [default: enough for 4 MiB in flight, at least 16 and at most 1024].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub slots: Option<u32>,
    /// Give up when no receiver comes, or it takes nothing, for SECS seconds
    /// (default: wait as long as it takes; a receiver that dies is noticed anyway).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Print the summary as one line of JSON.
    #[arg(long)]
    pub json: bool,
}

impl SendArgs {
    /// `--slots`, or by default a stream's
    /// ([`zcopy::channel::stream_slot_count`]).
    pub fn slot_count(&self) -> u32 {
        self.slots
            .unwrap_or_else(|| zcopy::channel::stream_slot_count(self.slot_size as usize))
    }

    /// The flags that belong to another transport are a usage error.
    fn check(&self) -> Result<()> {
        match self.via {
            Via::Rdma if self.name.is_some() => Err(Failure::usage(
                "--name is for --via shm|card; rdma uses --to",
            )),
            Via::Rdma if self.to.is_none() => Err(Failure::usage(
                "--via rdma needs --to ADDR:PORT (the receiver's --listen address)",
            )),
            Via::Shm | Via::Card if self.to.is_some() || self.from.is_some() => {
                Err(Failure::usage(format!(
                    "--to and --from are for --via rdma, not {}",
                    self.via.name()
                )))
            }
            Via::Card => {
                endpoints::check_card_name(self.name.as_deref().unwrap_or(endpoints::DEFAULT_NAME))
            }
            _ => Ok(()),
        }
    }
}

/// `zcopy recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    /// Where to write the file (created only if everything checks out).
    pub outfile: PathBuf,
    /// The transport (the sender's).
    #[arg(long, value_enum)]
    pub via: Via,
    /// shm, card: the channel's name, as the sender's --name [default: zcopy-send].
    #[arg(long, value_parser = parse_name)]
    pub name: Option<String>,
    /// rdma: the address to listen on, an address of an RDMA device (e.g. 169.254.77.1:7471).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Give up when no sender comes, or it sends nothing, for SECS seconds
    /// (default: wait as long as it takes; a sender that dies is noticed anyway).
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub timeout: Option<Duration>,
    /// Print the summary as one line of JSON.
    #[arg(long)]
    pub json: bool,
}

impl RecvArgs {
    /// The flags that belong to another transport are a usage error.
    fn check(&self) -> Result<()> {
        match self.via {
            Via::Rdma if self.name.is_some() => Err(Failure::usage(
                "--name is for --via shm|card; rdma uses --listen",
            )),
            Via::Rdma if self.listen.is_none() => {
                Err(Failure::usage("--via rdma needs --listen ADDR:PORT"))
            }
            Via::Shm | Via::Card if self.listen.is_some() => Err(Failure::usage(format!(
                "--listen is for --via rdma, not {}",
                self.via.name()
            ))),
            Via::Card => {
                endpoints::check_card_name(self.name.as_deref().unwrap_or(endpoints::DEFAULT_NAME))
            }
            _ => Ok(()),
        }
    }
}

/// A channel name, as `zcopy::channel::check_name` takes it.
fn parse_name(s: &str) -> std::result::Result<String, String> {
    zcopy::channel::check_name(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// A slot size: a byte count from 64 to 1G.
fn parse_slot_size(s: &str) -> std::result::Result<u32, String> {
    match parse_size(s).ok() {
        Some(b) if (u64::from(transfer::MIN_SLOT_SIZE)..=1 << 30).contains(&b) => Ok(b as u32),
        _ => Err(format!(
            "{s}: a slot holds {} bytes to 1G",
            transfer::MIN_SLOT_SIZE
        )),
    }
}

/// The longest `--timeout`: a year. Leave the option out to wait as long
/// as it takes.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// Seconds, fractions allowed (`0.5`), more than zero: a timeout of none
/// would fail any wait at all, a working peer's too; at most
/// [`MAX_TIMEOUT`].
fn parse_secs(s: &str) -> std::result::Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .filter(|d| !d.is_zero() && *d <= MAX_TIMEOUT)
        .ok_or_else(|| {
            format!(
                "{s:?} is not a number of seconds above 0 and at most {} (a year; leave it out to wait as long as it takes)",
                MAX_TIMEOUT.as_secs()
            )
        })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Command::Info { json } => info::run(*json),
        Command::Send(a) => endpoints::send(a),
        Command::Recv(a) => endpoints::recv(a),
        Command::Bench(a) => bench::run(a),
        Command::Channel(ChannelCmd::List { json }) => channels::list(*json),
        Command::Channel(ChannelCmd::Clean { names }) => channels::clean(names.clone()),
        Command::Pipeline(a) => pipeline::run(a),
        Command::PipelineSink(a) => pipeline::sink::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("zcopy: {}", f.message);
            if f.code == failure::USAGE {
                eprintln!("\nFor more information, try '--help'.");
            }
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_sizes_take_suffixes_and_stay_in_range() {
        assert_eq!(parse_slot_size("4096"), Ok(4096));
        assert_eq!(parse_slot_size("64K"), Ok(64 << 10));
        assert_eq!(parse_slot_size("64k"), Ok(64 << 10));
        assert_eq!(parse_slot_size("1M"), Ok(1 << 20));
        assert_eq!(parse_slot_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_slot_size("1G"), Ok(1 << 30));
        assert_eq!(parse_slot_size("64"), Ok(64));
        for bad in [
            "63",
            "0",
            "2G",
            "",
            "K",
            "1.5M",
            "-1",
            "x",
            "99999999999999999999G",
        ] {
            assert!(parse_slot_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_default_slot_count_keeps_4_mib_in_flight_within_its_bounds() {
        let count = |slot_size: &str, slots: Option<&str>| {
            let mut argv = vec![
                "zcopy",
                "send",
                "f",
                "--via",
                "shm",
                "--slot-size",
                slot_size,
            ];
            if let Some(n) = slots {
                argv.extend(["--slots", n]);
            }
            let Command::Send(a) = Cli::parse_from(argv).command else {
                panic!("not send")
            };
            a.slot_count()
        };
        assert_eq!(count("64K", None), 64);
        assert_eq!(count("256K", None), 16);
        assert_eq!(count("1M", None), 16);
        assert_eq!(count("4K", None), 1024);
        assert_eq!(count("64", None), 1024);
        assert_eq!(count("64K", Some("3")), 3);
    }

    #[test]
    fn seconds_and_names_are_checked() {
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("30"), Ok(Duration::from_secs(30)));
        for bad in ["-1", "nan", "inf", "1e300", "x", "", "0", "0.0", "1e-12"] {
            assert!(parse_secs(bad).is_err(), "{bad:?}");
        }
        assert!(parse_name("demo-1.a_b").is_ok());
        for bad in ["", ".hidden", "a/b", "a b", &"x".repeat(201)] {
            let e = parse_name(bad).unwrap_err();
            assert!(
                e.contains("use 1 to 200 of A-Z a-z 0-9 . _ -"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
