//! The zcard: an emulated DMA card served to QEMU as a vhost-user device.
//!
//! The card is specified in docs/zcard-spec.md. The layout follows
//! rust-vmm's vhost-device crates:
//!
//! - [`virtio_zcard`]: the wire format (the `zcard-virtio` crate) and this card's values in it;
//! - [`zcard`]: the card itself — validation and the copy engine — with no vhost-user;
//! - [`storage`], [`faults`], [`stats`]: its storage, fault injection and counters;
//! - [`vhu_zcard`]: the vhost-user backend (worker threads, event-idx);
//! - [`backend_channel`]: the back-end request channel (config-change messages);
//! - [`control`]: the JSON-lines control socket;
//! - [`backend`]: command line, configuration and the serve loop of `zcard-vhost`.

#![deny(missing_docs)]

pub mod backend;
pub mod backend_channel;
pub mod control;
pub mod faults;
pub mod stats;
pub mod storage;
pub mod vhu_zcard;
pub mod virtio_zcard;
pub mod zcard;

/// Storage capacity when neither --storage-size nor an existing file says otherwise.
pub const DEFAULT_STORAGE_BYTES: u64 = 64 << 20;
