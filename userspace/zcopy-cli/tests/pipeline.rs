//! `zcopy pipeline` run as a user would: the four classic ways on any
//! machine, all six (card and RDMA) in the guest, and its errors.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

const ZCOPY: &str = env!("CARGO_BIN_EXE_zcopy");

fn zcopy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ZCOPY).args(args).output().expect("zcopy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn out_dir(tag: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("zcopy-pipeline-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

/// Checks one way's row: timed, its copies by construction. (The data
/// check is the exit code: a run the far end disagrees with fails the command.)
fn check_row(w: &Value, size: u64) {
    let name = w["name"].as_str().unwrap();
    let secs = w["seconds"].as_f64().unwrap();
    assert!(secs > 0.0, "{name}: {secs}");
    let mbs = w["mb_per_s"].as_f64().unwrap();
    assert!(
        (mbs - size as f64 / secs / 1e6).abs() < 1e-6 * mbs.max(1.0),
        "{name}"
    );
    assert!(w["cpu_seconds"].as_f64().unwrap() >= 0.0, "{name}");
    assert!(w["voluntary_switches"].as_i64().unwrap() >= 0, "{name}");
    let copies = w["cpu_copies"].as_u64().unwrap();
    let app = w["application_copies"].as_u64().unwrap();
    let kernel = w["kernel_copies"].as_u64().unwrap();
    assert_eq!(copies, app + kernel, "{name}");
    // Every way here leaves the copying to the kernel, if any.
    assert_eq!(app, 0, "{name}");
    match w["way"].as_str().unwrap() {
        "read-write" => assert_eq!(kernel, 2),
        "mmap-write" => assert_eq!(kernel, 1),
        // Soft-RoCE is a software NIC: its kernel driver copies the slot.
        "card-rdma" => {
            assert_eq!(kernel, 1);
            assert!(w["how"].as_str().unwrap().contains("Soft-RoCE"), "{w}");
        }
        // MSG_ZEROCOPY to a local peer: the kernel copies, and says so.
        "card-tcp" if kernel == 1 => {
            assert!(w["checked"].as_str().unwrap().contains("copied"), "{w}")
        }
        _ => assert_eq!(kernel, 0, "{name}"),
    }
    assert!(!w["how"].as_str().unwrap().is_empty(), "{name}");
}

#[test]
fn classic_ways_serve_the_data_intact_and_write_json_and_svg() {
    let dir = out_dir("classic");
    let (code, out, err) = zcopy(&[
        "pipeline",
        "--size",
        "4M",
        "--runs",
        "2",
        "--ways",
        "read-write,mmap-write,sendfile,splice",
        "--json",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bytes"], 4 << 20);
    assert_eq!(v["runs"], 2);
    let ways: Vec<&str> = v["ways"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["way"].as_str().unwrap())
        .collect();
    assert_eq!(ways, ["read-write", "mmap-write", "sendfile", "splice"]);
    for w in v["ways"].as_array().unwrap() {
        check_row(w, 4 << 20);
        assert_eq!(w["runs"].as_array().unwrap().len(), 2);
    }
    assert_eq!(v["ways"][0]["vs_read_write"], 1.0);
    if v["ways"][0]["cpu_seconds"].as_f64().unwrap() > 0.0 {
        assert_eq!(v["ways"][0]["cpu_vs_read_write"], 1.0);
        assert!(v["ways"][2]["cpu_vs_read_write"].as_f64().unwrap() >= 0.0);
    }
    assert!(v["best_zero_copy_ratio"].is_null());
    assert!(v["reference_claim"]
        .as_str()
        .unwrap()
        .contains("two thirds"));
    assert!(v["reference_source"].as_str().unwrap().contains("sendfile"));
    let json: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pipeline.json")).unwrap()).unwrap();
    assert_eq!(json["crc32c"], v["crc32c"]);
    let svg = std::fs::read_to_string(dir.join("pipeline.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("read+write") && svg.contains("splice"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_table_names_every_way_and_the_claim() {
    let (code, out, err) = zcopy(&[
        "pipeline",
        "--size",
        "1M",
        "--runs",
        "1",
        "--ways",
        "read-write,sendfile",
    ]);
    assert_eq!(code, 0, "{err}");
    for w in [
        "read+write",
        "sendfile",
        "copies",
        "(app+kernel)",
        "0+2",
        "The reference claim (a common account of Linux zero-copy: mmap, sendfile, splice, DMA)",
        "crc32c",
        "Measured",
    ] {
        assert!(out.contains(w), "{w:?} missing:\n{out}");
    }
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["pipeline", "--size", "1000"][..],
        &["pipeline", "--size", "0"],
        &["pipeline", "--chunk", "100"],
        &["pipeline", "--ways", "carrier-pigeon"],
        &["pipeline", "--runs", "0"],
        &["pipeline", "--buffers", "1"],
        &["pipeline", "--size", "x"],
    ] {
        let (code, _, err) = zcopy(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn a_file_that_cannot_be_written_is_a_clear_failure() {
    let (code, _, err) = zcopy(&[
        "pipeline",
        "--size",
        "1M",
        "--ways",
        "read-write",
        "--file",
        "/nonexistent-dir/data",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent-dir/data"), "{err}");
}

/// Without a card, asking for a card way is the platform's (exit 3, the
/// hint); by default those ways are skipped with the reason.
#[test]
fn card_ways_without_a_card() {
    if Path::new("/dev/zcard0").exists() {
        eprintln!("skipped: this machine has /dev/zcard0");
        return;
    }
    let (code, _, err) = zcopy(&["pipeline", "--size", "1M", "--ways", "card-tcp"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no zcard: load zcard.ko"), "{err}");
    let (code, out, err) = zcopy(&["pipeline", "--size", "1M", "--runs", "1", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ways"].as_array().unwrap().len(), 4);
    let skipped: Vec<&str> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["way"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["card-rdma", "card-tcp"]);
    assert!(v["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("zcard"));
}

/// All six ways in the guest: the card's reads cover the file, every way's
/// data checked at the far end, the zero-copy ways compared to read+write.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn six_ways_in_the_guest() {
    let (code, out, err) = zcopy(&[
        "pipeline", "--size", "4M", "--chunk", "64K", "--runs", "1", "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["skipped"].as_array().unwrap().len(), 0, "{out}");
    let ways = v["ways"].as_array().unwrap();
    assert_eq!(ways.len(), 6);
    for w in ways {
        check_row(w, 4 << 20);
    }
    for w in &ways[4..] {
        let checked = w["checked"].as_str().unwrap();
        assert!(
            checked.contains(&format!("put {} of {} bytes", 4 << 20, 4 << 20)),
            "{checked}"
        );
        // 64 KiB chunks: 64 card requests, as the driver counted them.
        assert!(checked.contains("driver counter: 64 requests"), "{checked}");
    }
    assert!(ways[5]["checked"]
        .as_str()
        .unwrap()
        .contains("MSG_ZEROCOPY"));
    assert!(v["best_zero_copy_ratio"].as_f64().unwrap() > 0.0);
    assert!(v["best_zero_copy_cpu_ratio"].as_f64().unwrap() > 0.0);
    assert!(v["goal_met"].is_boolean());
}

/// A way asked for whose RDMA address has no device: exit 3 naming rxe-setup.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn card_rdma_to_an_address_without_rdma_exits_3() {
    let (code, _, err) = zcopy(&[
        "pipeline",
        "--size",
        "1M",
        "--ways",
        "card-rdma",
        "--rdma-to",
        "127.0.0.1",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("scripts/rxe-setup.sh"), "{err}");
}
