//! How the driver reaches the card's registers: PCI config space, BAR
//! windows and the interrupt eventfd, behind one small trait.
//!
//! [`VfioTransport`] is the real one (a VFIO device: BARs mmapped where
//! vfio-pci allows it, read and written through the device file otherwise;
//! MSI-X vector 0 signalling one eventfd). The in-process test card
//! implements the same trait, so the queue logic runs unchanged on both.

use std::io;
use std::os::fd::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;

use vfio_bindings::bindings::vfio::{
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_ioctls::{VfioContainer, VfioDevice};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Access to one card's registers.
pub trait Transport: Send + Sync {
    /// Reads `buf.len()` bytes of PCI config space at `offset`.
    fn read_config(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes `data` to PCI config space at `offset`.
    fn write_config(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Size of BAR `bar` in bytes (0: not implemented).
    fn bar_size(&self, bar: u8) -> u64;
    /// Reads a 1, 2 or 4 byte register at `offset` in BAR `bar` (the caller
    /// checks the window; an access outside the BAR reads as all ones).
    fn read(&self, bar: u8, offset: u64, width: u8) -> u32;
    /// Writes a 1, 2 or 4 byte register (an access outside the BAR is dropped).
    fn write(&self, bar: u8, offset: u64, width: u8, value: u32);
    /// The eventfd the card's MSI-X vector 0 signals, if interrupts are set up.
    fn interrupt(&self) -> Option<&EventFd>;
}

/// One BAR mapped into this process.
struct BarMap {
    ptr: NonNull<u8>,
    len: usize,
}

/// A card opened through VFIO.
pub struct VfioTransport {
    // Field order is drop order: the mappings go before the device file,
    // the device before the container it is attached to.
    maps: [Option<BarMap>; 6],
    irq: Option<EventFd>,
    device: VfioDevice,
    container: Arc<VfioContainer>,
}

// SAFETY: the BAR mappings are MMIO, only ever accessed through volatile
// loads and stores of the register width, from any thread; the rest is
// file descriptors.
unsafe impl Send for VfioTransport {}
// SAFETY: as for Send: no method hands out references into the mappings.
unsafe impl Sync for VfioTransport {}

impl VfioTransport {
    /// Opens the device at `sysfs_path` (bound to vfio-pci) in a new
    /// TYPE1v2 container, maps its BARs and, with `interrupts`, routes
    /// MSI-X vector 0 to an eventfd.
    pub fn open(
        sysfs_path: &std::path::Path,
        interrupts: bool,
    ) -> Result<VfioTransport, vfio_ioctls::VfioError> {
        let container = Arc::new(VfioContainer::new(None)?);
        let device = VfioDevice::new(sysfs_path, container.clone(), false)?;
        let mut maps: [Option<BarMap>; 6] = Default::default();
        for (bar, slot) in maps.iter_mut().enumerate() {
            let bar = bar as u32;
            let size = device.get_region_size(bar) as usize;
            if size == 0 || device.get_region_flags(bar) & VFIO_REGION_INFO_FLAG_MMAP == 0 {
                continue;
            }
            // SAFETY: maps `size` bytes of the device file at the region's
            // offset, a fresh shared mapping the kernel places; the result is
            // checked. A region vfio-pci does not let us map fails here and
            // is accessed through pread/pwrite instead.
            let addr = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    device.as_raw_fd(),
                    device.get_region_offset(bar) as libc::off_t,
                )
            };
            if addr != libc::MAP_FAILED {
                *slot = NonNull::new(addr.cast()).map(|ptr| BarMap { ptr, len: size });
            }
        }
        let irq = if interrupts {
            let fd = EventFd::new(EFD_NONBLOCK).map_err(vfio_ioctls::VfioError::OpenContainer)?;
            device.enable_msix(vec![&fd])?;
            Some(fd)
        } else {
            None
        };
        Ok(VfioTransport {
            maps,
            irq,
            device,
            container,
        })
    }

    /// The container the device is attached to (DMA memory is mapped in it).
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// Number of MSI-X vectors the card offers.
    pub fn msix_vectors(&self) -> u32 {
        self.device
            .get_irq_info(VFIO_PCI_MSIX_IRQ_INDEX)
            .map_or(0, |i| i.count)
    }

    fn mapped(&self, bar: u8, offset: u64, width: u8) -> Option<*mut u8> {
        let m = self.maps.get(usize::from(bar))?.as_ref()?;
        let off = usize::try_from(offset).ok()?;
        if off.checked_add(usize::from(width))? > m.len || off % usize::from(width) != 0 {
            return None;
        }
        // SAFETY: off + width <= len: inside the mapping.
        Some(unsafe { m.ptr.as_ptr().add(off) })
    }
}

impl Transport for VfioTransport {
    fn read_config(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let size = self.device.get_region_size(VFIO_PCI_CONFIG_REGION_INDEX);
        if offset + buf.len() as u64 > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "config read beyond the region",
            ));
        }
        self.device
            .region_read(VFIO_PCI_CONFIG_REGION_INDEX, buf, offset);
        Ok(())
    }

    fn write_config(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let size = self.device.get_region_size(VFIO_PCI_CONFIG_REGION_INDEX);
        if offset + data.len() as u64 > size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "config write beyond the region",
            ));
        }
        self.device
            .region_write(VFIO_PCI_CONFIG_REGION_INDEX, data, offset);
        Ok(())
    }

    fn bar_size(&self, bar: u8) -> u64 {
        if bar > 5 {
            return 0;
        }
        self.device.get_region_size(u32::from(bar))
    }

    fn read(&self, bar: u8, offset: u64, width: u8) -> u32 {
        if let Some(p) = self.mapped(bar, offset, width) {
            // SAFETY (each block): p is an aligned register of `width` bytes
            // inside a BAR mapping (checked by mapped()); MMIO is read with
            // one volatile load of exactly that width.
            return match width {
                // SAFETY: see above.
                1 => u32::from(unsafe { p.read_volatile() }),
                // SAFETY: see above.
                2 => u32::from(unsafe { p.cast::<u16>().read_volatile() }),
                // SAFETY: see above.
                _ => unsafe { p.cast::<u32>().read_volatile() },
            };
        }
        let mut b = [0xffu8; 4];
        let w = usize::from(width.min(4));
        self.device.region_read(u32::from(bar), &mut b[..w], offset);
        u32::from_le_bytes(b) & (u32::MAX >> (32 - 8 * w as u32))
    }

    fn write(&self, bar: u8, offset: u64, width: u8, value: u32) {
        if let Some(p) = self.mapped(bar, offset, width) {
            // As in read: an aligned register inside a BAR mapping, written
            // with one volatile store of its width.
            match width {
                // SAFETY: see above.
                1 => unsafe { p.write_volatile(value as u8) },
                // SAFETY: see above.
                2 => unsafe { p.cast::<u16>().write_volatile(value as u16) },
                // SAFETY: see above.
                _ => unsafe { p.cast::<u32>().write_volatile(value) },
            }
            return;
        }
        let b = value.to_le_bytes();
        self.device
            .region_write(u32::from(bar), &b[..usize::from(width.min(4))], offset);
    }

    fn interrupt(&self) -> Option<&EventFd> {
        self.irq.as_ref()
    }
}

impl Drop for VfioTransport {
    fn drop(&mut self) {
        if self.irq.is_some() {
            let _ = self.device.disable_msix();
        }
        for m in self.maps.iter_mut().filter_map(Option::take) {
            // SAFETY: the mapping open() made; nothing refers to it any more.
            unsafe { libc::munmap(m.ptr.as_ptr().cast(), m.len) };
        }
    }
}
