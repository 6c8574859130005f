//! The zero-copy ways: the card reads its storage straight into buffers
//! (card pool memory) and a sender hands those same buffers on: to a
//! channel whose slots they are (card slots to a local peer, RDMA slots to
//! a remote one) or to a TCP socket with MSG_ZEROCOPY.
//!
//! Two threads and two lock-free queues, an asynchronous pipeline: the
//! reader takes free buffers, has the card `STORAGE_READ` a chunk into each
//! (many in flight) and hands them on full; the sender sends full buffers
//! in file order and hands them back once the transport is done with them.
//! Neither thread ever copies the payload.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::thread::Thread;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;

use zcopy::card::{Buf, Pool, PoolMap, Rings, Sqe};
use zcopy::channel::{Error as ChannelError, Tx, TxLoan, Wait};

use crate::failure::{Failure, Result};

/// How long a thread with nothing to do sleeps before looking again (it is
/// woken earlier when the other side hands something over).
const NAP: Duration = Duration::from_millis(2);
/// A card request not done in this time is an error.
const CARD_TIMEOUT: Duration = Duration::from_secs(30);

/// What the two threads share.
pub struct Handoff {
    /// Buffers (pool offsets) ready to be filled.
    free: ArrayQueue<u64>,
    /// Filled buffers: (chunk index, pool offset, length).
    full: ArrayQueue<(u64, u64, u32)>,
    /// Set by either side when it fails, so the other stops.
    stop: AtomicBool,
    sender: Thread,
}

impl Handoff {
    /// Room for `buffers` buffers; the calling thread is the sender.
    pub fn new(buffers: usize) -> Handoff {
        Handoff {
            free: ArrayQueue::new(buffers),
            full: ArrayQueue::new(buffers),
            stop: AtomicBool::new(false),
            sender: std::thread::current(),
        }
    }

    fn stopped(&self) -> Result<()> {
        if self.stop.load(Ordering::Acquire) {
            Err(Failure::failed("the other side of the pipeline failed"))
        } else {
            Ok(())
        }
    }

    /// Passes `r` on; an error stops the other side too.
    pub fn fail<T>(&self, r: Result<T>) -> Result<T> {
        if r.is_err() {
            self.stop.store(true, Ordering::Release);
            self.sender.unpark();
        }
        r
    }
}

/// What the card did for one run.
#[derive(Debug, Default, Clone, Copy)]
pub struct CardWork {
    /// STORAGE_READ requests completed.
    pub reads: u64,
    /// Bytes they put into buffers.
    pub bytes: u64,
}

/// The reader: fills free buffers with chunks of storage `[0, size)` in
/// order of the chunk index, many requests in flight. Runs until every
/// chunk is handed on or the sender failed.
pub fn reader(
    rings: &mut Rings,
    pool: &Pool,
    size: u64,
    chunk: u32,
    h: &Handoff,
    reader_thread: &OnceLock<Thread>,
) -> Result<CardWork> {
    let _ = reader_thread.set(std::thread::current());
    let card = |e: zcopy::card::Error| Failure::failed(format!("the card: {e}"));
    let chunks = size.div_ceil(u64::from(chunk));
    let (mut next, mut in_flight, mut done) = (0u64, 0u32, 0u64);
    let mut work = CardWork::default();
    // user_data = chunk index << 32 | buffer index (offset / chunk).
    while done < chunks {
        h.stopped()?;
        while in_flight < rings.sq_entries() && next < chunks {
            let Some(off) = h.free.pop() else { break };
            let len = (size - next * u64::from(chunk)).min(u64::from(chunk)) as u32;
            let sqe = Sqe::storage_read(next * u64::from(chunk), Buf::new(pool, off), len)
                .user_data((next << 32) | (off / u64::from(chunk)));
            rings.push(sqe).map_err(card)?;
            next += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            std::thread::park_timeout(NAP);
            continue;
        }
        rings.submit_and_wait(1, Some(CARD_TIMEOUT)).map_err(card)?;
        while let Some(cqe) = rings.pop() {
            let bytes = cqe.bytes().map_err(card)?;
            let index = cqe.user_data >> 32;
            let off = (cqe.user_data & 0xffff_ffff) * u64::from(chunk);
            in_flight -= 1;
            done += 1;
            work.reads += 1;
            work.bytes += u64::from(bytes);
            // Never full: a buffer is in at most one queue.
            let _ = h.full.push((index, off, bytes));
            h.sender.unpark();
        }
    }
    Ok(work)
}

/// Full buffers put back in file order.
struct InOrder {
    next: u64,
    waiting: BTreeMap<u64, (u64, u32)>,
}

impl InOrder {
    fn new() -> InOrder {
        InOrder {
            next: 0,
            waiting: BTreeMap::new(),
        }
    }

    /// The next buffer in file order, if it is full.
    fn pop(&mut self, h: &Handoff) -> Option<(u64, u32)> {
        while let Some((i, off, len)) = h.full.pop() {
            self.waiting.insert(i, (off, len));
        }
        let b = self.waiting.remove(&self.next)?;
        self.next += 1;
        Some(b)
    }
}

/// The sender for a channel whose slots are the buffers (card slots in a
/// card pool, or the slots an RDMA channel registered in one): a filled
/// slot is sent as it is; the receiver reads it in place (card), or it goes
/// out by RDMA WRITE.
pub fn send_channel<T: Tx>(
    tx: &T,
    size: u64,
    chunk: u32,
    h: &Handoff,
    reader: &OnceLock<Thread>,
) -> Result<()> {
    let chan = |e: ChannelError| Failure::failed(format!("the channel: {e}"));
    let chunks = size.div_ceil(u64::from(chunk));
    let wake = || {
        if let Some(t) = reader.get() {
            t.unpark();
        }
    };
    let mut loans = HashMap::new();
    let (mut handed, mut order) = (0u64, InOrder::new());
    while order.next < chunks {
        h.stopped()?;
        // Every slot the channel can give goes to the reader.
        let mut starved = false;
        while handed < chunks {
            match tx.try_loan() {
                Ok(l) => {
                    let off = l.offset();
                    let _ = h.free.push(off);
                    loans.insert(off, l);
                    handed += 1;
                    wake();
                }
                Err(ChannelError::Full) => {
                    starved = true;
                    break;
                }
                Err(e) => return Err(chan(e)),
            }
        }
        let mut sent = false;
        while let Some((off, len)) = order.pop(h) {
            let l = loans
                .remove(&off)
                .ok_or_else(|| Failure::failed("the card filled a slot that was not loaned"))?;
            l.send(len as usize).map_err(chan)?;
            sent = true;
        }
        if sent {
            continue;
        }
        if starved && loans.is_empty() {
            // Everything is on the wire: wait for a slot to come back.
            match tx.loan_with(Wait::Timeout(NAP)) {
                Ok(l) => {
                    let off = l.offset();
                    let _ = h.free.push(off);
                    loans.insert(off, l);
                    handed += 1;
                    wake();
                }
                Err(ChannelError::Timeout | ChannelError::Full) => {}
                Err(e) => return Err(chan(e)),
            }
        } else {
            std::thread::park_timeout(NAP);
        }
    }
    Ok(())
}

/// What MSG_ZEROCOPY reported for a run.
#[derive(Debug, Default, Clone, Copy)]
pub struct ZeroCopyReport {
    /// Whether the socket took MSG_ZEROCOPY at all.
    pub enabled: bool,
    /// send() calls.
    pub sends: u64,
    /// Of those, how many the kernel completed by copying after all
    /// (SO_EE_CODE_ZEROCOPY_COPIED: e.g. a loopback peer).
    pub copied: u64,
}

/// The sender for TCP: each filled pool buffer is sent with MSG_ZEROCOPY
/// (the socket references the pool pages) and returns to the reader when
/// the kernel says it is done with the pages.
pub fn send_tcp(
    sock: &TcpStream,
    map: &PoolMap,
    size: u64,
    chunk: u32,
    buffers: u32,
    h: &Handoff,
    reader: &OnceLock<Thread>,
) -> Result<ZeroCopyReport> {
    let chunks = size.div_ceil(u64::from(chunk));
    let mut rep = ZeroCopyReport {
        enabled: enable_zerocopy(sock),
        ..Default::default()
    };
    for b in 0..buffers {
        let _ = h.free.push(u64::from(b) * u64::from(chunk));
    }
    let wake = || {
        if let Some(t) = reader.get() {
            t.unpark();
        }
    };
    wake();
    // Each zerocopy send gets the next id (the kernel counts them from 0);
    // a buffer is free again when all of its ids completed.
    let mut next_id: u32 = 0;
    let mut owner: HashMap<u32, u64> = HashMap::new();
    let mut pending: HashMap<u64, u32> = HashMap::new();
    let mut order = InOrder::new();
    while order.next < chunks || !pending.is_empty() {
        h.stopped()?;
        let mut progressed = false;
        while let Some((off, len)) = order.pop(h) {
            let bytes = &map_slice(map, off, len)?;
            let mut at = 0;
            while at < bytes.len() {
                match send(sock, &bytes[at..], rep.enabled) {
                    Ok(n) => {
                        at += n;
                        rep.sends += 1;
                        if rep.enabled {
                            owner.insert(next_id, off);
                            *pending.entry(off).or_default() += 1;
                            next_id = next_id.wrapping_add(1);
                        }
                    }
                    Err(nix::Error::EINTR) => {}
                    // Out of option memory for notifications: reap some.
                    Err(nix::Error::ENOBUFS) => {
                        reap(sock, &mut owner, &mut pending, &mut rep, h, Some(NAP))?;
                    }
                    Err(e) => return Err(Failure::failed(format!("sending to the socket: {e}"))),
                }
            }
            if !rep.enabled {
                let _ = h.free.push(off);
            }
            progressed = true;
        }
        if rep.enabled && !pending.is_empty() {
            let wait = (!progressed).then_some(NAP);
            if reap(sock, &mut owner, &mut pending, &mut rep, h, wait)? > 0 {
                wake();
                progressed = true;
            }
        } else if !rep.enabled && progressed {
            wake();
        }
        if !progressed && pending.is_empty() {
            std::thread::park_timeout(NAP);
        }
    }
    Ok(rep)
}

/// Turns SO_ZEROCOPY on; whether the socket took it.
fn enable_zerocopy(sock: &impl AsRawFd) -> bool {
    let one: libc::c_int = 1;
    // SAFETY: a valid socket and a c_int option value that outlives the call.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ZEROCOPY,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// The `len` bytes at `off` of the pool mapping.
fn map_slice(map: &PoolMap, off: u64, len: u32) -> Result<&[u8]> {
    let end = off
        .checked_add(u64::from(len))
        .filter(|&e| e <= map.len() as u64);
    if end.is_none() {
        return Err(Failure::failed("a buffer outside the pool"));
    }
    let start = map.as_ptr().wrapping_add(off as usize);
    // SAFETY: [off, off + len) lies inside the mapping (checked above),
    // which lives as long as `map`; the card finished writing this buffer
    // (its completion was read) and nothing writes it until it is handed
    // back to the reader after the kernel is done with it.
    Ok(unsafe { std::slice::from_raw_parts(start, len as usize) })
}

fn send(sock: &TcpStream, bytes: &[u8], zerocopy: bool) -> nix::Result<usize> {
    let mut flags = nix::sys::socket::MsgFlags::MSG_NOSIGNAL;
    if zerocopy {
        flags |= nix::sys::socket::MsgFlags::from_bits_retain(libc::MSG_ZEROCOPY);
    }
    nix::sys::socket::send(sock.as_raw_fd(), bytes, flags)
}

/// Reads zerocopy completions from the socket's error queue (waiting up to
/// `wait` for the first); frees the buffers whose sends all completed.
fn reap(
    sock: &TcpStream,
    owner: &mut HashMap<u32, u64>,
    pending: &mut HashMap<u64, u32>,
    rep: &mut ZeroCopyReport,
    h: &Handoff,
    wait: Option<Duration>,
) -> Result<usize> {
    if let Some(d) = wait {
        let mut fds = [nix::poll::PollFd::new(
            sock.as_fd(),
            nix::poll::PollFlags::empty(),
        )];
        let ms = nix::poll::PollTimeout::try_from(d).unwrap_or(nix::poll::PollTimeout::MAX);
        let _ = nix::poll::poll(&mut fds, ms);
    }
    let mut freed = 0;
    while let Some((lo, hi, copied)) = zerocopy_completion(sock)? {
        let mut id = lo;
        loop {
            if let Some(off) = owner.remove(&id) {
                if copied {
                    rep.copied += 1;
                }
                let n = pending.entry(off).or_insert(1);
                *n -= 1;
                if *n == 0 {
                    pending.remove(&off);
                    let _ = h.free.push(off);
                    freed += 1;
                }
            }
            if id == hi {
                break;
            }
            id = id.wrapping_add(1);
        }
    }
    Ok(freed)
}

/// One MSG_ZEROCOPY notification from the error queue: the id range and
/// whether the kernel copied; `None` when the queue is empty.
fn zerocopy_completion(sock: &TcpStream) -> Result<Option<(u32, u32, bool)>> {
    let mut control = [0u8; 128];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = control.len() as _;
    // SAFETY: `msg` points at `control`, which outlives the call; no data
    // buffers are given (the error queue carries only control messages).
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(Failure::failed(format!(
                "reading zerocopy completions: {e}"
            ))),
        };
    }
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR only reads it.
    let cm = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    if cm.is_null() {
        return Ok(None);
    }
    // SAFETY: a control message recvmsg wrote inside `control`.
    let header = unsafe { cm.read_unaligned() };
    let (level, kind) = (header.cmsg_level, header.cmsg_type);
    let ip = (level == libc::SOL_IP && kind == libc::IP_RECVERR)
        || (level == libc::SOL_IPV6 && kind == libc::IPV6_RECVERR);
    if !ip {
        return Ok(None);
    }
    // SAFETY: `cm` is a control message inside `control` (above).
    let data = unsafe { libc::CMSG_DATA(cm) }.cast::<libc::sock_extended_err>();
    // SAFETY: for IP_RECVERR the data is a struct sock_extended_err, which
    // may be unaligned in the buffer: read_unaligned.
    let ee = unsafe { data.read_unaligned() };
    if ee.ee_errno != 0 || ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY {
        return Err(Failure::failed(format!(
            "an error on the socket's error queue: errno {} origin {}",
            ee.ee_errno, ee.ee_origin
        )));
    }
    Ok(Some((
        ee.ee_info,
        ee.ee_data,
        ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED != 0,
    )))
}

/// A MSG_ZEROCOPY notification (linux/errqueue.h).
const SO_EE_ORIGIN_ZEROCOPY: u8 = 5;
/// The kernel copied instead (linux/errqueue.h).
const SO_EE_CODE_ZEROCOPY_COPIED: u8 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    /// MSG_ZEROCOPY is a TCP (and UDP) feature: a Unix socket refuses
    /// SO_ZEROCOPY, so no local way over a Unix socket can use it.
    #[test]
    fn zerocopy_is_for_tcp_and_not_for_unix_sockets() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(!enable_zerocopy(&a));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert!(enable_zerocopy(&c));
    }
}
