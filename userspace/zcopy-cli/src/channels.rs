//! `zcopy channel list|clean`: the named shared-memory channels in /dev/shm.

use serde::Serialize;
use zcopy::channel::{self, ChannelInfo};

use crate::failure::{Failure, Result};
use crate::output::{print, print_json};

/// One named channel as `channel list --json` and `info --json` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelReport {
    /// The channel name (the file is `/dev/shm/zcopy.<name>`).
    pub name: String,
    /// Its file.
    pub path: String,
    /// `live`, `stale` (the sender is gone) or `invalid` (not a readable channel).
    pub state: &'static str,
    /// The sender's pid (0 when unreadable).
    pub sender_pid: u32,
    /// The attached receiver's pid, 0 when none.
    pub receiver_pid: u32,
    /// `shm` or `card`; null when invalid.
    pub transport: Option<String>,
    /// Payload bytes per slot; null when invalid.
    pub slot_size: Option<u32>,
    /// Slots; null when invalid.
    pub slot_count: Option<u32>,
    /// Why the file is not a valid channel, when it is not.
    pub problem: Option<String>,
}

impl From<&ChannelInfo> for ChannelReport {
    fn from(c: &ChannelInfo) -> ChannelReport {
        let state = match (&c.problem, c.stale) {
            (Some(_), _) => "invalid",
            (None, true) => "stale",
            (None, false) => "live",
        };
        ChannelReport {
            name: c.name.clone(),
            path: c.path.display().to_string(),
            state,
            sender_pid: c.sender_pid,
            receiver_pid: c.receiver_pid,
            transport: c
                .geometry
                .map(|g| format!("{:?}", g.transport).to_lowercase()),
            slot_size: c.geometry.map(|g| g.slot_size),
            slot_count: c.geometry.map(|g| g.slot_count),
            problem: c.problem.clone(),
        }
    }
}

/// Every named channel, live, stale or invalid.
pub fn reports() -> Result<Vec<ChannelReport>> {
    let all = channel::list().map_err(|e| Failure::failed(e.to_string()))?;
    Ok(all.iter().map(ChannelReport::from).collect())
}

/// The channels as a table (heading line included), each line indented by `indent`.
pub fn table(channels: &[ChannelReport], indent: &str) -> String {
    let mut s = format!(
        "{indent}{:<32} {:<8} {:>8} {:>8} {:>10} {:>6}\n",
        "NAME", "STATE", "SENDER", "RECEIVER", "SLOT", "SLOTS"
    );
    for c in channels {
        let dash = || String::from("-");
        s += &format!(
            "{indent}{:<32} {:<8} {:>8} {:>8} {:>10} {:>6}\n",
            c.name,
            c.state,
            c.sender_pid,
            c.receiver_pid,
            c.slot_size.map_or_else(dash, |v| v.to_string()),
            c.slot_count.map_or_else(dash, |v| v.to_string()),
        );
        if let Some(p) = &c.problem {
            s += &format!("{indent}  {p}\n");
        }
    }
    s
}

/// `zcopy channel list [--json]`.
pub fn list(as_json: bool) -> Result<()> {
    let all = reports()?;
    if as_json {
        print_json(&all)
    } else {
        print(&table(&all, ""))
    }
}

/// `zcopy channel clean [NAME...]`: removes the named channels, or every
/// stale or invalid one; live ones are refused. Without names, an invalid
/// file some process has open or mapped (another format version's
/// channel) is kept and said so, as live channels are kept.
pub fn clean(names: Vec<String>) -> Result<()> {
    let all = names.is_empty();
    let targets: Vec<String> = if all {
        reports()?
            .into_iter()
            .filter(|c| c.state != "live")
            .map(|c| c.name)
            .collect()
    } else {
        names
    };
    let mut failed = false;
    for name in &targets {
        match channel::remove_stale(name) {
            Ok(()) => print(&format!("removed {name}\n"))?,
            Err(channel::Error::Exists { pid, .. }) if all => {
                print(&format!("kept {name}: in use by pid {pid}\n"))?
            }
            Err(e) => {
                eprintln!("zcopy: {name}: {e}");
                failed = true;
            }
        }
    }
    if targets.is_empty() {
        print("no stale channels\n")?;
    }
    if failed {
        Err(Failure::failed("some channels were not removed"))
    } else {
        Ok(())
    }
}
