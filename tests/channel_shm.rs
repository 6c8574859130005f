//! The channel over shared memory: the conformance suite, plus what only
//! the shm transport has (names under /dev/shm, stale segments, sealing,
//! version and layout checks). Runs on the host and again in the guest.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use zcopy::channel::segment::VERSION;
use zcopy::channel::{self, Builder, Error, Receiver, Shm};
use zcopy_vm_tests::channel::{check_message, read_line, send_message, spawn_with_fd3, wait_child};
use zcopy_vm_tests::conformance::{peer_exe, raw_segment};

zcopy_vm_tests::conformance_suite!(Shm);
zcopy_vm_tests::shared_memory_suite!(Shm);

fn unique(tag: &str) -> String {
    format!("test-{tag}-{}", std::process::id())
}

#[test]
fn named_channel_open_exists_and_goes_with_its_sender() {
    let name = unique("named");
    let tx = Builder::new()
        .slot_size(64)
        .slot_count(4)
        .create_named(&name)
        .unwrap();
    let path = format!("/dev/shm/zcopy.{name}");
    let mode = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    match Builder::new().create_named(&name) {
        Err(Error::Exists { pid, .. }) => assert_eq!(pid, std::process::id()),
        other => panic!("second create: {:?}", other.map(|_| ())),
    }
    assert!(
        matches!(channel::remove_stale(&name), Err(Error::Exists { .. })),
        "a live channel stays"
    );
    let listed = channel::list().unwrap();
    let me = listed.iter().find(|c| c.name == name).expect("listed");
    assert!(!me.stale);
    assert_eq!(me.geometry.unwrap().slot_count, 4);

    let rx = Receiver::open_named(&name).unwrap();
    send_message(&tx, 7).unwrap();
    assert_eq!(check_message(&rx.recv().unwrap(), 64), Ok(7));
    assert_eq!(
        channel::list()
            .unwrap()
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .receiver_pid,
        std::process::id()
    );
    drop(tx);
    assert!(
        !std::path::Path::new(&path).exists(),
        "the name goes with the sender"
    );
    assert!(matches!(rx.recv(), Err(Error::Closed)));
    assert!(matches!(
        Receiver::open_named(&name),
        Err(Error::NotFound(_))
    ));
    for bad in ["", "../x", ".x", "a b"] {
        assert!(matches!(
            Builder::new().create_named(bad),
            Err(Error::BadName(_))
        ));
        assert!(matches!(Receiver::open_named(bad), Err(Error::BadName(_))));
    }
}

#[test]
fn stale_named_channel_is_detected_and_cleaned() {
    // A sender process that dies without cleaning up: the child creates a
    // named channel and is killed.
    let name = unique("stale");
    let mut child = std::process::Command::new(peer_exe())
        .args(["named", &name])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut child), "created");
    child.kill().unwrap();
    child.wait().unwrap();
    match Receiver::open_named(&name) {
        Err(e @ Error::Stale { .. }) => assert!(e.to_string().contains("remove_stale")),
        other => panic!("open of a stale channel: {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        Builder::new().create_named(&name),
        Err(Error::Stale { .. })
    ));
    assert!(channel::list()
        .unwrap()
        .iter()
        .any(|c| c.name == name && c.stale));
    channel::remove_stale(&name).unwrap();
    assert!(!channel::list().unwrap().iter().any(|c| c.name == name));
    assert!(matches!(
        channel::remove_stale(&name),
        Err(Error::NotFound(_))
    ));
    // The name is free again.
    drop(Builder::new().create_named(&name).unwrap());
}

/// Sends a hand-made descriptor as if it were a channel.
fn offer(fd: &OwnedFd) -> Result<Receiver<Shm>, Error> {
    let (a, b) = UnixStream::pair().unwrap();
    let mut msg = b"zcopy-channel\x01".to_vec();
    msg.extend_from_slice(&1u32.to_le_bytes());
    nix::sys::socket::sendmsg::<()>(
        a.as_raw_fd(),
        &[std::io::IoSlice::new(&msg)],
        &[nix::sys::socket::ControlMessage::ScmRights(&[
            fd.as_raw_fd()
        ])],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .unwrap();
    Receiver::from_socket(&b)
}

fn memfd(sealed: bool, bytes: &[u8], len: u64) -> OwnedFd {
    let flags = if sealed { libc::MFD_ALLOW_SEALING } else { 0 };
    // SAFETY: a NUL-terminated name; returns a new descriptor or -1.
    let raw = unsafe { libc::memfd_create(c"t".as_ptr(), flags) };
    assert!(raw >= 0);
    // SAFETY: a new descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let file = std::fs::File::from(fd.try_clone().unwrap());
    file.set_len(len).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, bytes, 0).unwrap();
    if sealed {
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        // SAFETY: fcntl on our own descriptor; no memory passed.
        let rc = unsafe { libc::fcntl(raw, libc::F_ADD_SEALS, seals) };
        assert_eq!(rc, 0);
    }
    fd
}

#[test]
fn foreign_or_mismatched_segments_are_refused() {
    let tx = Builder::new().slot_size(64).slot_count(4).create().unwrap();
    let map = raw_segment(&tx);
    let len = tx.geometry().segment_bytes;
    // SAFETY: the mapping is segment_bytes long; read as bytes.
    let good = unsafe { std::slice::from_raw_parts(map.as_ptr(), len as usize) }.to_vec();
    drop(tx);

    assert!(matches!(
        offer(&memfd(false, &good, len)),
        Err(Error::Unsealed)
    ));
    assert!(matches!(
        offer(&memfd(true, b"garbage!", len)),
        Err(Error::NotAChannel)
    ));
    assert!(matches!(
        offer(&memfd(true, &good[..100], 100)),
        Err(Error::NotAChannel)
    ));
    // A newer format, and the one before the lap-tagged rings.
    for other in [VERSION + 1, 1] {
        let mut v = good.clone();
        v[8..12].copy_from_slice(&other.to_le_bytes());
        match offer(&memfd(true, &v, len)) {
            Err(e @ Error::Version { found, expected }) => {
                assert_eq!((found, expected), (other, VERSION));
                assert!(e.to_string().contains(&format!("version {other}")), "{e}");
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }
    let mut moved = good.clone();
    moved[40] ^= 0x40; // submit ring offset
    assert!(matches!(
        offer(&memfd(true, &moved, len)),
        Err(Error::Layout(_))
    ));
    let mut bigger = good.clone();
    bigger[20] = 0xff; // slot size → the file is too short for it
    assert!(matches!(
        offer(&memfd(true, &bigger, len)),
        Err(Error::Layout(_))
    ));
    let mut not_ready = good.clone();
    not_ready[80] = 0;
    assert!(matches!(
        offer(&memfd(true, &not_ready, len)),
        Err(Error::NotReady)
    ));
    // A creator that is gone (start time of no live process): a fd-passed
    // segment is accepted, and the first wait reports the death.
    let mut dead = good.clone();
    dead[96..104].copy_from_slice(&1u64.to_le_bytes());
    let rx = offer(&memfd(true, &dead, len)).unwrap();
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::PeerDied { .. })
    ));
}

#[test]
fn named_peer_process_round_trip() {
    let name = unique("peer");
    let tx = Builder::new()
        .slot_size(256)
        .slot_count(16)
        .create_named(&name)
        .unwrap();
    let (_a, b) = UnixStream::pair().unwrap();
    let mut child = spawn_with_fd3(&peer_exe(), &["named-recv", &name, "10000"], &b);
    for seq in 0..10_000 {
        send_message(&tx, seq).unwrap();
    }
    assert_eq!(read_line(&mut child), "ok 10000");
    assert_eq!(wait_child(&mut child, Duration::from_secs(60)), Some(0));
}
