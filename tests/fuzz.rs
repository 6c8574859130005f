//! The user ABI of /dev/zcard0 under sustained fuzzing: `zcard-fuzz`
//! (tests/bin/zcard_fuzz/) from several processes at once, with fork and
//! kill -9, every errno checked against docs/uapi.md, an oracle pool checked
//! byte for byte after every round and the driver's counters back at
//! baseline at the end. `ZCOPY_FUZZ_CALLS` sizes it (100 000 calls by
//! default), `ZCOPY_FUZZ_SEED` replays a run. Its whole output goes to
//! target/zcard-fuzz.log (written directly, it would break up libtest's
//! `test NAME ... ok` line, which the guest suite reads).

use std::process::Command;

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn user_abi_survives_sustained_fuzzing() {
    let out = Command::new(env!("CARGO_BIN_EXE_zcard-fuzz"))
        .output()
        .expect("running zcard-fuzz");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let log = zcopy_vm_tests::repo_root().join("target/zcard-fuzz.log");
    std::fs::write(&log, &text).expect("writing target/zcard-fuzz.log");
    // The seed, the summary and every violation, shown with a failure.
    for line in text.lines().filter(|l| !l.starts_with("  ")) {
        println!("{line}");
    }
    assert!(
        out.status.success(),
        "zcard-fuzz found violations ({}); the lines above name the seed, \
         {} has the whole output",
        out.status,
        log.display()
    );
}
