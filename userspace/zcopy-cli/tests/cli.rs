//! zcopy channel list and clean, run as a user would.

use std::process::Command;

use zcopy::channel::Builder;

fn zcopy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_zcopy"))
        .args(args)
        .output()
        .expect("zcopy");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn channel_list_and_clean() {
    let live = format!("cli-live-{}", std::process::id());
    let stale = format!("cli-stale-{}", std::process::id());
    let _tx = Builder::new()
        .slot_size(128)
        .slot_count(2)
        .create_named(&live)
        .unwrap();
    // A stale one: a copy of the live segment whose sender start time names
    // no live process (as a crashed sender leaves it).
    let mut bytes = std::fs::read(format!("/dev/shm/zcopy.{live}")).unwrap();
    bytes[96..104].copy_from_slice(&1u64.to_le_bytes());
    std::fs::write(format!("/dev/shm/zcopy.{stale}"), bytes).unwrap();

    let (code, out, _) = zcopy(&["channel", "list", "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let find = |n: &str| {
        v.as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .cloned()
    };
    let l = find(&live).expect("live channel listed");
    assert_eq!(l["state"], "live");
    assert_eq!(l["slot_size"], 128);
    assert_eq!(l["sender_pid"], std::process::id());
    assert_eq!(
        find(&stale).expect("stale channel listed")["state"],
        "stale"
    );
    let (code, out, _) = zcopy(&["channel", "list"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&stale) && l.contains("stale")),
        "{out}"
    );

    // Naming a live channel refuses, exit 1, and keeps it.
    let (code, _, err) = zcopy(&["channel", "clean", &live]);
    assert_eq!(code, 1);
    assert!(err.contains("exists"), "{err}");
    let (code, out, _) = zcopy(&["channel", "clean"]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("removed {stale}")), "{out}");
    assert!(!out.contains(&live));
    assert!(std::path::Path::new(&format!("/dev/shm/zcopy.{live}")).exists());
    assert!(!std::path::Path::new(&format!("/dev/shm/zcopy.{stale}")).exists());
    let (code, _, err) = zcopy(&["channel", "frobnicate"]);
    assert_eq!(code, 2, "{err}");
}
