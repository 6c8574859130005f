//! The card's storage: a sparse file read and written with pread/pwrite.
//!
//! Writes land in the file's page cache (surviving a daemon restart); `flush`
//! makes them durable with fdatasync. Nothing of the file is mapped, so a
//! filesystem that runs out of space or fails an I/O gives an error the card
//! turns into `io_error`, never a SIGBUS. Concurrent requests from several
//! queues take the lock shared for reads and exclusive for writes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

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
    /// An existing file, whose size is the storage's when none is given,
    /// is not a multiple of the block size.
    #[error(
        "storage file {0} holds {1} bytes, not a multiple of {BLOCK_SIZE} \
         (--storage-size can grow it to one)"
    )]
    BadFileSize(PathBuf, u64),
    /// The path names something other than a regular file (a directory,
    /// a device): storage is a file the card sizes and never maps.
    #[error("storage file {0} is not a regular file")]
    NotAFile(PathBuf),
    /// The existing file is larger than the size asked for; the card never truncates data.
    #[error(
        "storage file {0} holds {1} bytes, more than --storage-size {2}; refusing to truncate"
    )]
    WouldTruncate(PathBuf, u64, u64),
    /// Growing the file failed (named as it was given, or "a temporary file").
    #[error("cannot size storage file {0}: {1}")]
    Size(String, std::io::Error),
    /// Reading or writing the file failed (no space, an I/O error, a file
    /// shortened underneath the card).
    #[error("storage {0} failed at offset {1}: {2}")]
    Io(&'static str, u64, std::io::Error),
    /// fdatasync failed.
    #[error("flush failed: {0}")]
    Flush(std::io::Error),
}

/// Storage of a fixed capacity backed by a file.
#[derive(Debug)]
pub struct Storage {
    file: RwLock<File>,
    capacity: u64,
    path: Option<PathBuf>,
}

impl Storage {
    /// Opens (creating if needed) `path`, growing it sparsely to `size` bytes.
    ///
    /// With `size` `None` an existing file keeps its size. A file larger than
    /// `size` is refused rather than truncated.
    pub fn open(path: &Path, size: Option<u64>) -> Result<Storage, StorageError> {
        // A size that cannot be is refused before a missing file is made.
        if let Some(s) = size {
            check_size(s)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| StorageError::Open(path.to_owned(), e))?;
        let meta = file
            .metadata()
            .map_err(|e| StorageError::Open(path.to_owned(), e))?;
        if !meta.is_file() {
            return Err(StorageError::NotAFile(path.to_owned()));
        }
        let current = meta.len();
        let size = match size {
            Some(s) if current > s => {
                return Err(StorageError::WouldTruncate(path.to_owned(), current, s))
            }
            Some(s) => s,
            None if current == 0 => crate::DEFAULT_STORAGE_BYTES,
            None if check_size(current).is_err() => {
                return Err(StorageError::BadFileSize(path.to_owned(), current))
            }
            None => current,
        };
        Self::sized(file, size, Some(path.to_owned()))
    }

    /// A sparse, unnamed temporary file of `size` bytes (gone when the daemon exits).
    pub fn temporary(size: u64) -> Result<Storage, StorageError> {
        let file = tempfile::tempfile().map_err(StorageError::Temp)?;
        Self::sized(file, size, None)
    }

    fn sized(file: File, size: u64, path: Option<PathBuf>) -> Result<Storage, StorageError> {
        check_size(size)?;
        let failed = |e| {
            let name = path
                .as_ref()
                .map_or("(a temporary file)".into(), |p| p.display().to_string());
            StorageError::Size(name, e)
        };
        if file.metadata().map_err(failed)?.len() < size {
            file.set_len(size).map_err(failed)?;
        }
        Ok(Storage {
            file: RwLock::new(file),
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
    /// The caller checked the range with [`Storage::contains`]. On an error
    /// part of `dst` may have been written.
    pub fn read_into(&self, offset: u64, dst: &VolatileSlice<'_, ()>) -> Result<(), StorageError> {
        let file = self.file.read().unwrap_or_else(|e| e.into_inner());
        let guard = dst.ptr_guard_mut();
        let (base, len) = (guard.as_ptr(), dst.len());
        all_at(offset, len, "read", |done, at| {
            // SAFETY: `base..base + len` is the guest memory `dst` stands for,
            // valid and writable for the slice's lifetime, which outlives this
            // call; `done < len`, so the range stays inside it. The kernel
            // copies into it like any other store to guest memory (which the
            // guest may change concurrently: it is volatile memory, never a
            // Rust reference).
            let n = unsafe {
                libc::pread(
                    file.as_raw_fd(),
                    base.wrapping_add(done).cast(),
                    len - done,
                    at as libc::off_t,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })
    }

    /// Copies all of `src` into storage starting at `offset`.
    ///
    /// The caller checked the range with [`Storage::contains`]. On an error
    /// (no space left, an I/O error) part of the range may hold new data.
    pub fn write_from(&self, offset: u64, src: &VolatileSlice<'_, ()>) -> Result<(), StorageError> {
        let file = self.file.write().unwrap_or_else(|e| e.into_inner());
        let guard = src.ptr_guard();
        let (base, len) = (guard.as_ptr(), src.len());
        all_at(offset, len, "write", |done, at| {
            // SAFETY: `base..base + len` is the guest memory `src` stands for,
            // valid and readable for the slice's lifetime; `done < len`. The
            // kernel only reads it.
            let n = unsafe {
                libc::pwrite(
                    file.as_raw_fd(),
                    base.wrapping_add(done).cast(),
                    len - done,
                    at as libc::off_t,
                )
            };
            usize::try_from(n).map_err(|_| io::Error::last_os_error())
        })
    }

    /// Makes every completed write durable (fdatasync).
    pub fn flush(&self) -> Result<(), StorageError> {
        let file = self.file.read().unwrap_or_else(|e| e.into_inner());
        file.sync_data().map_err(StorageError::Flush)
    }

    /// Copies `buf.len()` bytes at `offset` into `buf` (tests and tools).
    pub fn read_bytes(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        let file = self.file.read().unwrap_or_else(|e| e.into_inner());
        file.read_exact_at(buf, offset)
            .map_err(|e| StorageError::Io("read", offset, e))
    }
}

/// Moves `len` bytes at file offset `offset` with `step(done, at)`, one
/// pread/pwrite that returns how many bytes it moved, until all are moved.
/// Interrupted calls are retried; a call that moves nothing (end of file, no
/// space) is an error.
fn all_at(
    offset: u64,
    len: usize,
    what: &'static str,
    mut step: impl FnMut(usize, u64) -> io::Result<usize>,
) -> Result<(), StorageError> {
    let mut done = 0;
    while done < len {
        let at = offset + done as u64;
        match step(done, at) {
            Ok(0) => {
                let e = if what == "read" {
                    io::Error::from(io::ErrorKind::UnexpectedEof)
                } else {
                    io::Error::from(io::ErrorKind::WriteZero)
                };
                return Err(StorageError::Io(what, at, e));
            }
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StorageError::Io(what, at, e)),
        }
    }
    Ok(())
}

/// A storage size the card can serve: whole blocks, at least one, within
/// a file offset.
fn check_size(size: u64) -> Result<(), StorageError> {
    if size == 0 || size % u64::from(BLOCK_SIZE) != 0 || i64::try_from(size).is_err() {
        return Err(StorageError::BadSize(size));
    }
    Ok(())
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
        // A bad size leaves no file behind; an existing file's own size
        // and a path that is no file are refused with the path.
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join("new.img");
        assert!(matches!(
            Storage::open(&new, Some(1000)),
            Err(StorageError::BadSize(1000))
        ));
        assert!(!new.exists(), "created before the size was checked");
        let odd = dir.path().join("odd.img");
        std::fs::write(&odd, [0u8; 1000]).unwrap();
        let e = Storage::open(&odd, None).unwrap_err();
        assert!(matches!(e, StorageError::BadFileSize(_, 1000)), "{e}");
        assert!(e.to_string().contains("odd.img"), "{e}");
        assert!(Storage::open(&odd, Some(1024)).is_ok());
        let e = Storage::open(Path::new("/dev/zero"), None).unwrap_err();
        assert!(matches!(e, StorageError::NotAFile(_)), "{e}");
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
            s.write_from(4096, &slice).unwrap();
            s.flush().unwrap();
        }
        let s = Storage::open(&path, None).unwrap();
        assert_eq!(s.capacity(), 8192);
        let mut back = [0u8; 8];
        s.read_bytes(4096, &mut back).unwrap();
        assert_eq!(&back, b"persist!");
        drop(s);
        assert!(matches!(
            Storage::open(&path, Some(4096)),
            Err(StorageError::WouldTruncate(_, 8192, 4096))
        ));
    }

    #[test]
    fn a_file_truncated_underneath_is_an_error_not_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("card.img");
        let s = Storage::open(&path, Some(8192)).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let mut buf = [0u8; 512];
        let slice = VolatileSlice::from(&mut buf[..]);
        assert!(matches!(
            s.read_into(4096, &slice),
            Err(StorageError::Io("read", 4096, _))
        ));
        assert!(s.read_into(0, &slice).is_ok());
        // A write past the new end grows the file again.
        assert!(s.write_from(7680, &slice).is_ok());
    }
}
