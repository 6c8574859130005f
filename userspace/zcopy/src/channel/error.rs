//! What channel operations fail with.

use super::segment::MAX_NAME_LEN;
use crate::ring::RingError;

/// What a channel operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A channel name with characters outside `A-Z a-z 0-9 . _ -`.
    #[error("channel name {0:?}: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 . _ - and do not start with a dot")]
    BadName(String),
    /// Slot size or count out of range.
    #[error("channel configuration: {0}")]
    Config(String),
    /// The segment does not start with the channel magic.
    #[error("not a zcopy channel segment")]
    NotAChannel,
    /// The segment was written by another format version.
    #[error("channel segment version {found}; this library reads version {expected}")]
    Version {
        /// Version in the segment.
        found: u32,
        /// Version this library speaks.
        expected: u32,
    },
    /// The segment's recorded layout is not the one its parameters give.
    #[error("channel segment layout: {0}")]
    Layout(String),
    /// The segment's creator has not finished writing it.
    #[error("the channel is still being created; try again")]
    NotReady,
    /// A segment passed by descriptor is not sealed against shrinking.
    #[error("the channel segment is not sealed against shrinking; refusing it")]
    Unsealed,
    /// A named channel larger than the free space of `/dev/shm`. Its
    /// file is sparse (tmpfs), so without this check the sender would meet
    /// the limit at a write into a slot, as a SIGBUS.
    #[error("the channel needs {needs} bytes of /dev/shm and {free} are free: use fewer or smaller slots, or make room there")]
    NoRoom {
        /// The segment's size.
        needs: u64,
        /// What `/dev/shm` has free for this process.
        free: u64,
    },
    /// A channel of that name exists and its sender is alive.
    #[error("channel {name:?} exists (sender pid {pid})")]
    Exists {
        /// The name.
        name: String,
        /// Its sender; for a file that is not a readable channel, a
        /// process that has it open or mapped (0: not known).
        pid: u32,
    },
    /// A channel of that name exists but its sender is gone.
    #[error("channel {name:?} is stale: its sender (pid {pid}) is gone; remove it with zcopy::channel::remove_stale or `zcopy channel clean`")]
    Stale {
        /// The name.
        name: String,
        /// The dead sender's pid.
        pid: u32,
    },
    /// No channel of that name.
    #[error("no channel named {0:?}")]
    NotFound(String),
    /// Another receiver is attached.
    #[error("channel already has a receiver (pid {pid}{})", if *.alive { "" } else { ", dead: the sender reclaims its slots when it next waits" })]
    ReceiverAttached {
        /// The attached receiver.
        pid: u32,
        /// Whether it is still running.
        alive: bool,
    },
    /// The peer process died.
    #[error("the peer (pid {pid}) died; {reclaimed} slots it held were reclaimed")]
    PeerDied {
        /// The dead peer.
        pid: u32,
        /// Slots returned to the free list.
        reclaimed: u32,
    },
    /// The sender closed the channel and every message has been received.
    #[error("the sender closed the channel")]
    Closed,
    /// No free slot, and the caller chose not to wait.
    #[error("no free slot (the receiver holds or has not yet read them all)")]
    Full,
    /// The wait timed out.
    #[error("timed out")]
    Timeout,
    /// A message longer than a slot.
    #[error("{len} bytes do not fit a {capacity}-byte slot")]
    TooLarge {
        /// Requested length.
        len: usize,
        /// Slot capacity.
        capacity: usize,
    },
    /// A payload type that does not fit the message or slot.
    #[error("payload type {ty}: {why}")]
    Type {
        /// The type's name.
        ty: &'static str,
        /// What does not fit.
        why: String,
    },
    /// The peer wrote something impossible into shared memory.
    #[error("the peer corrupted the channel: {0}")]
    Corrupt(&'static str),
    /// A card operation failed (card transport).
    #[cfg(feature = "card")]
    #[error(transparent)]
    Card(#[from] crate::card::Error),
    /// A transport built on the channel API failed in its own terms (RDMA:
    /// a `zcopy::rdma::Error`); [`Error::transport`] reaches it by type.
    #[error(transparent)]
    Transport(Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl Error {
    /// The transport's own error, if this is a [`Error::Transport`] of
    /// type `E`.
    pub fn transport<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Transport(e) => e.downcast_ref(),
            _ => None,
        }
    }

    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { op, source }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn corrupt(what: &'static str) -> impl FnOnce(RingError) -> Error {
    move |_| Error::Corrupt(what)
}
