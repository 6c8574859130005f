//! Finding the card in sysfs and moving it between drivers.
//!
//! The card is found by its PCI vendor and device id, never by a fixed
//! address. Binding to `vfio-pci` is the kernel's documented sequence:
//! `driver_override`, unbind from the current driver, `drivers_probe`;
//! giving it back clears the override and probes again, so `virtio-pci`
//! (and through it `zcard.ko`) takes it. Every path is under a root that
//! tests point at a made-up tree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::pci::VIRTIO_VENDOR_ID;
use crate::wire::PCI_DEVICE_ID;

/// The driver a card must be bound to for this crate to open it.
pub const VFIO_DRIVER: &str = "vfio-pci";

/// How long a bind or unbind may take to show in sysfs.
const SETTLE: Duration = Duration::from_secs(5);

/// What went wrong in sysfs.
#[derive(Debug, Error)]
pub enum SysfsError {
    /// A sysfs file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// No PCI function with the card's ids.
    #[error("no zcard (PCI {VIRTIO_VENDOR_ID:04x}:{PCI_DEVICE_ID:04x}) in {0}")]
    NoCard(PathBuf),
    /// The address given is not a card.
    #[error("{0} is not a zcard")]
    NotACard(String),
    /// No PCI function at the address given, or no address at all.
    #[error(
        "no PCI device {0} (an address is DDDD:BB:DD.F or BB:DD.F, as `zcard-vfio list` shows)"
    )]
    NoDevice(String),
    /// The card shares its IOMMU group: handing the group to user space would hand others too.
    #[error("IOMMU group {group} of {bdf} holds other devices too ({others}); refusing")]
    SharedGroup {
        /// The card.
        bdf: String,
        /// Its group.
        group: u32,
        /// The other members.
        others: String,
    },
    /// The card has no IOMMU group: the kernel runs without an IOMMU.
    #[error(
        "{0} has no IOMMU group: boot with an IOMMU (intel_iommu=on iommu=pt) or none can use VFIO"
    )]
    NoGroup(String),
    /// vfio-pci is not loaded.
    #[error("the vfio-pci driver is not loaded (modprobe vfio-pci)")]
    NoVfioDriver,
    /// Another process has the card open through VFIO: unbinding it from
    /// vfio-pci would wait, past any signal, until that process closes it.
    #[error("{bdf} is in use: a process holds its IOMMU group open ({path}); stop it first")]
    InUse {
        /// The card.
        bdf: String,
        /// The group's device file.
        path: PathBuf,
    },
    /// A bind or unbind did not take effect.
    #[error(
        "{bdf} is bound to {}, expected {} after {SETTLE:?}",
        driver_name(now),
        driver_name(want)
    )]
    NotBound {
        /// The card.
        bdf: String,
        /// Driver it is bound to now.
        now: Option<String>,
        /// Driver it should be bound to.
        want: Option<String>,
    },
}

/// Sysfs, rooted somewhere (`/sys` on a real system).
#[derive(Clone, Debug)]
pub struct Sysfs {
    root: PathBuf,
    /// Where the IOMMU groups' device files are (`/dev/vfio`).
    groups: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs {
            root: "/sys".into(),
            groups: "/dev/vfio".into(),
        }
    }
}

/// One card as sysfs shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciCard {
    /// PCI address, e.g. `0000:00:03.0`.
    pub bdf: String,
    /// The sysfs directory of the function.
    pub path: PathBuf,
    /// The driver bound to it, if any (`virtio-pci`, `vfio-pci`).
    pub driver: Option<String>,
    /// Its IOMMU group, if the kernel has an IOMMU.
    pub iommu_group: Option<u32>,
}

/// `bdf` as sysfs names it (`0000:00:04.0`), or None when it is no PCI
/// address: a domain of 4 to 8 hex digits (0000 when left out), a bus of
/// 2, a device of 2 and a function 0-7, lower case.
fn canonical(bdf: &str) -> Option<String> {
    let b = bdf.to_ascii_lowercase();
    let (domain, rest) = match b.split_once(':') {
        Some((d, r)) if r.contains(':') => (d, r),
        Some(_) => ("0000", b.as_str()),
        None => return None,
    };
    let hex = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
    };
    let (bus, devfn) = rest.split_once(':')?;
    let (dev, func) = devfn.split_once('.')?;
    let ok = hex(domain, 4..=8)
        && hex(bus, 2..=2)
        && hex(dev, 2..=2)
        && func.len() == 1
        && matches!(func.as_bytes()[0], b'0'..=b'7');
    ok.then(|| format!("{domain}:{bus}:{dev}.{func}"))
}

fn driver_name(d: &Option<String>) -> &str {
    d.as_deref().unwrap_or("no driver")
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SysfsError + '_ {
    move |source| SysfsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_hex(path: &Path) -> Option<u32> {
    let s = fs::read_to_string(path).ok()?;
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

fn link_name(path: &Path) -> Option<String> {
    Some(fs::read_link(path).ok()?.file_name()?.to_str()?.to_owned())
}

impl Sysfs {
    /// Sysfs mounted at `root`, the groups' device files in `root/dev-vfio`
    /// (a made-up tree's; [`Sysfs::default`] is the real system's).
    pub fn new(root: impl Into<PathBuf>) -> Sysfs {
        let root = root.into();
        Sysfs {
            groups: root.join("dev-vfio"),
            root,
        }
    }

    fn devices(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), SysfsError> {
        fs::write(path, value).map_err(io_err(path))
    }

    /// The card at `bdf` as sysfs shows it now. The address may leave
    /// out its domain (`00:04.0`, as lspci prints it) and be in either case.
    pub fn card(&self, bdf: &str) -> Result<PciCard, SysfsError> {
        let bdf = &canonical(bdf).ok_or_else(|| SysfsError::NoDevice(bdf.to_owned()))?;
        let path = self.devices().join(bdf);
        if !path.is_dir() {
            return Err(SysfsError::NoDevice(bdf.clone()));
        }
        let vendor = read_hex(&path.join("vendor"));
        let device = read_hex(&path.join("device"));
        if vendor != Some(u32::from(VIRTIO_VENDOR_ID)) || device != Some(u32::from(PCI_DEVICE_ID)) {
            return Err(SysfsError::NotACard(bdf.to_owned()));
        }
        Ok(PciCard {
            bdf: bdf.to_owned(),
            driver: link_name(&path.join("driver")),
            iommu_group: link_name(&path.join("iommu_group")).and_then(|g| g.parse().ok()),
            path,
        })
    }

    /// Every card, in address order.
    pub fn cards(&self) -> Result<Vec<PciCard>, SysfsError> {
        let dir = self.devices();
        let mut names: Vec<String> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names.iter().filter_map(|n| self.card(n).ok()).collect())
    }

    /// The card at `bdf`, or the first card when `bdf` is `None`.
    pub fn find(&self, bdf: Option<&str>) -> Result<PciCard, SysfsError> {
        match bdf {
            Some(b) => self.card(b),
            None => self
                .cards()?
                .into_iter()
                .next()
                .ok_or_else(|| SysfsError::NoCard(self.devices())),
        }
    }

    /// The card's IOMMU group, checked to hold the card alone.
    pub fn sole_group(&self, card: &PciCard) -> Result<u32, SysfsError> {
        let group = card
            .iommu_group
            .ok_or_else(|| SysfsError::NoGroup(card.bdf.clone()))?;
        let dir = card.path.join("iommu_group/devices");
        let others: Vec<String> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| *n != card.bdf)
            .collect();
        if others.is_empty() {
            Ok(group)
        } else {
            Err(SysfsError::SharedGroup {
                bdf: card.bdf.clone(),
                group,
                others: others.join(", "),
            })
        }
    }

    /// Binds the card to `driver` (`None`: whichever driver claims it
    /// without an override) and waits until sysfs shows it.
    fn rebind(&self, card: &PciCard, driver: Option<&str>) -> Result<PciCard, SysfsError> {
        if card.driver.as_deref() == driver && driver.is_some() {
            return Ok(card.clone());
        }
        let over = card.path.join("driver_override");
        self.write(&over, driver.unwrap_or("\n"))?;
        let moved = self.move_to(card, driver);
        if moved.is_err() && driver.is_some() {
            // Not left without a driver and overridden, where nothing but a
            // hand-written override would give it back: the kernel's own
            // driver takes it again.
            let _ = self.write(&over, "\n");
            let _ = self.write(&self.root.join("bus/pci/drivers_probe"), &card.bdf);
        }
        moved
    }

    /// [`Sysfs::rebind`] once the override is written: unbind, probe, and
    /// wait until sysfs shows it.
    fn move_to(&self, card: &PciCard, driver: Option<&str>) -> Result<PciCard, SysfsError> {
        if card.driver.is_some() {
            self.write(&card.path.join("driver/unbind"), &card.bdf)?;
        }
        self.write(&self.root.join("bus/pci/drivers_probe"), &card.bdf)?;
        let deadline = Instant::now() + SETTLE;
        loop {
            let now = self.card(&card.bdf)?;
            let done = match driver {
                Some(d) => now.driver.as_deref() == Some(d),
                None => now.driver.as_deref() != Some(VFIO_DRIVER),
            };
            if done {
                return Ok(now);
            }
            if Instant::now() >= deadline {
                return Err(SysfsError::NotBound {
                    bdf: card.bdf.clone(),
                    now: now.driver,
                    want: driver.map(str::to_owned),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Hands the card to vfio-pci, after checking its IOMMU group holds it alone.
    pub fn bind_vfio(&self, card: &PciCard) -> Result<PciCard, SysfsError> {
        self.sole_group(card)?;
        if !self.root.join("bus/pci/drivers").join(VFIO_DRIVER).is_dir() {
            return Err(SysfsError::NoVfioDriver);
        }
        self.rebind(card, Some(VFIO_DRIVER))
    }

    /// Gives the card back to the kernel's own driver (virtio-pci): from
    /// vfio-pci, or from no driver at all (a bind that stopped half way
    /// leaves the override set, which keeps every other driver off it).
    /// Refused while a process has the card open through VFIO.
    pub fn unbind_vfio(&self, card: &PciCard) -> Result<PciCard, SysfsError> {
        match card.driver.as_deref() {
            Some(VFIO_DRIVER) => self.check_unused(card)?,
            Some(_) => return Ok(card.clone()),
            None => {}
        }
        self.rebind(card, None)
    }

    /// Refuses while a process holds the card's IOMMU group open, as a
    /// process that has the card does: vfio-pci's unbind would wait until
    /// the card is closed, and a wait that this crate cannot interrupt (it
    /// registers no request eventfd to be asked through). The group's file
    /// opens once at a time, so EBUSY says someone has it; a process that
    /// opens it after this check is still waited for, and one that tries
    /// during it gets EBUSY itself.
    fn check_unused(&self, card: &PciCard) -> Result<(), SysfsError> {
        let Some(group) = card.iommu_group else {
            return Ok(());
        };
        let path = self.groups.join(group.to_string());
        match fs::OpenOptions::new().read(true).write(true).open(&path) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(SysfsError::InUse {
                bdf: card.bdf.clone(),
                path,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(SysfsError::Io { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let dev = r.join("bus/pci/devices");
        fs::create_dir_all(&dev).unwrap();
        fs::create_dir_all(r.join("bus/pci/drivers/vfio-pci")).unwrap();
        fs::create_dir_all(r.join("bus/pci/drivers/virtio-pci")).unwrap();
        fs::create_dir_all(r.join("kernel/iommu_groups/7/devices")).unwrap();
        fs::write(r.join("bus/pci/drivers_probe"), "").unwrap();
        for (bdf, vendor, device) in [
            ("0000:00:02.0", "0x1af4", "0x1041"),
            ("0000:00:04.0", "0x1af4", "0x1066"),
        ] {
            let d = dev.join(bdf);
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("vendor"), format!("{vendor}\n")).unwrap();
            fs::write(d.join("device"), format!("{device}\n")).unwrap();
            fs::write(d.join("driver_override"), "(null)\n").unwrap();
        }
        let card = dev.join("0000:00:04.0");
        symlink(r.join("kernel/iommu_groups/7"), card.join("iommu_group")).unwrap();
        symlink(&card, r.join("kernel/iommu_groups/7/devices/0000:00:04.0")).unwrap();
        symlink(r.join("bus/pci/drivers/vfio-pci"), card.join("driver")).unwrap();
        t
    }

    #[test]
    fn finds_the_card_by_id() {
        let t = tree();
        let s = Sysfs::new(t.path());
        let c = s.find(None).unwrap();
        assert_eq!(c.bdf, "0000:00:04.0");
        assert_eq!(c.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(c.iommu_group, Some(7));
        assert_eq!(s.sole_group(&c).unwrap(), 7);
        assert!(matches!(
            s.card("0000:00:02.0"),
            Err(SysfsError::NotACard(_))
        ));
        assert_eq!(s.bind_vfio(&c).unwrap(), c, "already bound: nothing to do");
    }

    #[test]
    fn refuses_a_shared_group() {
        let t = tree();
        let r = t.path();
        symlink(
            r.join("bus/pci/devices/0000:00:02.0"),
            r.join("kernel/iommu_groups/7/devices/0000:00:02.0"),
        )
        .unwrap();
        let s = Sysfs::new(r);
        let c = s.find(None).unwrap();
        let e = s.bind_vfio(&c).unwrap_err();
        assert!(e.to_string().contains("0000:00:02.0"), "{e}");
    }

    #[test]
    fn unbinding_a_card_left_without_a_driver_clears_its_override() {
        // A bind that stopped after its override: no driver, and every
        // driver but vfio-pci kept off.
        let t = tree();
        let r = t.path();
        let card = r.join("bus/pci/devices/0000:00:04.0");
        fs::remove_file(card.join("driver")).unwrap();
        fs::write(card.join("driver_override"), "vfio-pci\n").unwrap();
        let s = Sysfs::new(r);
        let c = s.find(None).unwrap();
        assert_eq!(c.driver, None);
        s.unbind_vfio(&c).unwrap();
        assert_eq!(
            fs::read_to_string(card.join("driver_override")).unwrap(),
            "\n"
        );
        assert_eq!(
            fs::read_to_string(r.join("bus/pci/drivers_probe")).unwrap(),
            "0000:00:04.0"
        );
        // Bound to another driver: left alone.
        fs::write(r.join("bus/pci/drivers_probe"), "").unwrap();
        symlink(r.join("bus/pci/drivers/virtio-pci"), card.join("driver")).unwrap();
        let c = s.find(None).unwrap();
        assert_eq!(s.unbind_vfio(&c).unwrap(), c);
        assert_eq!(
            fs::read_to_string(r.join("bus/pci/drivers_probe")).unwrap(),
            ""
        );
    }

    #[test]
    fn a_bind_that_does_not_take_gives_the_card_back() {
        // vfio-pci never claims it (sysfs here does not move drivers).
        let t = tree();
        let r = t.path();
        let card = r.join("bus/pci/devices/0000:00:04.0");
        fs::remove_file(card.join("driver")).unwrap();
        let s = Sysfs::new(r);
        let c = s.find(None).unwrap();
        let e = s.bind_vfio(&c).unwrap_err();
        assert!(
            e.to_string()
                .contains("is bound to no driver, expected vfio-pci"),
            "{e}"
        );
        assert_eq!(
            fs::read_to_string(card.join("driver_override")).unwrap(),
            "\n"
        );
    }

    #[test]
    fn addresses_are_taken_as_lspci_prints_them_and_checked() {
        let t = tree();
        let s = Sysfs::new(t.path());
        for a in [
            "0000:00:04.0",
            "00:04.0",
            "0000:00:04.0".to_uppercase().as_str(),
        ] {
            assert_eq!(s.card(a).unwrap().bdf, "0000:00:04.0", "{a}");
        }
        for a in [
            "0000:00:05.0",
            "10000:00:04.0",
            "0000:00:04.8",
            "0000:00:04.0/",
            "../devices/0000:00:04.0",
            "4.0",
            "",
        ] {
            let e = s.card(a).unwrap_err();
            assert!(matches!(e, SysfsError::NoDevice(_)), "{a}: {e}");
            assert!(e.to_string().starts_with("no PCI device"), "{e}");
        }
        assert!(matches!(s.card("00:02.0"), Err(SysfsError::NotACard(_))));
    }

    #[test]
    fn no_card_and_no_group_say_so() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("bus/pci/devices")).unwrap();
        assert!(matches!(
            Sysfs::new(t.path()).find(None),
            Err(SysfsError::NoCard(_))
        ));
        let t = tree();
        fs::remove_file(t.path().join("bus/pci/devices/0000:00:04.0/iommu_group")).unwrap();
        let s = Sysfs::new(t.path());
        let c = s.find(None).unwrap();
        assert!(matches!(s.sole_group(&c), Err(SysfsError::NoGroup(_))));
    }
}
