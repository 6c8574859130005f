//! The zcard driver from user space: pools, rings, requests.
//!
//! ```no_run
//! use zcopy::card::{Buf, Card, Sqe};
//!
//! let card = Card::open_index(0)?;
//! let pool = card.create_pool(1 << 20)?;
//! let map = pool.map()?;
//! map.write(0, b"hello")?;
//! let mut rings = card.setup_rings(64)?;
//! rings.push(Sqe::copy(Buf::new(&pool, 0), Buf::new(&pool, 4096), 5).user_data(7))?;
//! rings.submit_and_wait(1, None)?;
//! let cqe = rings.pop().expect("one completion");
//! assert_eq!(cqe.user_data, 7);
//! assert_eq!(cqe.bytes()?, 5);
//! # Ok::<(), zcopy::card::Error>(())
//! ```
//!
//! The ABI lives in `driver/include/uapi/zcard.h` and is mirrored in [`uapi`];
//! docs/uapi.md explains it. The payload is never copied by the CPU: the card
//! reads and writes pool pages by DMA.

pub mod uapi;

mod irq;
mod pool;
mod rings;

pub use irq::{Interrupts, Spurious};
pub use pool::{Pool, PoolMap};
pub use rings::{Buf, Cqe, Rings, Sqe};

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;

use uapi::ZcardInfo;

/// What can go wrong talking to the driver. Every variant names the step.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Opening the device node failed.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The node.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An ioctl was refused.
    #[error("{op}: {source}")]
    Ioctl {
        /// Which request (e.g. `ZCARD_IOC_POOL_CREATE`).
        op: &'static str,
        /// The errno the driver returned.
        source: Errno,
    },
    /// The driver speaks another ABI major version.
    #[error("driver ABI {found:#x} is not compatible with {expected:#x}")]
    Abi {
        /// What the driver reported.
        found: u32,
        /// What this crate speaks.
        expected: u32,
    },
    /// mmap of a pool or of the rings failed.
    #[error("mapping {what}: {source}")]
    Map {
        /// What was being mapped.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// An access outside a mapped pool.
    #[error("range {offset}+{len} is outside the {size}-byte pool")]
    OutOfBounds {
        /// Start of the access.
        offset: u64,
        /// Its length.
        len: u64,
        /// The pool size.
        size: u64,
    },
    /// The SQ has no free entry: submit, and reap completions.
    #[error("the submission queue is full")]
    SqFull,
    /// A completion carried a negative errno.
    #[error("request failed: {0}")]
    Request(Errno),
    /// A counter or attribute file in sysfs could not be read.
    #[error("reading {path}: {source}")]
    Counter {
        /// The sysfs file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Error {
    /// The errno behind this error, if the kernel gave one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Ioctl { source, .. } | Error::Request(source) => Some(*source),
            _ => None,
        }
    }
}

/// Result of this module.
pub type Result<T> = std::result::Result<T, Error>;

/// The card's and driver's limits and capabilities (`ZCARD_IOC_INFO`).
pub type Info = ZcardInfo;

pub(crate) fn ioctl_err(op: &'static str) -> impl FnOnce(Errno) -> Error {
    move |source| Error::Ioctl { op, source }
}

/// An open `/dev/zcardN`. Cheap to clone: clones share the file.
#[derive(Debug, Clone)]
pub struct Card {
    file: Arc<File>,
    info: Info,
    path: PathBuf,
}

/// The driver's live counters (`/sys/class/misc/zcardN/`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Requests handed to the card.
    pub submitted: u64,
    /// CQEs posted.
    pub completed: u64,
    /// CQEs with an error.
    pub errors: u64,
    /// Requests that timed out.
    pub timeouts: u64,
    /// Card resets.
    pub resets: u64,
    /// Pools alive.
    pub pools: u64,
    /// Bytes pinned by pools.
    pub pinned: u64,
    /// Requests on the card now.
    pub inflight: u64,
    /// Completions lost to a full CQ.
    pub cq_overflows: u64,
}

impl Counters {
    /// Reads the counters of card `instance` from sysfs.
    pub fn read(instance: u32) -> Result<Counters> {
        let dir = PathBuf::from(format!("/sys/class/misc/zcard{instance}"));
        let get = |name: &str| -> Result<u64> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|source| Error::Counter {
                path: path.clone(),
                source,
            })?;
            text.trim().parse().map_err(|e| Error::Counter {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })
        };
        Ok(Counters {
            submitted: get("submitted")?,
            completed: get("completed")?,
            errors: get("errors")?,
            timeouts: get("timeouts")?,
            resets: get("resets")?,
            pools: get("pools")?,
            pinned: get("pinned")?,
            inflight: get("inflight")?,
            cq_overflows: get("cq_overflows")?,
        })
    }
}

impl Card {
    /// Opens `/dev/zcard{n}`.
    pub fn open_index(n: u32) -> Result<Card> {
        Card::open(format!("/dev/zcard{n}"))
    }

    /// Opens a zcard device node and checks the driver's ABI version.
    pub fn open(path: impl AsRef<Path>) -> Result<Card> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|source| Error::Open {
                path: path.clone(),
                source,
            })?;
        let mut info = Info::default();
        // SAFETY: `file` is an open descriptor and `info` is a valid, writable
        // `struct zcard_info` the kernel fills in.
        unsafe { uapi::zcard_ioc_info(file.as_raw_fd(), &mut info) }
            .map_err(ioctl_err("ZCARD_IOC_INFO"))?;
        if info.abi_version >> 16 != uapi::ZCARD_ABI_VERSION >> 16 {
            return Err(Error::Abi {
                found: info.abi_version,
                expected: uapi::ZCARD_ABI_VERSION,
            });
        }
        Ok(Card {
            file: Arc::new(file),
            info,
            path,
        })
    }

    /// The limits and capabilities read when the card was opened.
    pub fn info(&self) -> &Info {
        &self.info
    }

    /// The device node this card was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The driver's live counters for this card.
    pub fn counters(&self) -> Result<Counters> {
        Counters::read(self.info.instance)
    }

    /// Creates a zero-filled pool of `size` bytes (a multiple of the page size).
    pub fn create_pool(&self, size: u64) -> Result<Pool> {
        let mut pc = uapi::ZcardPoolCreate {
            size,
            ..Default::default()
        };
        // SAFETY: an open descriptor and a valid `struct zcard_pool_create`.
        unsafe { uapi::zcard_ioc_pool_create(self.file.as_raw_fd(), &mut pc) }
            .map_err(ioctl_err("ZCARD_IOC_POOL_CREATE"))?;
        Ok(Pool::new(self.clone(), pc.pool_id, size, pc.mmap_offset))
    }

    /// Makes a pool exported by another file (maybe another process) usable
    /// on this one.
    pub fn import_pool(&self, fd: BorrowedFd<'_>) -> Result<Pool> {
        let mut pi = uapi::ZcardPoolImport {
            fd: fd.as_raw_fd(),
            ..Default::default()
        };
        // SAFETY: an open descriptor and a valid `struct zcard_pool_import`.
        unsafe { uapi::zcard_ioc_pool_import(self.file.as_raw_fd(), &mut pi) }
            .map_err(ioctl_err("ZCARD_IOC_POOL_IMPORT"))?;
        Ok(Pool::new(self.clone(), pi.pool_id, pi.size, pi.mmap_offset))
    }

    /// Sets up this file's rings: `sq_entries` (a power of two) SQ entries
    /// and twice as many CQ entries.
    pub fn setup_rings(&self, sq_entries: u32) -> Result<Rings> {
        self.setup_rings_with(sq_entries, 0)
    }

    /// Sets up this file's rings with an explicit CQ size (0: twice the SQ).
    pub fn setup_rings_with(&self, sq_entries: u32, cq_entries: u32) -> Result<Rings> {
        Rings::setup(self.clone(), sq_entries, cq_entries)
    }

    /// Signals `fd` (an eventfd) whenever completions are posted; `None` stops it.
    pub fn set_eventfd(&self, fd: Option<BorrowedFd<'_>>) -> Result<()> {
        let ef = uapi::ZcardEventfd {
            fd: fd.map_or(-1, |f| f.as_raw_fd()),
            reserved0: 0,
        };
        // SAFETY: an open descriptor and a valid `struct zcard_eventfd`.
        unsafe { uapi::zcard_ioc_set_eventfd(self.file.as_raw_fd(), &ef) }
            .map_err(ioctl_err("ZCARD_IOC_SET_EVENTFD"))?;
        Ok(())
    }

    /// Destroys pool `id` on this file by number (the [`Pool`] handle does this
    /// itself when dropped; this is for ids that came from elsewhere).
    pub fn destroy_pool_id(&self, id: u32) -> Result<()> {
        // SAFETY: an open descriptor and a valid `u32`.
        unsafe { uapi::zcard_ioc_pool_destroy(self.file.as_raw_fd(), &id) }
            .map_err(ioctl_err("ZCARD_IOC_POOL_DESTROY"))?;
        Ok(())
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    /// Exports pool `id` as a new descriptor (close-on-exec).
    pub(crate) fn export_id(&self, id: u32) -> Result<OwnedFd> {
        let mut pe = uapi::ZcardPoolExport {
            pool_id: id,
            flags: uapi::ZCARD_EXPORT_CLOEXEC,
            ..Default::default()
        };
        // SAFETY: an open descriptor and a valid `struct zcard_pool_export`.
        unsafe { uapi::zcard_ioc_pool_export(self.file.as_raw_fd(), &mut pe) }
            .map_err(ioctl_err("ZCARD_IOC_POOL_EXPORT"))?;
        // SAFETY: the kernel just installed `pe.fd` for this process, and
        // nothing else owns it.
        Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pe.fd) })
    }
}

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
