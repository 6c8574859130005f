//! zcopy-ipc-bench: one-way latency (ping-pong) and throughput of zcopy
//! channels and of the baselines, two processes pinned to different cores
//! and to the same core, in one run. Prints a table, writes JSON and SVG
//! plots, and checks the goals against the baselines measured in the same
//! run (never against fixed numbers).
//!
//! Zero-copy mechanisms touch only a 64-byte header of each message: the
//! payload is where the receiver reads it, which is the point. Copying
//! mechanisms move every byte.

mod mech;
mod report;

use std::path::PathBuf;

use clap::Parser;

use mech::{Mech, Pin};

/// Alternating rounds of the points the paired goals read.
const ROUNDS: usize = 9;

/// Command line.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "zcopy IPC benchmark: latency and throughput against the baselines"
)]
struct Args {
    /// Message sizes in bytes.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "64,1024,16384,262144,4194304"
    )]
    sizes: Vec<usize>,
    /// Mechanisms (default: all available).
    #[arg(long, value_delimiter = ',')]
    mech: Vec<String>,
    /// Pinnings: cross (two cores), same (one core).
    #[arg(long, value_delimiter = ',', default_value = "cross,same")]
    pin: Vec<String>,
    /// Round trips per latency point at 64 B (fewer for big copying sizes).
    #[arg(long, default_value_t = 20_000)]
    iters: usize,
    /// Small counts: a smoke run, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Where to write JSON and SVG files.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
}

fn main() {
    let args = Args::parse();
    if let Err(e) = run(args) {
        eprintln!("zcopy-ipc-bench: {e}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<(), String> {
    let mechs: Vec<Mech> = if args.mech.is_empty() {
        Mech::all()
    } else {
        args.mech
            .iter()
            .map(|m| Mech::parse(m))
            .collect::<Result<_, _>>()?
    };
    let pins: Vec<Pin> = args
        .pin
        .iter()
        .map(|p| Pin::parse(p))
        .collect::<Result<_, _>>()?;
    if args.sizes.iter().any(|&s| !(64..=64 << 20).contains(&s)) {
        return Err("sizes must be 64 B .. 64 MiB".into());
    }
    let iters = if args.quick { 200 } else { args.iters };
    let mut results = Vec::new();
    for &pin in &pins {
        for &m in &mechs {
            for &size in &args.sizes {
                let lat = m.latency(size, pin, iters);
                let tput = m.throughput(size, pin, if args.quick { 1000 } else { 100_000 });
                let r = report::Point::new(m, pin, size, lat, tput);
                eprintln!("{}", r.line());
                results.push(r);
            }
        }
    }
    // The latency goals that compare two figures, in alternating rounds
    // (cross-core): every point they read that this run measures.
    let paired: Vec<(Mech, usize)> = report::PAIRED
        .iter()
        .copied()
        .filter(|(m, size)| mechs.contains(m) && args.sizes.contains(size))
        .collect();
    let mut rounds = report::Rounds::default();
    if pins.contains(&Pin::Cross) && paired.len() > 1 {
        let n = if args.quick { 2 } else { ROUNDS };
        match mech::rounds(&paired, n, iters) {
            Ok(p50) => {
                rounds = report::Rounds {
                    points: paired,
                    p50,
                };
                for (i, (row, moved)) in rounds.p50.iter().zip(rounds.moved()).enumerate() {
                    let row: Vec<String> = rounds
                        .points
                        .iter()
                        .zip(row)
                        .map(|((m, size), v)| {
                            format!("{} {} {v} ns", m.name(), zcopy_plot::size(*size as f64))
                        })
                        .collect();
                    let note = if moved {
                        " (the floor moved within it: left out of the goals between its two floors)"
                    } else {
                        ""
                    };
                    eprintln!("cross-core, round {}{note}: {}", i + 1, row.join(", "));
                }
            }
            Err(e) => eprintln!("cross-core rounds: {e}"),
        }
    }
    // What a 64 B figure is made of: the channel's own work and the
    // clock, in one thread.
    let one_thread = (!rounds.p50.is_empty()).then(|| {
        let r = mech::one_thread(if args.quick { 10_000 } else { 1_000_000 });
        match &r {
            Ok((msg, clock)) => eprintln!(
                "one thread: a 64 B message through a channel {msg:.1} ns, a round trip's timing {clock:.1} ns"
            ),
            Err(e) => eprintln!("one thread: {e}"),
        }
        r
    });
    // A receiver waiting on an idle sender: what its CPU does.
    let idle = (pins.contains(&Pin::Cross) && mechs.contains(&Mech::ZcopyBlocking)).then(|| {
        let window = std::time::Duration::from_millis(if args.quick { 50 } else { 500 });
        mech::idle_cpu(window)
    });
    if let Some(r) = &idle {
        match r {
            Ok((blocking, busy)) => eprintln!(
                "idle sender: a blocking recv uses {:.2} % of a core, busy-polling {:.1} %",
                100.0 * blocking,
                100.0 * busy
            ),
            Err(e) => eprintln!("idle sender: {e}"),
        }
    }
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    report::write(
        &results,
        &rounds,
        one_thread.and_then(Result::ok),
        idle.and_then(Result::ok),
        &args.out,
        args.quick,
    )
}
