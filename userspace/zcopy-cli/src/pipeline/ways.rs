//! The classic ways to serve a file to a peer over a stream socket (TCP, or
//! a Unix socket for a local peer), each the plain system-call loop a
//! server would write; and the shm way, the file read into loaned slots of
//! a shared-memory channel.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};

use memmap2::Mmap;
use nix::fcntl::{splice, SpliceFFlags};
use nix::sys::sendfile::sendfile;

use zcopy::channel::{Sender, Shm};

use crate::failure::{Failure, Result};

fn io(what: &'static str) -> impl Fn(std::io::Error) -> Failure {
    move |e| Failure::failed(format!("{what}: {e}"))
}

fn sys(what: &'static str) -> impl Fn(nix::Error) -> Failure {
    move |e| Failure::failed(format!("{what}: {e}"))
}

/// read() into a buffer, write() it to the socket: two CPU copies.
pub fn read_write(file: &mut File, sock: &mut impl Write, chunk: usize) -> Result<()> {
    let mut buf = vec![0u8; chunk];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io("reading the file")(e)),
        };
        sock.write_all(&buf[..n])
            .map_err(io("writing to the socket"))?;
    }
}

/// mmap() the file, write() the mapping to the socket: one CPU copy.
pub fn mmap_write(file: &File, sock: &mut impl Write, chunk: usize) -> Result<()> {
    // SAFETY: the file is private to this run and nobody truncates it while
    // it is mapped.
    let map = unsafe { Mmap::map(file) }.map_err(io("mapping the file"))?;
    for part in map.chunks(chunk) {
        sock.write_all(part).map_err(io("writing to the socket"))?;
    }
    Ok(())
}

/// sendfile(): the socket takes the page-cache pages by reference.
pub fn send_file(file: &File, sock: impl AsFd, size: u64, chunk: usize) -> Result<()> {
    let mut offset: libc::off_t = 0;
    while (offset as u64) < size {
        let left = (size - offset as u64).min(chunk as u64) as usize;
        match sendfile(sock.as_fd(), file.as_fd(), Some(&mut offset), left) {
            Ok(0) => return Err(Failure::failed("sendfile: the file ended early")),
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(sys("sendfile")(e)),
        }
    }
    Ok(())
}

/// splice() file → pipe → socket: pages move by reference through the pipe.
pub fn splice_file(file: &File, sock: impl AsFd, size: u64, chunk: usize) -> Result<()> {
    let (r, w) = nix::unistd::pipe().map_err(sys("pipe"))?;
    // A pipe as big as a chunk, so each chunk goes in one splice.
    // SAFETY: F_SETPIPE_SZ on a pipe we own; a failure only leaves the
    // default size.
    let _ = unsafe {
        libc::fcntl(
            std::os::fd::AsRawFd::as_raw_fd(&w),
            libc::F_SETPIPE_SZ,
            chunk as libc::c_int,
        )
    };
    let mut off: i64 = 0;
    while (off as u64) < size {
        let want = (size - off as u64).min(chunk as u64) as usize;
        let mut inpipe = match splice(
            file.as_fd(),
            Some(&mut off),
            w.as_fd(),
            None,
            want,
            SpliceFFlags::SPLICE_F_MOVE,
        ) {
            Ok(0) => return Err(Failure::failed("splice: the file ended early")),
            Ok(n) => n,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(sys("splice from the file")(e)),
        };
        while inpipe > 0 {
            match splice(
                r.as_fd(),
                None,
                sock.as_fd(),
                None,
                inpipe,
                SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_MORE,
            ) {
                Ok(n) => inpipe -= n,
                Err(nix::Error::EINTR) => {}
                Err(e) => return Err(sys("splice to the socket")(e)),
            }
        }
    }
    Ok(())
}

/// read() the file straight into loaned slots of a shared-memory channel
/// and send each: one CPU copy (the kernel's, page cache -> slot); the
/// peer reads the slot in place.
pub fn read_into_slots(file: &mut File, tx: &Sender<Shm>, chunk: usize) -> Result<()> {
    let chan = |e: zcopy::channel::Error| Failure::failed(format!("the shm channel: {e}"));
    loop {
        let mut loan = tx.loan().map_err(chan)?;
        let slot = &mut loan.as_mut_slice()[..chunk];
        let mut n = 0;
        while n < slot.len() {
            match file.read(&mut slot[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io("reading the file")(e)),
            }
        }
        if n == 0 {
            // The loan goes back unsent.
            return Ok(());
        }
        loan.send(n).map_err(chan)?;
    }
}

/// Touches every page of every slot once, so the run that follows does not
/// count the channel's first page faults (a server makes its channel once
/// and serves many files through it).
pub fn warm(tx: &Sender<Shm>) -> Result<()> {
    let mut loans = Vec::new();
    loop {
        match tx.try_loan() {
            Ok(mut l) => {
                for b in l.as_mut_slice().iter_mut().step_by(4096) {
                    *b = 0;
                }
                loans.push(l);
            }
            Err(zcopy::channel::Error::Full) => return Ok(()),
            Err(e) => return Err(Failure::failed(format!("the shm channel: {e}"))),
        }
    }
}

/// Gives a Unix socket's sender `bytes` of send buffer, the room the
/// channels have in flight (`--buffers` slots of `--chunk`), so that no
/// local way waits on a smaller queue than another: a Unix stream queues
/// against the sender's buffer, and its default (about 200 KiB) makes a
/// wake-up of each end every few hundred KiB. SO_SNDBUFFORCE passes
/// net.core.wmem_max where the process may (CAP_NET_ADMIN); SO_SNDBUF is
/// capped by it otherwise. Returns the size the kernel reports.
pub fn size_send_buffer(sock: &impl AsRawFd, bytes: u64) -> u64 {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let set = |opt| {
        // SAFETY: a valid socket and a c_int option value that outlives
        // the call.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&raw const want).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    if set(libc::SO_SNDBUFFORCE) != 0 {
        let _ = set(libc::SO_SNDBUF);
    }
    let mut got: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: a valid socket; `got` and `len` outlive the call and `len`
    // says how big `got` is.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&raw mut got).cast(),
            &mut len,
        )
    };
    if r == 0 {
        u64::try_from(got).unwrap_or(0)
    } else {
        0
    }
}
