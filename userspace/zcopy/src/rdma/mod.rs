//! RDMA: the zero-copy channel across machines, on libibverbs and
//! librdmacm (through the `rdma-sys` binding), tested on Soft-RoCE.
//!
//! - [`verbs`]: the small safe layer everything else uses: devices, ports
//!   and GIDs, protection domains, memory registration (of ordinary memory,
//!   shared-memory segments and zcard pool mappings), completion queues in
//!   busy-poll or event mode.
//! - [`cm`]: RC queue pairs connected with rdma_cm (listen, accept,
//!   connect, private data), torn down in order on every path.
//! - [`Sender`] / [`Receiver`]: the RDMA transport of the channel API
//!   ([`crate::channel::Tx`], [`crate::channel::Rx`]), made by
//!   [`BuilderExt::connect_rdma`] and [`Listener::accept`]: the sender writes
//!   each message with RDMA WRITE WITH IMMEDIATE straight into a slot of the
//!   receiver's registered ring (immediate = slot), the receiver gives
//!   slots back in batches (credit writes), and a sender out of slots reads
//!   what the receiver has released.
//!
//! ```no_run
//! use zcopy::channel::{Builder, Rx, Tx, TxLoan};
//! use zcopy::rdma::{BuilderExt, Listener, Receiver};
//!
//! // Receiving side (one machine or process).
//! let listener = Listener::bind("169.254.77.1:7471".parse()?)?;
//! # let handle = std::thread::spawn(move || -> Result<(), zcopy::channel::Error> {
//! let rx: Receiver = listener.accept(None)?;
//! let sample = rx.recv()?;
//! assert_eq!(&*sample, b"hello");
//! # Ok(()) });
//!
//! // Sending side: same calls as a shared-memory channel.
//! let tx = Builder::new()
//!     .slot_size(4096)
//!     .slot_count(16)
//!     .connect_rdma(Some("169.254.77.2".parse()?), "169.254.77.1:7471".parse()?)?;
//! let mut loan = tx.loan()?;
//! loan.as_mut_slice()[..5].copy_from_slice(b"hello");
//! loan.send(5)?;
//! # handle.join().unwrap()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod channel;
pub mod cm;
pub mod verbs;

#[cfg(feature = "test-aids")]
pub use channel::PeerHello;
pub use channel::{
    check_geometry, BuilderExt, LinkStats, Listener, Loan, OwnedLoan, Receiver, Sample, Sender,
    SenderRef, SlotLoan, CLOSE, MAX_RDMA_SLOTS, PROBE_EVERY, SIGNAL_EVERY,
};
pub use verbs::{devices, Device, Port};

/// What a verbs or rdma_cm call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A verbs call failed.
    #[error("{op}: {} (errno {errno}){}", std::io::Error::from_raw_os_error(*errno), hint(*errno))]
    Verbs {
        /// The call.
        op: &'static str,
        /// Its errno.
        errno: i32,
    },
    /// An rdma_cm call failed.
    #[error("{op}: {} (errno {errno}){}", std::io::Error::from_raw_os_error(*errno), hint(*errno))]
    Cm {
        /// The call.
        op: &'static str,
        /// Its errno.
        errno: i32,
    },
    /// rdma_cm reported an event other than the one the step waits for.
    #[error(
        "{step}: rdma_cm reported {event} (status {status}){}",
        event_hint(event, *status)
    )]
    Event {
        /// The step (resolving the address, connecting, ...).
        step: &'static str,
        /// The event's name.
        event: String,
        /// Its status (a negative errno, or a reject reason).
        status: i32,
    },
    /// The peer refused the connection and said why.
    #[error("the peer refused the connection: {0}")]
    Refused(String),
    /// No RDMA device (or none for the address).
    #[error("{0}")]
    NoDevice(String),
    /// A work request completed with an error status.
    #[error(
        "{what}: work completion {status_str} (status {status}, vendor error {vendor_err:#x})"
    )]
    Completion {
        /// What the work request was.
        what: &'static str,
        /// The status.
        status: u32,
        /// Its name.
        status_str: String,
        /// The device's detail.
        vendor_err: u32,
    },
    /// A step did not finish in time.
    #[error("{0}: timed out (is the peer listening, and is the address on an RDMA device? `rdma link` shows them)")]
    Timeout(&'static str),
    /// The caller asked for something the layer cannot do.
    #[error("{0}")]
    Usage(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An RDMA failure under the channel API is its
/// [`Transport`](crate::channel::Error::Transport) error: reach it with
/// `e.transport::<zcopy::rdma::Error>()`.
impl From<Error> for crate::channel::Error {
    fn from(e: Error) -> crate::channel::Error {
        crate::channel::Error::Transport(Box::new(e))
    }
}

impl Error {
    fn verbs(op: &'static str) -> Error {
        Error::Verbs { op, errno: errno() }
    }

    /// A verbs call's return value (0, or an errno) as a Result.
    fn check(op: &'static str, r: i32) -> Result<()> {
        match r {
            0 => Ok(()),
            errno => Err(Error::Verbs { op, errno }),
        }
    }

    fn cm(op: &'static str) -> Error {
        Error::Cm { op, errno: errno() }
    }
}

fn hint(errno: i32) -> &'static str {
    match errno {
        libc::ENOMEM => ": out of memory or over RLIMIT_MEMLOCK (raise `ulimit -l`)",
        libc::EADDRNOTAVAIL | libc::ENODEV => {
            ": the address is not on an RDMA device (scripts/rxe-setup.sh sets up Soft-RoCE)"
        }
        libc::EADDRINUSE => ": the port is taken (pick another, or 0 for any)",
        libc::EPERM | libc::EACCES => {
            ": permission denied (RDMA devices need /dev/infiniband access)"
        }
        _ => "",
    }
}

fn event_hint(event: &str, status: i32) -> &'static str {
    match event {
        "RDMA_CM_EVENT_REJECTED" => ": nothing listens there, or the listener refused",
        // The address is on an RDMA device's link, but no host answered
        // for it in time.
        "RDMA_CM_EVENT_ADDR_ERROR" if status == -libc::ETIMEDOUT => {
            ": no host answered at that address"
        }
        "RDMA_CM_EVENT_ADDR_ERROR" | "RDMA_CM_EVENT_ROUTE_ERROR" => {
            ": no route over an RDMA device to that address"
        }
        "RDMA_CM_EVENT_UNREACHABLE" | "RDMA_CM_EVENT_CONNECT_ERROR" => ": the peer did not answer",
        _ => "",
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rdma_error_reaches_channel_callers_typed_and_worded_as_itself() {
        let e = Error::Refused("slot count 70000".into());
        let text = e.to_string();
        let ch: crate::channel::Error = e.into();
        assert_eq!(ch.to_string(), text);
        assert!(matches!(
            ch.transport::<Error>(),
            Some(Error::Refused(why)) if why == "slot count 70000"
        ));
        assert!(ch.transport::<std::io::Error>().is_none());
        assert!(crate::channel::Error::Full.transport::<Error>().is_none());
    }
}
