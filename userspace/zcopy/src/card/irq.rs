//! How a card's interrupts reach the CPU, read from sysfs and procfs.

use std::path::{Path, PathBuf};

use super::{Error, Result};

/// The interrupt mode of a card's PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupts {
    /// Message-signalled: `vectors` MSI-X (or MSI) vectors enabled.
    Msi {
        /// `msix` or `msi`, as sysfs names it.
        kind: String,
        /// The Linux interrupt numbers of the vectors.
        irqs: Vec<u32>,
    },
    /// The legacy INTx line (level-triggered, may be shared).
    Intx {
        /// Its Linux interrupt number.
        irq: u32,
        /// The interrupt chip and trigger as `/proc/interrupts` shows them,
        /// e.g. `IO-APIC 22-fasteoi`.
        chip: String,
        /// The other handlers on the line, e.g. `virtio3`.
        shared_with: Vec<String>,
        /// Interrupts taken on the line so far, on every CPU and for every
        /// handler on it (`/proc/interrupts`).
        count: Option<u64>,
        /// What the kernel's unclaimed-interrupt detector holds for the line
        /// (`/proc/irq/N/spurious`).
        spurious: Option<Spurious>,
    },
}

/// The kernel's unclaimed-interrupt detector for one line
/// (`/proc/irq/N/spurious`). It is no running total: it tells whether
/// interrupts go unclaimed now, and when the last one did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spurious {
    /// Unclaimed interrupts in the current stretch (`unhandled`): the kernel
    /// starts it at 1 again when an unclaimed interrupt comes more than
    /// 100 ms after the one before, and at 0 every 100,000 interrupts, and
    /// disables the line when it passes 99,900 by then.
    pub unhandled: u64,
    /// When the last unclaimed interrupt came (`last_unhandled`, jiffies in
    /// ms): it moves with every unclaimed interrupt.
    pub last_unhandled_ms: u64,
}

impl Interrupts {
    /// Reads the mode of card `instance` (`/sys/class/misc/zcardN`, whose
    /// device is the virtio device under the PCI function).
    pub fn read(instance: u32) -> Result<Interrupts> {
        let virtio = PathBuf::from(format!("/sys/class/misc/zcard{instance}/device"));
        let virtio = std::fs::canonicalize(&virtio).map_err(|source| Error::Counter {
            path: virtio.clone(),
            source,
        })?;
        let pci = virtio.parent().unwrap_or(Path::new("/"));
        let own = virtio.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let interrupts = std::fs::read_to_string("/proc/interrupts").unwrap_or_default();
        Interrupts::read_from(pci, own, &interrupts, Path::new("/proc/irq"))
    }

    /// Reads the mode of the PCI function at `pci` (its sysfs directory)
    /// whose handler is named `own` (the virtio device, e.g. `virtio2`), with
    /// the text of `/proc/interrupts` and the `/proc/irq` directory.
    pub fn read_from(
        pci: &Path,
        own: &str,
        proc_interrupts: &str,
        proc_irq: &Path,
    ) -> Result<Interrupts> {
        let read = |path: PathBuf| {
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|source| Error::Counter { path, source })
        };
        // msi_irqs/ lists one file per enabled vector, named by its irq and
        // holding "msix" or "msi"; it is absent or empty on INTx.
        let mut irqs: Vec<(u32, String)> = std::fs::read_dir(pci.join("msi_irqs"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let irq = e.file_name().to_str()?.parse().ok()?;
                Some((irq, read(e.path()).ok()?))
            })
            .collect();
        if !irqs.is_empty() {
            irqs.sort();
            return Ok(Interrupts::Msi {
                kind: irqs[0].1.clone(),
                irqs: irqs.into_iter().map(|(i, _)| i).collect(),
            });
        }
        let irq_path = pci.join("irq");
        let irq: u32 = read(irq_path.clone())?
            .parse()
            .map_err(|e| Error::Counter {
                path: irq_path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?;
        let (count, chip, handlers) = match proc_interrupts_line(proc_interrupts, irq) {
            Some((count, chip, handlers)) => (Some(count), chip, handlers),
            None => (None, String::new(), Vec::new()),
        };
        let spurious = std::fs::read_to_string(proc_irq.join(irq.to_string()).join("spurious"))
            .ok()
            .and_then(|s| {
                let field = |name: &str| {
                    s.lines().find_map(|l| {
                        l.strip_prefix(name)?
                            .trim()
                            .trim_end_matches(" ms")
                            .parse()
                            .ok()
                    })
                };
                Some(Spurious {
                    unhandled: field("unhandled ")?,
                    last_unhandled_ms: field("last_unhandled ")?,
                })
            });
        Ok(Interrupts::Intx {
            irq,
            chip,
            shared_with: handlers.into_iter().filter(|h| h != own).collect(),
            count,
            spurious,
        })
    }

    /// One line for people: `MSI-X, 3 vectors` or
    /// `INTx line, irq 22 (IO-APIC 22-fasteoi), shared with virtio3`.
    pub fn describe(&self) -> String {
        match self {
            Interrupts::Msi { kind, irqs } => {
                let name = if kind == "msix" { "MSI-X" } else { "MSI" };
                format!(
                    "{name}, {} vector{}",
                    irqs.len(),
                    if irqs.len() == 1 { "" } else { "s" }
                )
            }
            Interrupts::Intx {
                irq,
                chip,
                shared_with,
                ..
            } => {
                let mut s = format!("INTx line, irq {irq}");
                if !chip.is_empty() {
                    s += &format!(" ({chip})");
                }
                if !shared_with.is_empty() {
                    s += &format!(", shared with {}", shared_with.join(", "));
                }
                s
            }
        }
    }
}

/// The interrupts taken (summed over the CPUs), the chip/trigger text and
/// the handlers of `irq`'s line in `/proc/interrupts`.
fn proc_interrupts_line(text: &str, irq: u32) -> Option<(u64, String, Vec<String>)> {
    let mut lines = text.lines();
    let cpus = lines.next()?.split_whitespace().count();
    let want = format!("{irq}:");
    let line = lines.find(|l| l.split_whitespace().next() == Some(want.as_str()))?;
    // "IRQ:" then one count per CPU, then the chip, the hwirq-trigger, and
    // the handlers separated by ", ".
    let count = line
        .split_whitespace()
        .skip(1)
        .take(cpus)
        .map(|n| n.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    let rest: Vec<&str> = line.split_whitespace().skip(1 + cpus).collect();
    let chip = rest.iter().take(2).copied().collect::<Vec<_>>().join(" ");
    let handlers = rest
        .iter()
        .skip(2)
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
        .split(", ")
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    Some((count, chip, handlers))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC: &str = "           CPU0       CPU1       \n  0:         45          0   IO-APIC   2-edge      timer\n 22:        812        345   IO-APIC  22-fasteoi   virtio2, virtio3\n 24:          0          0  PCI-MSIX-0000:00:04.0   0-edge      virtio1-config\n";

    #[test]
    fn intx_line_with_its_chip_handlers_count_and_spurious_state() {
        let dir = tempfile::tempdir().unwrap();
        let pci = dir.path().join("0000:00:05.0");
        std::fs::create_dir_all(pci.join("msi_irqs")).unwrap();
        std::fs::write(pci.join("irq"), "22\n").unwrap();
        let irq = dir.path().join("irq/22");
        std::fs::create_dir_all(&irq).unwrap();
        std::fs::write(
            irq.join("spurious"),
            "count 1157\nunhandled 3\nlast_unhandled 4294 ms\n",
        )
        .unwrap();
        let i = Interrupts::read_from(&pci, "virtio2", PROC, &dir.path().join("irq")).unwrap();
        assert_eq!(
            i,
            Interrupts::Intx {
                irq: 22,
                chip: "IO-APIC 22-fasteoi".into(),
                shared_with: vec!["virtio3".into()],
                count: Some(812 + 345),
                spurious: Some(Spurious {
                    unhandled: 3,
                    last_unhandled_ms: 4294
                }),
            }
        );
        assert_eq!(
            i.describe(),
            "INTx line, irq 22 (IO-APIC 22-fasteoi), shared with virtio3"
        );
    }

    #[test]
    fn msix_vectors_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let pci = dir.path().join("0000:00:04.0");
        std::fs::create_dir_all(pci.join("msi_irqs")).unwrap();
        for n in [26, 24, 25] {
            std::fs::write(pci.join("msi_irqs").join(n.to_string()), "msix\n").unwrap();
        }
        std::fs::write(pci.join("irq"), "11\n").unwrap();
        let i = Interrupts::read_from(&pci, "virtio1", PROC, dir.path()).unwrap();
        assert_eq!(
            i,
            Interrupts::Msi {
                kind: "msix".into(),
                irqs: vec![24, 25, 26]
            }
        );
        assert_eq!(i.describe(), "MSI-X, 3 vectors");
    }

    #[test]
    fn no_irq_file_is_an_error_that_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = Interrupts::read_from(dir.path(), "virtio2", PROC, dir.path()).unwrap_err();
        assert!(e.to_string().contains("irq"), "{e}");
    }
}
