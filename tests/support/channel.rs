//! The channel conformance suite: written once, generic over the transport,
//! and run for every transport (tests/channel_shm.rs on the host and in the
//! guest, tests/channel_card.rs in the guest), plus the message pattern the
//! multi-process tests and the `channel-peer` binary share.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zcopy::card::Card;
use zcopy::channel::{
    Builder, CardSlots, Error, Receiver, Rx, Sender, Shm, Transport, Tx, TxLoan, Wait,
};
use zcopy::rdma::BuilderExt;

/// A transport the conformance suite runs against: how to make a channel
/// whose two ends meet over a Unix socket (the ends may be in two
/// processes). Shared memory passes the segment's descriptors over it;
/// RDMA passes the listener's address, then connects over rdma_cm.
pub trait Harness: 'static {
    /// Its name on the peer binary's command line.
    const NAME: &'static str;
    /// What both ends need (the card for the card transport).
    type Ctx: Sync;
    /// The sending end.
    type Tx: Tx;
    /// The receiving end.
    type Rx: Rx + Send;
    /// A fresh context.
    fn context() -> Self::Ctx;
    /// A channel of `count` slots of `size` bytes whose receiver is reached
    /// through `sock` (bad sizes fail before `sock` is touched).
    fn offer(
        ctx: &Self::Ctx,
        size: usize,
        count: u32,
        sock: &UnixStream,
    ) -> Result<Self::Tx, Error>;
    /// The receiving end of the channel offered at the other end of `sock`.
    fn accept(ctx: &Self::Ctx, sock: &UnixStream) -> Result<Self::Rx, Error>;
    /// Hands the channel to a further receiver, where the transport lets
    /// one follow a dead one with what was queued (shared memory); `None`
    /// where it cannot (RDMA: the queued messages died with the
    /// receiver's memory; a new connection follows instead).
    fn reshare(tx: &Self::Tx, sock: &UnixStream) -> Option<Result<(), Error>>;
}

impl Harness for Shm {
    const NAME: &'static str = "shm";
    type Ctx = ();
    type Tx = Sender<Shm>;
    type Rx = Receiver<Shm>;
    fn context() {}
    fn offer(ctx: &(), size: usize, count: u32, sock: &UnixStream) -> Result<Sender<Shm>, Error> {
        offer_shared::<Shm>(ctx, size, count, sock)
    }
    fn accept(_: &(), sock: &UnixStream) -> Result<Receiver<Shm>, Error> {
        Receiver::from_socket(sock)
    }
    fn reshare(tx: &Sender<Shm>, sock: &UnixStream) -> Option<Result<(), Error>> {
        Some(tx.share(sock))
    }
}

impl Harness for CardSlots {
    const NAME: &'static str = "card";
    type Ctx = Card;
    type Tx = Sender<CardSlots>;
    type Rx = Receiver<CardSlots>;
    fn context() -> Card {
        Card::open_index(0).expect("/dev/zcard0 (the guest loads zcard.ko with the card attached)")
    }
    fn offer(
        ctx: &Card,
        size: usize,
        count: u32,
        sock: &UnixStream,
    ) -> Result<Sender<CardSlots>, Error> {
        offer_shared::<CardSlots>(ctx, size, count, sock)
    }
    fn accept(ctx: &Card, sock: &UnixStream) -> Result<Receiver<CardSlots>, Error> {
        Receiver::from_socket_on_card(ctx, sock)
    }
    fn reshare(tx: &Sender<CardSlots>, sock: &UnixStream) -> Option<Result<(), Error>> {
        Some(tx.share(sock))
    }
}

fn offer_shared<T: Transport>(
    ctx: &T::Context,
    size: usize,
    count: u32,
    sock: &UnixStream,
) -> Result<Sender<T>, Error> {
    let tx = Builder::new()
        .slot_size(size)
        .slot_count(count)
        .create_with::<T>(ctx)?;
    tx.share(sock)?;
    Ok(tx)
}

/// The RDMA transport between the guest's two Soft-RoCE devices: the
/// receiver listens on zrxe0's address (any port, sent over the socket),
/// the sender connects from zrxe1's.
#[derive(Debug)]
pub struct Rdma;

impl Harness for Rdma {
    const NAME: &'static str = "rdma";
    type Ctx = ();
    type Tx = zcopy::rdma::Sender;
    type Rx = zcopy::rdma::Receiver;
    fn context() {}
    fn offer(
        _: &(),
        size: usize,
        count: u32,
        sock: &UnixStream,
    ) -> Result<zcopy::rdma::Sender, Error> {
        zcopy::rdma::check_geometry(size, count)?;
        let mut port = [0u8; 2];
        (&*sock).read_exact(&mut port).map_err(|source| Error::Io {
            op: "reading the listener's port",
            source,
        })?;
        let (a, b) = rdma_addrs();
        Builder::new()
            .slot_size(size)
            .slot_count(count)
            .connect_rdma(Some(b.into()), (a, u16::from_le_bytes(port)).into())
    }
    fn accept(_: &(), sock: &UnixStream) -> Result<zcopy::rdma::Receiver, Error> {
        let l = zcopy::rdma::Listener::bind((rdma_addrs().0, 0).into())?;
        let port = l.local_addr().expect("a bound listener").port();
        (&*sock)
            .write_all(&port.to_le_bytes())
            .map_err(|source| Error::Io {
                op: "sending the listener's port",
                source,
            })?;
        l.accept(Some(Duration::from_secs(60)))
    }
    fn reshare(_: &zcopy::rdma::Sender, _: &UnixStream) -> Option<Result<(), Error>> {
        None
    }
}

/// True inside the test guest (TCG is slow: the suite scales down there).
pub fn in_guest() -> bool {
    std::env::var_os("ZCOPY_RUN").is_some()
}

/// `host` on the host, `guest` in the guest.
pub fn scaled(host: u64, guest: u64) -> u64 {
    if in_guest() {
        guest
    } else {
        host
    }
}

/// Length of message `seq` in slots of `slot_size` bytes (at least 8).
pub fn message_len(seq: u64, slot_size: usize) -> usize {
    8 + (seq.wrapping_mul(7919) as usize) % (slot_size - 8 + 1)
}

/// Writes message `seq` into `buf` (its first `message_len` bytes) and
/// returns its length: the sequence number, then bytes derived from it.
pub fn fill_message(buf: &mut [u8], seq: u64) -> usize {
    let len = message_len(seq, buf.len());
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[8..len].iter_mut().enumerate() {
        *b = (seq as usize).wrapping_add(i) as u8;
    }
    len
}

/// Checks a received message and returns its sequence number.
pub fn check_message(bytes: &[u8], slot_size: usize) -> Result<u64, String> {
    if bytes.len() < 8 {
        return Err(format!("message of {} bytes", bytes.len()));
    }
    let seq = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    if bytes.len() != message_len(seq, slot_size) {
        return Err(format!(
            "message {seq}: {} bytes, expected {}",
            bytes.len(),
            message_len(seq, slot_size)
        ));
    }
    for (i, &b) in bytes[8..].iter().enumerate() {
        if b != (seq as usize).wrapping_add(i) as u8 {
            return Err(format!("message {seq}: byte {} is {b}", i + 8));
        }
    }
    Ok(seq)
}

/// Sends message `seq` through a loaned slot (written in place).
pub fn send_message<S: Tx>(tx: &S, seq: u64) -> Result<(), Error> {
    let mut loan = tx.loan()?;
    let len = fill_message(loan.as_mut_slice(), seq);
    loan.send(len)
}

/// Starts `exe` with `sock` as its descriptor 3, stdout piped (read it
/// with [`read_line`]).
pub fn spawn_with_fd3(exe: &str, args: &[&str], sock: &UnixStream) -> Child {
    spawn_with_fd3_to(exe, args, sock, Stdio::piped())
}

/// As [`spawn_with_fd3`], stdout going to `stdout`.
pub fn spawn_with_fd3_to(exe: &str, args: &[&str], sock: &UnixStream, stdout: Stdio) -> Child {
    let fd = sock.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.args(args).stdin(Stdio::null()).stdout(stdout);
    let hook = move || {
        // SAFETY: dup2 of a descriptor this process holds open onto 3; no
        // Rust object owns descriptor 3 in the child.
        if unsafe { libc::dup2(fd, 3) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    };
    // SAFETY: the hook runs only dup2, which is async-signal-safe, between
    // fork and exec.
    unsafe { cmd.pre_exec(hook) };
    cmd.spawn().unwrap_or_else(|e| panic!("{exe}: {e}"))
}

/// Reads one line the child printed (bounded wait).
pub fn read_line(child: &mut Child) -> String {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("a line from the peer within 120 s")
        .trim()
        .to_string()
}

/// Waits for the child, at most `limit`; its exit status code.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().expect("waitpid") {
            return st.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("peer pid {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A channel of `count` slots of `size` bytes, both ends in this process
/// (meeting over a socket pair as two processes would).
pub fn pair<H: Harness>(ctx: &H::Ctx, size: usize, count: u32) -> (H::Tx, H::Rx) {
    let (a, b) = UnixStream::pair().unwrap();
    std::thread::scope(|s| {
        let rx = s.spawn(|| H::accept(ctx, &b).expect("accept"));
        let tx = H::offer(ctx, size, count, &a).expect("offer");
        (tx, rx.join().expect("the accepting thread"))
    })
}

/// Waits as a blocking call must: `Forever`, but a test never hangs.
pub const SOON: Wait = Wait::Timeout(Duration::from_secs(30));

/// The two addresses of the guest's Soft-RoCE pair (zrxe0, zrxe1).
pub fn rdma_addrs() -> (std::net::Ipv4Addr, std::net::Ipv4Addr) {
    (
        std::net::Ipv4Addr::new(169, 254, 77, 1),
        std::net::Ipv4Addr::new(169, 254, 77, 2),
    )
}

/// How many RDMA resources of `kind` (`qp`, `cq`, `mr`, `pd`, `cm_id`)
/// exist, from `rdma resource show` (the kernel's own count).
pub fn rdma_resources(kind: &str) -> usize {
    let out = Command::new("rdma")
        .args(["-j", "resource", "show", kind])
        .output()
        .expect("rdma (iproute2)");
    assert!(out.status.success(), "rdma resource show {kind}: {out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("rdma -j output");
    v.as_array().map_or(0, Vec::len)
}
