//! A user-space driver for the zcard through VFIO: kernel bypass, as SPDK
//! and DPDK drive their devices.
//!
//! The process owns the card: it binds it to `vfio-pci` ([`sysfs`]), opens
//! it in a VFIO container ([`transport`]), walks its virtio PCI
//! capabilities ([`pci`]), brings it up as a virtio 1.x device, keeps split
//! virtqueues ([`virtqueue`]) in its own pinned hugepage memory ([`dma`]),
//! rings the doorbell itself and takes completions by polling or from the
//! card's MSI-X eventfd ([`card`]). Addresses given to the card are
//! physical (IOVA = guest-physical address): see docs/vfio.md for what that
//! mode does and does not protect.
//!
//! ```no_run
//! use std::time::Duration;
//! use zcard_vfio::{Card, Options, Request};
//!
//! let card = Card::open(&Options::default())?;
//! let (src, dst) = (card.alloc(4096)?, card.alloc(4096)?);
//! src.write(0, b"hello")?;
//! let done = card.run(0, &[Request::copy(src.all(), dst.all())], Duration::from_secs(5))?;
//! assert!(done[0].is_ok());
//! # Ok::<(), zcard_vfio::Error>(())
//! ```

#![deny(missing_docs)]

pub mod card;
pub mod dma;
pub mod pci;
pub mod selftest;
pub mod sysfs;
pub mod transport;
pub mod virtqueue;

/// The card's wire format (docs/zcard-spec.md), the one definition the
/// device model uses too.
pub use zcard_virtio as wire;

pub use card::{Buffer, Card, Options, Request, Slice};
pub use virtqueue::{Completion, Outcome};

use thiserror::Error;

/// What went wrong.
#[derive(Debug, Error)]
pub enum Error {
    /// Finding or binding the card in sysfs.
    #[error(transparent)]
    Sysfs(#[from] sysfs::SysfsError),
    /// The card is not bound to vfio-pci.
    #[error("{bdf} is bound to {}, not vfio-pci: run `zcard-vfio bind` first", driver.as_deref().unwrap_or("no driver"))]
    NotBound {
        /// The card.
        bdf: String,
        /// Its driver now.
        driver: Option<String>,
    },
    /// A VFIO ioctl failed.
    #[error("VFIO: {0}")]
    Vfio(String),
    /// DMA memory could not be set up, or is exhausted.
    #[error(transparent)]
    Dma(#[from] dma::DmaError),
    /// The capability list is unusable.
    #[error("virtio PCI capabilities: {0}")]
    Caps(#[from] pci::CapError),
    /// The card misbehaved during bring-up, or is not a zcard.
    #[error("card: {0}")]
    Device(String),
    /// No such queue.
    #[error("queue {0} does not exist")]
    NoQueue(u16),
    /// Not enough free descriptors for the batch.
    #[error("queue {queue} is full")]
    QueueFull {
        /// The queue.
        queue: u16,
    },
    /// A batch that needs more descriptors than the queue has at all:
    /// waiting for room would never end.
    #[error("the batch needs {need} descriptors; queue {queue} has {size} in all")]
    TooBig {
        /// The queue.
        queue: u16,
        /// Descriptors the batch needs.
        need: usize,
        /// The queue's size.
        size: u16,
    },
    /// A range outside its buffer.
    #[error("{len} bytes at {offset} do not fit a buffer of {size}")]
    OutOfBounds {
        /// Offset asked for.
        offset: usize,
        /// Length asked for.
        len: usize,
        /// The buffer's size.
        size: usize,
    },
    /// A buffer of another card.
    #[error("the buffer belongs to another card")]
    ForeignBuffer,
    /// More physically contiguous pieces than the card takes in one direction.
    #[error("{segments} segments, the card takes at most {max}")]
    TooManySegments {
        /// Segments the request needs.
        segments: usize,
        /// The card's `max_segments`.
        max: u16,
    },
    /// The card broke the queue's protocol; only a reset recovers.
    #[error("queue {queue} is broken: {reason}")]
    Broken {
        /// The queue.
        queue: u16,
        /// What the card did.
        reason: String,
    },
    /// Nothing completed in time.
    #[error("no completion on queue {queue} within {timeout:?}")]
    Timeout {
        /// The queue.
        queue: u16,
        /// How long was waited.
        timeout: std::time::Duration,
    },
}
