//! The back-end request channel (`VHOST_USER_SET_BACKEND_REQ_FD`), used to
//! send `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG` when the card sets
//! NEEDS_RESET (docs/zcard-spec.md, "Reset").
//!
//! vhost 0.18 hands the channel over as a `Backend`, which forwards the
//! shared-object and shmem requests only: its `handle_config_change` is the
//! trait's default, `ENOSYS`, so no config change ever left the back end.
//! `Backend` does not give its descriptor out either, so the channel is
//! found in the process when the front end hands it over: the front end
//! makes it with `socketpair()`, so it is the one unix stream socket, past
//! the standard streams, whose two ends have no address (the vhost-user and
//! control connections are accepted on named sockets). When that is not one socket, nothing is sent
//! and the driver learns of NEEDS_RESET from a request's status, as before.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG`.
const CONFIG_CHANGE_MSG: u32 = 2;
/// Header flags: protocol version 1, no reply asked for.
const VERSION_1: u32 = 0x1;

/// A duplicate of the back-end request channel's descriptor.
#[derive(Debug)]
pub struct BackendChannel(UnixStream);

impl BackendChannel {
    /// Finds the channel the front end just handed over and duplicates it.
    pub fn find() -> Option<BackendChannel> {
        let mut found = None;
        for entry in std::fs::read_dir("/proc/self/fd").ok()? {
            let Ok(fd) = entry.ok()?.file_name().to_string_lossy().parse::<RawFd>() else {
                continue;
            };
            // 0-2 are the standard streams (Rust's runtime opens any that
            // were closed), whatever they are connected to.
            if fd > 2 && is_unnamed_unix_stream(fd) {
                if found.is_some() {
                    return None; // more than one: not this module's to guess
                }
                found = Some(fd);
            }
        }
        // SAFETY: F_DUPFD_CLOEXEC takes a descriptor number and touches no
        // memory; one closed meanwhile fails with EBADF.
        let dup = unsafe { libc::fcntl(found?, libc::F_DUPFD_CLOEXEC, 0) };
        if dup < 0 {
            return None;
        }
        // SAFETY: `dup` is a descriptor fcntl just made, owned by no one else.
        let fd = unsafe { OwnedFd::from_raw_fd(dup) };
        Some(BackendChannel(UnixStream::from(fd)))
    }

    /// Sends `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG` (no payload, no reply).
    pub fn config_changed(&mut self) -> std::io::Result<()> {
        let mut hdr = [0u8; 12];
        hdr[0..4].copy_from_slice(&CONFIG_CHANGE_MSG.to_le_bytes());
        hdr[4..8].copy_from_slice(&VERSION_1.to_le_bytes());
        // Bytes 8..12: payload size 0.
        self.0.write_all(&hdr)
    }
}

/// Whether `fd` is a unix stream socket with no address at either end.
fn is_unnamed_unix_stream(fd: RawFd) -> bool {
    let mut ty: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `ty`, a c_int that
    // lives across the call; a descriptor that is no socket fails.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TYPE,
            (&mut ty as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 || ty != libc::SOCK_STREAM {
        return false;
    }
    let unnamed = |get: unsafe extern "C" fn(
        libc::c_int,
        *mut libc::sockaddr,
        *mut libc::socklen_t,
    ) -> libc::c_int| {
        // SAFETY: all-zero bytes are a valid sockaddr_un.
        let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        // SAFETY: getsockname/getpeername write at most `len` bytes into
        // `addr`, a sockaddr_un that lives across the call.
        let r = unsafe { get(fd, (&mut addr as *mut libc::sockaddr_un).cast(), &mut len) };
        // An unnamed unix socket's address is its family alone.
        r == 0
            && i32::from(addr.sun_family) == libc::AF_UNIX
            && len as usize == std::mem::size_of::<libc::sa_family_t>()
    };
    unnamed(libc::getsockname) && unnamed(libc::getpeername)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::net::UnixListener;

    #[test]
    fn a_socketpair_end_is_unnamed_and_a_named_socket_is_not() {
        use std::os::fd::AsRawFd;
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(is_unnamed_unix_stream(a.as_raw_fd()));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let l = UnixListener::bind(&path).unwrap();
        let c = UnixStream::connect(&path).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(!is_unnamed_unix_stream(c.as_raw_fd()), "peer named");
        assert!(!is_unnamed_unix_stream(s.as_raw_fd()), "local named");
        assert!(!is_unnamed_unix_stream(l.as_raw_fd()), "a listener");
        let f = std::fs::File::open("/proc/self/status").unwrap();
        assert!(!is_unnamed_unix_stream(f.as_raw_fd()), "a file");
    }

    #[test]
    fn the_message_is_a_bare_config_change_header() {
        let (a, mut b) = UnixStream::pair().unwrap();
        let mut ch = BackendChannel(a);
        ch.config_changed().unwrap();
        let mut hdr = [0u8; 12];
        b.read_exact(&mut hdr).unwrap();
        assert_eq!(hdr, [2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]);
    }
}
