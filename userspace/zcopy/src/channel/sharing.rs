//! Handing a channel to another process: its descriptors over a Unix
//! socket (`SCM_RIGHTS`), behind a short tag that names the transport.
//! The socket is anything that is a descriptor ([`AsFd`]): a
//! `UnixStream`, an `OwnedFd`, or one this process inherited
//! ([`inherited_socket`]).

use std::collections::HashSet;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::segment::Segment;
#[cfg(feature = "card")]
use super::CardSlots;
use super::{Error, Receiver, Result, Sender, Shm, Transport};

/// Message prefix of a shared channel on the socket.
const SHARE_TAG: &[u8; 14] = b"zcopy-channel\x01";

impl<T: Transport> Sender<T> {
    /// Sends the channel (segment and transport descriptors) over a Unix
    /// socket, for [`Receiver::from_socket`] at the other end.
    pub fn share(&self, sock: impl AsFd) -> Result<()> {
        let mut fds: Vec<RawFd> = vec![self.seg.fd().as_raw_fd()];
        fds.extend(self.slots.fds().iter().map(|f| f.as_raw_fd()));
        let mut msg = SHARE_TAG.to_vec();
        msg.extend_from_slice(&(T::KIND as u32).to_le_bytes());
        sendmsg::<()>(
            sock.as_fd().as_raw_fd(),
            &[IoSlice::new(&msg)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| Error::io("sending the channel descriptors")(e.into()))?;
        Ok(())
    }
}

impl Receiver<Shm> {
    /// Receives a shared-memory channel a [`Sender::share`] sent over
    /// `sock`.
    ///
    /// ```
    /// use std::os::unix::net::UnixStream;
    /// use zcopy::channel::{Builder, Receiver};
    ///
    /// let tx = Builder::new().slot_size(64).slot_count(2).create()?;
    /// let (a, b) = UnixStream::pair()?;
    /// tx.share(&a)?;
    /// let rx = Receiver::from_socket(&b)?; // shared memory needs nothing else
    /// tx.send_copy(b"hi")?;
    /// assert_eq!(&*rx.recv()?, b"hi");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// The shared-memory transport takes no context:
    ///
    /// ```compile_fail,E0061
    /// # let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
    /// let rx = zcopy::channel::Receiver::<zcopy::channel::Shm>::from_socket(&(), &b);
    /// ```
    pub fn from_socket(sock: impl AsFd) -> Result<Receiver<Shm>> {
        Receiver::from_socket_with(&(), sock)
    }
}

#[cfg(feature = "card")]
impl Receiver<CardSlots> {
    /// Receives a card-slot channel a [`Sender::share`] sent over `sock`,
    /// importing its pool on `card`.
    pub fn from_socket_on_card(card: &crate::card::Card, sock: impl AsFd) -> Result<Self> {
        Receiver::from_socket_with(card, sock)
    }
}

impl<T: Transport> Receiver<T> {
    /// Receives a channel of transport `T` a [`Sender::share`] sent over
    /// `sock`; `ctx` is what the transport needs (nothing for [`Shm`], the
    /// card for [`CardSlots`]).
    pub fn from_socket_with(ctx: &T::Context, sock: impl AsFd) -> Result<Receiver<T>> {
        let mut buf = [0u8; 32];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                sock.as_fd().as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| Error::io("receiving the channel descriptors")(e.into()))?;
            let mut fds = Vec::new();
            for c in msg
                .cmsgs()
                .map_err(|e| Error::io("reading the control message")(e.into()))?
            {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    // SAFETY: SCM_RIGHTS just installed these descriptors in
                    // this process; nothing else owns them.
                    fds.extend(
                        raw.into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            (msg.bytes, fds)
        };
        let mut fds = fds.into_iter();
        let (Some(seg_fd), true) = (
            fds.next(),
            n == SHARE_TAG.len() + 4 && buf.starts_with(SHARE_TAG),
        ) else {
            return Err(Error::NotAChannel);
        };
        let kind = u32::from_le_bytes(buf[SHARE_TAG.len()..n].try_into().expect("4 bytes"));
        if kind != T::KIND as u32 {
            return Err(Error::Layout(format!(
                "the channel's transport is {kind}, this receiver's is {:?}",
                T::KIND
            )));
        }
        let seg = Segment::open(seg_fd, true, None)?;
        Receiver::attach(ctx, seg, fds.collect())
    }
}

/// Descriptors [`inherited_socket`] has handed out, so none is owned twice.
static TAKEN: Mutex<Option<HashSet<RawFd>>> = Mutex::new(None);

/// Takes ownership of a Unix socket this process inherited as descriptor
/// `fd` (a parent put it there before exec, as on descriptor 3), to pass
/// to [`Receiver::from_socket`] or [`Sender::share`] with no `unsafe` at
/// the call site. Refuses standard input, output and error, a number that
/// is not an open Unix-domain socket, and a descriptor it has handed out
/// before, even one since closed ([`Error::Io`] with `EBADF`, `ENOTSOCK`
/// or `EBUSY`).
///
/// The process must not use the number `fd` in other ways: from here on
/// the returned `OwnedFd` owns it and closes it when dropped.
pub fn inherited_socket(fd: RawFd) -> Result<OwnedFd> {
    const OP: &str = "taking an inherited socket";
    let refuse = |errno| Err(Error::io(OP)(std::io::Error::from_raw_os_error(errno)));
    if fd <= libc::STDERR_FILENO {
        return refuse(libc::EBADF);
    }
    let mut taken = TAKEN.lock().unwrap_or_else(|p| p.into_inner());
    let taken = taken.get_or_insert_with(HashSet::new);
    if taken.contains(&fd) {
        return refuse(libc::EBUSY);
    }
    let mut domain: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `domain`, a live
    // c_int of that size, and touches no descriptor state; on a number
    // that is not an open socket it fails with EBADF or ENOTSOCK.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&raw mut domain).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(Error::io(OP)(std::io::Error::last_os_error()));
    }
    if domain != libc::AF_UNIX {
        return refuse(libc::ENOTSOCK);
    }
    taken.insert(fd);
    // SAFETY: `fd` is an open socket (checked above), not one of the
    // standard streams, and this function hands each number out once
    // (TAKEN); the caller's contract is that nothing else in the process
    // owns it, which is what an inherited descriptor is.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::UnixStream;

    use super::*;
    use crate::channel::Builder;

    fn errno(r: Result<OwnedFd>) -> Option<i32> {
        match r {
            Err(Error::Io { source, .. }) => source.raw_os_error(),
            other => panic!("{other:?}"),
        }
    }

    // One test: a number handed out stays refused in this process even
    // after its descriptor closes, so a second test could trip on a
    // number this one took and the kernel then reused.
    #[test]
    fn an_inherited_unix_socket_is_taken_once_and_anything_else_refused() {
        for std in 0..=2 {
            assert_eq!(errno(inherited_socket(std)), Some(libc::EBADF));
        }
        assert_eq!(errno(inherited_socket(i32::MAX)), Some(libc::EBADF));
        let file = std::fs::File::open("/proc/self/stat").unwrap();
        assert_eq!(
            errno(inherited_socket(file.as_raw_fd())),
            Some(libc::ENOTSOCK)
        );
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            errno(inherited_socket(udp.as_raw_fd())),
            Some(libc::ENOTSOCK)
        );

        let (a, b) = UnixStream::pair().unwrap();
        // As a parent would leave it: a bare number nothing owns.
        let raw = b.into_raw_fd();
        let fd = inherited_socket(raw).unwrap();
        assert_eq!(fd.as_raw_fd(), raw);
        assert_eq!(errno(inherited_socket(raw)), Some(libc::EBUSY));

        let tx = Builder::new().slot_size(64).slot_count(2).create().unwrap();
        tx.share(&a).unwrap();
        let rx = Receiver::from_socket(&fd).unwrap();
        tx.send_copy(b"over fd").unwrap();
        assert_eq!(&*rx.recv().unwrap(), b"over fd");
    }
}
