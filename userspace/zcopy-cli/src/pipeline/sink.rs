//! The far end of `zcopy pipeline`: a separate process (so its CPU time is
//! not the server's) that takes one stream, checks it and reports what came.
//! It takes a TCP stream, an RDMA channel, a Unix stream, or a channel
//! (shared memory or card slots) handed over a Unix socket.
//!
//! It speaks to the parent over stdout in three lines: `listening ADDR`
//! once it can be connected to, `ready` once it has the connection (and
//! the channel open and mapped), so that no run times the far end's
//! setup, then `done BYTES XXH64 CHECK_SECONDS` after the stream ended.
//! The check (XXH64, `zcopy recv`'s checksum, over every byte, read where
//! it arrived: in its own buffer for a stream, in place in the slot for a
//! channel) is timed on its own; with `--no-check` the far end takes the
//! data (a stream into its buffer, a channel's messages as they are)
//! without reading the payload, reports a checksum of 0, and the run times
//! the transfer alone.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use zcopy::channel::{Error as ChannelError, Receiver, Rx};

use crate::failure::{Failure, Result};
use crate::transfer::Checksum;

/// `zcopy pipeline-sink` (hidden; started by `zcopy pipeline`).
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("peer").required(true).multiple(false))]
pub struct SinkArgs {
    /// Take a TCP stream on this address.
    #[arg(long, group = "peer")]
    pub tcp: Option<SocketAddr>,
    /// Take an RDMA channel on this address.
    #[arg(long, group = "peer")]
    pub rdma: Option<SocketAddr>,
    /// Take a Unix stream on this socket path.
    #[arg(long, value_name = "PATH", group = "peer")]
    pub unix: Option<PathBuf>,
    /// Take a shared-memory channel handed over this socket path.
    #[arg(long, value_name = "PATH", group = "peer")]
    pub shm: Option<PathBuf>,
    /// Take a card channel handed over this socket path (slots in a pool of
    /// /dev/zcard0, read in place).
    #[arg(long, value_name = "PATH", group = "peer")]
    pub card: Option<PathBuf>,
    /// Take the data without reading the payload (the transfer alone).
    #[arg(long)]
    pub no_check: bool,
    /// Give up after this many seconds without a peer or data.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

/// The far end's check: the checksum of what came (None: not checking),
/// timed apart.
struct Check {
    bytes: u64,
    sum: Option<Checksum>,
    spent: Duration,
}

impl Check {
    fn new(on: bool) -> Check {
        Check {
            bytes: 0,
            sum: on.then(Checksum::new),
            spent: Duration::ZERO,
        }
    }

    /// Counts `data` and, when checking, folds it into the checksum.
    fn take(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(sum) = &mut self.sum {
            let t = Instant::now();
            sum.update(data);
            self.spent += t.elapsed();
        }
    }
}

/// Runs the sink: exits once the stream ended and was reported.
pub fn run(a: &SinkArgs) -> Result<()> {
    let timeout = Duration::from_secs(a.timeout);
    let mut c = Check::new(!a.no_check);
    if let Some(addr) = a.tcp {
        tcp(addr, timeout, &mut c)?;
    } else if let Some(addr) = a.rdma {
        rdma(addr, timeout, &mut c)?;
    } else if let Some(p) = &a.unix {
        let mut s = accept_unix(p, timeout)?;
        say("ready")?;
        stream(&mut s, &mut c)?;
    } else if let Some(p) = &a.shm {
        let s = accept_unix(p, timeout)?;
        let rx = Receiver::from_socket(&s).map_err(chan)?;
        // The far end waits as the socket ways' does in read(): asleep at
        // once, no spin. A spinning guest vCPU holds one of the host's
        // cores, which the card's device model and QEMU's event loop need
        // to complete the card's requests on a 2-core host; a yielding
        // one does too.
        rx.set_spin(0);
        rx.set_yield(Duration::ZERO);
        say("ready")?;
        channel(&rx, timeout, &mut c)?;
    } else if let Some(p) = &a.card {
        let card = crate::platform::open_card()?;
        let s = accept_unix(p, timeout)?;
        let rx = Receiver::from_socket_on_card(&card, &s).map_err(chan)?;
        // As the shm far end, and the socket ones in read(): no spin.
        rx.set_spin(0);
        rx.set_yield(Duration::ZERO);
        say("ready")?;
        channel(&rx, timeout, &mut c)?;
    } else {
        return Err(Failure::usage(
            "pipeline-sink takes --tcp, --rdma, --unix, --shm or --card",
        ));
    }
    say(&format!(
        "done {} {} {:.6}",
        c.bytes,
        c.sum.as_ref().map_or(0, Checksum::value),
        c.spent.as_secs_f64()
    ))
}

/// One line to the parent.
fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| Failure::failed(format!("pipeline-sink: writing to the parent: {e}")))
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure::failed(format!("sink: {what}: {e}"))
}

fn chan(e: ChannelError) -> Failure {
    Failure::failed(format!("sink: {e}"))
}

fn tcp(addr: SocketAddr, timeout: Duration, c: &mut Check) -> Result<()> {
    let l = TcpListener::bind(addr).map_err(io("binding"))?;
    say(&format!(
        "listening {}",
        l.local_addr().map_err(io("local address"))?
    ))?;
    let (mut s, _) = l.accept().map_err(io("accepting"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(io("setting a timeout"))?;
    say("ready")?;
    stream(&mut s, c)
}

/// Binds `path`, says so, takes one connection and removes the path.
fn accept_unix(path: &Path, timeout: Duration) -> Result<UnixStream> {
    let l = UnixListener::bind(path).map_err(io("binding the socket"))?;
    let _gone = Unlink(path);
    say(&format!("listening {}", path.display()))?;
    let (s, _) = l.accept().map_err(io("accepting"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(io("setting a timeout"))?;
    Ok(s)
}

/// Removes a socket path when dropped.
struct Unlink<'a>(&'a Path);

impl Drop for Unlink<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Reads a stream to its end into one buffer (the far end's copy).
fn stream(s: &mut impl Read, c: &mut Check) -> Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => c.take(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io("reading")(e)),
        }
    }
}

/// Takes a channel's messages in place until the sender closes it.
fn channel<R: Rx>(rx: &R, timeout: Duration, c: &mut Check) -> Result<()> {
    loop {
        match rx.recv_timeout(timeout) {
            Ok(m) => c.take(&m),
            Err(ChannelError::Closed) => return Ok(()),
            Err(e) => return Err(Failure::failed(format!("sink: receiving: {e}"))),
        }
    }
}

fn rdma(addr: SocketAddr, timeout: Duration, c: &mut Check) -> Result<()> {
    let l = zcopy::rdma::Listener::bind(addr).map_err(chan)?;
    let at = l
        .local_addr()
        .ok_or_else(|| Failure::failed("sink: the listener has no address"))?;
    say(&format!("listening {at}"))?;
    let rx = l.accept(Some(timeout)).map_err(chan)?;
    say("ready")?;
    channel(&rx, timeout, c)
}
