//! `zcopy info`: what this machine offers: zcard devices (config, counters,
//! the processes using them), the cards on the PCI bus and the driver each
//! is bound to, RDMA devices and ports, named channels.
//!
//! Nothing missing is an error here: an empty section gets a hint line.

use std::path::{Path, PathBuf};

use serde::Serialize;
use zcard_vfio::sysfs::{Sysfs, VFIO_DRIVER};
use zcopy::card::{uapi, Card, Counters, Interrupts};

use crate::channels::{self, ChannelReport};
use crate::failure::{no_rdma, Result, NO_CARD};
use crate::output::{human_bytes, print, print_json};

/// Everything `zcopy info --json` prints: one object, these keys always there.
#[derive(Debug, Serialize)]
pub struct Report {
    /// zcard devices (`/dev/zcardN`), empty when there is none.
    pub cards: Vec<CardReport>,
    /// The cards on the PCI bus, whatever drives them.
    pub pci: Vec<PciCard>,
    /// RDMA devices, empty when there is none.
    pub rdma: Vec<RdmaDevice>,
    /// Named shared-memory channels.
    pub channels: Vec<ChannelReport>,
    /// What to do about an empty or unreadable section.
    pub hints: Hints,
}

/// One hint line per section, null when the section needs none.
#[derive(Debug, Default, Serialize)]
pub struct Hints {
    /// No card, e.g. "no zcard: load zcard.ko ...".
    pub cards: Option<String>,
    /// No RDMA device, or they could not be listed.
    pub rdma: Option<String>,
    /// The named channels could not be listed.
    pub channels: Option<String>,
}

/// One card on the PCI bus.
#[derive(Debug, Serialize)]
pub struct PciCard {
    /// PCI address.
    pub address: String,
    /// The driver bound to it: `virtio-pci` (then zcard.ko, as `/dev/zcardN`)
    /// or `vfio-pci` (the user-space driver, zcard-vfio); null when none.
    pub driver: Option<String>,
    /// Its IOMMU group, null without an IOMMU.
    pub iommu_group: Option<u32>,
}

/// One zcard.
#[derive(Debug, Serialize)]
pub struct CardReport {
    /// The device node.
    pub path: String,
    /// N of `/dev/zcardN`.
    pub instance: u32,
    /// Why the node could not be opened (config is null then).
    pub error: Option<String>,
    /// The card's and driver's limits (`ZCARD_IOC_INFO`).
    pub config: Option<CardConfig>,
    /// The driver's counters (sysfs `/sys/class/misc/zcardN/`); null when unreadable.
    pub counters: Option<CardCounters>,
    /// How its interrupts arrive (sysfs `msi_irqs`/`irq`, `/proc/interrupts`),
    /// e.g. `INTx line, irq 22 (IO-APIC 22-fasteoi)`; null when unreadable.
    pub interrupts: Option<String>,
    /// Processes with the node open (the owners of its pools and rings:
    /// the driver exports no per-pool owner or ring state, so this comes
    /// from `/proc/*/fd`, as far as this user may look).
    pub users: Vec<CardUser>,
}

/// `ZCARD_IOC_INFO`, in plain units.
#[derive(Debug, Serialize)]
pub struct CardConfig {
    /// Driver ABI, `major.minor`.
    pub abi_version: String,
    /// Card (config space) version, `major.minor`.
    pub card_version: String,
    /// Request queues.
    pub queues: u16,
    /// Most source (and destination) segments of one request.
    pub max_segments: u16,
    /// Operations the card executes.
    pub ops: Vec<&'static str>,
    /// Storage alignment unit in bytes.
    pub block_size: u32,
    /// Card storage in bytes.
    pub storage_bytes: u64,
    /// Largest request length in bytes.
    pub max_op_bytes: u32,
    /// Largest pool in bytes.
    pub max_pool_bytes: u64,
    /// Pool sizes are multiples of this.
    pub pool_align: u32,
    /// Largest ring (SQ or CQ) entry count.
    pub max_ring_entries: u32,
    /// Bytes all pools together may pin.
    pub pinned_limit_bytes: u64,
}

/// The driver's counters.
#[derive(Debug, Serialize)]
pub struct CardCounters {
    /// Requests handed to the card.
    pub submitted: u64,
    /// Completions posted.
    pub completed: u64,
    /// Completions with an error.
    pub errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Card resets.
    pub resets: u64,
    /// Pools alive.
    pub pools: u64,
    /// Bytes pinned by pools.
    pub pinned_bytes: u64,
    /// Requests on the card now.
    pub inflight: u64,
    /// Completions lost to a full CQ.
    pub cq_overflows: u64,
}

/// A process with a card open.
#[derive(Debug, Serialize)]
pub struct CardUser {
    /// Its pid.
    pub pid: u32,
    /// Its command name.
    pub comm: String,
    /// How many descriptors it holds on the node.
    pub files: u32,
}

/// An RDMA device.
#[derive(Debug, Serialize)]
pub struct RdmaDevice {
    /// Device name (`zrxe0`, `mlx5_0`...).
    pub name: String,
    /// Largest memory region it registers, in bytes.
    pub max_mr_size: u64,
    /// Most work requests per queue pair.
    pub max_qp_wr: u32,
    /// Its ports.
    pub ports: Vec<RdmaPort>,
}

/// A port of an RDMA device.
#[derive(Debug, Serialize)]
pub struct RdmaPort {
    /// Port number (from 1).
    pub port: u8,
    /// `ACTIVE`, `DOWN`, ...
    pub state: &'static str,
    /// Active IB MTU in bytes.
    pub active_mtu: u32,
    /// GID index of the first IPv4-mapped GID (RoCE v2 over IPv4); null when none.
    pub ipv4_gid_index: Option<u32>,
    /// That GID's IPv4 address: the address to listen on or send from.
    pub ipv4_address: Option<String>,
    /// Every non-zero GID.
    pub gids: Vec<Gid>,
}

/// One GID table entry.
#[derive(Debug, Serialize)]
pub struct Gid {
    /// Its index.
    pub index: u32,
    /// The GID as an IPv6 address.
    pub gid: String,
}

/// `zcopy info [--json]`.
pub fn run(as_json: bool) -> Result<()> {
    let report = gather();
    if as_json {
        print_json(&report)
    } else {
        print(&human(&report))
    }
}

/// Looks at everything; never fails (what cannot be read becomes a hint).
pub fn gather() -> Report {
    let mut hints = Hints::default();
    let cards = cards();
    let pci = pci_cards();
    if cards.is_empty() {
        hints.cards = Some(no_card_hint(&pci));
    }
    let rdma: Vec<RdmaDevice> = match crate::platform::rdma_devices() {
        Ok(devices) => devices.iter().map(rdma_device).collect(),
        Err(e) => {
            hints.rdma = Some(format!("RDMA devices could not be listed: {e}"));
            Vec::new()
        }
    };
    if rdma.is_empty() && hints.rdma.is_none() {
        hints.rdma = Some(no_rdma());
    }
    let channels = channels::reports().unwrap_or_else(|e| {
        hints.channels = Some(format!("named channels could not be listed: {}", e.message));
        Vec::new()
    });
    Report {
        cards,
        pci,
        rdma,
        channels,
        hints,
    }
}

/// Why there is no `/dev/zcardN`: a card on vfio-pci, or no card or driver at all.
fn no_card_hint(pci: &[PciCard]) -> String {
    match pci
        .iter()
        .find(|p| p.driver.as_deref() == Some(VFIO_DRIVER))
    {
        Some(p) => format!(
            "no /dev/zcard: the card {} is bound to vfio-pci (the user-space driver); \
             zcard-vfio unbind gives it back",
            p.address
        ),
        None => NO_CARD.to_string(),
    }
}

/// The cards sysfs shows on the PCI bus.
fn pci_cards() -> Vec<PciCard> {
    Sysfs::default()
        .cards()
        .unwrap_or_default()
        .into_iter()
        .map(|c| PciCard {
            address: c.bdf,
            driver: c.driver,
            iommu_group: c.iommu_group,
        })
        .collect()
}

/// `/dev/zcardN` nodes, in order of N.
fn card_nodes() -> Vec<(u32, PathBuf)> {
    let Ok(dir) = std::fs::read_dir("/dev") else {
        return Vec::new();
    };
    let mut nodes: Vec<(u32, PathBuf)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let n = name.to_str()?.strip_prefix("zcard")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    nodes
}

fn cards() -> Vec<CardReport> {
    let nodes = card_nodes();
    if nodes.is_empty() {
        return Vec::new();
    }
    let users = node_users();
    nodes
        .into_iter()
        .map(|(instance, path)| {
            let (config, error) = match Card::open(&path) {
                Ok(card) => (Some(card_config(&card)), None),
                Err(e) => (None, Some(e.to_string())),
            };
            CardReport {
                path: path.display().to_string(),
                instance,
                error,
                config,
                counters: Counters::read(instance).ok().map(card_counters),
                interrupts: Interrupts::read(instance).ok().map(|i| i.describe()),
                users: users
                    .iter()
                    .filter(|(node, _)| *node == path)
                    .map(|(_, u)| CardUser {
                        pid: u.pid,
                        comm: u.comm.clone(),
                        files: u.files,
                    })
                    .collect(),
            }
        })
        .collect()
}

fn version(v: u32) -> String {
    format!("{}.{}", v >> 16, v & 0xffff)
}

fn card_config(card: &Card) -> CardConfig {
    let i = card.info();
    const OPS: [(u8, &str); 7] = [
        (uapi::ZCARD_OP_NOP, "nop"),
        (uapi::ZCARD_OP_COPY, "copy"),
        (uapi::ZCARD_OP_FILL, "fill"),
        (uapi::ZCARD_OP_CRC32C, "crc32c"),
        (uapi::ZCARD_OP_STORAGE_READ, "storage_read"),
        (uapi::ZCARD_OP_STORAGE_WRITE, "storage_write"),
        (uapi::ZCARD_OP_FLUSH, "flush"),
    ];
    CardConfig {
        abi_version: version(i.abi_version),
        card_version: version(i.card_version),
        queues: i.num_queues,
        max_segments: i.max_segments,
        ops: OPS
            .iter()
            .filter(|(op, _)| i.supported_ops & (1 << op) != 0)
            .map(|(_, name)| *name)
            .collect(),
        block_size: i.block_size,
        storage_bytes: i.storage_capacity,
        max_op_bytes: i.max_op_bytes,
        max_pool_bytes: i.max_pool_bytes,
        pool_align: i.pool_align,
        max_ring_entries: i.max_ring_entries,
        pinned_limit_bytes: i.pinned_limit,
    }
}

fn card_counters(c: Counters) -> CardCounters {
    CardCounters {
        submitted: c.submitted,
        completed: c.completed,
        errors: c.errors,
        timeouts: c.timeouts,
        resets: c.resets,
        pools: c.pools,
        pinned_bytes: c.pinned,
        inflight: c.inflight,
        cq_overflows: c.cq_overflows,
    }
}

/// A process holding zcard nodes open.
struct NodeUser {
    pid: u32,
    comm: String,
    files: u32,
}

/// Which processes hold which `/dev/zcard*` open (from `/proc/*/fd`; the
/// processes of other users are invisible without privilege).
fn node_users() -> Vec<(PathBuf, NodeUser)> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out: Vec<(PathBuf, NodeUser)> = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            if !is_card_node(&target) {
                continue;
            }
            match out.iter_mut().find(|(n, u)| u.pid == pid && *n == target) {
                Some((_, u)) => u.files += 1,
                None => {
                    let comm = std::fs::read_to_string(p.path().join("comm"))
                        .map(|c| c.trim().to_string())
                        .unwrap_or_default();
                    out.push((
                        target,
                        NodeUser {
                            pid,
                            comm,
                            files: 1,
                        },
                    ));
                }
            }
        }
    }
    out.sort_by_key(|(_, u)| u.pid);
    out
}

fn is_card_node(path: &Path) -> bool {
    path.parent() == Some(Path::new("/dev"))
        && path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("zcard"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn rdma_device(d: &zcopy::rdma::Device) -> RdmaDevice {
    RdmaDevice {
        name: d.name.clone(),
        max_mr_size: d.max_mr_size,
        max_qp_wr: d.max_qp_wr,
        ports: d
            .ports
            .iter()
            .map(|p| {
                let v4 = p.ipv4_gid();
                RdmaPort {
                    port: p.num,
                    state: p.state,
                    active_mtu: p.active_mtu,
                    ipv4_gid_index: v4.map(|(i, _)| i),
                    ipv4_address: v4.map(|(_, a)| a.to_string()),
                    gids: p
                        .gids
                        .iter()
                        .map(|&(index, gid)| Gid {
                            index,
                            gid: gid.to_string(),
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// The report for people: three sections, each a table or a hint line.
pub fn human(r: &Report) -> String {
    let mut s = String::from("Cards\n");
    for c in &r.cards {
        s += &card_text(c);
    }
    if let Some(h) = &r.hints.cards {
        s += &format!("  {h}\n");
    }
    for p in &r.pci {
        let group = p
            .iommu_group
            .map_or(String::new(), |g| format!(", IOMMU group {g}"));
        s += &format!(
            "  PCI {}: bound to {}{group}\n",
            p.address,
            p.driver.as_deref().unwrap_or("no driver")
        );
    }

    s += "\nRDMA devices\n";
    if !r.rdma.is_empty() {
        s += &format!(
            "  {:<16} {:>4} {:<8} {:>5} {:>4}  {}\n",
            "DEVICE", "PORT", "STATE", "MTU", "GID", "IPv4"
        );
    }
    for d in &r.rdma {
        for p in &d.ports {
            s += &format!(
                "  {:<16} {:>4} {:<8} {:>5} {:>4}  {}\n",
                d.name,
                p.port,
                p.state,
                p.active_mtu,
                p.ipv4_gid_index
                    .map_or_else(|| "-".into(), |i| i.to_string()),
                p.ipv4_address.as_deref().unwrap_or("-"),
            );
        }
    }
    if let Some(h) = &r.hints.rdma {
        s += &format!("  {h}\n");
    }

    s += "\nChannels\n";
    if let Some(h) = &r.hints.channels {
        s += &format!("  {h}\n");
    } else if r.channels.is_empty() {
        s += "  no named channels (/dev/shm/zcopy.*)\n";
    } else {
        s += &channels::table(&r.channels, "  ");
    }
    s
}

fn card_text(c: &CardReport) -> String {
    let mut s = format!("  {}", c.path);
    match (&c.config, &c.error) {
        (Some(k), _) => {
            s += &format!(
                ": card {}, driver ABI {}\n    queues {}, max segments {}, storage {} (block {}), \
                 max op {}, max pool {}, pinned limit {}, ring entries <= {}\n    ops: {}\n",
                k.card_version,
                k.abi_version,
                k.queues,
                k.max_segments,
                human_bytes(k.storage_bytes),
                human_bytes(k.block_size.into()),
                human_bytes(k.max_op_bytes.into()),
                human_bytes(k.max_pool_bytes),
                human_bytes(k.pinned_limit_bytes),
                k.max_ring_entries,
                k.ops.join(" "),
            );
        }
        (None, Some(e)) => s += &format!(": {e}\n"),
        (None, None) => s += "\n",
    }
    match &c.counters {
        Some(n) => {
            s += &format!(
                "    counters: submitted {}, completed {}, errors {}, timeouts {}, resets {}, \
                 inflight {}, cq_overflows {}\n    pools: {} alive, {} pinned \
                 (the driver exports no per-pool owners or ring state)\n",
                n.submitted,
                n.completed,
                n.errors,
                n.timeouts,
                n.resets,
                n.inflight,
                n.cq_overflows,
                n.pools,
                human_bytes(n.pinned_bytes),
            );
        }
        None => {
            s += &format!(
                "    counters: unreadable (/sys/class/misc/zcard{}/)\n",
                c.instance
            )
        }
    }
    if let Some(i) = &c.interrupts {
        s += &format!("    interrupts: {i}\n");
    }
    if c.users.is_empty() {
        s += "    open by: no process (that you may see)\n";
    } else {
        let users: Vec<String> = c
            .users
            .iter()
            .map(|u| format!("{} ({}, {} fd)", u.pid, u.comm, u.files))
            .collect();
        s += &format!("    open by: {}\n", users.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the guest shows: one card in use, two Soft-RoCE devices.
    fn guest_like() -> Report {
        Report {
            cards: vec![CardReport {
                path: "/dev/zcard0".into(),
                instance: 0,
                error: None,
                config: Some(CardConfig {
                    abi_version: "1.0".into(),
                    card_version: "1.0".into(),
                    queues: 2,
                    max_segments: 16,
                    ops: vec!["copy", "crc32c"],
                    block_size: 4096,
                    storage_bytes: 64 << 20,
                    max_op_bytes: 1 << 20,
                    max_pool_bytes: 256 << 20,
                    pool_align: 4096,
                    max_ring_entries: 4096,
                    pinned_limit_bytes: 256 << 20,
                }),
                counters: Some(CardCounters {
                    submitted: 5,
                    completed: 5,
                    errors: 0,
                    timeouts: 0,
                    resets: 0,
                    pools: 2,
                    pinned_bytes: 128 << 10,
                    inflight: 0,
                    cq_overflows: 0,
                }),
                interrupts: Some("INTx line, irq 22 (IO-APIC 22-fasteoi)".into()),
                users: vec![CardUser {
                    pid: 42,
                    comm: "zcopy".into(),
                    files: 1,
                }],
            }],
            rdma: ["169.254.77.1", "169.254.77.2"]
                .iter()
                .enumerate()
                .map(|(i, a)| RdmaDevice {
                    name: format!("zrxe{i}"),
                    max_mr_size: u64::MAX,
                    max_qp_wr: 1 << 20,
                    ports: vec![RdmaPort {
                        port: 1,
                        state: "ACTIVE",
                        active_mtu: 4096,
                        ipv4_gid_index: Some(1),
                        ipv4_address: Some(a.to_string()),
                        gids: Vec::new(),
                    }],
                })
                .collect(),
            pci: vec![PciCard {
                address: "0000:00:0a.0".into(),
                driver: Some("virtio-pci".into()),
                iommu_group: None,
            }],
            channels: Vec::new(),
            hints: Hints::default(),
        }
    }

    #[test]
    fn a_card_and_rdma_devices_read_well() {
        let text = human(&guest_like());
        for want in [
            "Cards\n  /dev/zcard0: card 1.0, driver ABI 1.0\n",
            "queues 2, max segments 16, storage 64 MiB (block 4 KiB)",
            "ops: copy crc32c",
            "pools: 2 alive, 128 KiB pinned",
            "open by: 42 (zcopy, 1 fd)",
            "interrupts: INTx line, irq 22 (IO-APIC 22-fasteoi)\n",
            "  PCI 0000:00:0a.0: bound to virtio-pci\n",
            "RDMA devices\n  DEVICE",
            "zrxe1               1 ACTIVE    4096    1  169.254.77.2",
            "Channels\n  no named channels",
        ] {
            assert!(text.contains(want), "{want:?} in:\n{text}");
        }
        assert!(!text.contains("no zcard") && !text.contains("no RDMA"));
    }

    #[test]
    fn empty_sections_get_their_hint() {
        let mut r = guest_like();
        r.cards.clear();
        r.rdma.clear();
        r.hints.cards = Some(NO_CARD.into());
        r.hints.rdma = Some(no_rdma());
        let text = human(&r);
        assert!(text.contains(&format!("Cards\n  {NO_CARD}\n")), "{text}");
        assert!(
            text.contains(&format!("RDMA devices\n  {}\n", no_rdma())),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["hints"]["cards"], NO_CARD);
        assert!(json["hints"]["channels"].is_null());
    }

    #[test]
    fn a_card_on_vfio_says_so() {
        let mut r = guest_like();
        r.cards.clear();
        r.pci[0].driver = Some(VFIO_DRIVER.into());
        r.pci[0].iommu_group = Some(10);
        let text = human(&r);
        assert!(
            text.contains("  PCI 0000:00:0a.0: bound to vfio-pci, IOMMU group 10\n"),
            "{text}"
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["pci"][0]["driver"], "vfio-pci");
        assert!(no_card_hint(&r.pci).contains("0000:00:0a.0 is bound to vfio-pci"));
        r.pci.clear();
        assert_eq!(no_card_hint(&r.pci), NO_CARD);
    }
}
