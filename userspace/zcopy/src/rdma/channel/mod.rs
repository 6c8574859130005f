//! The RDMA transport of the channel API.
//!
//! Both ends register a ring of `slot_count` slots of the same layout. A
//! loan is a slot of the sender's ring; sending it posts one RDMA WRITE
//! WITH IMMEDIATE (immediate = slot number) from that slot into the same
//! slot of the receiver's ring: no CPU copy at either end, small messages
//! inline. The write consumes one posted receive at the receiver, whose
//! completion says which slot and how many bytes. When the receiver drops
//! a sample it counts the release in its credit board, a word per slot in
//! registered memory, and sends nothing yet. It gives slots back in
//! batches: once half the slots are released and not yet credited (checked
//! when the application asks for the next message), or at once when every
//! slot is at the receiver, one RDMA WRITE WITH IMMEDIATE copies the
//! changed board words into the sender's copy (immediate = their range).
//! A sender out of slots does not wait for that: it reads the receiver's
//! board (RDMA READ, no work for the receiver's CPU), at most once per
//! [`PULL_EVERY`](link::PULL_EVERY) when a read freed nothing. So no
//! message and no release waits on the other end's thread, and no receive
//! is ever missing (one credit write at most per released slot). A sender
//! slot is free again once the board says the receiver released it (which
//! proves its write was delivered); with none free, a loan waits (or
//! fails: backpressure). So a sender signals only one message write in
//! [`SIGNAL_EVERY`], for the send queue's room.
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

#[cfg(feature = "test-aids")]
pub use link::PeerHello;
pub use link::{check_geometry, LinkStats, CLOSE, MAX_RDMA_SLOTS, PROBE_EVERY, SIGNAL_EVERY};
pub use receiver::{Listener, Receiver, Sample};
pub use sender::{BuilderExt, Loan, OwnedLoan, Sender, SenderRef, SlotLoan};
