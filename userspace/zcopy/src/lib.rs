//! zcopy: zero-copy data movement on Linux.
//!
//! - [`channel`]: zero-copy channels between processes. A sender loans a
//!   slot, writes its message in place and sends it; the receiver reads the
//!   same bytes in place; the slot goes back when the receiver drops it.
//!   Slots live in shared memory ([`channel::Shm`]) or in a zcard pool the
//!   card can DMA into ([`channel::CardSlots`]).
//! - [`card`] is the safe binding of the zcard driver (`/dev/zcardN`): page-backed
//!   DMA buffer pools mapped into the process, shared with other processes by
//!   file descriptor, and io_uring-style rings through which the card moves data
//!   between pools and its own storage without the CPU copying the payload.
//! - [`rdma`]: the same channel API across machines, by RDMA WRITE WITH
//!   IMMEDIATE between registered rings (libibverbs/librdmacm, tested on
//!   Soft-RoCE), and a small safe layer over the verbs.
//! - [`ring`]: the lock-free single-producer/single-consumer index rings the
//!   channels are built on.
#![deny(missing_docs)]
// The loom build compiles only the ring and its tests.
#![cfg_attr(loom, allow(dead_code))]

#[cfg(all(not(loom), feature = "card"))]
pub mod card;
#[cfg(not(loom))]
pub mod channel;
#[cfg(all(not(loom), feature = "rdma"))]
pub mod rdma;
pub mod ring;
mod sync;
