//! The card's storage: a file mapped shared with memmap2.
//!
//! Writes land in the mapping (and so in the page cache, surviving a daemon
//! restart); `flush` makes them durable with msync. Concurrent requests from
//! several queues take the lock shared for reads and exclusive for writes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use memmap2::MmapMut;
use thiserror::Error;
use vm_memory::VolatileSlice;

use crate::virtio_zcard::BLOCK_SIZE;

/// Errors opening or using the storage.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The backing file could not be opened or created.
    #[error("cannot open storage file {0}: {1}")]
    Open(PathBuf, std::io::Error),
    /// The temporary backing file could not be created.
    #[error("cannot create a temporary storage file: {0}")]
    Temp(std::io::Error),
    /// The size is zero or not a multiple of the block size.
    #[error("storage size {0} is not a positive multiple of {BLOCK_SIZE} bytes")]
    BadSize(u64),
    /// The existing file is larger than the size asked for; the card never truncates data.
    #[error(
        "storage file {0} holds {1} bytes, more than --storage-size {2}; refusing to truncate"
    )]
    WouldTruncate(PathBuf, u64, u64),
    /// Growing or mapping the file failed.
    #[error("cannot size or map storage file: {0}")]
    Map(std::io::Error),
    /// msync failed.
    #[error("flush failed: {0}")]
    Flush(std::io::Error),
}

/// Storage of a fixed capacity backed by a mapped file.
#[derive(Debug)]
pub struct Storage {
    map: RwLock<MmapMut>,
    capacity: u64,
    path: Option<PathBuf>,
}

impl Storage {
    /// Opens (creating if needed) `path`, growing it sparsely to `size` bytes.
    ///
    /// With `size` `None` an existing file keeps its size. A file larger than
    /// `size` is refused rather than truncated.
    pub fn open(path: &Path, size: Option<u64>) -> Result<Storage, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StorageError::Open(path.to_owned(), e))?;
        let current = file
            .metadata()
            .map_err(|e| StorageError::Open(path.to_owned(), e))?
            .len();
        let size = match size {
            Some(s) if current > s => {
                return Err(StorageError::WouldTruncate(path.to_owned(), current, s))
            }
            Some(s) => s,
            None if current == 0 => crate::DEFAULT_STORAGE_BYTES,
            None => current,
        };
        Self::map(file, size, Some(path.to_owned()))
    }

    /// A sparse, unnamed temporary file of `size` bytes (gone when the daemon exits).
    pub fn temporary(size: u64) -> Result<Storage, StorageError> {
        let file = tempfile::tempfile().map_err(StorageError::Temp)?;
        Self::map(file, size, None)
    }

    fn map(file: File, size: u64, path: Option<PathBuf>) -> Result<Storage, StorageError> {
        if size == 0 || size % u64::from(BLOCK_SIZE) != 0 || usize::try_from(size).is_err() {
            return Err(StorageError::BadSize(size));
        }
        if file.metadata().map_err(StorageError::Map)?.len() < size {
            file.set_len(size).map_err(StorageError::Map)?;
        }
        // SAFETY: the mapping is MAP_SHARED over a file this process opened
        // read-write. Another process truncating the file underneath would
        // raise SIGBUS; that is the documented contract of --storage (the file
        // belongs to the card while it runs), and the card itself never shrinks it.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(size as usize)
                .map_mut(&file)
        }
        .map_err(StorageError::Map)?;
        Ok(Storage {
            map: RwLock::new(map),
            capacity: size,
            path,
        })
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The backing file, or `None` for a temporary one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether `[offset, offset + len)` is inside the storage.
    pub fn contains(&self, offset: u64, len: u64) -> bool {
        offset
            .checked_add(len)
            .is_some_and(|end| end <= self.capacity)
    }

    /// Copies storage bytes starting at `offset` into `dst` (all of it).
    ///
    /// The caller checked the range with [`Storage::contains`].
    pub fn read_into(&self, offset: u64, dst: &VolatileSlice<'_, ()>) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let start = offset as usize;
        dst.copy_from(&map[start..start + dst.len()]);
    }

    /// Copies all of `src` into storage starting at `offset`.
    ///
    /// The caller checked the range with [`Storage::contains`].
    pub fn write_from(&self, offset: u64, src: &VolatileSlice<'_, ()>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        let start = offset as usize;
        src.copy_to(&mut map[start..start + src.len()]);
    }

    /// Makes every completed write durable (msync).
    pub fn flush(&self) -> Result<(), StorageError> {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        map.flush().map_err(StorageError::Flush)
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` (tests and tools).
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) {
        let map = self.map.read().unwrap_or_else(|e| e.into_inner());
        let start = offset as usize;
        buf.copy_from_slice(&map[start..start + buf.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(
            Storage::temporary(0),
            Err(StorageError::BadSize(0))
        ));
        assert!(matches!(
            Storage::temporary(1000),
            Err(StorageError::BadSize(1000))
        ));
        let s = Storage::temporary(4096).unwrap();
        assert!(s.contains(0, 4096));
        assert!(s.contains(4096, 0));
        assert!(!s.contains(4095, 2));
        assert!(!s.contains(u64::MAX, 2));
    }

    #[test]
    fn data_survives_reopen_and_is_never_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.img");
        {
            let s = Storage::open(&path, Some(8192)).unwrap();
            let mut data = *b"persist!";
            let slice = VolatileSlice::from(&mut data[..]);
            s.write_from(4096, &slice);
            s.flush().unwrap();
        }
        let s = Storage::open(&path, None).unwrap();
        assert_eq!(s.capacity(), 8192);
        let mut back = [0u8; 8];
        s.read_bytes(4096, &mut back);
        assert_eq!(&back, b"persist!");
        drop(s);
        assert!(matches!(
            Storage::open(&path, Some(4096)),
            Err(StorageError::WouldTruncate(_, 8192, 4096))
        ));
    }
}
