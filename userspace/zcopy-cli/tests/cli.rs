//! The zcopy command line, run as a user would: `channel list|clean`,
//! `info`, and `send`/`recv` of files between two processes.
//!
//! The card and RDMA transfers need the guest (`/dev/zcard0`, Soft-RoCE):
//! they are ignored here and run there with `--include-ignored`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use zcopy::channel::Builder;

const ZCOPY: &str = env!("CARGO_BIN_EXE_zcopy");

fn zcopy(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(ZCOPY).args(args).output().expect("zcopy");
    result(out)
}

fn result(out: Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts zcopy in the background, stdout and stderr captured.
fn spawn(args: &[&str]) -> Child {
    Command::new(ZCOPY)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zcopy")
}

/// A fresh directory for one test, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("zcopy-cli-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Every file in the directory.
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `len` pseudo-random bytes from `seed` (splitmix64): the same every run.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The `xxh64 XXXXXXXXXXXXXXXX` of a summary line.
fn sum_of(summary: &str) -> &str {
    let at = summary.find("xxh64 ").expect("an xxh64 in the summary") + 6;
    &summary[at..at + 16]
}

/// The checksum `zcopy send` and `zcopy recv` report: XXH64, seed 0.
fn xxh64_hex(data: &[u8]) -> String {
    format!("{:016x}", xxhash_rust::xxh64::xxh64(data, 0))
}

/// A channel name no other test (or run) uses.
fn channel_name(tag: &str) -> String {
    format!("cli-{tag}-{}", std::process::id())
}

/// Sends `data` from one zcopy process to another over `via`; the
/// receiver's output, compared by the caller.
struct Transfer {
    sent: (i32, String, String),
    received: (i32, String, String),
    out: Vec<u8>,
}

fn transfer(
    dir: &TempDir,
    data: &[u8],
    send_args: &[&str],
    recv_args: &[&str],
    receiver_first: bool,
) -> Transfer {
    let input = dir.path("in.bin");
    let output = dir.path("out.bin");
    std::fs::write(&input, data).unwrap();
    let (input, output) = (input.to_str().unwrap(), output.to_str().unwrap());
    let mut send = vec!["send", input];
    send.extend_from_slice(send_args);
    let mut recv = vec!["recv", output];
    recv.extend_from_slice(recv_args);
    let (sent, received) = if receiver_first {
        let r = spawn(&recv);
        std::thread::sleep(Duration::from_millis(100));
        let sent = zcopy(&send);
        (sent, result(r.wait_with_output().unwrap()))
    } else {
        let s = spawn(&send);
        std::thread::sleep(Duration::from_millis(100));
        let received = zcopy(&recv);
        (result(s.wait_with_output().unwrap()), received)
    };
    let out = std::fs::read(output).unwrap_or_default();
    Transfer {
        sent,
        received,
        out,
    }
}

/// Both ends exited 0, the bytes are the same, both summaries name the
/// file's checksum.
fn assert_delivered(t: &Transfer, data: &[u8]) {
    assert_eq!(t.sent.0, 0, "sender: {:?}", t.sent);
    assert_eq!(t.received.0, 0, "receiver: {:?}", t.received);
    assert!(
        t.out == data,
        "the received file differs ({} bytes of {})",
        t.out.len(),
        data.len()
    );
    let sum = xxh64_hex(data);
    assert!(
        t.sent
            .1
            .starts_with(&format!("sent {} bytes in ", data.len())),
        "{}",
        t.sent.1
    );
    assert!(
        t.received
            .1
            .starts_with(&format!("received {} bytes in ", data.len())),
        "{}",
        t.received.1
    );
    assert_eq!(sum_of(&t.sent.1), sum, "{}", t.sent.1);
    assert_eq!(sum_of(&t.received.1), sum, "{}", t.received.1);
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
    assert_eq!(out.lines().count(), 1, "one JSON value per line: {out}");
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
    // A file that is no readable channel (zeroes, as another version's
    // header reads), open in a process: kept, and said so; removed once
    // closed.
    let creating = format!("cli-unreadable-{}", std::process::id());
    let path = format!("/dev/shm/zcopy.{creating}");
    std::fs::write(&path, [0u8; 4096]).unwrap();
    let held = std::fs::File::open(&path).unwrap();
    let (code, out, err) = zcopy(&["channel", "clean"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "kept {creating}: in use by pid {}",
            std::process::id()
        )),
        "{out}"
    );
    assert!(std::path::Path::new(&path).exists());
    drop(held);
    let (code, out, err) = zcopy(&["channel", "clean", &creating]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed {creating}")), "{out}");
    let (code, _, err) = zcopy(&["channel", "frobnicate"]);
    assert_eq!(code, 2, "{err}");
}

/// `info --json`: one object with cards, rdma, channels (and hints), each
/// entry of the documented shape, whatever this machine has.
#[test]
fn info_json_has_the_schema() {
    let name = channel_name("info-json");
    let _tx = Builder::new()
        .slot_size(256)
        .slot_count(4)
        .create_named(&name)
        .unwrap();
    let (code, out, err) = zcopy(&["info", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 1, "one JSON object per line: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("info --json is JSON");
    let obj = v.as_object().expect("an object");
    for key in ["cards", "rdma", "channels"] {
        assert!(obj[key].is_array(), "{key} is a list: {out}");
    }
    for key in ["cards", "rdma", "channels"] {
        let h = &v["hints"][key];
        assert!(h.is_null() || h.is_string(), "hints.{key}: {h}");
    }

    for card in v["cards"].as_array().unwrap() {
        assert!(card["path"].as_str().unwrap().starts_with("/dev/zcard"));
        assert!(card["instance"].is_u64());
        assert!(card["users"].is_array());
        assert!(card["error"].is_null() || card["error"].is_string());
        if let Some(cfg) = card["config"].as_object() {
            for k in [
                "queues",
                "max_segments",
                "storage_bytes",
                "block_size",
                "max_op_bytes",
                "max_pool_bytes",
                "pinned_limit_bytes",
            ] {
                assert!(cfg[k].is_u64(), "config.{k}: {out}");
            }
            assert!(cfg["ops"].is_array());
        }
        if let Some(c) = card["counters"].as_object() {
            for k in [
                "submitted",
                "completed",
                "errors",
                "pools",
                "pinned_bytes",
                "inflight",
            ] {
                assert!(c[k].is_u64(), "counters.{k}: {out}");
            }
        }
    }
    for dev in v["rdma"].as_array().unwrap() {
        assert!(dev["name"].is_string());
        assert!(dev["max_mr_size"].is_u64());
        for port in dev["ports"].as_array().unwrap() {
            assert!(port["port"].is_u64());
            assert!(port["state"].is_string());
            assert!(port["active_mtu"].is_u64());
            assert!(port["ipv4_gid_index"].is_null() || port["ipv4_gid_index"].is_u64());
            assert!(port["ipv4_address"].is_null() || port["ipv4_address"].is_string());
            assert!(port["gids"].is_array());
        }
    }

    // The sections' hints: set exactly when the section is empty.
    if !Path::new("/dev/zcard0").exists() {
        assert_eq!(v["cards"].as_array().unwrap().len(), 0);
        let h = v["hints"]["cards"].as_str().expect("a hint for no card");
        assert!(h.starts_with("no zcard: load zcard.ko"), "{h}");
    }
    if v["rdma"].as_array().unwrap().is_empty() {
        let h = v["hints"]["rdma"]
            .as_str()
            .expect("a hint for no RDMA device");
        assert!(h.contains("scripts/rxe-setup.sh"), "{h}");
    } else {
        assert!(v["hints"]["rdma"].is_null());
    }

    // Our channel is there, as `channel list --json` shows it.
    let ours = v["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} listed: {out}"));
    assert_eq!(ours["state"], "live");
    assert_eq!(ours["slot_size"], 256);
    assert_eq!(ours["slot_count"], 4);
    assert_eq!(ours["sender_pid"], std::process::id());
}

#[test]
fn info_for_people_has_the_three_sections() {
    let name = channel_name("info-human");
    let _tx = Builder::new()
        .slot_size(128)
        .slot_count(2)
        .create_named(&name)
        .unwrap();
    let (code, out, err) = zcopy(&["info"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    let at = |heading: &str| {
        lines
            .iter()
            .position(|l| *l == heading)
            .unwrap_or_else(|| panic!("a {heading:?} heading: {out}"))
    };
    let (cards, rdma, channels) = (at("Cards"), at("RDMA devices"), at("Channels"));
    assert!(cards < rdma && rdma < channels, "{out}");
    if !Path::new("/dev/zcard0").exists() {
        assert!(
            lines[cards + 1].contains("no zcard: load zcard.ko"),
            "{out}"
        );
    }
    assert!(
        lines[channels + 1..]
            .iter()
            .any(|l| l.trim_start().starts_with(&name) && l.contains("live")),
        "{out}"
    );
}

/// 3 MiB of seeded random bytes over a named shm channel, receiver first,
/// then sender first: the same bytes and the same checksum at both ends.
#[test]
fn send_recv_shm_moves_a_file_intact() {
    let dir = TempDir::new("shm-3m");
    let data = random_bytes(0x5eed, 3 << 20);
    let name = channel_name("shm-3m");
    let send = ["--via", "shm", "--name", &name, "--timeout", "30"];
    let recv = ["--via", "shm", "--name", &name, "--timeout", "30"];
    let t = transfer(&dir, &data, &send, &recv, true);
    assert_delivered(&t, &data);
    let t = transfer(&dir, &data, &send, &recv, false);
    assert_delivered(&t, &data);
    assert_eq!(dir.files(), ["in.bin", "out.bin"], "no temporary file left");
    assert!(!Path::new(&format!("/dev/shm/zcopy.{name}")).exists());
}

/// What `/dev/stdout` names: a minimal /dev (the guest's) lacks the link.
const STDOUT: &str = "/proc/self/fd/1";

/// `zcopy recv /dev/stdout` into a pipe: the file's bytes alone on
/// stdout, the summary on stderr.
#[test]
fn recv_to_stdout_keeps_the_summary_off_the_data() {
    let dir = TempDir::new("stdout");
    let data = random_bytes(21, 100_000);
    let name = channel_name("stdout");
    let input = dir.path("in.bin");
    std::fs::write(&input, &data).unwrap();
    let args = ["--via", "shm", "--name", &name, "--timeout", "30"];
    let mut recv = vec!["recv", STDOUT];
    recv.extend_from_slice(&args);
    let r = spawn(&recv);
    std::thread::sleep(Duration::from_millis(100));
    let mut send = vec!["send".to_string(), input.to_str().unwrap().to_string()];
    send.extend(args.iter().map(|a| a.to_string()));
    // The receiver's stdout is read meanwhile: more than a pipe holds.
    let sender = std::thread::spawn(move || {
        let send: Vec<&str> = send.iter().map(String::as_str).collect();
        zcopy(&send)
    });
    let out = r.wait_with_output().unwrap();
    let sent = sender.join().unwrap();
    assert_eq!(sent.0, 0, "sender: {sent:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        out.stdout == data,
        "stdout is the file alone ({} bytes for {})",
        out.stdout.len(),
        data.len()
    );
    assert!(err.contains("received 100000 bytes"), "{err}");
}

/// `zcopy recv /dev/stdout >> log`: the file's bytes appended to what the
/// log held, as the shell opened it, and the summary on stderr.
#[test]
fn recv_to_stdout_on_a_file_appends_as_the_shell_asked() {
    let dir = TempDir::new("stdout-append");
    let data = random_bytes(22, 10_000);
    let name = channel_name("stdout-append");
    let (input, log) = (dir.path("in.bin"), dir.path("log"));
    std::fs::write(&input, &data).unwrap();
    std::fs::write(&log, b"before\n").unwrap();
    let script = format!(
        "exec \"$0\" recv {STDOUT} --via shm --name {name} --timeout 30 >> {}",
        log.display()
    );
    let r = Command::new("sh")
        .args(["-c", &script, ZCOPY])
        .stderr(Stdio::piped())
        .spawn()
        .expect("sh");
    std::thread::sleep(Duration::from_millis(100));
    let args = ["--via", "shm", "--name", &name, "--timeout", "30"];
    let mut send = vec!["send", input.to_str().unwrap()];
    send.extend_from_slice(&args);
    let sent = zcopy(&send);
    assert_eq!(sent.0, 0, "sender: {sent:?}");
    let out = r.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let mut want = b"before\n".to_vec();
    want.extend_from_slice(&data);
    assert!(
        std::fs::read(&log).unwrap() == want,
        "the log is what it held, then the file"
    );
    assert!(err.contains("received 10000 bytes"), "{err}");
    assert_eq!(dir.files(), ["in.bin", "log"], "no temporary file left");
}

#[test]
fn send_recv_shm_empty_file() {
    let dir = TempDir::new("shm-empty");
    let name = channel_name("shm-empty");
    let args = ["--via", "shm", "--name", &name, "--timeout", "30"];
    let t = transfer(&dir, &[], &args, &args, true);
    assert_delivered(&t, &[]);
    assert_eq!(sum_of(&t.received.1), "ef46db3751d8e999");
    assert!(dir.path("out.bin").exists(), "an empty OUTFILE is created");
}

/// 10 000 bytes through two 4 KiB slots: chunks of 4096, 4096, 1808, the
/// slots reused; the receiver's JSON summary says so.
#[test]
fn send_recv_shm_file_not_a_multiple_of_the_slot_size() {
    let dir = TempDir::new("shm-odd");
    let data = random_bytes(7, 10_000);
    let name = channel_name("shm-odd");
    let send = [
        "--via",
        "shm",
        "--name",
        &name,
        "--slot-size",
        "4K",
        "--slots",
        "2",
        "--timeout",
        "30",
    ];
    let recv = ["--via", "shm", "--name", &name, "--timeout", "30", "--json"];
    let t = transfer(&dir, &data, &send, &recv, true);
    assert_eq!(t.sent.0, 0, "{:?}", t.sent);
    assert_eq!(t.received.0, 0, "{:?}", t.received);
    assert!(t.out == data, "the received file differs");
    assert_eq!(t.received.1.lines().count(), 1, "{}", t.received.1);
    let j: serde_json::Value = serde_json::from_str(&t.received.1).expect("JSON summary");
    assert_eq!(j["direction"], "received");
    assert_eq!(j["via"], "shm");
    assert_eq!(j["bytes"], 10_000);
    assert_eq!(j["slot_size"], 4096);
    assert_eq!(j["xxh64"], xxh64_hex(&data));
    assert!(j["seconds"].is_f64() && j["mb_per_s"].is_f64());
    assert_eq!(sum_of(&t.sent.1), j["xxh64"].as_str().unwrap());
}

/// A crashed sender's segment under the name is replaced, not an error;
/// a receiver started before waits for the new one.
#[test]
fn send_replaces_a_stale_channel_of_its_name() {
    let dir = TempDir::new("stale");
    let name = channel_name("stale-send");
    let helper = channel_name("stale-helper");
    let tx = Builder::new()
        .slot_size(128)
        .slot_count(2)
        .create_named(&helper)
        .unwrap();
    // As in channel_list_and_clean: a sender start time no process has.
    let mut bytes = std::fs::read(format!("/dev/shm/zcopy.{helper}")).unwrap();
    bytes[96..104].copy_from_slice(&1u64.to_le_bytes());
    std::fs::write(format!("/dev/shm/zcopy.{name}"), bytes).unwrap();
    drop(tx);
    let data = random_bytes(11, 5000);
    let args = ["--via", "shm", "--name", &name, "--timeout", "30"];
    let t = transfer(&dir, &data, &args, &args, true);
    assert_delivered(&t, &data);
    assert!(!Path::new(&format!("/dev/shm/zcopy.{name}")).exists());
}

/// No sender: exit 1 after the timeout with a clear message, no OUTFILE
/// (and an existing one left as it was).
#[test]
fn recv_without_sender_times_out_and_leaves_no_file() {
    let dir = TempDir::new("recv-timeout");
    let out = dir.path("out.bin");
    let name = channel_name("nobody");
    let t0 = Instant::now();
    let (code, stdout, err) = zcopy(&[
        "recv",
        out.to_str().unwrap(),
        "--via",
        "shm",
        "--name",
        &name,
        "--timeout",
        "0.5",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(t0.elapsed() >= Duration::from_millis(500));
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert!(
        err.contains(&format!("no sender on channel \"{name}\" within 0.5 s")),
        "{err}"
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(dir.files().is_empty(), "{:?}", dir.files());

    std::fs::write(&out, b"precious").unwrap();
    let (code, _, _) = zcopy(&[
        "recv",
        out.to_str().unwrap(),
        "--via",
        "shm",
        "--name",
        &name,
        "--timeout",
        "0.2",
    ]);
    assert_eq!(code, 1);
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    assert_eq!(dir.files(), ["out.bin"]);
}

/// No receiver: the sender gives up after its timeout and its channel is gone.
#[test]
fn send_without_receiver_times_out() {
    let dir = TempDir::new("send-timeout");
    let input = dir.path("in.bin");
    std::fs::write(&input, b"hello").unwrap();
    let name = channel_name("lonely");
    let (code, stdout, err) = zcopy(&[
        "send",
        input.to_str().unwrap(),
        "--via",
        "shm",
        "--name",
        &name,
        "--timeout",
        "0.3",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no receiver took anything for 0.3 s"), "{err}");
    assert!(stdout.is_empty());
    assert!(!Path::new(&format!("/dev/shm/zcopy.{name}")).exists());
}

/// A channel larger than /dev/shm has free: the sender says so and
/// creates nothing, where the sparse file met the limit under the
/// transfer (the read into the second slot failed with EFAULT; a write of
/// the slot's own would be a SIGBUS). /dev/shm is a 2 MiB tmpfs of the
/// test's own (a mount namespace; a user namespace too when not root).
#[test]
fn send_of_a_channel_larger_than_dev_shm_is_refused() {
    let dir = TempDir::new("shm-room");
    let (input, output) = (dir.path("in.bin"), dir.path("out.bin"));
    std::fs::write(&input, random_bytes(7, 4 << 20)).unwrap();
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let ns: &[&str] = if root {
        &["--mount"]
    } else {
        &["--user", "--map-root-user", "--mount"]
    };
    let probe = Command::new("unshare")
        .args(ns)
        .args(["sh", "-c", "mount -t tmpfs -o size=2m zcopy-test /dev/shm"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        // A container's seccomp policy or a distribution's user-namespace
        // policy can forbid it; make qemu-test's hosts allow it.
        eprintln!("skipped: no mount namespace with a tmpfs of its own here: {probe:?}");
        return;
    }
    let script = r#"mount -t tmpfs -o size=2m zcopy-test /dev/shm || exit 99
"$0" recv "$1" --via shm --name room --timeout 1 &
"$0" send "$2" --via shm --name room --slot-size 1M --slots 4 --timeout 1
s=$?
wait $!
echo "send $s recv $?""#;
    let out = Command::new("unshare")
        .args(ns)
        .args(["sh", "-c", script, ZCOPY])
        .args([output.to_str().unwrap(), input.to_str().unwrap()])
        .output()
        .expect("unshare");
    let (code, stdout, err) = result(out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout.trim(), "send 1 recv 1", "{err}");
    assert!(
        err.contains("needs 4") && err.contains("bytes of /dev/shm and 2097152 are free"),
        "{err}"
    );
    assert_eq!(dir.files(), ["in.bin"]);
}

#[test]
fn send_of_a_missing_file_names_it() {
    let dir = TempDir::new("missing");
    let missing = dir.path("no-such-file.bin");
    let (code, stdout, err) = zcopy(&["send", missing.to_str().unwrap(), "--via", "shm"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(missing.to_str().unwrap()), "{err}");
    assert!(err.contains("No such file"), "{err}");
    assert!(stdout.is_empty());
    let (code, _, err) = zcopy(&["send", dir.0.to_str().unwrap(), "--via", "shm"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn recv_into_a_path_ending_in_a_slash_fails_before_it_waits() {
    let dir = TempDir::new("recv-slash");
    for end in ["/", "/."] {
        let out = format!("{}{end}", dir.path("not-yet").display());
        let (code, stdout, err) = zcopy(&[
            "recv",
            &out,
            "--via",
            "shm",
            "--name",
            &channel_name("slash"),
            "--timeout",
            "0.3",
        ]);
        assert_eq!(code, 1, "{end}: {err}");
        assert!(err.contains("names a directory"), "{end}: {err}");
        assert!(stdout.is_empty(), "{stdout}");
        assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "left a file");
    }
}

#[test]
fn a_name_too_long_for_a_card_socket_is_a_usage_error() {
    let dir = TempDir::new("long-name");
    let file = dir.path("in.bin");
    std::fs::write(&file, b"data").unwrap();
    let out = dir.path("out.bin");
    // Fine for an shm channel (/dev/shm/zcopy.NAME), too long for
    // /run/zcopy/NAME.sock.
    let name = "n".repeat(100);
    for args in [
        [
            "send",
            file.to_str().unwrap(),
            "--via",
            "card",
            "--name",
            &name,
        ],
        [
            "recv",
            out.to_str().unwrap(),
            "--via",
            "card",
            "--name",
            &name,
        ],
    ] {
        let (code, _, err) = zcopy(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("--name is too long for --via card"), "{err}");
    }
    assert!(!out.exists());
}

#[test]
fn a_receive_ended_by_a_signal_leaves_no_partial_file() {
    use std::os::unix::process::ExitStatusExt;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let dir = TempDir::new(&format!("recv-signal-{sig}"));
        let out = dir.path("out.bin");
        // No sender: the receive waits for one as long as it takes.
        let mut child = Command::new(ZCOPY)
            .args(["recv", out.to_str().unwrap(), "--via", "shm", "--name"])
            .arg(channel_name(&format!("signal-{sig}")))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_dir(&dir.0).unwrap().count() == 0 {
            assert!(Instant::now() < deadline, "no temporary file appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill(2) on the child's pid, which has not been waited for.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(sig), "{status:?}");
        let left: Vec<_> = std::fs::read_dir(&dir.0).unwrap().flatten().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn an_ignored_hangup_stays_ignored_by_a_receive() {
    use std::os::unix::process::ExitStatusExt;
    let dir = TempDir::new("recv-nohup");
    let out = dir.path("out.bin");
    // As nohup starts it: SIGHUP ignored, which exec keeps.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" HUP; exec "$0" recv "$1" --via shm --name "$2""#)
        .arg(ZCOPY)
        .arg(&out)
        .arg(channel_name("nohup"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&dir.0).unwrap().count() == 0 {
        assert!(Instant::now() < deadline, "no temporary file appeared");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the child's pid, which has not been waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "a hangup ended it");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGTERM));
    assert_eq!(std::fs::read_dir(&dir.0).unwrap().count(), 0, "left a file");
}

/// A fake sender (this test) whose trailer carries the wrong checksum:
/// the receiver exits 1, says so, and writes no OUTFILE.
#[test]
fn recv_refuses_a_wrong_checksum() {
    let dir = TempDir::new("bad-crc");
    let out = dir.path("out.bin");
    let name = channel_name("bad-crc");
    let data = random_bytes(3, 1000);
    let tx = Builder::new()
        .slot_size(4096)
        .slot_count(8)
        .create_named(&name)
        .unwrap();
    // The wire format of zcopy send (src/transfer.rs).
    let mut header = b"ZCFILE\x00\x02".to_vec();
    header.extend_from_slice(&1000u64.to_le_bytes());
    let mut trailer = b"ZCFILEND".to_vec();
    trailer.extend_from_slice(&1000u64.to_le_bytes());
    trailer.extend_from_slice(&(xxhash_rust::xxh64::xxh64(&data, 0) ^ 0x10).to_le_bytes());
    for m in [&header, &data, &trailer] {
        let mut loan = tx.try_loan().unwrap();
        loan.as_mut_slice()[..m.len()].copy_from_slice(m);
        loan.send(m.len()).unwrap();
    }
    let (code, stdout, err) = zcopy(&[
        "recv",
        out.to_str().unwrap(),
        "--via",
        "shm",
        "--name",
        &name,
        "--timeout",
        "10",
    ]);
    drop(tx);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(stdout.is_empty());
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

/// A sender that goes away after 10 of 100 bytes: exit 1, no OUTFILE.
#[test]
fn recv_of_a_cut_stream_fails_and_leaves_no_file() {
    let dir = TempDir::new("cut");
    let out = dir.path("out.bin");
    let name = channel_name("cut");
    let r = spawn(&[
        "recv",
        out.to_str().unwrap(),
        "--via",
        "shm",
        "--name",
        &name,
        "--timeout",
        "10",
    ]);
    let tx = Builder::new()
        .slot_size(4096)
        .slot_count(8)
        .create_named(&name)
        .unwrap();
    let mut header = b"ZCFILE\x00\x02".to_vec();
    header.extend_from_slice(&100u64.to_le_bytes());
    for m in [&header[..], &[7u8; 10][..]] {
        let mut loan = tx.try_loan().unwrap();
        loan.as_mut_slice()[..m.len()].copy_from_slice(m);
        loan.send(m.len()).unwrap();
    }
    // Wait until the receiver has taken both, then close.
    let t0 = Instant::now();
    while tx.in_flight() > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the receiver never came"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(tx);
    let (code, _, err) = result(r.wait_with_output().unwrap());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the sender closed the channel after 10 of 100 bytes"),
        "{err}"
    );
    assert!(dir.files().is_empty(), "{:?}", dir.files());
}

/// On a machine without /dev/zcard0 (the host), the card transport is a
/// missing platform piece: exit 3 with the hint, at both ends.
#[test]
fn card_without_a_card_exits_3_with_the_hint() {
    if Path::new("/dev/zcard0").exists() {
        eprintln!("skipped: this machine has /dev/zcard0");
        return;
    }
    let dir = TempDir::new("no-card");
    let input = dir.path("in.bin");
    std::fs::write(&input, b"data").unwrap();
    let (code, _, err) = zcopy(&["send", input.to_str().unwrap(), "--via", "card"]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("no zcard: load zcard.ko") && err.contains("device model"),
        "{err}"
    );
    let out = dir.path("out.bin");
    let (code, _, err) = zcopy(&[
        "recv",
        out.to_str().unwrap(),
        "--via",
        "card",
        "--timeout",
        "1",
    ]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("no zcard: load zcard.ko"), "{err}");
    assert_eq!(dir.files(), ["in.bin"]);
}

/// RDMA to loopback: no RDMA device here (exit 3), or none for that
/// address / nobody listening (exit 3 or 1); the message names RDMA.
#[test]
fn rdma_to_loopback_fails_naming_rdma() {
    let dir = TempDir::new("rdma-lo");
    let input = dir.path("in.bin");
    std::fs::write(&input, b"data").unwrap();
    let t0 = Instant::now();
    let (code, _, err) = zcopy(&[
        "send",
        input.to_str().unwrap(),
        "--via",
        "rdma",
        "--to",
        "127.0.0.1:7479",
        "--timeout",
        "2",
    ]);
    assert!(code == 3 || code == 1, "exit {code}: {err}");
    assert!(err.contains("RDMA"), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(30));
    if !Path::new("/sys/class/infiniband").exists() {
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("no RDMA device for 127.0.0.1:7479: run scripts/rxe-setup.sh"),
            "{err}"
        );
    }
    let out = dir.path("out.bin");
    let (code, _, err) = zcopy(&[
        "recv",
        out.to_str().unwrap(),
        "--via",
        "rdma",
        "--listen",
        "127.0.0.1:7479",
        "--timeout",
        "1",
    ]);
    assert!(code == 3 || code == 1, "exit {code}: {err}");
    assert!(err.contains("RDMA"), "{err}");
    assert_eq!(dir.files(), ["in.bin"]);

    // A --from on no RDMA device is named as the address at fault, not --to
    // (checked before anything is sent).
    let (code, _, err) = zcopy(&[
        "send",
        input.to_str().unwrap(),
        "--via",
        "rdma",
        "--to",
        "169.254.77.1:7471",
        "--from",
        "169.254.99.9",
        "--timeout",
        "2",
    ]);
    assert_eq!(code, 3, "{err}");
    let devices = std::fs::read_dir("/sys/class/infiniband").map_or(0, |d| d.count());
    if devices > 0 {
        assert!(
            err.contains("--from 169.254.99.9 is on no RDMA device"),
            "{err}"
        );
        assert!(!err.contains("rxe-setup"), "no setup to run: {err}");
    } else {
        assert!(err.contains("run scripts/rxe-setup.sh"), "{err}");
    }
}

#[test]
fn bad_flags_exit_2() {
    let dir = TempDir::new("flags");
    let input = dir.path("in.bin");
    std::fs::write(&input, b"data").unwrap();
    let f = input.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["info", "--frobnicate"],
        &["send", f],
        &["send", f, "--via", "floppy"],
        &["send", "--via", "shm"],
        &["send", f, "--via", "shm", "--slot-size", "10"],
        &["send", f, "--via", "shm", "--slot-size", "2G"],
        &["send", f, "--via", "shm", "--slots", "0"],
        &["send", f, "--via", "shm", "--timeout", "-1"],
        &["recv", "out", "--via", "shm", "--timeout", "1e19"],
        &["send", f, "--via", "shm", "--name", "a/b"],
        &["send", f, "--via", "shm", "--to", "127.0.0.1:1"],
        &["send", f, "--via", "rdma"],
        &["send", f, "--via", "rdma", "--to", "not-an-address"],
        &[
            "send",
            f,
            "--via",
            "rdma",
            "--to",
            "127.0.0.1:1",
            "--name",
            "x",
        ],
        &["recv", "out", "--via", "shm", "--listen", "127.0.0.1:1"],
        &["recv", "out", "--via", "rdma"],
        &["recv", "out", "--via", "card", "--name", ".hidden"],
        &["recv", "--via", "shm"],
        &["channel", "clean", "a/b"],
    ];
    for args in cases {
        let (code, stdout, err) = zcopy(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(!err.is_empty(), "{args:?} says why");
    }
    assert_eq!(dir.files(), ["in.bin"], "a usage error creates nothing");
}

/// Every subcommand's --help names its flags and the exit codes.
#[test]
fn help_is_complete() {
    let exit_codes = [
        "Exit codes:",
        "0  done",
        "1  failed",
        "2  usage",
        "3  the platform",
    ];
    let cases: &[(&[&str], &[&str])] = &[
        (&["--help"], &["info", "send", "recv", "channel"]),
        (&["info", "--help"], &["--json"]),
        (
            &["send", "--help"],
            &[
                "<FILE>",
                "--via",
                "shm",
                "card",
                "rdma",
                "--name",
                "--to",
                "--from",
                "--slot-size",
                "--slots",
                "--timeout",
                "--json",
            ],
        ),
        (
            &["recv", "--help"],
            &[
                "<OUTFILE>",
                "--via",
                "--name",
                "--listen",
                "--timeout",
                "--json",
            ],
        ),
        (&["channel", "list", "--help"], &["--json"]),
        (&["channel", "clean", "--help"], &["[NAMES]..."]),
    ];
    for (args, words) in cases {
        let (code, out, err) = zcopy(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        for w in words.iter().chain(&exit_codes) {
            assert!(out.contains(w), "{args:?} --help lacks {w:?}:\n{out}");
        }
    }
}

/// The same transfer over a zcard pool, the two ends meeting on
/// /run/zcopy/NAME.sock.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn send_recv_card_in_the_guest() {
    let dir = TempDir::new("card");
    let data = random_bytes(0xca4d, (3 << 20) + 1234);
    let name = channel_name("card");
    let send = [
        "--via",
        "card",
        "--name",
        &name,
        "--slot-size",
        "64K",
        "--timeout",
        "60",
    ];
    let recv = ["--via", "card", "--name", &name, "--timeout", "60"];
    let t = transfer(&dir, &data, &send, &recv, true);
    assert_delivered(&t, &data);
    let t = transfer(&dir, &data, &send, &recv, false);
    assert_delivered(&t, &data);
    assert!(!Path::new(&format!("/run/zcopy/{name}.sock")).exists());
}

/// Waits until an rdma_cm listener on `port` shows in `rdma res show
/// cm_id` (a slow guest may take seconds to start one).
fn wait_for_rdma_listener(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let at = format!(":{port}");
    loop {
        let out = Command::new("rdma")
            .args(["res", "show", "cm_id"])
            .output()
            .expect("rdma (iproute2)");
        let text = String::from_utf8_lossy(&out.stdout);
        let listens = |l: &str| {
            l.contains("LISTEN") && l.split_whitespace().any(|w| w.ends_with(at.as_str()))
        };
        if text.lines().any(listens) {
            return;
        }
        assert!(Instant::now() < deadline, "no listener on {port}: {text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A second receiver on a port one already listens on (here the first on
/// the wildcard address, where rdma_cm says EADDRNOTAVAIL) is told the
/// port is in use, exit 1, not that the machine has no RDMA device.
#[test]
#[ignore = "runs in the zcopy guest (Soft-RoCE): make qemu-test"]
fn a_second_rdma_receiver_on_a_port_in_use_is_told_so() {
    let dir = TempDir::new("rdma-port");
    let out = dir.path("out.bin");
    let out = out.to_str().unwrap();
    let mut first = spawn(&[
        "recv",
        out,
        "--via",
        "rdma",
        "--listen",
        "0.0.0.0:7476",
        "--timeout",
        "60",
    ]);
    wait_for_rdma_listener(7476);
    let (code, _, err) = zcopy(&[
        "recv",
        out,
        "--via",
        "rdma",
        "--listen",
        "169.254.77.1:7476",
        "--timeout",
        "5",
    ]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("the port is in use"), "{err}");
}

/// A client that is no zcopy sender (perftest's, through rdma_cm) is
/// refused and noted, and the receive goes on to take the sender after it,
/// where it ended with that client's refusal.
#[test]
#[ignore = "runs in the zcopy guest (Soft-RoCE): make qemu-test"]
fn a_stray_rdma_client_does_not_end_the_receive() {
    let dir = TempDir::new("rdma-stray");
    let data = random_bytes(0x51, 300_000);
    let input = dir.path("in.bin");
    let output = dir.path("out.bin");
    std::fs::write(&input, &data).unwrap();
    let recv = spawn(&[
        "recv",
        output.to_str().unwrap(),
        "--via",
        "rdma",
        "--listen",
        "169.254.77.1:7477",
        "--timeout",
        "90",
    ]);
    wait_for_rdma_listener(7477);
    // Its own exit status is perftest's business; it must end.
    let stray = Command::new("timeout")
        .args(["30", "ib_write_bw", "-d", "zrxe1", "-R", "-p", "7477"])
        .args([
            "--bind_source_ip",
            "169.254.77.2",
            "-n",
            "5",
            "169.254.77.1",
        ])
        .output()
        .expect("ib_write_bw");
    assert_ne!(stray.status.code(), Some(124), "the stray client hung");
    let sent = zcopy(&[
        "send",
        input.to_str().unwrap(),
        "--via",
        "rdma",
        "--to",
        "169.254.77.1:7477",
        "--from",
        "169.254.77.2",
        "--timeout",
        "60",
    ]);
    let received = result(recv.wait_with_output().unwrap());
    assert_eq!(sent.0, 0, "sender: {sent:?}");
    assert_eq!(received.0, 0, "receiver: {received:?}");
    assert!(
        received
            .2
            .contains("refused a connection to 169.254.77.1:7477"),
        "{}",
        received.2
    );
    assert!(std::fs::read(&output).unwrap() == data, "the file differs");
}

/// A receiver that cannot set its end up (here: no memory it may pin, as a
/// user's small RLIMIT_MEMLOCK gives) refuses the sender with the reason,
/// and the sender stops at once with it, where it took the bare refusal
/// for a receiver not listening yet and retried until its timeout.
#[test]
#[ignore = "runs in the zcopy guest (Soft-RoCE): make qemu-test"]
fn a_receiver_that_cannot_set_up_refuses_the_sender_with_why() {
    let dir = TempDir::new("rdma-memlock");
    let input = dir.path("in.bin");
    let output = dir.path("out.bin");
    std::fs::write(&input, random_bytes(9, 1 << 20)).unwrap();
    // Root pins memory regardless of the limit: drop CAP_IPC_LOCK.
    let recv = Command::new("prlimit")
        .args(["--memlock=65536:65536", "--", "setpriv"])
        .args(["--inh-caps=-ipc_lock", "--bounding-set=-ipc_lock", ZCOPY])
        .args(["recv", output.to_str().unwrap(), "--via", "rdma"])
        .args(["--listen", "169.254.77.1:7478", "--timeout", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("prlimit");
    let start = Instant::now();
    let (code, stdout, err) = zcopy(&[
        "send",
        input.to_str().unwrap(),
        "--via",
        "rdma",
        "--to",
        "169.254.77.1:7478",
        "--from",
        "169.254.77.2",
        "--timeout",
        "60",
    ]);
    let took = start.elapsed();
    let received = result(recv.wait_with_output().unwrap());
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("refused the connection: the receiver could not set the channel up"),
        "{err}"
    );
    assert!(took < Duration::from_secs(45), "the sender waited {took:?}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(received.0, 1, "receiver: {received:?}");
    assert_eq!(dir.files(), ["in.bin"]);
}

/// A sender to an address nobody answers (on the guest's link, no host
/// there) gives up at its `--timeout`, where one attempt at the address
/// took its own 10 s whatever the timeout said.
#[test]
#[ignore = "runs in the zcopy guest (Soft-RoCE): make qemu-test"]
fn an_rdma_sender_to_an_unanswered_address_stops_at_its_timeout() {
    let dir = TempDir::new("rdma-unanswered");
    let input = dir.path("in.bin");
    std::fs::write(&input, b"nobody there").unwrap();
    let start = Instant::now();
    let (code, stdout, err) = zcopy(&[
        "send",
        input.to_str().unwrap(),
        "--via",
        "rdma",
        "--to",
        "169.254.77.99:7476",
        "--from",
        "169.254.77.2",
        "--timeout",
        "2",
    ]);
    let took = start.elapsed();
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("169.254.77.99:7476"), "{err}");
    assert!(err.contains("no host answered"), "{err}");
    assert!(took < Duration::from_secs(6), "the sender took {took:?}");
    assert!(stdout.is_empty(), "{stdout}");
}

/// The same transfer over RDMA between the guest's two Soft-RoCE devices.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn send_recv_rdma_in_the_guest() {
    let dir = TempDir::new("rdma");
    let data = random_bytes(0x4d3a, (3 << 20) + 777);
    let send = [
        "--via",
        "rdma",
        "--to",
        "169.254.77.1:7479",
        "--from",
        "169.254.77.2",
        "--slot-size",
        "64K",
        "--timeout",
        "60",
    ];
    let recv = [
        "--via",
        "rdma",
        "--listen",
        "169.254.77.1:7479",
        "--timeout",
        "60",
    ];
    // Receiver first; then sender first (it retries until the listener is up).
    let t = transfer(&dir, &data, &send, &recv, true);
    assert_delivered(&t, &data);
    let t = transfer(&dir, &data, &send, &recv, false);
    assert_delivered(&t, &data);
}

/// In the guest, info shows the card and both Soft-RoCE devices.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn info_in_the_guest_shows_the_card_and_rdma() {
    let (code, out, err) = zcopy(&["info", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let card = &v["cards"][0];
    assert_eq!(card["path"], "/dev/zcard0", "{out}");
    assert!(card["config"]["queues"].as_u64().unwrap() >= 1, "{out}");
    assert!(card["counters"]["submitted"].is_u64(), "{out}");
    // vhost-user-test-device-pci has one MSI-X vector; virtio-pci needs two,
    // so the card runs on its INTx line (docs/zcard-spec.md, "Interrupts").
    let irq = card["interrupts"].as_str().unwrap_or_default();
    assert!(irq.starts_with("INTx line, irq "), "{out}");
    let addrs: Vec<&str> = v["rdma"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["ports"].as_array().unwrap())
        .filter_map(|p| p["ipv4_address"].as_str())
        .collect();
    for a in ["169.254.77.1", "169.254.77.2"] {
        assert!(addrs.contains(&a), "{a} in {addrs:?}");
    }
    assert!(v["hints"]["cards"].is_null() && v["hints"]["rdma"].is_null());
}

// ---------------------------------------------------------------- zcopy bench

/// Runs `zcopy bench ARGS`, the bench binaries looked for in `bench_dir`
/// (`ZCOPY_BENCH_DIR`) or, without it, next to zcopy.
fn zcopy_bench(args: &[&str], bench_dir: Option<&Path>) -> (i32, String, String) {
    let mut cmd = Command::new(ZCOPY);
    cmd.arg("bench").args(args).env_remove("ZCOPY_BENCH_DIR");
    if let Some(dir) = bench_dir {
        cmd.env("ZCOPY_BENCH_DIR", dir);
    }
    result(cmd.output().expect("zcopy"))
}

/// Makes sure the bench `binary` of `package` is next to zcopy, where
/// `zcopy bench` looks for it. `cargo test --workspace` (make test, make
/// qemu-test) builds it there; `cargo test -p zcopy-cli` alone does not,
/// so the cargo running this test builds it, same profile.
fn bench_binary(package: &str, binary: &str) {
    let dir = Path::new(ZCOPY).parent().expect("zcopy's directory");
    let path = dir.join(binary);
    if path.is_file() {
        return;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| {
        panic!(
            "{} is missing and no cargo runs this test: cargo build -p {package} --bin {binary}",
            path.display()
        )
    });
    let mut build = Command::new(cargo);
    build.args(["build", "-p", package, "--bin", binary]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("cargo build");
    assert!(status.success(), "cargo build -p {package} --bin {binary}");
    assert!(path.is_file(), "{} after cargo build", path.display());
}

/// The JSON file `name` in `dir`.
fn json_file(dir: &Path, name: &str) -> serde_json::Value {
    let path = dir.join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn bench_usage_errors_exit_2() {
    let dir = TempDir::new("bench-usage");
    let out = dir.path("out");
    let out = out.to_str().unwrap();
    let cases: &[&[&str]] = &[
        &[],
        &["floppy"],
        &["shm", "rdma"],
        &["shm", "--frobnicate"],
        &["shm", "--out", ""],
        &["shm", "--quick", "--short"],
        &["shm", "--out", out, "--", "--out", "elsewhere"],
        &["rdma", "--out", out, "--", "--out=elsewhere"],
        &["card", "--out", out, "--", "5"],
        &["all", "--out", out, "--", "--sizes", "64"],
    ];
    for args in cases {
        let (code, stdout, err) = zcopy_bench(args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert!(!err.is_empty(), "{args:?} says why");
    }
    let (_, _, err) = zcopy_bench(&["floppy"], None);
    assert!(err.contains("shm") && err.contains("all"), "{err}");
    let (_, _, err) = zcopy_bench(&["card", "--", "5"], None);
    assert!(err.contains("zcard-bench takes no options"), "{err}");
    assert!(dir.files().is_empty(), "a usage error creates nothing");
}

/// ZCOPY_BENCH_DIR without the binary: exit 1, and the message names the
/// binary, where it looked and the cargo command that builds it.
#[test]
fn bench_without_its_binary_names_the_build_command() {
    let dir = TempDir::new("bench-nobin");
    let bins = dir.path("bins");
    std::fs::create_dir(&bins).unwrap();
    let out = dir.path("out");
    let (code, stdout, err) = zcopy_bench(&["shm", "--out", out.to_str().unwrap()], Some(&bins));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("zcopy-ipc-bench not found in {}", bins.display())),
        "{err}"
    );
    assert!(err.contains("ZCOPY_BENCH_DIR"), "{err}");
    assert!(
        err.contains("cargo build -p zcopy-bench --bin zcopy-ipc-bench"),
        "{err}"
    );
    assert!(stdout.is_empty(), "nothing ran: {stdout}");
    assert!(!out.exists(), "nothing written");
    // A directory that does not exist says the same.
    let (code, _, err) = zcopy_bench(&["shm"], Some(&dir.path("nowhere")));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cargo build -p zcopy-bench"), "{err}");
}

/// On a machine without the card or the guest's RDMA pair (the host),
/// card and rdma exit 3 with the hint, before looking for a binary.
#[test]
fn bench_card_and_rdma_without_them_exit_3_with_the_hint() {
    let dir = TempDir::new("bench-noplat");
    let bins = dir.path("bins");
    std::fs::create_dir(&bins).unwrap();
    let out = dir.path("out");
    let out = out.to_str().unwrap();
    if Path::new("/dev/zcard0").exists() {
        eprintln!("card part skipped: this machine has /dev/zcard0");
    } else {
        let (code, stdout, err) = zcopy_bench(&["card", "--quick", "--out", out], Some(&bins));
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains("no zcard: load zcard.ko") && err.contains("device model running"),
            "{err}"
        );
        assert!(stdout.is_empty(), "{stdout}");
    }
    let rdma = Path::new("/sys/class/infiniband");
    if rdma.join("zrxe0").exists() && rdma.join("zrxe1").exists() {
        eprintln!("rdma part skipped: this machine has zrxe0 and zrxe1");
    } else {
        let (code, stdout, err) = zcopy_bench(&["rdma", "--quick", "--out", out], Some(&bins));
        assert_eq!(code, 3, "{err}");
        assert!(err.contains("zrxe0"), "{err}");
        let any_device = std::fs::read_dir(rdma).is_ok_and(|mut d| d.next().is_some());
        if !any_device {
            assert!(
                err.contains("no RDMA device: run scripts/rxe-setup.sh"),
                "{err}"
            );
        }
        assert!(stdout.is_empty(), "{stdout}");
    }
    assert_eq!(dir.files(), ["bins"], "nothing written");
}

/// `all` goes on after a bench fails or cannot run, and sums up: here
/// shm fails (no binary in ZCOPY_BENCH_DIR), so exit 1; card and rdma are
/// skipped with their hint on the host (and fail for want of a binary in
/// the guest).
#[test]
fn bench_all_goes_on_after_a_failure_and_sums_up() {
    let dir = TempDir::new("bench-all-nobin");
    let bins = dir.path("bins");
    std::fs::create_dir(&bins).unwrap();
    let out = dir.path("out");
    let (code, stdout, err) = zcopy_bench(&["all", "--out", out.to_str().unwrap()], Some(&bins));
    assert_eq!(code, 1, "{err}");
    let summary = stdout
        .split("== zcopy bench all\n")
        .nth(1)
        .unwrap_or_else(|| panic!("a summary: {stdout}"));
    let line = |name: &str| {
        summary
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in the summary: {summary}"))
            .to_string()
    };
    let shm = line("shm");
    assert!(
        shm.contains("FAILED") && shm.contains("zcopy-ipc-bench not found"),
        "{shm}"
    );
    let (card, rdma) = (line("card"), line("rdma"));
    // The guest has both: they fail for want of their binary, as shm does.
    let guest = Path::new("/dev/zcard0").exists();
    if guest {
        assert!(
            card.contains("FAILED") && card.contains("zcard-bench not found"),
            "{card}"
        );
    } else {
        assert!(
            card.contains("skipped") && card.contains("no zcard: load zcard.ko"),
            "{card}"
        );
    }
    if !Path::new("/sys/class/infiniband/zrxe0").exists() {
        assert!(rdma.contains("skipped") && rdma.contains("zrxe0"), "{rdma}");
    } else if guest {
        assert!(
            rdma.contains("FAILED") && rdma.contains("zcopy-rdma-bench not found"),
            "{rdma}"
        );
    }
    assert!(
        err.contains("zcopy: bench shm") && err.ends_with("failed (above)\n"),
        "{err}"
    );
}

/// Where the card and the RDMA pair are missing (the host), `all --quick`
/// runs shm, lists the other two as skipped with their hints, and exits 0.
#[test]
fn bench_all_quick_on_the_host_runs_shm_and_skips_the_rest() {
    if Path::new("/dev/zcard0").exists() || Path::new("/sys/class/infiniband/zrxe0").exists() {
        eprintln!("skipped: this machine has a card or the RDMA pair (the guest tests run them)");
        return;
    }
    bench_binary("zcopy-bench", "zcopy-ipc-bench");
    let dir = TempDir::new("bench-all");
    let out = dir.path("out");
    let (code, stdout, err) =
        zcopy_bench(&["all", "--quick", "--out", out.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}\n{stdout}");
    assert!(stdout.contains("== zcopy bench shm: "), "{stdout}");
    assert!(stdout.contains("\n  shm   done "), "{stdout}");
    assert!(
        stdout.contains("\n  card  skipped  no zcard: load zcard.ko"),
        "{stdout}"
    );
    assert!(stdout.contains("\n  rdma  skipped  "), "{stdout}");
    assert!(err.contains("zcopy bench card: no zcard"), "{err}");
    assert_eq!(json_file(&out, "ipc.json")["quick"], true);
}

/// A real quick run of the IPC bench: its table on stdout, ipc.json with
/// the --quick sizes, and the SVG plots, in a directory it creates.
#[test]
fn bench_shm_quick_writes_json_and_plots_and_prints_the_table() {
    bench_binary("zcopy-bench", "zcopy-ipc-bench");
    let dir = TempDir::new("bench-shm");
    let out = dir.path("results/ipc");
    let (code, stdout, err) =
        zcopy_bench(&["shm", "--quick", "--out", out.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}\n{stdout}");
    assert!(
        stdout.contains("zcopy-ipc-bench --out ")
            && stdout.contains("--quick --sizes 64,4096,65536"),
        "the command line is shown: {stdout}"
    );
    let header = stdout
        .lines()
        .position(|l| l.starts_with("mechanism ") && l.contains("p50") && l.contains("msgs/s"))
        .unwrap_or_else(|| panic!("the table's header: {stdout}"));
    for m in ["zcopy-busy", "copy-ring", "pipe", "uds"] {
        assert!(
            stdout.lines().skip(header).any(|l| l.starts_with(m)),
            "a {m} row: {stdout}"
        );
    }
    assert!(
        stdout.contains("goals (against this run's figures):"),
        "{stdout}"
    );
    let done = stdout.lines().last().unwrap_or_default();
    assert!(
        done.starts_with("zcopy bench shm: done in ") && done.contains("ipc.json"),
        "{done}"
    );

    let doc = json_file(&out, "ipc.json");
    assert_eq!(doc["bench"], "zcopy-ipc");
    assert_eq!(doc["quick"], true);
    let points = doc["points"].as_array().expect("points");
    let mut sizes: Vec<u64> = points.iter().filter_map(|p| p["size"].as_u64()).collect();
    sizes.sort();
    sizes.dedup();
    assert_eq!(sizes, [64, 4096, 65536], "the --quick sizes");
    for g in doc["goals"].as_array().expect("goals") {
        assert!(g["met"].is_null(), "a quick run judges no goal: {g}");
    }
    assert!(points
        .iter()
        .any(|p| p["mechanism"] == "zcopy-busy" && p["p50_ns"].as_u64().is_some_and(|v| v > 0)));
    for pin in ["cross", "same"] {
        for kind in ["latency", "throughput"] {
            let svg = std::fs::read_to_string(out.join(format!("ipc-{kind}-{pin}.svg")))
                .unwrap_or_else(|e| panic!("ipc-{kind}-{pin}.svg: {e}"));
            assert!(
                svg.starts_with("<svg") && svg.contains("zcopy-busy"),
                "{kind} {pin}"
            );
        }
    }
}

/// Arguments after `--` reach the bench and replace the --quick setting
/// of the same option.
#[test]
fn bench_shm_passes_the_arguments_after_the_double_dash() {
    bench_binary("zcopy-bench", "zcopy-ipc-bench");
    let dir = TempDir::new("bench-shm-args");
    let out = dir.path("out");
    let (code, stdout, err) = zcopy_bench(
        &[
            "shm",
            "--quick",
            "--out",
            out.to_str().unwrap(),
            "--",
            "--mech",
            "zcopy-busy,pipe",
            "--pin",
            "cross",
            "--sizes=64",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}\n{stdout}");
    assert!(
        !stdout.contains("64,4096,65536"),
        "--sizes replaced: {stdout}"
    );
    let doc = json_file(&out, "ipc.json");
    let points: Vec<(String, String, u64)> = doc["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["mechanism"].as_str().unwrap_or("?").to_string(),
                p["pin"].as_str().unwrap_or("?").to_string(),
                p["size"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(
        points,
        [
            ("zcopy-busy".to_string(), "cross".to_string(), 64),
            ("pipe".to_string(), "cross".to_string(), 64)
        ]
    );
    // The bench's own usage error comes back as a failure of the bench.
    let (code, _, err) = zcopy_bench(
        &["shm", "--out", out.to_str().unwrap(), "--", "--frobnicate"],
        None,
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("zcopy-ipc-bench exited with status 2"),
        "{err}"
    );
}

#[test]
fn bench_help_is_complete() {
    let (code, out, err) = zcopy(&["--help"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\n  bench "), "{out}");
    let (code, out, err) = zcopy(&["bench", "--help"]);
    assert_eq!(code, 0, "{err}");
    for w in [
        "<KIND>",
        "shm",
        "card",
        "rdma",
        "all",
        "--out <DIR>",
        "[default: target/bench]",
        "--quick",
        "--short",
        "[BENCH_ARGS]",
        "ZCOPY_BENCH_DIR",
        "cargo build -p zcopy-bench",
        "load zcard.ko",
        "scripts/rxe-setup.sh",
        "Examples:",
        "zcopy bench all --quick",
        "Exit codes:",
        "3  the platform",
    ] {
        assert!(out.contains(w), "bench --help lacks {w:?}:\n{out}");
    }
}

/// In the guest: the driver bench, quick (1 s per queue depth), writes
/// its JSON (depth 1 and 32, ops counted) and its bar chart, and prints
/// its table.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn bench_card_quick_in_the_guest() {
    bench_binary("zcopy-bench", "zcard-bench");
    let dir = TempDir::new("bench-card");
    let out = dir.path("out");
    let (code, stdout, err) =
        zcopy_bench(&["card", "--quick", "--out", out.to_str().unwrap()], None);
    assert_eq!(code, 0, "{err}\n{stdout}");
    assert!(stdout.contains("ZCOPY_BENCH_SECS=1 "), "{stdout}");
    assert!(stdout.contains("| queue depth | ops/s |"), "{stdout}");
    let runs = json_file(&out, "zcard-driver.json");
    let runs = runs.as_array().expect("a list of runs");
    let depths: Vec<u64> = runs.iter().filter_map(|r| r["depth"].as_u64()).collect();
    assert_eq!(depths, [1, 32]);
    for r in runs {
        assert_eq!(r["op"], "copy");
        assert!(r["ops"].as_u64().is_some_and(|n| n > 0), "{r}");
        let secs = r["seconds"].as_f64().unwrap_or(0.0);
        assert!(
            (1.0..5.0).contains(&secs),
            "--quick runs 1 s per depth: {r}"
        );
    }
    let svg = std::fs::read_to_string(out.join("zcard-driver.svg")).expect("the plot");
    assert!(
        svg.starts_with("<svg") && svg.contains("queue depth 32"),
        "{svg}"
    );
}

/// In the guest: the RDMA bench, quick, against perftest on zrxe0/zrxe1:
/// rdma.json with the --quick sizes and the bandwidth plot; with two
/// rounds, each comparison's ratios, and the rows those of the round
/// worse for zcopy (the lower bandwidth ratio, the higher latency one).
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn bench_rdma_quick_in_the_guest() {
    bench_binary("zcopy-bench", "zcopy-rdma-bench");
    let dir = TempDir::new("bench-rdma");
    let out = dir.path("out");
    let (code, stdout, err) = zcopy_bench(
        &[
            "rdma",
            "--quick",
            "--out",
            out.to_str().unwrap(),
            "--",
            "--rounds",
            "2",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}\n{stdout}");
    assert!(
        stdout.contains("ib_write_bw") && stdout.contains("ib_write_lat"),
        "{stdout}"
    );
    let doc = json_file(&out, "rdma.json");
    assert_eq!(doc["bench"], "rdma");
    let bw = doc["bandwidth"].as_array().expect("bandwidth");
    let sizes: Vec<u64> = bw
        .iter()
        .filter_map(|r| r["zcopy"]["bytes"].as_u64())
        .collect();
    assert_eq!(sizes, [4096, 65536], "the --quick sizes");
    for r in bw {
        for who in ["ib_write_bw", "zcopy"] {
            assert!(
                r[who]["bw_avg_mb_s"].as_f64().is_some_and(|v| v > 0.0),
                "{r}"
            );
        }
    }
    let rounds = doc["rounds"].as_array().expect("rounds");
    for (kind, rows, key, worse) in [
        ("bandwidth", bw, "ratio", f64::min as fn(f64, f64) -> f64),
        (
            "latency",
            doc["latency"].as_array().expect("latency"),
            "ratio_vs_write_lat",
            f64::max,
        ),
    ] {
        for r in rows {
            let bytes = r["zcopy"]["bytes"].as_u64();
            let round = rounds
                .iter()
                .find(|x| x["kind"] == kind && x["bytes"].as_u64() == bytes)
                .unwrap_or_else(|| panic!("no rounds of {kind} {bytes:?}: {rounds:?}"));
            let ratios: Vec<f64> = round["ratios"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|v| v.as_f64())
                .collect();
            assert_eq!(ratios.len(), 2, "{round}");
            let pick = worse(ratios[0], ratios[1]);
            assert!(
                (r[key].as_f64().unwrap() - pick).abs() < 1e-9,
                "{kind}: the row is the round worse for zcopy: {r} {round}"
            );
        }
    }
    let lat = doc["latency"].as_array().expect("latency");
    assert_eq!(lat.len(), 1, "one latency size under --quick");
    assert_eq!(lat[0]["zcopy"]["bytes"], 64);
    assert_eq!(lat[0]["zcopy"]["iterations"], 200);
    for g in doc["goals"].as_array().expect("goals") {
        assert!(g["met"].is_null(), "a quick run judges no goal: {g}");
        assert!(
            g["value"]
                .as_str()
                .is_some_and(|v| v.contains('%') || v.contains('×')),
            "{g}"
        );
    }
    let svg = std::fs::read_to_string(out.join("rdma-bandwidth.svg")).expect("the plot");
    assert!(svg.starts_with("<svg"));
}
