//! `zcopy send` and `zcopy recv`: how the two ends of each transport find
//! each other, then the one transfer of [`crate::transfer`] over it.
//!
//! - shm: the sender creates `/dev/shm/zcopy.<name>`; the receiver opens it
//!   by name, retrying until it exists.
//! - card: a card channel cannot be opened by name (its slots are a zcard
//!   pool, reached by descriptor), so the sender listens on the Unix socket
//!   `/run/zcopy/<name>.sock` and shares the channel with the first
//!   receiver that connects and attaches (it answers one byte).
//! - rdma: the receiver listens on an address of an RDMA device; the
//!   sender connects to it (retrying while nothing listens yet).

use std::fs::File;
use std::io::{IsTerminal, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;
use zcopy::card::Card;
use zcopy::channel::{
    self, Builder, CardSlots, Error, Receiver, Sender, Shm, DEFAULT_CONNECT_TIMEOUT,
};
use zcopy::rdma::{self, BuilderExt};

use crate::failure::{no_rdma_for, Failure, Result};
use crate::output::{print_json_on, print_on, Stream};
use crate::platform::{open_card, rdma_for, rdma_source};
use crate::transfer::{self, secs, Stats};
use crate::{RecvArgs, SendArgs, Via};

/// The channel name when `--name` is not given.
pub const DEFAULT_NAME: &str = "zcopy-send";
/// Where the card transport's sockets live.
pub const RUN_DIR: &str = "/run/zcopy";
/// What a card receiver answers on the socket once it has attached.
const ATTACHED: u8 = b'A';
/// How long one step of the card handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// Pause between two tries to reach a peer that is not there yet.
const RETRY: Duration = Duration::from_millis(20);

/// The summary printed at the end (one line, or JSON with `--json`).
#[derive(Debug, Serialize)]
pub struct Summary {
    /// `sent` or `received`.
    pub direction: &'static str,
    /// `shm`, `card` or `rdma`.
    pub via: &'static str,
    /// The file sent or written.
    pub file: String,
    /// File bytes moved.
    pub bytes: u64,
    /// Seconds the data took.
    pub seconds: f64,
    /// Throughput, 10^6 bytes per second.
    pub mb_per_s: f64,
    /// XXH64 of the file, 16 hex digits.
    pub xxh64: String,
    /// Payload bytes per slot of the channel.
    pub slot_size: usize,
}

impl Summary {
    fn new(direction: &'static str, via: Via, file: &Path, s: Stats, slot_size: usize) -> Summary {
        let mb_per_s = if s.seconds > 0.0 {
            s.bytes as f64 / 1e6 / s.seconds
        } else {
            0.0
        };
        Summary {
            direction,
            via: via.name(),
            file: file.display().to_string(),
            bytes: s.bytes,
            seconds: s.seconds,
            mb_per_s,
            xxh64: format!("{:016x}", s.xxh64),
            slot_size,
        }
    }

    fn print(&self, as_json: bool, stream: Stream) -> Result<()> {
        if as_json {
            return print_json_on(self, stream);
        }
        print_on(
            &format!(
                "{} {} bytes in {:.3} s ({:.1} MB/s) via {}, xxh64 {}\n",
                self.direction, self.bytes, self.seconds, self.mb_per_s, self.via, self.xxh64
            ),
            stream,
        )
    }
}

/// `zcopy send FILE --via ...`.
pub fn send(args: &SendArgs) -> Result<()> {
    args.check()?;
    let (mut file, size) = open_input(&args.file)?;
    let label = args.file.display().to_string();
    let name = args.name.as_deref().unwrap_or(DEFAULT_NAME);
    let builder = Builder::new()
        .slot_size(args.slot_size as usize)
        .slot_count(args.slot_count());
    let stats = match args.via {
        Via::Shm => {
            let tx = create_named(builder, name)?;
            note(&format!(
                "waiting for a receiver: zcopy recv OUTFILE --via shm --name {name}"
            ));
            transfer::send(&tx, &mut file, &label, size, args.timeout)?
        }
        Via::Card => {
            let card = open_card()?;
            let tx = builder.create_on_card(&card).map_err(setup_failure)?;
            let socket = CardSocket::bind(name)?;
            note(&format!(
                "waiting for a receiver: zcopy recv OUTFILE --via card --name {name}"
            ));
            socket.serve(&tx, args.timeout)?;
            transfer::send(&tx, &mut file, &label, size, args.timeout)?
        }
        Via::Rdma => {
            let to = args
                .to
                .ok_or_else(|| Failure::usage("--via rdma needs --to ADDR:PORT"))?;
            let tx = connect_rdma(builder, args.from, to, args.timeout)?;
            transfer::send(&tx, &mut file, &label, size, args.timeout)?
        }
    };
    Summary::new("sent", args.via, &args.file, stats, args.slot_size as usize)
        .print(args.json, Stream::Stdout)
}

/// `zcopy recv OUTFILE --via ...`.
pub fn recv(args: &RecvArgs) -> Result<()> {
    args.check()?;
    let mut out = Output::create(&args.outfile)?;
    let name = args.name.as_deref().unwrap_or(DEFAULT_NAME);
    let (stats, slot_size) = match args.via {
        Via::Shm => {
            let rx = open_named(name, args.timeout)?;
            let stats = receive(&rx, &mut out, args.timeout)?;
            (stats, rx.geometry().slot_size as usize)
        }
        Via::Card => {
            let card = open_card()?;
            let rx = connect_card(&card, name, args.timeout)?;
            let stats = receive(&rx, &mut out, args.timeout)?;
            (stats, rx.geometry().slot_size as usize)
        }
        Via::Rdma => {
            let addr = args
                .listen
                .ok_or_else(|| Failure::usage("--via rdma needs --listen ADDR:PORT"))?;
            let rx = listen_rdma(addr, args.timeout)?;
            let stats = receive(&rx, &mut out, args.timeout)?;
            (stats, rx.geometry().slot_size as usize)
        }
    };
    // Data on stdout keeps it to itself: the summary goes to stderr.
    let stream = if out.is_stdout() {
        Stream::Stderr
    } else {
        Stream::Stdout
    };
    out.commit()?;
    Summary::new("received", args.via, &args.outfile, stats, slot_size).print(args.json, stream)
}

/// The transfer into `out`.
fn receive<R: zcopy::channel::Rx>(
    rx: &R,
    out: &mut Output,
    timeout: Option<Duration>,
) -> Result<Stats> {
    let name = out.path.display().to_string();
    transfer::receive(rx, &mut out.file, &name, timeout)
}

/// Says `what` on stderr when a person is watching it.
fn note(what: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("zcopy: {what}");
    }
}

/// The file to send and its size (it must be a regular file: the size
/// goes first).
fn open_input(path: &Path) -> Result<(File, u64)> {
    let fail = |why: String| Failure::failed(format!("{}: {why}", path.display()));
    let file = File::open(path).map_err(|e| fail(e.to_string()))?;
    let meta = file.metadata().map_err(|e| fail(e.to_string()))?;
    if meta.is_dir() {
        return Err(fail("is a directory".into()));
    }
    if !meta.is_file() {
        return Err(fail(
            "not a regular file (its size must be known before sending)".into(),
        ));
    }
    Ok((file, meta.len()))
}

/// The output file: written under a temporary name beside OUTFILE and
/// renamed to it only once length and checksum match, so a failed
/// transfer leaves no OUTFILE (and an existing one untouched). An OUTFILE
/// that is a symbolic link to a file is the file it names. An OUTFILE that
/// exists and is not a regular file (`/dev/null`, a FIFO, `/dev/stdout` on
/// a pipe) is written in place as the data comes and never removed.
struct Output {
    path: PathBuf,
    /// The temporary file, removed on drop unless committed.
    tmp: Option<PathBuf>,
    file: File,
}

impl Output {
    fn create(path: &Path) -> Result<Output> {
        let fail = |why: String| Failure::failed(format!("{}: {why}", path.display()));
        // `out/` and `out/.` name a directory, existing or not (a file name
        // would drop the ending, and the rename at the end would fail on it).
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
        if bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes == b"." {
            return Err(fail("names a directory (it ends in / or /.)".into()));
        }
        // A symbolic link is written through, as cp does: the file it
        // names (there or not yet) is the one made or replaced, and the
        // link stays.
        let mut path = path.to_path_buf();
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.is_dir() {
                return Err(fail("is a directory".into()));
            }
            if !meta.is_file() {
                let file = File::options()
                    .write(true)
                    .open(&path)
                    .map_err(|e| fail(e.to_string()))?;
                return Ok(Output {
                    path,
                    tmp: None,
                    file,
                });
            }
            // `/dev/stdout` on a file the shell opened (`>> log`): written
            // through standard output itself, as the shell opened it.
            if let Some(file) = stdout_if_at(&meta) {
                return Ok(Output {
                    path,
                    tmp: None,
                    file,
                });
            }
            if path.is_symlink() {
                path = std::fs::canonicalize(&path).map_err(|e| fail(e.to_string()))?;
            }
        } else if path.is_symlink() {
            path = dangling_target(&path).map_err(|e| fail(e.to_string()))?;
        }
        let Some(base) = path.file_name() else {
            return Err(fail("not a file name".into()));
        };
        let (tmp, file) = crate::files::create_unique(
            path.parent().unwrap_or(Path::new("")),
            |n| temporary_name(base, n),
            |tmp| {
                crate::signals::create_removed_on_signal(tmp, || {
                    File::options().write(true).create_new(true).open(tmp)
                })
            },
        );
        let file = file.map_err(|e| {
            Failure::failed(format!(
                "{}: {e} (the temporary file OUTFILE is written as)",
                tmp.display()
            ))
        })?;
        Ok(Output {
            path,
            tmp: Some(tmp),
            file,
        })
    }

    /// Whether the file written is this process's standard output
    /// (`/dev/stdout`, whether on a pipe, a terminal or a file).
    fn is_stdout(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let same =
            |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
        let stdout = std::io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from);
        match (self.file.metadata(), stdout.and_then(|f| f.metadata())) {
            (Ok(a), Ok(b)) => same(&a, &b),
            _ => false,
        }
    }

    /// Gives the file its name.
    fn commit(mut self) -> Result<()> {
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = std::fs::rename(&tmp, &self.path) {
                let _ = std::fs::remove_file(&tmp);
                return Err(Failure::failed(format!("{}: {e}", self.path.display())));
            }
        }
        Ok(())
    }
}

/// Standard output, when it is the file `meta` describes.
fn stdout_if_at(meta: &std::fs::Metadata) -> Option<File> {
    use std::os::unix::fs::MetadataExt;
    let stdout = File::from(std::io::stdout().as_fd().try_clone_to_owned().ok()?);
    let m = stdout.metadata().ok()?;
    (m.dev() == meta.dev() && m.ino() == meta.ino()).then_some(stdout)
}

/// The file a symbolic link to nothing (yet) names, through any chain of
/// links.
fn dangling_target(link: &Path) -> std::io::Result<PathBuf> {
    let mut path = link.to_path_buf();
    // As the kernel's limit on links followed in one lookup.
    for _ in 0..40 {
        if !path.is_symlink() {
            return Ok(path);
        }
        let target = std::fs::read_link(&path)?;
        path = match path.parent() {
            Some(dir) if target.is_relative() => dir.join(target),
            _ => target,
        };
    }
    Err(std::io::Error::other("too many levels of symbolic links"))
}

/// The `n`th name tried for the temporary file of OUTFILE `base`: hidden,
/// beside it, naming this process, and within a file name's 255 bytes
/// whatever the length of `base` (cut short where it is long).
fn temporary_name(base: &std::ffi::OsStr, n: u32) -> std::ffi::OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let pid = std::process::id();
    let tail = match n {
        0 => format!(".zcopy-{pid}.part"),
        n => format!(".zcopy-{pid}-{n}.part"),
    };
    let keep = base.len().min(255 - 1 - tail.len());
    let mut name = Vec::with_capacity(255);
    name.push(b'.');
    name.extend_from_slice(&base.as_bytes()[..keep]);
    name.extend_from_slice(tail.as_bytes());
    std::ffi::OsString::from_vec(name)
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(tmp) = &self.tmp {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Setting a channel up failed: bad shape or name is a usage error.
fn setup_failure(e: Error) -> Failure {
    const POOL_HINT: &str = "the card's pinned limit or memory is exhausted \
        (fewer --slots or a smaller --slot-size)";
    match e {
        Error::Config(_) | Error::BadName(_) => Failure::usage(e.to_string()),
        Error::Card(ref c) if c.errno().map(|n| n as i32) == Some(libc::ENOMEM) => {
            Failure::failed(format!("{e}: {POOL_HINT}"))
        }
        e => Failure::failed(e.to_string()),
    }
}

// --- shm -------------------------------------------------------------------

/// Creates the named channel; a stale one of that name (its sender
/// crashed) is removed first.
fn create_named(b: Builder, name: &str) -> Result<Sender<Shm>> {
    match b.clone().create_named(name) {
        Err(Error::Stale { .. }) => {
            channel::remove_stale(name).map_err(setup_failure)?;
            b.create_named(name).map_err(setup_failure)
        }
        Err(Error::Exists { pid, .. }) => Err(Failure::failed(format!(
            "channel {name:?} is in use (sender pid {pid}): pick another --name"
        ))),
        r => r.map_err(setup_failure),
    }
}

/// Opens the named channel, retrying while it does not exist (yet).
fn open_named(name: &str, timeout: Option<Duration>) -> Result<Receiver<Shm>> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let e = match Receiver::open_named(name) {
            Ok(rx) => return Ok(rx),
            Err(e) => e,
        };
        let waiting = matches!(
            e,
            Error::NotFound(_) | Error::NotReady | Error::Stale { .. }
        );
        if !waiting {
            return Err(setup_failure(e));
        }
        if passed(deadline) {
            return Err(Failure::failed(format!(
                "no sender on channel {name:?} within {} ({e}): start `zcopy send FILE --via shm --name {name}`",
                timeout.map_or_else(String::new, secs)
            )));
        }
        std::thread::sleep(RETRY);
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

// --- card ------------------------------------------------------------------

fn socket_path(name: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("{name}.sock"))
}

/// The longest path a Unix socket binds to: `sockaddr_un.sun_path`, less
/// its terminating NUL.
const SOCKET_PATH_MAX: usize = std::mem::size_of::<libc::sockaddr_un>()
    - std::mem::offset_of!(libc::sockaddr_un, sun_path)
    - 1;

/// A channel name the card transport can use: its socket's path must fit
/// in a socket address (a name an shm channel takes may be longer).
pub fn check_card_name(name: &str) -> Result<()> {
    let path = socket_path(name);
    let len = path.as_os_str().len();
    if len > SOCKET_PATH_MAX {
        return Err(Failure::usage(format!(
            "--name is too long for --via card: its socket {} would be {len} bytes, \
             a socket's path at most {SOCKET_PATH_MAX}",
            path.display()
        )));
    }
    Ok(())
}

/// A card sender's listening socket; its file goes when this drops.
struct CardSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl CardSocket {
    /// Listens on `/run/zcopy/<name>.sock`. A socket file nobody listens on
    /// (a sender crashed) is replaced; a live one is refused.
    fn bind(name: &str) -> Result<CardSocket> {
        std::fs::create_dir_all(RUN_DIR).map_err(|e| {
            Failure::failed(format!(
                "creating {RUN_DIR}: {e} (the card transport's sockets live there)"
            ))
        })?;
        let path = socket_path(name);
        let fail = |e: std::io::Error| Failure::failed(format!("{}: {e}", path.display()));
        let listener = match UnixListener::bind(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if UnixStream::connect(&path).is_ok() {
                    return Err(Failure::failed(format!(
                        "a sender already serves {name:?} at {}: pick another --name",
                        path.display()
                    )));
                }
                std::fs::remove_file(&path).map_err(fail)?;
                UnixListener::bind(&path).map_err(fail)?
            }
            r => r.map_err(fail)?,
        };
        Ok(CardSocket { listener, path })
    }

    /// Shares the channel with the first connector that attaches to it
    /// (one that leaves without attaching, a probe say, is skipped).
    fn serve(&self, tx: &Sender<CardSlots>, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let fail = |e: std::io::Error| Failure::failed(format!("{}: {e}", self.path.display()));
        self.listener.set_nonblocking(true).map_err(fail)?;
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if passed(deadline) {
                        return Err(Failure::failed(format!(
                            "no receiver connected to {} within {}: is `zcopy recv --via card` running?",
                            self.path.display(),
                            timeout.map_or_else(String::new, secs)
                        )));
                    }
                    std::thread::sleep(RETRY);
                    continue;
                }
                Err(e) => return Err(fail(e)),
            };
            stream.set_nonblocking(false).map_err(fail)?;
            stream.set_read_timeout(Some(HANDSHAKE)).map_err(fail)?;
            if tx.share(&stream).is_err() {
                continue;
            }
            let mut answer = [0u8];
            if matches!((&stream).read(&mut answer), Ok(1)) && answer[0] == ATTACHED {
                return Ok(());
            }
        }
    }
}

impl Drop for CardSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Connects to the card sender `name` (retrying while it is not there) and
/// attaches to the channel it shares.
fn connect_card(card: &Card, name: &str, timeout: Option<Duration>) -> Result<Receiver<CardSlots>> {
    let path = socket_path(name);
    let fail = |e: std::io::Error| Failure::failed(format!("{}: {e}", path.display()));
    let deadline = timeout.map(|t| Instant::now() + t);
    let stream = loop {
        match UnixStream::connect(&path) {
            Ok(s) => break s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                if passed(deadline) {
                    return Err(Failure::failed(format!(
                        "no sender on card channel {name:?} within {} ({}: {e}): start `zcopy send FILE --via card --name {name}`",
                        timeout.map_or_else(String::new, secs),
                        path.display()
                    )));
                }
                std::thread::sleep(RETRY);
            }
            Err(e) => return Err(fail(e)),
        }
    };
    stream.set_read_timeout(Some(HANDSHAKE)).map_err(fail)?;
    let rx = Receiver::<CardSlots>::from_socket_on_card(card, &stream).map_err(setup_failure)?;
    (&stream).write_all(&[ATTACHED]).map_err(fail)?;
    Ok(rx)
}

// --- rdma ------------------------------------------------------------------

/// An RDMA failure: no device or no route for the address is the
/// platform's (exit 3), the rest a failure (exit 1); the message names RDMA.
fn rdma_failure(addr: impl std::fmt::Display, e: Error) -> Failure {
    let platform = match e.transport::<rdma::Error>() {
        Some(rdma::Error::NoDevice(_)) => true,
        Some(rdma::Error::Cm { errno, .. } | rdma::Error::Verbs { errno, .. }) => {
            matches!(*errno, libc::EADDRNOTAVAIL | libc::ENODEV)
        }
        // Not an address that timed out: no host answered for it (the
        // sender checks that the route's link has an RDMA device).
        Some(rdma::Error::Event { event, status, .. }) => {
            event == "RDMA_CM_EVENT_ROUTE_ERROR"
                || (event == "RDMA_CM_EVENT_ADDR_ERROR" && *status != -libc::ETIMEDOUT)
        }
        _ => false,
    };
    match e {
        _ if platform => Failure::missing(format!("{} ({e})", no_rdma_for(addr))),
        Error::Config(_) => Failure::usage(format!("RDMA channel: {e}")),
        e => Failure::failed(format!("RDMA {addr}: {e}")),
    }
}

/// Connects to the receiver at `to`, retrying while nothing listens there
/// (yet), up to `timeout`.
fn connect_rdma(
    b: Builder,
    from: Option<IpAddr>,
    to: SocketAddr,
    timeout: Option<Duration>,
) -> Result<rdma::Sender> {
    rdma_for(to, None)?;
    if let Some(ip) = from {
        rdma_source(ip)?;
    }
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut noted = false;
    loop {
        // One attempt (address, route, connection) within what is left.
        let within = deadline.map_or(DEFAULT_CONNECT_TIMEOUT, |d| {
            d.saturating_duration_since(Instant::now())
                .min(DEFAULT_CONNECT_TIMEOUT)
        });
        match b.clone().connect_timeout(within).connect_rdma(from, to) {
            Ok(tx) => return Ok(tx),
            Err(e)
                if matches!(e.transport::<rdma::Error>(),
                    Some(rdma::Error::Event { event, .. }) if event == "RDMA_CM_EVENT_REJECTED")
                    && !passed(deadline) =>
            {
                if !noted {
                    note(&format!(
                        "waiting for a receiver: zcopy recv OUTFILE --via rdma --listen {to}"
                    ));
                    noted = true;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => {
                // An address that timed out is no host answering on the
                // link the route takes, or a link with no RDMA device at
                // all: the source address the route picks tells which.
                if timed_out_address(&e) && from.is_none() {
                    if let Some(src) = route_source(to) {
                        rdma_for(to, Some(src))?;
                    }
                }
                return Err(rdma_failure(to, e));
            }
        }
    }
}

/// Whether `e` is rdma_cm's address error for an address no one answered
/// for in time.
fn timed_out_address(e: &Error) -> bool {
    matches!(e.transport::<rdma::Error>(),
        Some(rdma::Error::Event { event, status, .. })
            if event == "RDMA_CM_EVENT_ADDR_ERROR" && *status == -libc::ETIMEDOUT)
}

/// The address this machine sends from to reach `to`, as its routing table
/// says (a UDP socket's connect picks it and sends nothing).
fn route_source(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = match to {
        SocketAddr::V4(_) => (std::net::Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = std::net::UdpSocket::bind(any).ok()?;
    sock.connect(to).ok()?;
    sock.local_addr().ok().map(|a| a.ip())
}

/// Listens on `addr` and takes the first sender, waiting up to `timeout`.
/// A peer that is no zcopy sender, or one of a shape this end refuses (the
/// listener tells it why), is said on stderr and the wait goes on: a port
/// probe or another program's client does not end the receive.
fn listen_rdma(addr: SocketAddr, timeout: Option<Duration>) -> Result<rdma::Receiver> {
    rdma_for(addr, Some(addr.ip()))?;
    let mut listener = rdma::Listener::bind(addr).map_err(|e| {
        let port_taken = || {
            Failure::failed(format!(
                "RDMA {addr}: the port is in use (another listener has it; pick another port)"
            ))
        };
        match e.transport::<rdma::Error>() {
            Some(rdma::Error::Cm {
                op: "rdma_bind_addr" | "rdma_listen",
                errno: libc::EADDRINUSE,
            }) => port_taken(),
            // rdma_cm says EADDRNOTAVAIL for a port clash where either
            // listener is on the wildcard address, and for an address it
            // cannot use at all: the same address on any port tells which.
            Some(rdma::Error::Cm {
                op: "rdma_bind_addr" | "rdma_listen",
                errno: libc::EADDRNOTAVAIL,
            }) if addr.port() != 0
                && rdma::Listener::bind(SocketAddr::new(addr.ip(), 0)).is_ok() =>
            {
                port_taken()
            }
            _ => rdma_failure(addr, e),
        }
    })?;
    // The sender's Hello sets the ring this end pins: no more than half
    // the memory this process can take (the pipeline's rule for --size).
    if let Some(room) = crate::platform::mem_room() {
        listener.set_max_ring(room / 2);
    }
    if let Some(bound) = listener.local_addr() {
        note(&format!(
            "waiting for a sender: zcopy send FILE --via rdma --to {bound}"
        ));
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match listener.accept(left) {
            Ok(rx) => return Ok(rx),
            Err(
                e @ (Error::NotAChannel
                | Error::Version { .. }
                | Error::Layout(_)
                | Error::Config(_)),
            ) => {
                let why = match e {
                    Error::NotAChannel => "the peer is no zcopy sender".to_string(),
                    e => e.to_string(),
                };
                // Said whether or not a terminal reads it, unlike the
                // waiting hints: someone connected and was turned away.
                eprintln!("zcopy: refused a connection to {addr}: {why}");
            }
            Err(e) => {
                return Err(match e.transport::<rdma::Error>() {
                    Some(rdma::Error::Timeout("waiting for a connection request")) => {
                        Failure::failed(format!(
                            "no RDMA sender connected to {addr} within {}",
                            timeout.map_or_else(String::new, secs)
                        ))
                    }
                    _ => rdma_failure(addr, e),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory of its own for one test, removed when dropped.
    struct Dir(PathBuf);

    impl Dir {
        fn new(tag: &str) -> Dir {
            let p = std::env::temp_dir().join(format!("zcopy-output-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir(&p).unwrap();
            Dir(p)
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn write_all(mut out: Output, data: &[u8]) {
        out.file.write_all(data).unwrap();
        out.commit().unwrap();
    }

    /// A temporary file a killed receive of the same pid left (a container's
    /// pid 1 every run) does not block the next receive, nor is it touched.
    #[test]
    fn a_leftover_temporary_file_is_passed_over() {
        let dir = Dir::new("leftover");
        let out = dir.0.join("out.bin");
        let leftover = dir
            .0
            .join(temporary_name(std::ffi::OsStr::new("out.bin"), 0));
        std::fs::write(&leftover, b"a dead run's").unwrap();
        write_all(Output::create(&out).unwrap(), b"new");
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        assert_eq!(std::fs::read(&leftover).unwrap(), b"a dead run's");
    }

    /// An OUTFILE whose name is as long as a name can be still gets a
    /// temporary file beside it.
    #[test]
    fn the_longest_name_has_room_for_its_temporary_file() {
        let dir = Dir::new("long");
        let out = dir.0.join("x".repeat(255));
        write_all(Output::create(&out).unwrap(), b"long");
        assert_eq!(std::fs::read(&out).unwrap(), b"long");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 1);
    }

    /// A symbolic link to no file yet stays a link: the file it names is made.
    #[test]
    fn a_dangling_symbolic_link_is_written_through() {
        let dir = Dir::new("dangling");
        let (target, link) = (dir.0.join("v4.bin"), dir.0.join("latest.bin"));
        std::os::unix::fs::symlink("v4.bin", &link).unwrap();
        write_all(Output::create(&link).unwrap(), b"new");
        assert!(link.is_symlink(), "the link is still a link");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }

    /// A symbolic link to a file stays a link: the file it names is replaced.
    #[test]
    fn a_symbolic_link_is_written_through() {
        let dir = Dir::new("link");
        let (target, link) = (dir.0.join("v3.bin"), dir.0.join("latest.bin"));
        std::fs::write(&target, b"old").unwrap();
        std::os::unix::fs::symlink("v3.bin", &link).unwrap();
        write_all(Output::create(&link).unwrap(), b"new");
        assert!(link.is_symlink(), "the link is still a link");
        assert_eq!(std::fs::read(&target).unwrap(), b"new");
    }
}
