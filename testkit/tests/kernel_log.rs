//! qemu/lib.sh's zc_kernel_log_ok, the check every guest run ends with:
//! a report fails it, the debug kernel's boot banner does not.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use zcopy_testkit::repo_root;

/// Tells apart the logs of tests running at once.
static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs zc_kernel_log_ok on a log holding `lines`: whether it passes.
fn log_ok(lines: &str) -> bool {
    let log = std::env::temp_dir().join(format!(
        "zcopy-kernel-log-{}-{}.log",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&log, lines).unwrap();
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1/qemu/lib.sh" && zc_kernel_log_ok "$2""#)
        .arg("bash")
        .arg(repo_root())
        .arg(&log)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("bash runs");
    let _ = std::fs::remove_file(&log);
    status.success()
}

#[test]
fn the_dma_api_debug_banner_is_no_trouble() {
    assert!(log_ok(
        "[    2.127155] DMA-API: preallocated 65536 debug entries\n\
         [    2.127269] DMA-API: debugging enabled by kernel config\n\
         [    3.000000] virtio_zcard: probe\n"
    ));
}

#[test]
fn reports_fail_the_check() {
    for report in [
        "[    9.1] DMA-API: virtio-pci 0000:00:03.0: device driver failed to check map error",
        "[    9.1] WARNING: possible circular locking dependency detected",
        "[    9.1] BUG: KASAN: slab-use-after-free in zcard_release+0x10/0x20",
        "[    9.1] UBSAN: shift-out-of-bounds in drivers/zcard/zcard_req.c:10:5",
        "[    9.1] BUG: sleeping function called from invalid context at mm/slab.h:1",
    ] {
        let log = format!("[    2.1] DMA-API: preallocated 65536 debug entries\n{report}\n");
        assert!(!log_ok(&log), "{report:?} passed");
    }
}

#[test]
fn a_missing_log_fails_the_check() {
    let status = Command::new("bash")
        .arg("-c")
        .arg(r#". "$1/qemu/lib.sh" && zc_kernel_log_ok /nonexistent/kernel.log"#)
        .arg("bash")
        .arg(repo_root())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success());
}
