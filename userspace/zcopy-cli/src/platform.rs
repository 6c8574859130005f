//! What the machine offers, probed in one place for every command: the
//! card, an RDMA device for an address, the zcopy guest's Soft-RoCE pair,
//! perftest. A probe that finds something missing fails with exit 3
//! ([`Failure::missing`]) and the hint of [`crate::failure`]; one that
//! cannot look fails with exit 1.

use std::ffi::OsStr;
use std::fmt::Display;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use zcopy::card::Card;
use zcopy::rdma;

use crate::failure::{self, Failure, Result};

/// The Soft-RoCE pair of the zcopy guest (`qemu/guest/rxe-veth.sh`).
pub const RXE_PAIR: [&str; 2] = ["zrxe0", "zrxe1"];

/// The tools of perftest the RDMA bench runs as its baselines.
pub const PERFTEST: [&str; 3] = ["ib_write_bw", "ib_send_lat", "ib_write_lat"];

/// Opens `/dev/zcard0`; its absence is the platform's (exit 3), any other
/// failure to open it (permissions, say) exit 1.
pub fn open_card() -> Result<Card> {
    Card::open_index(0).map_err(|e| card_failure(&e))
}

fn card_failure(e: &zcopy::card::Error) -> Failure {
    match e {
        zcopy::card::Error::Open { source, .. }
            if matches!(
                source.raw_os_error(),
                Some(libc::ENOENT | libc::ENODEV | libc::ENXIO)
            ) =>
        {
            Failure::missing(format!("{} ({e})", failure::NO_CARD))
        }
        _ => Failure::failed(e.to_string()),
    }
}

/// The RDMA devices; none when the kernel has no RDMA support at all.
pub fn rdma_devices() -> std::result::Result<Vec<rdma::Device>, rdma::Error> {
    match rdma::devices() {
        Err(rdma::Error::NoDevice(_)) => Ok(Vec::new()),
        r => r,
    }
}

/// Fails with exit 3 unless there is an RDMA device and `ip` (when given
/// and not the wildcard) is an address of one of its ports; `addr` is what
/// the user named (an address with its port, say).
pub fn rdma_for(addr: impl Display, ip: Option<IpAddr>) -> Result<()> {
    let devices =
        rdma_devices().map_err(|e| Failure::failed(format!("RDMA: listing the devices: {e}")))?;
    rdma_among(&devices, addr, ip)
}

/// [`rdma_for`] over `devices`.
fn rdma_among(devices: &[rdma::Device], addr: impl Display, ip: Option<IpAddr>) -> Result<()> {
    if devices.is_empty() {
        return Err(Failure::missing(failure::no_rdma_for(addr)));
    }
    let Some(ip) = ip.filter(|ip| !ip.is_unspecified()) else {
        return Ok(());
    };
    on_a_device(devices, ip).map_err(|here| {
        Failure::missing(format!(
            "{} ({ip} is on no RDMA device; RDMA addresses here: {here})",
            failure::no_rdma_for(addr)
        ))
    })
}

/// Fails with exit 3 unless `from`, a sender's `--from`, is an address of
/// an RDMA device's port (the wildcard passes); the caller checked that
/// there is a device.
pub fn rdma_source(from: IpAddr) -> Result<()> {
    let devices =
        rdma_devices().map_err(|e| Failure::failed(format!("RDMA: listing the devices: {e}")))?;
    source_among(&devices, from)
}

/// [`rdma_source`] over `devices`.
fn source_among(devices: &[rdma::Device], from: IpAddr) -> Result<()> {
    if from.is_unspecified() {
        return Ok(());
    }
    on_a_device(devices, from).map_err(|here| {
        Failure::missing(format!(
            "--from {from} is on no RDMA device (RDMA addresses here: {here})"
        ))
    })
}

/// Whether `ip` is an address of a port of `devices`; if not, the IPv4
/// addresses they have (`none` without any).
fn on_a_device(devices: &[rdma::Device], ip: IpAddr) -> std::result::Result<(), String> {
    let gids = || devices.iter().flat_map(|d| &d.ports).flat_map(|p| &p.gids);
    let is_ip = |gid: &std::net::Ipv6Addr| match ip {
        IpAddr::V4(v4) => gid.to_ipv4_mapped() == Some(v4),
        IpAddr::V6(v6) => *gid == v6,
    };
    if gids().any(|(_, gid)| is_ip(gid)) {
        return Ok(());
    }
    let mut here: Vec<String> = gids()
        .filter_map(|(_, g)| g.to_ipv4_mapped().map(|a| a.to_string()))
        .collect();
    here.dedup();
    Err(if here.is_empty() {
        "none".into()
    } else {
        here.join(", ")
    })
}

/// Fails with exit 3 unless both devices of [`RXE_PAIR`] are here.
pub fn rxe_pair() -> Result<()> {
    let devices =
        rdma_devices().map_err(|e| Failure::failed(format!("RDMA: listing the devices: {e}")))?;
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    rxe_pair_among(&names)
}

/// [`rxe_pair`] over the device names `names`.
fn rxe_pair_among(names: &[&str]) -> Result<()> {
    if names.is_empty() {
        return Err(Failure::missing(format!(
            "{} ({})",
            failure::no_rdma(),
            failure::RXE_PAIR_HINT
        )));
    }
    let missing: Vec<&str> = RXE_PAIR
        .into_iter()
        .filter(|n| !names.contains(n))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Failure::missing(format!(
        "no {} (RDMA devices here: {}): {}",
        missing.join(", "),
        names.join(", "),
        failure::RXE_PAIR_HINT
    )))
}

/// Fails with exit 3 unless every tool of [`PERFTEST`] is on `path` (a
/// `$PATH`).
pub fn perftest(path: Option<&OsStr>) -> Result<()> {
    let dirs: Vec<PathBuf> = path
        .map(|p| std::env::split_paths(p).collect())
        .unwrap_or_default();
    let missing: Vec<&str> = PERFTEST
        .into_iter()
        .filter(|tool| !dirs.iter().any(|d| d.join(tool).is_file()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Failure::missing(format!(
            "{} not found on PATH: {}",
            missing.join(", "),
            failure::NO_PERFTEST
        )))
    }
}

/// The memory this process can still take, in bytes: `MemAvailable`, or
/// less where a memory cgroup's limit leaves less (a container's limit;
/// the OOM killer acts on it, not on the machine's memory). None: neither
/// is readable.
pub fn mem_room() -> Option<u64> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|own| cgroup_room(Path::new("/sys/fs/cgroup"), &own));
    match (mem_available(), cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

/// The least room (limit less use) of this process's memory cgroup, named
/// in `own` (/proc/self/cgroup's text), and of each one above it, under
/// `root` (/sys/fs/cgroup): cgroup v1's memory controller
/// (`memory/…/memory.limit_in_bytes`, `memory.usage_in_bytes`) where it
/// has one, else v2's (`memory.max`, `memory.current`). None: no limit.
fn cgroup_room(root: &Path, own: &str) -> Option<u64> {
    let v1 = own.lines().find_map(|l| {
        let (_, rest) = l.split_once(':')?;
        let (controllers, path) = rest.split_once(':')?;
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    });
    match v1 {
        Some(rel) => hierarchy_room(
            &root.join("memory"),
            rel,
            [
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
            ],
        ),
        None => {
            let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
            hierarchy_room(root, rel, ["memory.max", "memory.current", "inactive_file"])
        }
    }
}

/// [`cgroup_room`] in one hierarchy mounted at `root`, for the cgroup at
/// `rel` and its ancestors, with the named limit and use files and the
/// `memory.stat` key of the page cache it could drop (inactive file
/// pages, not counted as used, as container runtimes count). A limit that
/// is not a number ("max") or that no machine has (v1's unlimited is near
/// 2^63) is no limit.
fn hierarchy_room(root: &Path, rel: &str, [limit, usage, cache]: [&str; 3]) -> Option<u64> {
    if Path::new(rel)
        .components()
        .any(|c| c == std::path::Component::ParentDir)
    {
        return None;
    }
    let mut dir = root.join(rel.trim().trim_start_matches('/'));
    let read = |d: &Path, f: &str| std::fs::read_to_string(d.join(f)).ok();
    let mut room: Option<u64> = None;
    loop {
        let max = read(&dir, limit)
            .and_then(|m| m.trim().parse::<u64>().ok())
            .filter(|&m| m < 1 << 62);
        if let Some(max) = max {
            let used = read(&dir, usage)
                .and_then(|c| c.trim().parse::<u64>().ok())
                .unwrap_or(0);
            let cached = read(&dir, "memory.stat")
                .and_then(|st| {
                    st.lines().find_map(|l| {
                        let (k, v) = l.split_once(' ')?;
                        (k == cache).then(|| v.trim().parse::<u64>().ok())?
                    })
                })
                .unwrap_or(0);
            let used = used.saturating_sub(cached);
            let left = max.saturating_sub(used);
            room = Some(room.map_or(left, |r| r.min(left)));
        }
        if dir == root || !dir.pop() {
            break;
        }
    }
    room
}

/// `MemAvailable` of /proc/meminfo, in bytes (None: not readable).
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::failure::{FAILED, MISSING};

    #[test]
    fn a_cgroups_memory_limit_bounds_the_room() {
        let root = std::env::temp_dir().join(format!("zcopy-cgroup-{}", std::process::id()));
        let own = root.join("box/job");
        std::fs::create_dir_all(&own).unwrap();
        let put = |d: &Path, f: &str, v: &str| std::fs::write(d.join(f), v).unwrap();
        // The job has no limit of its own; the box above it does.
        put(&own, "memory.max", "max\n");
        put(&own, "memory.current", "100\n");
        put(&root.join("box"), "memory.max", "1000\n");
        put(&root.join("box"), "memory.current", "400\n");
        assert_eq!(cgroup_room(&root, "0::/box/job\n"), Some(600));
        // The tighter of the two.
        put(&own, "memory.max", "500\n");
        assert_eq!(cgroup_room(&root, "0::/box/job\n"), Some(400));
        // Page cache it could drop is room too.
        put(
            &own,
            "memory.stat",
            "anon 50\ninactive_file 30\nactive_file 10\n",
        );
        assert_eq!(cgroup_room(&root, "0::/box/job\n"), Some(430));
        std::fs::remove_file(own.join("memory.stat")).unwrap();
        // No limit anywhere, or no cgroup v2 line: none.
        put(&own, "memory.max", "max\n");
        put(&root.join("box"), "memory.max", "max\n");
        assert_eq!(cgroup_room(&root, "0::/box/job\n"), None);
        assert_eq!(cgroup_room(&root, "1:memory:/box/job\n"), None);
        // cgroup v1's memory controller, where the line names it.
        let v1 = root.join("memory/ctr");
        std::fs::create_dir_all(&v1).unwrap();
        put(&v1, "memory.limit_in_bytes", "2000\n");
        put(&v1, "memory.usage_in_bytes", "1500\n");
        put(
            &v1,
            "memory.stat",
            "inactive_file 100\ntotal_inactive_file 300\n",
        );
        put(
            &root.join("memory"),
            "memory.limit_in_bytes",
            "9223372036854771712\n",
        );
        let own = "4:memory:/ctr\n3:cpuset:/\n0::/box/job\n";
        assert_eq!(cgroup_room(&root, own), Some(800));
        // A path that climbs out of the mount reads nothing outside it.
        assert_eq!(cgroup_room(&root, "0::/../../etc\n"), None);
        let _ = std::fs::remove_dir_all(&root);
    }

    fn device(name: &str, ips: &[&str]) -> rdma::Device {
        rdma::Device {
            name: name.into(),
            max_mr_size: 0,
            max_qp_wr: 0,
            ports: vec![rdma::Port {
                num: 1,
                state: "ACTIVE",
                active_mtu: 4096,
                gids: ips
                    .iter()
                    .enumerate()
                    .map(|(i, ip)| {
                        let v4: std::net::Ipv4Addr = ip.parse().unwrap();
                        (i as u32 + 1, v4.to_ipv6_mapped())
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn no_card_is_the_platforms_and_a_refused_one_a_failure() {
        let open = |errno| zcopy::card::Error::Open {
            path: "/dev/zcard0".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        for errno in [libc::ENOENT, libc::ENODEV, libc::ENXIO] {
            let f = card_failure(&open(errno));
            assert_eq!(f.code, MISSING);
            assert!(f.message.starts_with(failure::NO_CARD), "{}", f.message);
            assert!(f.message.contains("/dev/zcard0"), "{}", f.message);
        }
        let f = card_failure(&open(libc::EACCES));
        assert_eq!(f.code, FAILED);
        assert!(f.message.contains("Permission denied"), "{}", f.message);
    }

    #[test]
    fn a_source_on_no_device_is_named_as_the_from_it_is() {
        let devs = [device("zrxe0", &["169.254.77.1"])];
        let ip = |s: &str| s.parse().unwrap();
        assert!(source_among(&devs, ip("169.254.77.1")).is_ok());
        assert!(source_among(&devs, ip("0.0.0.0")).is_ok());
        let f = source_among(&devs, ip("10.0.0.9")).unwrap_err();
        assert_eq!(f.code, MISSING);
        assert_eq!(
            f.message,
            "--from 10.0.0.9 is on no RDMA device (RDMA addresses here: 169.254.77.1)"
        );
    }

    #[test]
    fn an_address_needs_a_device_that_has_it() {
        let f = rdma_among(&[], "169.254.77.1:7471", None).unwrap_err();
        assert_eq!(f.code, MISSING);
        assert_eq!(
            f.message,
            "no RDMA device for 169.254.77.1:7471: run scripts/rxe-setup.sh"
        );
        let devs = [
            device("zrxe0", &["169.254.77.1"]),
            device("zrxe1", &["169.254.77.2"]),
        ];
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(rdma_among(&devs, "x", None).is_ok());
        assert!(rdma_among(&devs, "x", ip("0.0.0.0")).is_ok());
        assert!(rdma_among(&devs, "x", ip("169.254.77.2")).is_ok());
        assert!(rdma_among(&devs, "x", ip("::ffff:169.254.77.1")).is_ok());
        let f = rdma_among(&devs, "10.0.0.1:1", ip("10.0.0.1")).unwrap_err();
        assert_eq!(f.code, MISSING);
        assert!(
            f.message.ends_with(
                "(10.0.0.1 is on no RDMA device; RDMA addresses here: 169.254.77.1, 169.254.77.2)"
            ),
            "{}",
            f.message
        );
        let f = rdma_among(&[device("mlx5_0", &[])], "x", ip("10.0.0.1")).unwrap_err();
        assert!(
            f.message.ends_with("RDMA addresses here: none)"),
            "{}",
            f.message
        );
    }

    #[test]
    fn the_rxe_pair_names_what_is_missing() {
        let f = rxe_pair_among(&[]).unwrap_err();
        assert_eq!(f.code, MISSING);
        assert!(f.message.starts_with(&failure::no_rdma()), "{}", f.message);
        assert!(f.message.contains(failure::RXE_PAIR_HINT), "{}", f.message);
        let f = rxe_pair_among(&["rxe_eth0", "zrxe0"]).unwrap_err();
        assert_eq!(f.code, MISSING);
        assert!(
            f.message
                .starts_with("no zrxe1 (RDMA devices here: rxe_eth0, zrxe0)"),
            "{}",
            f.message
        );
        assert!(rxe_pair_among(&["zrxe0", "zrxe1"]).is_ok());
    }

    #[test]
    fn perftest_is_looked_for_on_the_path() {
        let f = perftest(Some(OsStr::new("/nonexistent"))).unwrap_err();
        assert_eq!(f.code, MISSING);
        assert!(f.message.contains("ib_write_bw, ib_send_lat, ib_write_lat"));
        assert!(f.message.contains(failure::NO_PERFTEST), "{}", f.message);
        assert_eq!(perftest(None).unwrap_err().code, MISSING);
        let dir = std::env::temp_dir().join(format!("zcopy-perftest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for tool in PERFTEST {
            std::fs::write(dir.join(tool), "").unwrap();
        }
        let found = perftest(Some(dir.as_os_str()));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(found.is_ok());
    }
}
