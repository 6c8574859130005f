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

/// The `crc32c XXXXXXXX` of a summary line.
fn crc_of(summary: &str) -> &str {
    let at = summary.find("crc32c ").expect("a crc32c in the summary") + 7;
    &summary[at..at + 8]
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
/// file's crc32c.
fn assert_delivered(t: &Transfer, data: &[u8]) {
    assert_eq!(t.sent.0, 0, "sender: {:?}", t.sent);
    assert_eq!(t.received.0, 0, "receiver: {:?}", t.received);
    assert!(
        t.out == data,
        "the received file differs ({} bytes of {})",
        t.out.len(),
        data.len()
    );
    let crc = format!("{:08x}", crc32c::crc32c(data));
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
    assert_eq!(crc_of(&t.sent.1), crc, "{}", t.sent.1);
    assert_eq!(crc_of(&t.received.1), crc, "{}", t.received.1);
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
/// then sender first: the same bytes and the same crc32c at both ends.
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

#[test]
fn send_recv_shm_empty_file() {
    let dir = TempDir::new("shm-empty");
    let name = channel_name("shm-empty");
    let args = ["--via", "shm", "--name", &name, "--timeout", "30"];
    let t = transfer(&dir, &[], &args, &args, true);
    assert_delivered(&t, &[]);
    assert_eq!(crc_of(&t.received.1), "00000000");
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
    let j: serde_json::Value = serde_json::from_str(&t.received.1).expect("JSON summary");
    assert_eq!(j["direction"], "received");
    assert_eq!(j["via"], "shm");
    assert_eq!(j["bytes"], 10_000);
    assert_eq!(j["slot_size"], 4096);
    assert_eq!(j["crc32c"], format!("{:08x}", crc32c::crc32c(&data)));
    assert!(j["seconds"].is_f64() && j["mb_per_s"].is_f64());
    assert_eq!(crc_of(&t.sent.1), j["crc32c"].as_str().unwrap());
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
    let mut header = b"ZCFILE\x00\x01".to_vec();
    header.extend_from_slice(&1000u64.to_le_bytes());
    let mut trailer = b"ZCFILEND".to_vec();
    trailer.extend_from_slice(&1000u64.to_le_bytes());
    trailer.extend_from_slice(&(crc32c::crc32c(&data) ^ 0x10).to_le_bytes());
    for m in [&header, &data, &trailer] {
        let mut loan = tx.try_loan().unwrap();
        loan.as_mut_slice()[..m.len()].copy_from_slice(m);
        loan.set_len(m.len()).unwrap();
        loan.send().unwrap();
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
    let mut header = b"ZCFILE\x00\x01".to_vec();
    header.extend_from_slice(&100u64.to_le_bytes());
    for m in [&header[..], &[7u8; 10][..]] {
        let mut loan = tx.try_loan().unwrap();
        loan.as_mut_slice()[..m.len()].copy_from_slice(m);
        loan.set_len(m.len()).unwrap();
        loan.send().unwrap();
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
