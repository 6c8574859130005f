//! Zero-copy channels: a process loans a slot, writes its message in place
//! and sends it; the receiver reads the same bytes in place, and the slot
//! goes back to the sender when the receiver drops it. No copy of the
//! payload, across processes.
//!
//! A channel is one sender and one receiver. Its control segment (a versioned
//! header and two SPSC index rings, see [`segment`]) is shared memory; its
//! slots live where the [`Transport`] puts them: in the segment ([`Shm`]) or
//! in a zcard pool the card can DMA into ([`CardSlots`]). The submit ring
//! carries `slot | length` from sender to receiver, the return ring carries
//! freed slots back; each side keeps its own record of which slot is where
//! and checks every index the other side hands it.
//!
//! ```
//! use std::os::unix::net::UnixStream;
//! use zcopy::channel::{Builder, Receiver};
//!
//! // Sender side: a sealed memfd channel of 8 slots of 4 KiB.
//! let tx = Builder::new().slot_size(4096).slot_count(8).create()?;
//! // Hand it to the receiver over a Unix socket (here: within one process).
//! let (a, b) = UnixStream::pair()?;
//! tx.share(&a)?;
//! let rx = Receiver::from_socket(&b)?;
//!
//! let mut loan = tx.loan()?;           // a free slot, writable in place
//! loan.as_mut_slice()[..5].copy_from_slice(b"hello");
//! loan.send(5)?;                       // its length; `loan` is gone
//!
//! let sample = rx.recv()?;             // the same bytes, read in place
//! assert_eq!(&*sample, b"hello");
//! drop(sample);                        // the slot goes back to the sender
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A peer that dies is noticed (through a pidfd) the next time the survivor
//! has to wait on it: a sender gets [`Error::PeerDied`] with the slots the
//! dead receiver held reclaimed (and a new receiver may attach), a receiver
//! gets the messages already sent and then [`Error::PeerDied`]; a sender
//! that closes its end leaves [`Error::Closed`] after the last message.
//! [`Receiver::try_recv`] reports both too, and [`Receiver::is_closed`]
//! asks without taking a message.
//!
//! With the default features the crate also holds the card binding
//! (`card`) and the RDMA transport (`rdma`, which needs libclang and the
//! verbs headers to build); a shared-memory-only user turns them off:
//! `zcopy = { version = "0.1", default-features = false }`.

pub mod api;
mod builder;
mod error;
mod geometry;
pub(crate) mod ledger;
mod liveness;
mod receiver;
pub mod segment;
mod sender;
mod sharing;
pub mod transport;
mod wait;

pub use api::{Rx, RxSample, Tx, TxLoan};
pub use builder::{
    stream_slot_count, Builder, DEFAULT_CONNECT_TIMEOUT, DEFAULT_SLOT_COUNT, STREAM_IN_FLIGHT,
    STREAM_SLOTS,
};
pub use error::{Error, Result};
use geometry::check_pod;
pub use geometry::{Geometry, TransportKind};
pub use receiver::{Receiver, Sample};
pub use segment::{check_name, list, remove_stale, ChannelInfo, MAX_NAME_LEN};
pub use sender::{Loan, OwnedLoan, PodLoan, Sender, SenderRef, SlotLoan, RECLAIM_BEFORE_LOAN};
pub use sharing::inherited_socket;
#[cfg(feature = "card")]
pub use transport::CardSlots;
pub use transport::{Shm, Transport};
#[cfg(feature = "rdma")]
pub(crate) use wait::{deadline_due, Pacer, LOOK_EVERY};
pub use wait::{Wait, DEFAULT_SPIN, DEFAULT_YIELD, LIVENESS_SLICE, PEER_CHECK_EVERY};
