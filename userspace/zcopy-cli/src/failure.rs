//! Failures and the exit codes they end the process with.

use std::fmt::Display;

/// Exit code: something failed (checksum mismatch, peer died, I/O error...).
pub const FAILED: u8 = 1;
/// Exit code: bad usage (clap exits with it for the flags it checks).
pub const USAGE: u8 = 2;
/// Exit code: the platform is missing something (no zcard, no RDMA device).
pub const MISSING: u8 = 3;

/// What `--help` says about exit codes (every subcommand shows it), with
/// the hints of exit 3.
pub fn exit_codes_help() -> String {
    format!(
        "Exit codes:
  0  done
  1  failed: checksum or length mismatch, the peer died or timed out, an I/O error
  2  usage error (bad flags or arguments)
  3  the platform is missing something; the message says what to do, e.g.
       {NO_CARD}
       {}",
        no_rdma_for("the address")
    )
}

// The hints: what to do when the platform lacks something. Each is written
// here once; `crate::platform` attaches them to its failures and
// `zcopy info` to its empty sections.

/// The hint when there is no zcard.
pub const NO_CARD: &str =
    "no zcard: load zcard.ko (make qemu-shell boots a guest with it) / is the device model running?";

/// What sets up an RDMA device on a machine that has none.
const RXE_SETUP: &str = "run scripts/rxe-setup.sh";

/// The hint when there is no RDMA device at all.
pub fn no_rdma() -> String {
    format!("no RDMA device: {RXE_SETUP}")
}

/// The hint when there is no RDMA device for `addr`.
pub fn no_rdma_for(addr: impl Display) -> String {
    format!("no RDMA device for {addr}: {RXE_SETUP}")
}

/// Where the RDMA bench runs, for when the Soft-RoCE pair is not there.
pub const RXE_PAIR_HINT: &str = "the RDMA bench runs between the zcopy guest's Soft-RoCE pair \
zrxe0/zrxe1 on 169.254.77.1/.2 (make qemu-shell; qemu/guest/rxe-veth.sh sets it up)";

/// The hint when perftest's tools are not on PATH.
pub const NO_PERFTEST: &str =
    "install perftest (the RDMA bench's baselines; the zcopy guest has it)";

/// A failure: the message for stderr and the exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// [`FAILED`], [`USAGE`] or [`MISSING`].
    pub code: u8,
    /// What went wrong and, where there is one, what to do about it.
    pub message: String,
}

impl Failure {
    /// Something failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: FAILED,
            message: message.into(),
        }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: USAGE,
            message: message.into(),
        }
    }

    /// The platform is missing something (exit 3).
    pub fn missing(message: impl Into<String>) -> Failure {
        Failure {
            code: MISSING,
            message: message.into(),
        }
    }
}

/// Result with [`Failure`].
pub type Result<T> = std::result::Result<T, Failure>;
