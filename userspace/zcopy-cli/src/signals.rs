//! Temporary files that a signal ending the process does not leave behind.

use std::path::Path;

/// The file a signal that ends the process removes.
static DOOMED: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();

/// Makes SIGINT, SIGTERM and SIGHUP remove `tmp` before they end the
/// process as they would have: no Drop runs for a signal's exit, and the
/// commands that make a temporary file (a receive, which waits for its
/// sender as long as it takes by default; the pipeline, which runs for
/// minutes) are often ended by one. One file per process: the first one
/// named is the one removed.
pub fn remove_on_signal(tmp: &Path) {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
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
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only makes async-signal-safe calls on memory
        // that outlives it (a static set once, above).
        let _ = unsafe { sigaction(sig, &action) };
    }
}
