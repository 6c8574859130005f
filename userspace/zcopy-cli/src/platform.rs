//! What the machine offers, probed in one place for every command: the
//! card, an RDMA device for an address, the zcopy guest's Soft-RoCE pair,
//! perftest. A probe that finds something missing fails with exit 3
//! ([`Failure::missing`]) and the hint of [`crate::failure`]; one that
//! cannot look fails with exit 1.

use std::ffi::OsStr;
use std::fmt::Display;
use std::net::IpAddr;
use std::path::PathBuf;

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
    Err(Failure::missing(format!(
        "{} ({ip} is on no RDMA device; RDMA addresses here: {})",
        failure::no_rdma_for(addr),
        if here.is_empty() {
            "none".into()
        } else {
            here.join(", ")
        }
    )))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::{FAILED, MISSING};

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
