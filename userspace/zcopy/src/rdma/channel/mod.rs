//! The RDMA transport of the channel API.
//!
//! Both ends register a ring of `slot_count` slots of the same layout. A
//! loan is a slot of the sender's ring; sending it posts one RDMA WRITE
//! WITH IMMEDIATE (immediate = slot number) from that slot into the same
//! slot of the receiver's ring: no CPU copy at either end, small messages
//! inline. The write consumes one posted receive at the receiver, whose
//! completion says which slot and how many bytes. When the receiver drops
//! a sample it posts a zero-length SEND WITH IMMEDIATE (slot number) back:
//! the credit. A sender slot is free again once its write completed and its
//! credit came; with none free, a loan waits (or fails: backpressure).
//!
//! An orderly close is a SEND WITH IMMEDIATE of [`CLOSE`] after the last
//! write (RC keeps the order), then a disconnect. A dead peer shows as an
//! rdma_cm DISCONNECTED event (its kernel closes the connection on kill
//! -9) or, when it vanished without a word (link down), as a failed probe:
//! a waiting end writes zero bytes to the peer every [`PROBE_EVERY`], which
//! fails after the transport retries (`RETRY_COUNT` × `ACK_TIMEOUT`).

mod link;
mod receiver;
mod sender;

pub use link::{check_geometry, CLOSE, MAX_RDMA_SLOTS, PROBE_EVERY};
pub use receiver::{Listener, Receiver, Sample};
pub use sender::{BuilderExt, Loan, OwnedLoan, Sender, SenderRef, SlotLoan};
