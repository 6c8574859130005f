//! Every example runs end to end (cargo test builds them beside the tests).

use std::process::Command;

fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name)
}

#[test]
fn two_process_example_sends_and_receives_in_place() {
    let out = Command::new(example("two_process"))
        .output()
        .expect("examples/two_process built by cargo test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The receiver (a second process) printed what it summed: 0.5 × (0 + … + 999).
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "received 1000 readings, sum 249750"
    );
}
