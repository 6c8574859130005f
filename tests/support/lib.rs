//! Helpers for the tests that run inside the zcopy guest (`make qemu-test`).
//!
//! Guest tests are marked `#[ignore = "..."]` so that a plain `cargo test` on
//! the host lists them without running them; the guest test entry
//! (`qemu/guest/test-entry.sh`) runs the same binaries with
//! `--include-ignored`. Everything here reads the guest's real state (sysfs,
//! procfs): nothing is mocked.

pub mod channel;
pub mod conformance;
pub mod differential;

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// The reason string every guest-only test carries in its `#[ignore]`.
pub const GUEST_ONLY: &str = "runs in the zcopy guest: make qemu-test";

/// The project's root directory (shared read-write into the guest at the same path).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The guest kernel release the toolbox recipe pins (`ZCOPY_KERNEL_ABI=` in
/// `qemu/toolbox/recipe.sh`, the single place it is written down).
pub fn pinned_kernel() -> io::Result<String> {
    let recipe = fs::read_to_string(repo_root().join("qemu/toolbox/recipe.sh"))?;
    recipe
        .lines()
        .find_map(|l| l.trim().strip_prefix("ZCOPY_KERNEL_ABI="))
        .map(|v| v.trim_matches('"').to_string())
        .ok_or_else(|| io::Error::other("recipe.sh has no ZCOPY_KERNEL_ABI= line"))
}

/// Reads a sysfs/procfs attribute and trims the trailing newline.
pub fn read_attr(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    fs::read_to_string(path)
        .map(|s| s.trim_end().to_string())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// One port of an RDMA device as sysfs shows it.
#[derive(Debug, Clone)]
pub struct RdmaPort {
    /// Device name (`/sys/class/infiniband/<name>`).
    pub device: String,
    /// The network device the port runs over (RoCE), if any.
    pub netdev: Option<String>,
    /// Port state, e.g. `4: ACTIVE`.
    pub state: String,
    /// Active MTU as sysfs shows it (e.g. `4096`).
    pub active_mtu: Option<String>,
    /// GID table entries that are set, as (index, gid text, type text).
    pub gids: Vec<(u32, String, String)>,
}

/// All RDMA devices' port 1, sorted by device name.
pub fn rdma_ports() -> io::Result<Vec<RdmaPort>> {
    let class = Path::new("/sys/class/infiniband");
    if !class.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in fs::read_dir(class)? {
        let device = entry?.file_name().to_string_lossy().into_owned();
        let port = class.join(&device).join("ports/1");
        let mut gids = Vec::new();
        for idx in 0..16u32 {
            let Ok(gid) = read_attr(port.join(format!("gids/{idx}"))) else {
                break;
            };
            if gid.chars().all(|c| c == '0' || c == ':') {
                continue;
            }
            let ty = read_attr(port.join(format!("gid_attrs/types/{idx}"))).unwrap_or_default();
            gids.push((idx, gid, ty));
        }
        out.push(RdmaPort {
            netdev: read_attr(port.join("gid_attrs/ndevs/0")).ok(),
            state: read_attr(port.join("state"))?,
            active_mtu: active_mtu(&device),
            device,
            gids,
        });
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    Ok(out)
}

/// Port 1's active MTU as `ibv_devinfo` reports it (sysfs has no such
/// attribute for RoCE devices).
fn active_mtu(device: &str) -> Option<String> {
    let out = std::process::Command::new("ibv_devinfo")
        .args(["-d", device, "-i", "1"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let v = l.trim().strip_prefix("active_mtu:")?;
        Some(v.split_whitespace().next()?.to_string())
    })
}

/// The IPv4 address an IPv4-mapped GID (`0000:...:ffff:a9fe:4d01`) carries.
pub fn ipv4_of_gid(gid: &str) -> Option<Ipv4Addr> {
    let groups: Vec<u16> = gid
        .split(':')
        .map(|g| u16::from_str_radix(g, 16))
        .collect::<Result<_, _>>()
        .ok()?;
    match groups.as_slice() {
        [0, 0, 0, 0, 0, 0xffff, hi, lo] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            *hi as u8,
            (lo >> 8) as u8,
            *lo as u8,
        )),
        _ => None,
    }
}

/// The IPv4 addresses configured on `netdev` (asks iproute2's `ip`).
pub fn ipv4_addrs(netdev: &str) -> io::Result<Vec<Ipv4Addr>> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", netdev])
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ip addr show dev {netdev}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            it.position(|w| w == "inet")?;
            it.next()?.split('/').next()?.parse().ok()
        })
        .collect())
}

/// Sends one JSON command line to the card's control port (the virtio-serial
/// port `org.zcopy.zcard.ctl`) and returns the reply.
pub fn zcard_control(cmd: &str) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    let mut port = None;
    for entry in fs::read_dir("/sys/class/virtio-ports")
        .expect("virtio-serial ports (virtio_console loaded)")
    {
        let p = entry.expect("readable sysfs").path();
        if read_attr(p.join("name")).unwrap_or_default() == "org.zcopy.zcard.ctl" {
            port = Some(Path::new("/dev").join(p.file_name().expect("a port name")));
        }
    }
    let port = port.expect("control port org.zcopy.zcard.ctl");
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&port)
        .unwrap_or_else(|e| panic!("{}: {e}", port.display()));
    writeln!(f, "{cmd}").expect("control port writable");
    let mut line = String::new();
    BufReader::new(f)
        .read_line(&mut line)
        .expect("control port readable");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("reply {line:?}: {e}"))
}

/// Proptest settings: `cases` unless ZCOPY_PROPTEST_CASES says otherwise (nightly
/// runs raise it), a seed from ZCOPY_PROPTEST_SEED or the clock, printed so a
/// failure can be replayed.
pub fn proptest_config(name: &str, cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let seed = std::env::var("ZCOPY_PROPTEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let cases = std::env::var("ZCOPY_PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(cases);
    eprintln!("{name}: proptest seed {seed}, {cases} cases (replay: ZCOPY_PROPTEST_SEED={seed})");
    Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    }
}

/// CRC-32C (Castagnoli) in software, bit by bit: the reference the card's
/// CRC32C op is checked against. `seed` is the CRC of the bytes before.
pub fn crc32c_reference(seed: u32, data: &[u8]) -> u32 {
    let mut crc = !seed;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_mapped_gid_parses() {
        assert_eq!(
            ipv4_of_gid("0000:0000:0000:0000:0000:ffff:a9fe:4d01"),
            Some(Ipv4Addr::new(169, 254, 77, 1))
        );
        assert_eq!(ipv4_of_gid("fe80:0000:0000:0000:0000:00ff:fe00:0001"), None);
        assert_eq!(ipv4_of_gid("not a gid"), None);
    }

    #[test]
    fn pinned_kernel_is_a_debian_abi() {
        let k = pinned_kernel().unwrap();
        assert!(k.starts_with("6.12.") && k.ends_with("-amd64"), "{k}");
    }
}
