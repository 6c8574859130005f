//! zcopy: zero-copy data movement on Linux.
//!
//! [`card`] is the safe binding of the zcard driver (`/dev/zcardN`): page-backed
//! DMA buffer pools mapped into the process, shared with other processes by
//! file descriptor, and io_uring-style rings through which the card moves data
//! between pools and its own storage without the CPU copying the payload.
#![deny(missing_docs)]

pub mod card;
