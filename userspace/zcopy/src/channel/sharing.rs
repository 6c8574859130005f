//! Handing a channel to another process: its descriptors over a Unix
//! socket (`SCM_RIGHTS`), behind a short tag that names the transport.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::segment::Segment;
use super::{Error, Receiver, Result, Sender, Transport};

/// Message prefix of a shared channel on the socket.
const SHARE_TAG: &[u8; 14] = b"zcopy-channel\x01";

impl<T: Transport> Sender<T> {
    /// Sends the channel (segment and transport descriptors) over a Unix
    /// socket, for [`Receiver::from_socket`] at the other end.
    pub fn share(&self, sock: &UnixStream) -> Result<()> {
        let mut fds: Vec<RawFd> = vec![self.seg.fd().as_raw_fd()];
        fds.extend(self.slots.fds().iter().map(|f| f.as_raw_fd()));
        let mut msg = SHARE_TAG.to_vec();
        msg.extend_from_slice(&(T::KIND as u32).to_le_bytes());
        sendmsg::<()>(
            sock.as_raw_fd(),
            &[IoSlice::new(&msg)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .map_err(|e| Error::io("sending the channel descriptors")(e.into()))?;
        Ok(())
    }
}

impl<T: Transport> Receiver<T> {
    /// Receives a channel a [`Sender::share`] sent over `sock`.
    pub fn from_socket(ctx: &T::Context, sock: &UnixStream) -> Result<Receiver<T>> {
        let mut buf = [0u8; 32];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                sock.as_raw_fd(),
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
