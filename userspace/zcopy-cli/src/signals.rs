//! Temporary files that a signal ending the process does not leave behind.

use std::fs::File;
use std::path::Path;

use nix::sys::signal::{
    pthread_sigmask, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};

/// The signals that end a process a user stops: Ctrl-C, kill, a closed
/// terminal.
const ENDING: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The file a signal that ends the process removes.
static DOOMED: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// Creates the file at `path` through `create`, and has SIGINT, SIGTERM
/// and SIGHUP (those not ignored) remove it before they end the process
/// as they would have:
/// no Drop runs for a signal's exit, and the commands that make a
/// temporary file (a receive, which waits for its sender as long as it
/// takes by default; the pipeline, which runs for minutes) are often ended
/// by one. The three are held back (in this thread: the caller has no
/// other yet) from before the file is created until the handler is in
/// place, so that none comes between, and none removes a file that was
/// there before (`create` failed). One file per process: the first one
/// created is the one removed.
pub fn create_removed_on_signal(
    path: &Path,
    create: impl FnOnce() -> std::io::Result<File>,
) -> std::io::Result<File> {
    let held: SigSet = ENDING.into_iter().collect();
    let mut before = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&held), Some(&mut before)).is_ok();
    let made = create();
    if made.is_ok() {
        remove_on_signal(path);
    }
    if blocked {
        // A signal that came meanwhile is delivered now, to the handler.
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&before), None);
    }
    made
}

fn remove_on_signal(tmp: &Path) {
    use std::os::unix::ffi::OsStrExt;
    extern "C" fn remove_and_die(sig: libc::c_int) {
        if let Some(path) = DOOMED.get() {
            // SAFETY: unlink and raise are async-signal-safe; the
            // path is a NUL-terminated string set before the handler was
            // installed and never changed or freed after.
            unsafe {
                libc::unlink(path.as_ptr());
            }
        }
        // SAFETY: as above. SA_RESETHAND put the default action back on
        // entry, so the signal, delivered again once this returns, ends
        // the process as if no handler had been there.
        unsafe {
            libc::raise(sig);
        }
    }
    let Ok(path) = std::ffi::CString::new(tmp.as_os_str().as_bytes()) else {
        return;
    };
    if DOOMED.set(path).is_err() {
        return;
    }
    let action = SigAction::new(
        SigHandler::Handler(remove_and_die),
        SaFlags::SA_RESETHAND,
        SigSet::empty(),
    );
    for sig in ENDING {
        // SAFETY: the handler only makes async-signal-safe calls on memory
        // that outlives it (a static set once, above).
        let Ok(was) = (unsafe { sigaction(sig, &action) }) else {
            continue;
        };
        if was.handler() == SigHandler::SigIgn {
            // Ignored by whoever started this (nohup, a shell's background
            // job): it ends nothing, so it stays ignored.
            // SAFETY: puts back the action sigaction just returned.
            let _ = unsafe { sigaction(sig, &was) };
        }
    }
}
