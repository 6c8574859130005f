//! The far end of `zcopy pipeline`: a separate process (so its CPU time is
//! not the server's) that takes one stream over TCP or RDMA, checks it and
//! reports what came.
//!
//! It speaks to the parent over stdout in two lines: `listening ADDR` once it
//! can be connected to, then `done BYTES CRC32C` after the stream ended.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use clap::Args;

use zcopy::channel::Error as ChannelError;

use crate::failure::{Failure, Result};

/// `zcopy pipeline-sink` (hidden; started by `zcopy pipeline`).
#[derive(Debug, Args)]
pub struct SinkArgs {
    /// Take a TCP stream on this address.
    #[arg(long, conflicts_with = "rdma")]
    pub tcp: Option<SocketAddr>,
    /// Take an RDMA channel on this address.
    #[arg(long)]
    pub rdma: Option<SocketAddr>,
    /// Give up after this many seconds without a peer or data.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// Runs the sink: exits once the stream ended and was reported.
pub fn run(a: &SinkArgs) -> Result<()> {
    let timeout = Duration::from_secs(a.timeout);
    let (bytes, crc) = match (a.tcp, a.rdma) {
        (Some(addr), None) => tcp(addr, timeout)?,
        (None, Some(addr)) => rdma(addr, timeout)?,
        _ => return Err(Failure::usage("pipeline-sink takes --tcp or --rdma")),
    };
    say(&format!("done {bytes} {crc}"))
}

/// One line to the parent.
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::failed(format!("pipeline-sink: writing to the parent: {e}")))
}

fn tcp(addr: SocketAddr, timeout: Duration) -> Result<(u64, u32)> {
    let io =
        |what: &'static str| move |e: std::io::Error| Failure::failed(format!("sink: {what}: {e}"));
    let l = TcpListener::bind(addr).map_err(io("binding"))?;
    say(&format!(
        "listening {}",
        l.local_addr().map_err(io("local address"))?
    ))?;
    let (mut s, _) = l.accept().map_err(io("accepting"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(io("setting a timeout"))?;
    let mut buf = vec![0u8; 256 << 10];
    let (mut bytes, mut crc) = (0u64, 0u32);
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok((bytes, crc)),
            Ok(n) => {
                crc = crc32c::crc32c_append(crc, &buf[..n]);
                bytes += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("reading")(e)),
        }
    }
}

fn rdma(addr: SocketAddr, timeout: Duration) -> Result<(u64, u32)> {
    let err = |e: ChannelError| Failure::failed(format!("sink: {e}"));
    let l = zcopy::rdma::Listener::bind(addr).map_err(err)?;
    let at = l
        .local_addr()
        .ok_or_else(|| Failure::failed("sink: the listener has no address"))?;
    say(&format!("listening {at}"))?;
    let rx = l.accept(Some(timeout)).map_err(err)?;
    let (mut bytes, mut crc) = (0u64, 0u32);
    loop {
        match rx.recv_timeout(timeout) {
            Ok(m) => {
                crc = crc32c::crc32c_append(crc, &m);
                bytes += m.len() as u64;
            }
            Err(ChannelError::Closed) => return Ok((bytes, crc)),
            Err(e) => return Err(Failure::failed(format!("sink: receiving: {e}"))),
        }
    }
}
