//! ci/report.py, the summary of make qemu-test: a skip is a test that ran
//! nowhere, with its reason; a test the host lists as ignored because it
//! runs in the guest, and that did run there, is not a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use zcopy_testkit::repo_root;

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("zcopy-report-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `report.py ARGS`: exit code and stdout.
fn report(args: &[&Path]) -> (i32, String) {
    let out = Command::new("python3")
        .arg(repo_root().join("ci/report.py"))
        .args(args)
        .output()
        .expect("python3 runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
    )
}

#[test]
fn libtest_lines_keep_the_reason_of_an_ignored_test() {
    let dir = Scratch::new("libtest");
    let log = dir.0.join("host-cargo.log");
    std::fs::write(
        &log,
        "     Running tests/driver.rs (target/debug/deps/driver-0574639774130610)\n\
         test a_guest_test ... ignored, runs in the zcopy guest: make qemu-test\n\
         test bare_ignore ... ignored\n\
         test passes ... ok\n",
    )
    .unwrap();
    let (code, out) = report(&[Path::new("libtest"), Path::new("host"), &log]);
    assert_eq!(code, 0);
    let lines: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0][..3], ["host-driver", "a_guest_test", "skip"]);
    assert_eq!(
        lines[0][5],
        "ignored: runs in the zcopy guest: make qemu-test"
    );
    assert_eq!(lines[1][5], "ignored: no reason given");
    assert_eq!(lines[2][..3], ["host-driver", "passes", "pass"]);
    assert_eq!(lines[2].len(), 5);
}

#[test]
fn tests_that_ran_in_the_guest_are_not_skips() {
    let dir = Scratch::new("junit");
    let results = dir.0.join("results.tsv");
    let xml = dir.0.join("junit.xml");
    let guest_reason = "ignored: runs in the zcopy guest: make qemu-test";
    let rows = [
        // Host-ignored, ran in the guest (twice, once under a tag).
        format!("host-driver\tpools\tskip\t0\th.log\t{guest_reason}"),
        "guest-driver\tpools\tpass\t0\tg.log".to_string(),
        "guest-driver-swiotlb\tpools\tpass\t0\tg.log\t".to_string(),
        // Host-ignored, only its tagged run in the guest.
        format!("host-driver\tunbind\tskip\t0\th.log\t{guest_reason}"),
        "guest-driver-swiotlb\tunbind\tfail\t0\tg.log\t".to_string(),
        // Host-ignored, never ran in the guest: a skip.
        format!("host-cli\tbench_rdma_quick_in_the_guest\tskip\t0\th.log\t{guest_reason}"),
        // A shell case that skipped itself, and an old five-column line.
        "guest-sh\tperftest-rxe\tskip\t1.5\tsh.log\tno ib_write_bw".to_string(),
        "host-zcopy\tring\tpass\t0\th.log".to_string(),
    ];
    std::fs::write(&results, rows.join("\n") + "\n").unwrap();
    let (code, out) = report(&[Path::new("junit"), &results, &xml]);
    assert_eq!(code, 1, "a failure: {out}");
    let last = out.lines().last().unwrap();
    assert_eq!(
        last,
        "3 passed, 1 failed, 2 skipped (2 listed as ignored on the host ran in the guest)"
    );
    assert!(out.contains("Skipped (ran nowhere), by reason:"), "{out}");
    assert!(
        out.contains(&format!(
            "  1 x {guest_reason}: host-cli/bench_rdma_quick_in_the_guest"
        )),
        "{out}"
    );
    assert!(
        out.contains("  1 x no ib_write_bw: guest-sh/perftest-rxe"),
        "{out}"
    );
    assert!(out.contains("FAILED guest-driver-swiotlb/unbind"), "{out}");
    let junit = std::fs::read_to_string(&xml).unwrap();
    assert!(
        !junit.contains("name=\"pools\" time=\"0\"><skipped"),
        "{junit}"
    );
    assert_eq!(junit.matches("<skipped").count(), 2, "{junit}");
    assert!(
        junit.contains("<skipped message=\"no ib_write_bw\""),
        "{junit}"
    );
}

#[test]
fn a_clean_run_reports_no_skip() {
    let dir = Scratch::new("clean");
    let results = dir.0.join("results.tsv");
    let xml = dir.0.join("junit.xml");
    std::fs::write(
        &results,
        "host-card\tconfig\tskip\t0\th.log\tignored: runs in the zcopy guest: make qemu-test\n\
         guest-card\tconfig\tpass\t0\tg.log\t\n",
    )
    .unwrap();
    let (code, out) = report(&[Path::new("junit"), &results, &xml]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("Skipped"), "{out}");
    assert_eq!(
        out.lines().last().unwrap(),
        "1 passed, 0 failed, 0 skipped (1 listed as ignored on the host ran in the guest)"
    );
}

#[test]
fn a_case_skipped_in_one_boot_that_ran_in_another_is_not_a_skip() {
    let dir = Scratch::new("elsewhere");
    let results = dir.0.join("results.tsv");
    let xml = dir.0.join("junit.xml");
    std::fs::write(
        &results,
        "guest-sh\tfault-hot-unplug\tskip\t0.1\tsh.log\tno platform port in this boot\n\
         guest-sh-faults\tfault-hot-unplug\tpass\t9.0\tsh.log\t\n\
         guest-sh\tfault-other\tskip\t0.1\tsh.log\tno platform port in this boot\n",
    )
    .unwrap();
    let (code, out) = report(&[Path::new("junit"), &results, &xml]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("  1 x no platform port in this boot: guest-sh/fault-other"),
        "{out}"
    );
    assert_eq!(
        out.lines().last().unwrap(),
        "1 passed, 0 failed, 1 skipped (1 skipped in one boot ran in another)"
    );
    let junit = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(junit.matches("<skipped").count(), 1, "{junit}");
}
