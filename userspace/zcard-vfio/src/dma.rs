//! DMA memory: the only memory the card is ever given an address in.
//!
//! In the VFIO boot it is a set of 2 MiB hugepages, pinned by
//! `VFIO_IOMMU_MAP_DMA` before their physical address is read from
//! `/proc/self/pagemap`, and mapped at IOVA = that address (physical-address
//! mode: the card does not go through the vIOMMU, see docs/vfio.md). Each
//! hugepage is physically contiguous; two of them need not be, so an address
//! range is turned into one segment per contiguous piece ([`DmaMemory::segments`]).
//!
//! The memory is shared with a device that reads and writes it at any time,
//! so no Rust reference to it is ever made: every access is a raw copy or a
//! volatile/atomic access through `DmaMemory::ptr`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::ptr::NonNull;
use std::sync::Arc;

use thiserror::Error;
use vfio_ioctls::VfioContainer;

/// Size of one hugepage, the unit of pinning and of physical contiguity.
pub const HUGEPAGE: usize = 2 << 20;
/// IOVAs used only while the pages' physical addresses are read: far above
/// any guest RAM, inside the 39-bit address width of QEMU's intel-iommu.
const SCRATCH_IOVA: u64 = 1 << 38;
/// `/proc/self/pagemap`: bit 63 present, bits 0..=54 the page frame number.
const PM_PRESENT: u64 = 1 << 63;
const PM_PFN_MASK: u64 = (1 << 55) - 1;
const PAGE: u64 = 4096;

/// What went wrong while setting DMA memory up.
#[derive(Debug, Error)]
pub enum DmaError {
    /// mmap of hugepages failed (none reserved, or not enough).
    #[error("cannot map {pages} hugepages of 2 MiB ({source}): reserve them first (echo N > /proc/sys/vm/nr_hugepages)")]
    Hugepages {
        /// How many were asked for.
        pages: usize,
        /// The mmap error.
        #[source]
        source: io::Error,
    },
    /// pagemap could not be read or shows no frame (not root).
    #[error(
        "cannot read the physical address of a hugepage from /proc/self/pagemap: {0} (root needed)"
    )]
    Pagemap(String),
    /// A hugepage is not one physically contiguous range.
    #[error("hugepage {0} is not physically contiguous")]
    NotContiguous(usize),
    /// VFIO refused to map or unmap.
    #[error("VFIO DMA map at IOVA {iova:#x}: {error}")]
    Map {
        /// The IOVA.
        iova: u64,
        /// VFIO's error.
        error: String,
    },
    /// The arena has no free range that large.
    #[error("out of DMA memory: no free range of {0} bytes")]
    Exhausted(usize),
}

/// Where the memory comes from, and what releasing it takes.
enum Backing {
    /// Hugepages mapped by this process and pinned in a VFIO container.
    Vfio { container: Arc<VfioContainer> },
    /// Memory owned by someone else (the in-process test card).
    Borrowed,
}

/// A range of DMA memory: a host mapping and the IOVA of each contiguous chunk.
pub struct DmaMemory {
    ptr: NonNull<u8>,
    len: usize,
    chunk: usize,
    iovas: Vec<u64>,
    backing: Backing,
}

// SAFETY: the mapping is plain memory owned by this value for its whole life;
// it is only ever accessed through raw pointers (copies, volatile or atomic
// operations), which are sound from any thread.
unsafe impl Send for DmaMemory {}
// SAFETY: as for Send: no method hands out a reference into the mapping.
unsafe impl Sync for DmaMemory {}

impl std::fmt::Debug for DmaMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DmaMemory")
            .field("len", &self.len)
            .field("chunk", &self.chunk)
            .field("iovas", &self.iovas)
            .finish_non_exhaustive()
    }
}

fn pagemap_pfn(pagemap: &File, vaddr: usize) -> Result<u64, DmaError> {
    let mut e = [0u8; 8];
    pagemap
        .read_exact_at(&mut e, (vaddr as u64 / PAGE) * 8)
        .map_err(|err| DmaError::Pagemap(err.to_string()))?;
    let entry = u64::from_le_bytes(e);
    let pfn = entry & PM_PFN_MASK;
    if entry & PM_PRESENT == 0 || pfn == 0 {
        return Err(DmaError::Pagemap(format!(
            "entry {entry:#x} for {vaddr:#x}"
        )));
    }
    Ok(pfn)
}

impl DmaMemory {
    /// Maps `pages` hugepages, pins them in `container` and maps each at
    /// IOVA = its physical address.
    pub fn hugepages(container: Arc<VfioContainer>, pages: usize) -> Result<DmaMemory, DmaError> {
        if pages == 0 {
            return Err(DmaError::Exhausted(0));
        }
        let len = pages * HUGEPAGE;
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // nothing else refers to it. The result is checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_HUGETLB | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(DmaError::Hugepages {
                pages,
                source: io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(addr.cast::<u8>()).ok_or(DmaError::Exhausted(len))?;
        // From here on, Drop unmaps whatever was mapped (iovas holds the PA
        // mappings made so far).
        let mut mem = DmaMemory {
            ptr,
            len,
            chunk: HUGEPAGE,
            iovas: Vec::with_capacity(pages),
            backing: Backing::Vfio {
                container: container.clone(),
            },
        };
        // MAP_POPULATE may leave pages unpopulated under memory pressure
        // without failing: touch every one (the VFIO pin below faults them in
        // anyway, this only makes a shortage fail here, with a clear error).
        for i in 0..pages {
            // SAFETY: i * HUGEPAGE < len: inside the mapping just made.
            let page = unsafe { ptr.as_ptr().add(i * HUGEPAGE) };
            // SAFETY: page is a writable byte of that mapping, which no
            // device knows about yet and nothing references.
            unsafe { page.write_volatile(0) };
        }
        let pagemap =
            File::open("/proc/self/pagemap").map_err(|e| DmaError::Pagemap(e.to_string()))?;
        for i in 0..pages {
            // SAFETY: i * HUGEPAGE < len.
            let host = unsafe { ptr.as_ptr().add(i * HUGEPAGE) };
            let scratch = SCRATCH_IOVA + (i * HUGEPAGE) as u64;
            // Pin first (at a scratch IOVA), then read the frame: a page
            // pinned by VFIO cannot move, so the address read stays true.
            // SAFETY: host..host+HUGEPAGE is this value's own mapping, only
            // ever accessed through raw pointers; it is unmapped from the
            // container before it is munmapped (Drop).
            unsafe { container.vfio_dma_map(scratch, HUGEPAGE, host) }.map_err(|e| {
                DmaError::Map {
                    iova: scratch,
                    error: e.to_string(),
                }
            })?;
            let result = (|| {
                let first = pagemap_pfn(&pagemap, host as usize)?;
                let last = pagemap_pfn(&pagemap, host as usize + HUGEPAGE - PAGE as usize)?;
                if last != first + (HUGEPAGE as u64 / PAGE) - 1 {
                    return Err(DmaError::NotContiguous(i));
                }
                let pa = first * PAGE;
                // SAFETY: as above; a second mapping of the same pages (the
                // type1 IOMMU pins them once more), at IOVA = PA.
                unsafe { container.vfio_dma_map(pa, HUGEPAGE, host) }.map_err(|e| {
                    DmaError::Map {
                        iova: pa,
                        error: e.to_string(),
                    }
                })?;
                Ok(pa)
            })();
            let unmapped = container.vfio_dma_unmap(scratch, HUGEPAGE);
            let pa = result?;
            mem.iovas.push(pa);
            unmapped.map_err(|e| DmaError::Map {
                iova: scratch,
                error: e.to_string(),
            })?;
        }
        Ok(mem)
    }

    /// DMA memory at `ptr` of `len` bytes that the device reaches at
    /// `iova..iova + len` (one contiguous chunk).
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` must stay mapped, readable and writable for the life
    /// of the returned value and must not be accessed through Rust references
    /// while it lives (the device writes it at any time).
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize, iova: u64) -> DmaMemory {
        DmaMemory {
            ptr,
            len,
            chunk: len.max(1),
            iovas: vec![iova],
            backing: Backing::Borrowed,
        }
    }

    /// Size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the memory is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes in each physically contiguous chunk.
    pub fn chunk(&self) -> usize {
        self.chunk
    }

    /// Whether `[offset, offset + len)` lies in the memory.
    pub fn contains(&self, offset: usize, len: usize) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.len)
    }

    /// Raw pointer `offset` bytes in; `offset` must be inside the memory.
    pub(crate) fn ptr(&self, offset: usize) -> *mut u8 {
        assert!(
            offset <= self.len,
            "DMA offset {offset} outside {} bytes",
            self.len
        );
        // SAFETY: offset <= len: inside the mapping or one past its end.
        unsafe { self.ptr.as_ptr().add(offset) }
    }

    /// The IOVA of `offset` (which must be inside the memory).
    pub fn iova(&self, offset: usize) -> u64 {
        self.iovas[offset / self.chunk] + (offset % self.chunk) as u64
    }

    /// `[offset, offset + len)` as device address segments, one per
    /// physically contiguous piece (adjacent chunks that happen to be
    /// contiguous are merged). The range must be inside the memory.
    pub fn segments(&self, offset: usize, len: usize) -> Vec<(u64, u32)> {
        assert!(self.contains(offset, len), "DMA range outside the memory");
        let mut out: Vec<(u64, u32)> = Vec::new();
        let (mut at, end) = (offset, offset + len);
        while at < end {
            let piece = (self.chunk - at % self.chunk).min(end - at);
            let iova = self.iova(at);
            match out.last_mut() {
                Some((a, l))
                    if *a + u64::from(*l) == iova && (*l as usize + piece) <= u32::MAX as usize =>
                {
                    *l += piece as u32;
                }
                _ => out.push((iova, piece as u32)),
            }
            at += piece;
        }
        out
    }

    /// Copies `data` to `offset` (bounds checked by the caller).
    pub(crate) fn write(&self, offset: usize, data: &[u8]) {
        assert!(
            self.contains(offset, data.len()),
            "DMA write outside the memory"
        );
        // SAFETY: the range is inside the mapping (checked); the mapping is
        // never referenced by Rust references, so a raw copy into it aliases
        // nothing. The device may access it concurrently: bytes have no
        // invalid values, so the worst case is torn data, which the request
        // protocol (status written last, read after the used entry) excludes
        // for every range a completed request touched.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr(offset), data.len()) };
    }

    /// Copies `buf.len()` bytes from `offset` (bounds checked by the caller).
    pub(crate) fn read(&self, offset: usize, buf: &mut [u8]) {
        assert!(
            self.contains(offset, buf.len()),
            "DMA read outside the memory"
        );
        // SAFETY: as in write, with the roles of the two ranges swapped.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr(offset), buf.as_mut_ptr(), buf.len()) };
    }
}

impl Drop for DmaMemory {
    fn drop(&mut self) {
        if let Backing::Vfio { container } = &self.backing {
            for &iova in &self.iovas {
                if let Err(e) = container.vfio_dma_unmap(iova, HUGEPAGE) {
                    log::warn!("VFIO DMA unmap at {iova:#x}: {e}");
                }
            }
            // SAFETY: ptr/len is the mapping hugepages() made; no IOVA maps it
            // any more, and nothing refers to it after this value.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// First-fit allocator of byte ranges in DMA memory.
#[derive(Debug)]
pub(crate) struct Arena {
    /// Free ranges (offset, len), sorted by offset, never adjacent.
    free: Vec<(usize, usize)>,
    chunk: usize,
}

impl Arena {
    /// An arena over `[0, len)` whose contiguous chunks are `chunk` bytes.
    pub(crate) fn new(len: usize, chunk: usize) -> Arena {
        Arena {
            free: if len > 0 { vec![(0, len)] } else { Vec::new() },
            chunk,
        }
    }

    /// `len` bytes aligned to `align` (a power of two); with `contiguous`,
    /// inside one physically contiguous chunk.
    pub(crate) fn alloc(
        &mut self,
        len: usize,
        align: usize,
        contiguous: bool,
    ) -> Result<usize, DmaError> {
        let len = len.max(1);
        for i in 0..self.free.len() {
            let (start, flen) = self.free[i];
            let end = start + flen;
            let mut at = start.next_multiple_of(align);
            if contiguous && at / self.chunk != (at + len - 1) / self.chunk {
                at = (at / self.chunk + 1) * self.chunk;
            }
            if at + len > end {
                continue;
            }
            // Split the free range into what is left before and after.
            let mut rest = Vec::with_capacity(2);
            if at > start {
                rest.push((start, at - start));
            }
            if at + len < end {
                rest.push((at + len, end - at - len));
            }
            self.free.splice(i..=i, rest);
            return Ok(at);
        }
        Err(DmaError::Exhausted(len))
    }

    /// Gives `[offset, offset + len)` back.
    pub(crate) fn free(&mut self, offset: usize, len: usize) {
        let len = len.max(1);
        let i = self.free.partition_point(|&(o, _)| o < offset);
        self.free.insert(i, (offset, len));
        // Merge with the next, then with the previous range.
        if i + 1 < self.free.len() && offset + len == self.free[i + 1].0 {
            self.free[i].1 += self.free[i + 1].1;
            self.free.remove(i + 1);
        }
        if i > 0 && self.free[i - 1].0 + self.free[i - 1].1 == offset {
            self.free[i - 1].1 += self.free[i].1;
            self.free.remove(i);
        }
    }

    /// Free bytes.
    #[cfg(test)]
    pub(crate) fn free_bytes(&self) -> usize {
        self.free.iter().map(|f| f.1).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arena_allocates_aligned_and_coalesces() {
        let mut a = Arena::new(1 << 20, 1 << 20);
        let x = a.alloc(100, 64, false).unwrap();
        let y = a.alloc(4096, 4096, false).unwrap();
        let z = a.alloc(10, 8, false).unwrap();
        assert_eq!(x, 0);
        assert_eq!(y, 4096);
        assert_eq!(z, 104);
        a.free(y, 4096);
        a.free(x, 100);
        a.free(z, 10);
        assert_eq!(a.free, vec![(0, 1 << 20)]);
        assert!(matches!(
            a.alloc(2 << 20, 1, false),
            Err(DmaError::Exhausted(_))
        ));
    }

    #[test]
    fn arena_keeps_contiguous_ranges_in_one_chunk() {
        let mut a = Arena::new(4 * 4096, 4096);
        let x = a.alloc(3000, 1, true).unwrap();
        let y = a.alloc(3000, 1, true).unwrap();
        assert_eq!((x, y), (0, 4096));
        let z = a.alloc(3000, 1, false).unwrap();
        assert_eq!(z, 7096, "a buffer may cross chunks");
        assert_eq!(a.free_bytes(), 4 * 4096 - 9000);
    }

    #[test]
    fn segments_split_at_discontiguous_chunks() {
        let mut backing = vec![0u8; 4 * 4096];
        let ptr = NonNull::new(backing.as_mut_ptr()).unwrap();
        // SAFETY: backing outlives mem and is not touched while mem lives.
        let mut mem = unsafe { DmaMemory::from_raw(ptr, backing.len(), 0) };
        mem.chunk = 4096;
        mem.iovas = vec![0x10000, 0x11000, 0x40000, 0x41000];
        assert_eq!(mem.segments(100, 200), vec![(0x10064, 200)]);
        assert_eq!(
            mem.segments(4000, 5000),
            vec![(0x10fa0, 96 + 4096), (0x40000, 808)]
        );
        assert_eq!(mem.segments(12000, 4384), vec![(0x40ee0, 4384)]);
        mem.write(4090, b"abcdefghij");
        let mut b = [0u8; 10];
        mem.read(4090, &mut b);
        assert_eq!(&b, b"abcdefghij");
        drop(mem);
    }
}
