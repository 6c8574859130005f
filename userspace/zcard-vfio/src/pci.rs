//! The virtio PCI transport as the card shows it in PCI config space: the
//! capability walk that finds the common, notify, ISR and device-config
//! windows (virtio 1.x, section 4.1.4), and the register offsets of the
//! common configuration structure.
//!
//! Nothing here touches a device: [`walk`] takes the bytes of config space,
//! so it is tested on made-up (and broken) capability lists.

use thiserror::Error;

/// PCI vendor id of virtio devices.
pub const VIRTIO_VENDOR_ID: u16 = 0x1af4;

/// `PCI_COMMAND` register offset.
pub const PCI_COMMAND: u64 = 0x04;
/// `PCI_COMMAND` bit: the function may master the bus (DMA, and MSI-X
/// messages, which are memory writes).
pub const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// `PCI_STATUS` register offset.
const PCI_STATUS: usize = 0x06;
/// `PCI_STATUS` bit: the function has a capability list.
const PCI_STATUS_CAP_LIST: u16 = 1 << 4;
/// `PCI_CAPABILITY_LIST`: offset of the first capability pointer.
const PCI_CAPABILITY_LIST: usize = 0x34;
/// Capability id of a vendor-specific capability (virtio uses these).
const PCI_CAP_ID_VNDR: u8 = 0x09;
/// Capabilities live in the standard config space, after its header.
const CAP_MIN: usize = 0x40;
/// Size of the standard (non-extended) PCI config space.
pub const CONFIG_SPACE_SIZE: usize = 256;
/// A list longer than this loops (at most 48 four-byte-aligned slots fit).
const MAX_CAPS: usize = 48;

/// `virtio_pci_cap::cfg_type` values.
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
/// Size of `struct virtio_pci_cap`, and of the notify capability that extends it.
const VIRTIO_PCI_CAP_LEN: usize = 16;
const VIRTIO_PCI_NOTIFY_CAP_LEN: usize = 20;
/// Highest BAR number of a type-0 header.
const MAX_BAR: u8 = 5;

/// Register offsets of `struct virtio_pci_common_cfg` (virtio 1.x, 4.1.4.3).
pub mod common {
    /// Selects which 32 feature bits `DEVICE_FEATURE` shows.
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    /// 32 of the device's feature bits (read-only).
    pub const DEVICE_FEATURE: u64 = 0x04;
    /// Selects which 32 feature bits `DRIVER_FEATURE` takes.
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    /// 32 of the driver's accepted feature bits.
    pub const DRIVER_FEATURE: u64 = 0x0c;
    /// MSI-X vector of configuration changes.
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    /// Number of queues the device has (read-only).
    pub const NUM_QUEUES: u64 = 0x12;
    /// Device status (8 bits).
    pub const DEVICE_STATUS: u64 = 0x14;
    /// Changes whenever the device config changes (8 bits, read-only).
    pub const CONFIG_GENERATION: u64 = 0x15;
    /// Selects the queue the `QUEUE_*` registers below are about.
    pub const QUEUE_SELECT: u64 = 0x16;
    /// Queue size: the maximum on reading, the size used once written.
    pub const QUEUE_SIZE: u64 = 0x18;
    /// MSI-X vector of the queue's used-buffer notifications.
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1a;
    /// 1: the queue is live.
    pub const QUEUE_ENABLE: u64 = 0x1c;
    /// The queue's notification offset, in units of the notify multiplier (read-only).
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1e;
    /// Descriptor table address (64 bits, written as two halves).
    pub const QUEUE_DESC: u64 = 0x20;
    /// Driver (avail) ring address.
    pub const QUEUE_DRIVER: u64 = 0x28;
    /// Device (used) ring address.
    pub const QUEUE_DEVICE: u64 = 0x30;
    /// Size of the structure in virtio 1.0: the smallest window that will do.
    pub const SIZE: u64 = 0x38;
    /// "No vector" for `CONFIG_MSIX_VECTOR` and `QUEUE_MSIX_VECTOR`.
    pub const NO_VECTOR: u16 = 0xffff;
}

/// Device status bits (virtio 1.x, 2.1), as `DEVICE_STATUS` holds them.
pub mod status {
    use virtio_bindings::virtio_config as c;

    /// The driver found the device.
    pub const ACKNOWLEDGE: u8 = c::VIRTIO_CONFIG_S_ACKNOWLEDGE as u8;
    /// The driver knows how to drive it.
    pub const DRIVER: u8 = c::VIRTIO_CONFIG_S_DRIVER as u8;
    /// The driver is set up and ready.
    pub const DRIVER_OK: u8 = c::VIRTIO_CONFIG_S_DRIVER_OK as u8;
    /// Feature negotiation is complete.
    pub const FEATURES_OK: u8 = c::VIRTIO_CONFIG_S_FEATURES_OK as u8;
    /// The device hit an error it cannot recover from without a reset.
    pub const NEEDS_RESET: u8 = c::VIRTIO_CONFIG_S_NEEDS_RESET as u8;
    /// The driver gave up on the device.
    pub const FAILED: u8 = c::VIRTIO_CONFIG_S_FAILED as u8;
}

/// A window in one BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// BAR number (0..=5).
    pub bar: u8,
    /// Byte offset in the BAR.
    pub offset: u64,
    /// Length in bytes.
    pub length: u64,
}

impl Window {
    /// Whether `[offset, offset + size)` of the window lies inside it.
    pub fn covers(&self, offset: u64, size: u64) -> bool {
        offset
            .checked_add(size)
            .is_some_and(|end| end <= self.length)
    }
}

/// Where the virtio structures are, from the capability list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// `struct virtio_pci_common_cfg`.
    pub common: Window,
    /// The notification area.
    pub notify: Window,
    /// Bytes between the notification addresses of consecutive `queue_notify_off` values.
    pub notify_multiplier: u32,
    /// The ISR status byte.
    pub isr: Window,
    /// The device-specific config space.
    pub device: Window,
}

/// A capability list that cannot be used.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CapError {
    /// Fewer bytes than a config space header holds.
    #[error("config space too short ({0} bytes)")]
    Short(usize),
    /// `PCI_STATUS` says there is no capability list.
    #[error("the function has no capability list")]
    NoCapList,
    /// A pointer outside the capability area.
    #[error("capability pointer {0:#x} outside config space")]
    BadPointer(usize),
    /// More capabilities than fit: the list loops.
    #[error("the capability list loops")]
    Loop,
    /// A virtio capability shorter than its structure.
    #[error("virtio capability at {at:#x} of type {cfg_type} is {len} bytes long")]
    ShortCap {
        /// Offset of the capability.
        at: usize,
        /// Its `cfg_type`.
        cfg_type: u8,
        /// Its `cap_len`.
        len: u8,
    },
    /// A required virtio structure is not in the list (or only in a BAR that does not exist).
    #[error("no usable virtio {0} capability")]
    Missing(&'static str),
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Walks the capability list in `config` (the first 256 bytes of PCI config
/// space) and returns where the virtio structures are. For each structure
/// the first capability naming a valid BAR is taken, as the virtio spec
/// asks; BAR sizes are checked by the caller, which knows them.
pub fn walk(config: &[u8]) -> Result<Layout, CapError> {
    if config.len() < CONFIG_SPACE_SIZE {
        return Err(CapError::Short(config.len()));
    }
    if le16(config, PCI_STATUS) & PCI_STATUS_CAP_LIST == 0 {
        return Err(CapError::NoCapList);
    }
    let (mut common, mut notify, mut isr, mut device) = (None, None, None, None);
    let mut multiplier = 0;
    let mut ptr = usize::from(config[PCI_CAPABILITY_LIST] & !3);
    let mut seen = 0;
    while ptr != 0 {
        if !(CAP_MIN..=CONFIG_SPACE_SIZE - 2).contains(&ptr) {
            return Err(CapError::BadPointer(ptr));
        }
        seen += 1;
        if seen > MAX_CAPS {
            return Err(CapError::Loop);
        }
        let id = config[ptr];
        let next = usize::from(config[ptr + 1] & !3);
        if id == PCI_CAP_ID_VNDR {
            if ptr + VIRTIO_PCI_CAP_LEN > CONFIG_SPACE_SIZE {
                return Err(CapError::BadPointer(ptr));
            }
            let len = config[ptr + 2];
            let cfg_type = config[ptr + 3];
            let bar = config[ptr + 4];
            let known = matches!(
                cfg_type,
                VIRTIO_PCI_CAP_COMMON_CFG
                    | VIRTIO_PCI_CAP_NOTIFY_CFG
                    | VIRTIO_PCI_CAP_ISR_CFG
                    | VIRTIO_PCI_CAP_DEVICE_CFG
            );
            let need = if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
                VIRTIO_PCI_NOTIFY_CAP_LEN
            } else {
                VIRTIO_PCI_CAP_LEN
            };
            if known && usize::from(len) < need {
                return Err(CapError::ShortCap {
                    at: ptr,
                    cfg_type,
                    len,
                });
            }
            if known && bar <= MAX_BAR && ptr + need <= CONFIG_SPACE_SIZE {
                let w = Window {
                    bar,
                    offset: u64::from(le32(config, ptr + 8)),
                    length: u64::from(le32(config, ptr + 12)),
                };
                match cfg_type {
                    VIRTIO_PCI_CAP_COMMON_CFG => {
                        common.get_or_insert(w);
                    }
                    VIRTIO_PCI_CAP_NOTIFY_CFG => {
                        if notify.is_none() {
                            notify = Some(w);
                            multiplier = le32(config, ptr + 16);
                        }
                    }
                    VIRTIO_PCI_CAP_ISR_CFG => {
                        isr.get_or_insert(w);
                    }
                    _ => {
                        device.get_or_insert(w);
                    }
                }
            }
        }
        ptr = next;
    }
    Ok(Layout {
        common: common.ok_or(CapError::Missing("common config"))?,
        notify: notify.ok_or(CapError::Missing("notify"))?,
        notify_multiplier: multiplier,
        isr: isr.ok_or(CapError::Missing("ISR"))?,
        device: device.ok_or(CapError::Missing("device config"))?,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Config space with these virtio capabilities: (cfg_type, bar, offset, length).
    pub(crate) fn config_with(caps: &[(u8, u8, u32, u32)]) -> Vec<u8> {
        let mut c = vec![0u8; CONFIG_SPACE_SIZE];
        c[0..2].copy_from_slice(&VIRTIO_VENDOR_ID.to_le_bytes());
        c[PCI_STATUS..PCI_STATUS + 2].copy_from_slice(&PCI_STATUS_CAP_LIST.to_le_bytes());
        // An MSI-X capability first, as QEMU puts it: the walk must skip it.
        let mut at = 0x40;
        c[PCI_CAPABILITY_LIST] = at as u8;
        c[at] = 0x11;
        let mut prev = at;
        at += 12;
        for &(cfg_type, bar, offset, length) in caps {
            c[prev + 1] = at as u8;
            c[at] = PCI_CAP_ID_VNDR;
            c[at + 2] = 20;
            c[at + 3] = cfg_type;
            c[at + 4] = bar;
            c[at + 8..at + 12].copy_from_slice(&offset.to_le_bytes());
            c[at + 12..at + 16].copy_from_slice(&length.to_le_bytes());
            if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
                c[at + 16..at + 20].copy_from_slice(&4u32.to_le_bytes());
            }
            prev = at;
            at += 20;
        }
        c
    }

    /// QEMU's layout for a modern virtio-pci device: everything in BAR 4.
    pub(crate) fn qemu_caps() -> Vec<(u8, u8, u32, u32)> {
        vec![
            (1, 4, 0x0000, 0x1000),
            (3, 4, 0x1000, 0x1000),
            (4, 4, 0x2000, 0x1000),
            (2, 4, 0x3000, 0x1000),
        ]
    }

    #[test]
    fn finds_qemu_layout() {
        let l = walk(&config_with(&qemu_caps())).unwrap();
        assert_eq!(
            l.common,
            Window {
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
        assert_eq!(l.isr.offset, 0x1000);
        assert_eq!(l.device.offset, 0x2000);
        assert_eq!(l.notify.offset, 0x3000);
        assert_eq!(l.notify_multiplier, 4);
    }

    #[test]
    fn first_usable_capability_wins() {
        let mut caps = vec![(1, 7, 0x9000, 0x1000)]; // BAR 7 does not exist: skipped
        caps.extend(qemu_caps());
        caps.push((1, 2, 0x8000, 0x1000)); // a second common cfg: ignored
        let l = walk(&config_with(&caps)).unwrap();
        assert_eq!(
            l.common,
            Window {
                bar: 4,
                offset: 0,
                length: 0x1000
            }
        );
    }

    #[test]
    fn refuses_broken_lists() {
        let mut c = config_with(&qemu_caps());
        c[0x40 + 1] = 0x40; // the MSI-X capability points at itself
        assert_eq!(walk(&c), Err(CapError::Loop));

        let mut c = config_with(&qemu_caps());
        c[PCI_CAPABILITY_LIST] = 0x10; // into the header
        assert_eq!(walk(&c), Err(CapError::BadPointer(0x10)));

        let mut c = config_with(&qemu_caps());
        c[0x4c + 2] = 8; // the first virtio cap claims 8 bytes
        assert!(matches!(walk(&c), Err(CapError::ShortCap { at: 0x4c, .. })));

        let c = config_with(&qemu_caps()[..3]);
        assert_eq!(walk(&c), Err(CapError::Missing("notify")));

        let mut c = config_with(&qemu_caps());
        c[PCI_STATUS] = 0;
        assert_eq!(walk(&c), Err(CapError::NoCapList));
        assert_eq!(walk(&c[..64]), Err(CapError::Short(64)));
    }

    #[test]
    fn window_bounds() {
        let w = Window {
            bar: 0,
            offset: 0,
            length: 0x38,
        };
        assert!(w.covers(0x30, 8));
        assert!(!w.covers(0x34, 8));
        assert!(!w.covers(u64::MAX, 2));
    }
}
