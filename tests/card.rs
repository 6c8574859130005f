//! The zcard on the platform, checked from inside the guest: it enumerates as
//! virtio device 38 (`1af4:1066`), and config-space reads go through QEMU to
//! the zcard-vhost backend, whose own counters (read over its control port)
//! see them. No driver is needed: the config window is read from the BAR.

use std::fs;
use std::path::{Path, PathBuf};

use zcopy_vm_tests::{read_attr, zcard_control};

/// The card's PCI function, found by vendor and device id.
fn card_pci() -> PathBuf {
    let mut found = Vec::new();
    for entry in fs::read_dir("/sys/bus/pci/devices").unwrap() {
        let p = entry.unwrap().path();
        let id = |f: &str| read_attr(p.join(f)).unwrap_or_default();
        if id("vendor") == "0x1af4" && id("device") == "0x1066" {
            found.push(p);
        }
    }
    assert_eq!(
        found.len(),
        1,
        "exactly one zcard (1af4:1066) expected: {found:?}"
    );
    found.pop().unwrap()
}

/// (BAR, offset, length) of the virtio device-specific config window.
fn device_cfg_window(pci: &Path) -> (u8, u64, u32) {
    let cfg = fs::read(pci.join("config")).unwrap();
    assert!(cfg.len() >= 256, "full config space readable as root");
    assert_ne!(cfg[0x06] & 0x10, 0, "capability list present");
    let mut at = usize::from(cfg[0x34] & 0xfc);
    let mut hops = 0;
    while at != 0 && hops < 48 {
        // Vendor-specific capability 0x09 with cfg_type 4 = VIRTIO_PCI_CAP_DEVICE_CFG.
        if cfg[at] == 0x09 && cfg[at + 3] == 4 {
            let le32 = |o: usize| u32::from_le_bytes(cfg[o..o + 4].try_into().unwrap());
            return (cfg[at + 4], u64::from(le32(at + 8)), le32(at + 12));
        }
        at = usize::from(cfg[at + 1] & 0xfc);
        hops += 1;
    }
    panic!("no virtio device-config capability on {}", pci.display());
}

/// Unbinds a PCI function from its driver and binds it back when dropped.
///
/// The guest kernel refuses user mappings of a BAR a driver has claimed
/// (strict devmem), so the window is read while virtio-pci lets go of it.
struct Unbound {
    pci: PathBuf,
    driver: Option<PathBuf>,
}

impl Unbound {
    fn new(pci: &Path) -> Unbound {
        let driver = fs::canonicalize(pci.join("driver")).ok();
        let name = pci.file_name().unwrap().to_string_lossy().into_owned();
        if let Some(d) = &driver {
            fs::write(d.join("unbind"), &name).unwrap();
        }
        Unbound {
            pci: pci.to_owned(),
            driver,
        }
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        if let Some(d) = &self.driver {
            let name = self.pci.file_name().unwrap().to_string_lossy().into_owned();
            if let Err(e) = fs::write(d.join("bind"), &name) {
                eprintln!("rebinding {name} to {}: {e}", d.display());
            }
        }
    }
}

/// Reads the 64-byte config space from the BAR with 32-bit loads.
fn read_config(pci: &Path) -> Vec<u8> {
    let (bar, offset, len) = device_cfg_window(pci);
    let _unbound = Unbound::new(pci);
    assert!(len >= 64, "config window of {len} bytes");
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pci.join(format!("resource{bar}")))
        .unwrap();
    // A raw mapping: device memory is only ever read through volatile loads below.
    let map = memmap2::MmapOptions::new().map_raw(&file).unwrap();
    assert!(offset + 64 <= map.len() as u64);
    (0..16u64)
        .flat_map(|i| {
            let at = map.as_ptr().wrapping_add((offset + 4 * i) as usize) as *const u32;
            // SAFETY: `at` = offset + 4 * i with offset + 64 <= the mapping's
            // length (checked above), so the 4 bytes lie inside the live
            // mapping; virtio config windows are 4-byte aligned.
            let v = unsafe { std::ptr::read_volatile(at) };
            v.to_le_bytes()
        })
        .collect()
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn card_enumerates_as_virtio_device_38() {
    let pci = card_pci();
    let virtio: Vec<PathBuf> = fs::read_dir(&pci)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("virtio")
        })
        .collect();
    assert_eq!(virtio.len(), 1, "virtio-pci bound: {virtio:?}");
    assert_eq!(read_attr(virtio[0].join("device")).unwrap(), "0x0026");
    assert_eq!(read_attr(virtio[0].join("vendor")).unwrap(), "0x1af4");
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn config_reads_reach_the_backend() {
    let pci = card_pci();
    let before = zcard_control(r#"{"cmd":"stats"}"#);
    assert_eq!(before["ok"], true, "{before}");
    let reads_before = before["stats"]["config_reads"].as_u64().unwrap();

    let cfg = read_config(&pci);
    assert_eq!(&cfg[0..4], b"ZCRD", "magic");
    let u16_at = |o: usize| u16::from_le_bytes(cfg[o..o + 2].try_into().unwrap());
    let u32_at = |o: usize| u32::from_le_bytes(cfg[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(cfg[o..o + 8].try_into().unwrap());
    assert_eq!(u32_at(4), 1 << 16, "spec version 1.0");
    let queues: u16 = std::env::var("ZCOPY_CARD_QUEUES")
        .ok()
        .and_then(|q| q.parse().ok())
        .unwrap_or(2);
    assert_eq!(u16_at(8), queues, "num_queues");
    assert_eq!(u32_at(0x18), 512, "block size");
    assert_eq!(u32_at(0x1c), 0x7f, "all seven ops");

    // The same values, as the backend itself reports them.
    let backend = zcard_control(r#"{"cmd":"config"}"#);
    assert_eq!(
        backend["config"]["storage_capacity"].as_u64().unwrap(),
        u64_at(0x10)
    );
    assert_eq!(
        backend["config"]["magic"].as_u64().unwrap(),
        u64::from(u32_at(0))
    );

    let after = zcard_control(r#"{"cmd":"stats"}"#);
    let reads_after = after["stats"]["config_reads"].as_u64().unwrap();
    assert!(
        reads_after >= reads_before + 16,
        "16 config loads must reach the backend: {reads_before} -> {reads_after}"
    );
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn control_port_refuses_bad_commands_and_keeps_serving() {
    let reply = zcard_control(r#"{"cmd":"teleport"}"#);
    assert_eq!(reply["ok"], false);
    assert!(reply["error"].as_str().unwrap().contains("bad request"));
    assert_eq!(zcard_control(r#"{"cmd":"ping"}"#)["device"], "zcard");
}
