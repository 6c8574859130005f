//! zcopy: the command line tool.
//!
//! ```text
//! zcopy channel list [--json]      named channels in /dev/shm, live and stale
//! zcopy channel clean [NAME...]    remove stale channels (all stale ones without NAME)
//! ```
//! Exit codes: 0 done, 1 an operation failed, 2 bad usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::json;
use zcopy::channel::{self, ChannelInfo};

#[derive(Debug, Parser)]
#[command(name = "zcopy", version, about = "zero-copy data movement on Linux")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Named shared-memory channels (/dev/shm/zcopy.*).
    #[command(subcommand)]
    Channel(ChannelCmd),
}

#[derive(Debug, Subcommand)]
enum ChannelCmd {
    /// Lists named channels: sender, receiver, shape, and whether stale.
    List {
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Removes stale channels (their sender is gone); live ones are kept.
    Clean {
        /// Channels to remove (default: every stale one).
        names: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Channel(ChannelCmd::List { json }) => list(json),
        Command::Channel(ChannelCmd::Clean { names }) => clean(names),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("zcopy: {e}");
            ExitCode::from(1)
        }
    }
}

fn state(c: &ChannelInfo) -> &'static str {
    match (&c.problem, c.stale) {
        (Some(_), _) => "invalid",
        (None, true) => "stale",
        (None, false) => "live",
    }
}

fn list(as_json: bool) -> Result<(), String> {
    let all = channel::list().map_err(|e| e.to_string())?;
    if as_json {
        let v: Vec<_> = all
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "path": c.path,
                    "state": state(c),
                    "sender_pid": c.sender_pid,
                    "receiver_pid": c.receiver_pid,
                    "transport": c.geometry.map(|g| format!("{:?}", g.transport).to_lowercase()),
                    "slot_size": c.geometry.map(|g| g.slot_size),
                    "slot_count": c.geometry.map(|g| g.slot_count),
                    "problem": c.problem,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    println!(
        "{:<32} {:<8} {:>8} {:>8} {:>10} {:>6}",
        "NAME", "STATE", "SENDER", "RECEIVER", "SLOT", "SLOTS"
    );
    for c in &all {
        let (size, count) = c
            .geometry
            .map_or((String::from("-"), String::from("-")), |g| {
                (g.slot_size.to_string(), g.slot_count.to_string())
            });
        println!(
            "{:<32} {:<8} {:>8} {:>8} {:>10} {:>6}",
            c.name,
            state(c),
            c.sender_pid,
            c.receiver_pid,
            size,
            count
        );
        if let Some(p) = &c.problem {
            println!("  {p}");
        }
    }
    Ok(())
}

fn clean(names: Vec<String>) -> Result<(), String> {
    let targets: Vec<String> = if names.is_empty() {
        channel::list()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|c| c.stale || c.problem.is_some())
            .map(|c| c.name)
            .collect()
    } else {
        names
    };
    let mut failed = false;
    for name in &targets {
        match channel::remove_stale(name) {
            Ok(()) => println!("removed {name}"),
            Err(e) => {
                eprintln!("zcopy: {name}: {e}");
                failed = true;
            }
        }
    }
    if targets.is_empty() {
        println!("no stale channels");
    }
    if failed {
        Err("some channels were not removed".into())
    } else {
        Ok(())
    }
}
