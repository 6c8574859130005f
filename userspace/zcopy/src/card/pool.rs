//! Pools: page-backed DMA buffers, mapped into the process and shareable.

use std::os::fd::OwnedFd;

use memmap2::{MmapOptions, MmapRaw};

use super::{Card, Error, Result};

/// A pool on one open card file. Destroyed on that file when dropped;
/// mappings and exported descriptors keep the memory alive on their own.
#[derive(Debug)]
pub struct Pool {
    card: Card,
    id: u32,
    size: u64,
    mmap_offset: u64,
}

impl Pool {
    pub(crate) fn new(card: Card, id: u32, size: u64, mmap_offset: u64) -> Pool {
        Pool {
            card,
            id,
            size,
            mmap_offset,
        }
    }

    /// The pool's id on its file (what SQEs name).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The mmap offset the driver gave for this pool.
    pub fn mmap_offset(&self) -> u64 {
        self.mmap_offset
    }

    /// A descriptor that stands for this pool, to pass to another process
    /// (over a Unix socket) which imports it with [`Card::import_pool`].
    pub fn export(&self) -> Result<OwnedFd> {
        self.card.export_id(self.id)
    }

    /// Maps the whole pool into this process (shared, read-write).
    pub fn map(&self) -> Result<PoolMap> {
        let len = usize::try_from(self.size).map_err(|_| Error::OutOfBounds {
            offset: 0,
            len: self.size,
            size: self.size,
        })?;
        let map = MmapOptions::new()
            .offset(self.mmap_offset)
            .len(len)
            .map_raw(self.card.file())
            .map_err(|source| Error::Map {
                what: "a pool",
                source,
            })?;
        Ok(PoolMap { map })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The card may be gone (-ENODEV): the pool went with it.
        let _ = self.card.destroy_pool_id(self.id);
    }
}

/// A pool mapped into this process.
///
/// The card writes it by DMA and other processes may map it too, so it is
/// never handed out as a Rust slice by safe code: [`PoolMap::read`] and
/// [`PoolMap::write`] copy in and out, and [`PoolMap::as_ptr`] gives the raw
/// memory for zero-copy use under the caller's own rules.
#[derive(Debug)]
pub struct PoolMap {
    map: MmapRaw,
}

impl PoolMap {
    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty (never, for a pool).
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn check(&self, offset: u64, len: usize) -> Result<usize> {
        let size = self.map.len() as u64;
        match offset.checked_add(len as u64) {
            Some(end) if end <= size => Ok(offset as usize),
            _ => Err(Error::OutOfBounds {
                offset,
                len: len as u64,
                size,
            }),
        }
    }

    /// Copies `buf.len()` bytes at `offset` out of the pool.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let at = self.check(offset, buf.len())?;
        // SAFETY: `at + buf.len()` is inside the live mapping (checked above);
        // `buf` is a distinct Rust allocation, so the ranges do not overlap.
        // The pool is shared memory no Rust reference points into; bytes the
        // card or another process writes meanwhile come out as they are.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.as_ptr().wrapping_add(at),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `data` into the pool at `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<()> {
        let at = self.check(offset, data.len())?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.as_ptr().wrapping_add(at), data.len())
        };
        Ok(())
    }

    /// The mapping as a byte slice.
    ///
    /// # Safety
    ///
    /// While the slice lives, no request in flight may write the pool and no
    /// other mapping (in this or another process) may write it.
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: the mapping is live for `self`'s lifetime and `len` bytes
        // long; the caller guarantees nobody writes it meanwhile.
        unsafe { std::slice::from_raw_parts(self.as_ptr(), self.len()) }
    }
}
