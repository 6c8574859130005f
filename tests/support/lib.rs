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
use std::path::Path;

/// The reason string every guest-only test carries in its `#[ignore]`.
pub const GUEST_ONLY: &str = "runs in the zcopy guest: make qemu-test";

pub use zcopy_testkit::repo_root;

/// The guest kernel release the run selected: for `ZCOPY_KERNEL` stock (the
/// default) or backports, the one `qemu/toolbox/recipe.sh` pins
/// (`ZCOPY_KERNEL_STOCK=`, `ZCOPY_KERNEL_BACKPORTS=`, the single place each is
/// written down); for debug, the release the platform built
/// (`ZCOPY_KERNEL_ABI`, which the runner passes to the guest).
pub fn pinned_kernel() -> io::Result<String> {
    let kernel = std::env::var("ZCOPY_KERNEL").unwrap_or_else(|_| "stock".into());
    if kernel == "debug" {
        return std::env::var("ZCOPY_KERNEL_ABI")
            .map_err(|_| io::Error::other("ZCOPY_KERNEL=debug without ZCOPY_KERNEL_ABI"));
    }
    let key = format!("ZCOPY_KERNEL_{}=", kernel.to_uppercase());
    let recipe = fs::read_to_string(repo_root().join("qemu/toolbox/recipe.sh"))?;
    recipe
        .lines()
        .find_map(|l| l.trim().strip_prefix(key.as_str()))
        .map(|v| v.trim_matches('"').to_string())
        .ok_or_else(|| io::Error::other(format!("recipe.sh has no {key} line")))
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

/// The device node of the virtio-serial port called `name`, if the guest
/// has one (`/sys/class/virtio-ports/*/name`; virtio_console loaded).
pub fn virtio_port(name: &str) -> Option<std::path::PathBuf> {
    fs::read_dir("/sys/class/virtio-ports")
        .ok()?
        .filter_map(|e| e.ok())
        .find(|e| read_attr(e.path().join("name")).is_ok_and(|n| n == name))
        .map(|e| Path::new("/dev").join(e.file_name()))
}

/// Sends one JSON line to the virtio-serial port `name` and returns the
/// JSON line that comes back, waiting at most `timeout` for it.
pub fn port_request(name: &str, cmd: &str, timeout: std::time::Duration) -> serde_json::Value {
    use std::io::{BufRead, BufReader, Write};
    use std::os::fd::AsFd;
    let port = virtio_port(name).unwrap_or_else(|| panic!("no virtio-serial port {name}"));
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&port)
        .unwrap_or_else(|e| panic!("{}: {e}", port.display()));
    // A write waits while the host end is not connected (a card restarting).
    writeln!(f, "{cmd}").unwrap_or_else(|e| panic!("{name}: write: {e}"));
    let mut fds = [nix::poll::PollFd::new(
        f.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let ready = nix::poll::poll(&mut fds, ms).unwrap_or_else(|e| panic!("{name}: poll: {e}"));
    assert!(ready > 0, "{name}: no reply to {cmd} within {timeout:?}");
    let mut line = String::new();
    BufReader::new(f)
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("{name}: read: {e}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{name}: reply {line:?} to {cmd}: {e}"))
}

/// Kernel log lines a test makes on purpose: while this lives, lines that
/// match `regex` (an awk regex) are no trouble to the guest's kernel-log
/// check (`zc_kernel_log_ok` in qemu/lib.sh), which reads the marks this
/// writes into the log itself.
pub struct ExpectKernel;

/// The mark's prefix, `ZCOPY_EXPECT_MARK` in qemu/lib.sh.
const EXPECT_MARK: &str = "zcopy-test: expecting";

impl ExpectKernel {
    /// Marks the start of the lines matching `regex`.
    pub fn lines(regex: &str) -> ExpectKernel {
        kmsg(&format!("{EXPECT_MARK} /{regex}/"));
        ExpectKernel
    }
}

impl Drop for ExpectKernel {
    fn drop(&mut self) {
        kmsg(&format!("{EXPECT_MARK} end"));
    }
}

fn kmsg(line: &str) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()))
        .expect("writing /dev/kmsg (the guest runs its tests as root)");
}

/// Sends one JSON command line to the card's control port (the virtio-serial
/// port `org.zcopy.zcard.ctl`) and returns the reply.
pub fn zcard_control(cmd: &str) -> serde_json::Value {
    port_request(CARD_CONTROL_PORT, cmd, std::time::Duration::from_secs(60))
}

/// The virtio-serial port to the card's control socket (`qemu/vm.sh`).
pub const CARD_CONTROL_PORT: &str = "org.zcopy.zcard.ctl";

/// The virtio-serial port to the host's platform helper (`qemu/platform.py`),
/// present when the runner was started with `ZCOPY_PLATFORM_PORT=1`.
pub const PLATFORM_PORT: &str = "org.zcopy.platform";

/// Asks the host's platform helper for `cmd` (`card_kill`, `card_start`,
/// `unplug`, `replug`, `ping`) and returns its reply, which must say `ok`.
pub fn platform(cmd: &str) -> serde_json::Value {
    let r = port_request(
        PLATFORM_PORT,
        &format!(r#"{{"cmd":"{cmd}"}}"#),
        std::time::Duration::from_secs(120),
    );
    assert_eq!(r["ok"], true, "platform {cmd}: {r}");
    // Not the late reply to an earlier request.
    assert_eq!(r["cmd"], cmd, "platform {cmd}: {r}");
    r
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

/// Waits (at most 20 s) until zcard0 has nothing in flight, pinned or
/// alive, and returns its counters; panics naming them if it does not.
pub fn settle_zcard0() -> zcopy::card::Counters {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let c = zcopy::card::Counters::read(0).expect("zcard0 counters");
        if c.inflight == 0 && c.pools == 0 && c.pinned == 0 {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "counters did not return to baseline: {c:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
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
        if std::env::var_os("ZCOPY_KERNEL").is_none() {
            let k = pinned_kernel().unwrap();
            assert!(k.starts_with("6.12.") && k.ends_with("-amd64"), "{k}");
        }
    }
}
