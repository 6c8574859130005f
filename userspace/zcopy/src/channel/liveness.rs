//! Is a peer process still there? Pid plus start time in the segment (so a
//! reused pid is not mistaken for the peer), and a pidfd to watch it.

use std::fs;
#[cfg(test)]
use std::os::fd::AsRawFd;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

/// This process's id and start time, as recorded in a segment.
pub(crate) fn me() -> (u32, u64) {
    let pid = std::process::id();
    (pid, start_time(pid).unwrap_or(0))
}

/// A process's start time (clock ticks after boot, `/proc/<pid>/stat`
/// field 22), or None when there is no such live process (gone, or a
/// zombie: exited and not yet reaped).
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or
    // parentheses itself: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); field 22 is 19 further on.
    fields.nth(18)?.parse().ok()
}

/// True when `pid` is the same live process that recorded `start`.
pub(crate) fn alive(pid: u32, start: u64) -> bool {
    start_time(pid).is_some_and(|s| s == start)
}

#[cfg(test)]
thread_local! {
    /// How many times this thread asked whether a peer is gone (each a
    /// system call), for the tests of when a channel end asks.
    pub(crate) static ASKED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A peer watched through a pidfd: exit is seen without racing pid reuse.
#[derive(Debug)]
pub(crate) struct Watch {
    pub(crate) pid: u32,
    pub(crate) start: u64,
    fd: Option<OwnedFd>,
}

impl Watch {
    /// Starts watching `pid`, which recorded `start`. If it is already gone
    /// (or the pid now names another process) the watch reports it gone.
    pub(crate) fn new(pid: u32, start: u64) -> Watch {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1;
        // no memory is passed.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        let fd = (raw >= 0).then(|| {
            // SAFETY: the kernel just returned this descriptor to us; nothing
            // else owns it.
            unsafe { OwnedFd::from_raw_fd(raw as i32) }
        });
        // Checked after the pidfd exists: if the pid was reused before the
        // pidfd was opened, the start time no longer matches.
        let fd = fd.filter(|_| alive(pid, start));
        Watch { pid, start, fd }
    }

    /// True once the process has exited (or was never there).
    pub(crate) fn gone(&self) -> bool {
        #[cfg(test)]
        ASKED.with(|n| n.set(n.get() + 1));
        let Some(fd) = &self.fd else {
            return true;
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(0) => false,
            Ok(_) => true,
            // EINTR and the like: ask /proc instead.
            Err(_) => !alive(self.pid, self.start),
        }
    }

    /// The raw pidfd, for tests.
    #[cfg(test)]
    pub(crate) fn raw(&self) -> Option<i32> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_not() {
        let (pid, start) = me();
        assert!(start > 0);
        assert!(alive(pid, start));
        assert!(
            !alive(pid, start + 1),
            "another start time is another process"
        );
        assert!(!Watch::new(pid, start).gone());

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let cpid = child.id();
        let cstart = start_time(cpid).unwrap();
        let w = Watch::new(cpid, cstart);
        assert!(w.raw().is_some());
        assert!(!w.gone());
        child.kill().unwrap();
        // Not reaped yet: a zombie counts as gone for both checks.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !w.gone() {
            assert!(
                std::time::Instant::now() < deadline,
                "pidfd never became readable"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!alive(cpid, cstart));
        child.wait().unwrap();
        assert!(Watch::new(cpid, cstart).gone());
        assert!(start_time(0).is_none());
    }
}
