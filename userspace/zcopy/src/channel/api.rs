//! The channel API every transport speaks: shared memory and card slots
//! ([`super::Sender`], [`super::Receiver`]) and the transports built on
//! this module (RDMA: `zcopy::rdma::Sender` and `zcopy::rdma::Receiver`).
//! Code written against these traits moves messages over any of them.

use std::rc::Rc;
use std::time::Duration;

use super::{Error, Result, Wait};

/// The sending end of a channel.
pub trait Tx {
    /// A loaned slot, borrowing the sender.
    type Loan<'a>: TxLoan
    where
        Self: 'a;
    /// A loaned slot holding the sender through an `Rc`: it borrows
    /// nothing, so it can be kept next to the sender across iterations.
    type OwnedLoan: TxLoan;

    /// A free slot, waiting as `wait` says.
    fn loan_with(&self, wait: Wait) -> Result<Self::Loan<'_>>;

    /// A free slot, waiting as the channel's backpressure setting says.
    fn loan(&self) -> Result<Self::Loan<'_>>;

    /// A free slot, or [`Error::Full`] at once.
    fn try_loan(&self) -> Result<Self::Loan<'_>> {
        self.loan_with(Wait::Never)
    }

    /// As [`Tx::loan_with`], for a sender in an `Rc`.
    fn loan_owned_with(self: &Rc<Self>, wait: Wait) -> Result<Self::OwnedLoan>;

    /// As [`Tx::loan`], for a sender in an `Rc`.
    fn loan_owned(self: &Rc<Self>) -> Result<Self::OwnedLoan>;

    /// Slots sent and not yet given back by the receiver.
    fn in_flight(&self) -> u32;

    /// Payload bytes per slot.
    fn slot_size(&self) -> usize;

    /// Copies `data` into a slot and sends it (writing into a loan in place
    /// avoids this copy).
    fn send_copy(&self, data: &[u8]) -> Result<()> {
        let mut loan = self.loan()?;
        let capacity = loan.capacity();
        let dst = loan
            .as_mut_slice()
            .get_mut(..data.len())
            .ok_or(Error::TooLarge {
                len: data.len(),
                capacity,
            })?;
        dst.copy_from_slice(data);
        loan.send(data.len())
    }
}

/// A slot loaned from a [`Tx`]: written in place, then sent with its
/// length. Dropping it unsent gives the slot back.
pub trait TxLoan: Sized {
    /// The whole slot, writable (its old contents are whatever was there).
    fn as_mut_slice(&mut self) -> &mut [u8];
    /// Slot capacity in bytes.
    fn capacity(&self) -> usize;
    /// Where the slot starts in the transport's memory.
    fn offset(&self) -> u64;
    /// Sends the first `len` bytes of the slot as the message. Longer than
    /// the slot is [`Error::TooLarge`], and the slot goes back unsent.
    fn send(self, len: usize) -> Result<()>;

    /// Writes `value` at the start of the slot and sends it as the whole
    /// message. The slot must fit and be aligned for `P` ([`Error::Type`]
    /// otherwise).
    fn send_pod<P: bytemuck::Pod>(mut self, value: &P) -> Result<()> {
        let size = std::mem::size_of::<P>();
        let slot = self.as_mut_slice();
        let capacity = slot.len();
        let ty = std::any::type_name::<P>();
        let dst = slot.get_mut(..size).ok_or_else(|| Error::Type {
            ty,
            why: format!("{size} bytes do not fit a {capacity}-byte slot"),
        })?;
        *bytemuck::try_from_bytes_mut::<P>(dst).map_err(|e| Error::Type {
            ty,
            why: e.to_string(),
        })? = *value;
        self.send(size)
    }
}

/// The receiving end of a channel.
pub trait Rx {
    /// A received message.
    type Sample<'a>: RxSample
    where
        Self: 'a;

    /// The next message, waiting as `wait` says (`None`: nothing came and
    /// `wait` was [`Wait::Never`]). Once the sender has closed or died and
    /// every message sent has been taken: [`Error::Closed`] or
    /// [`Error::PeerDied`], with any `wait`.
    fn recv_with(&self, wait: Wait) -> Result<Option<Self::Sample<'_>>>;

    /// True once nothing beyond the messages already there can come: the
    /// sender closed the channel, or it is gone.
    fn is_closed(&self) -> bool;

    /// Payload bytes per slot.
    fn slot_size(&self) -> usize;

    /// The next message, waiting as long as it takes.
    fn recv(&self) -> Result<Self::Sample<'_>> {
        self.recv_with(Wait::Forever)?.ok_or(Error::Timeout)
    }

    /// The next message if one is there (`None`: not yet; a closed or dead
    /// sender is an error, as for [`Rx::recv`]).
    fn try_recv(&self) -> Result<Option<Self::Sample<'_>>> {
        self.recv_with(Wait::Never)
    }

    /// The next message, waiting at most `timeout` ([`Error::Timeout`]).
    fn recv_timeout(&self, timeout: Duration) -> Result<Self::Sample<'_>> {
        self.recv_with(Wait::Timeout(timeout))?
            .ok_or(Error::Timeout)
    }
}

/// A received message: its bytes, in place; the slot goes back when it drops.
pub trait RxSample: std::ops::Deref<Target = [u8]> {
    /// Where the slot starts in the transport's memory.
    fn offset(&self) -> u64;

    /// The message as a `P`: its length must be `size_of::<P>()` and the
    /// slot aligned for `P` ([`Error::Type`] otherwise).
    fn read_pod<P: bytemuck::Pod>(&self) -> Result<&P> {
        bytemuck::try_from_bytes::<P>(self).map_err(|e| Error::Type {
            ty: std::any::type_name::<P>(),
            why: format!("{e} (a {}-byte message)", self.len()),
        })
    }
}
