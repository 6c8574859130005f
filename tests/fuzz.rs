//! The user ABI of /dev/zcard0 under sustained fuzzing: `zcard-fuzz`
//! (tests/bin/zcard_fuzz/) from several processes at once, with fork and
//! kill -9, every errno checked against docs/uapi.md, an oracle pool checked
//! byte for byte after every round and the driver's counters back at
//! baseline at the end. `ZCOPY_FUZZ_CALLS` sizes it (100 000 calls by
//! default), `ZCOPY_FUZZ_SEED` replays a run.

use std::process::Command;

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn user_abi_survives_sustained_fuzzing() {
    let status = Command::new(env!("CARGO_BIN_EXE_zcard-fuzz"))
        .status()
        .expect("running zcard-fuzz");
    assert!(
        status.success(),
        "zcard-fuzz found violations ({status}); its output above names the seed"
    );
}
