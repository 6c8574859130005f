//! Socket-level tests: an in-process vhost-user front end (the `vhost`
//! crate's) drives the daemon over a unix socket with memfd-backed memory,
//! as QEMU would; and the real `zcard-vhost` binary crashes on a fault and
//! comes back with its storage intact.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{
    VhostUserConfigFlags, VhostUserHeaderFlag, VhostUserProtocolFeatures,
};
use vhost::vhost_user::{Frontend, Listener, VhostUserFrontend};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use virtio_bindings::bindings::virtio_config::VIRTIO_F_ACCESS_PLATFORM;
use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};
use zcard_vhost::backend::serve;
use zcard_vhost::storage::Storage;
use zcard_vhost::vhu_zcard::{ZcardBackend, DEVICE_FEATURES};
use zcard_vhost::virtio_zcard::*;
use zcard_vhost::zcard::{Card, Limits};

const MEM: u64 = 4 << 20;
const QSIZE: u16 = 64;
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const HDR: u64 = 0x10000;
const STATUS: u64 = 0x11000;
const DATA: u64 = 0x20000;

/// The front end's side of one connection: memory, queue 0, its eventfds.
struct Session {
    fe: Frontend,
    mem: GuestMemoryMmap<()>,
    kick: EventFd,
    call: EventFd,
    next: u16,
}

impl Session {
    fn connect(sock: &Path) -> Session {
        Session::connect_named(sock, "zcard-test")
    }

    /// Connects with guest memory in a memfd called `name` (seen in /proc/self/maps).
    fn connect_named(sock: &Path, name: &str) -> Session {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut fe = loop {
            match Frontend::connect(sock, 2) {
                Ok(fe) => break fe,
                Err(e) if Instant::now() > deadline => panic!("connect {}: {e}", sock.display()),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        fe.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
        fe.set_owner().unwrap();
        let features = fe.get_features().unwrap();
        for bit in [32, 29, 28, 30] {
            assert_ne!(features & (1 << bit), 0, "feature bit {bit} offered");
        }
        let proto = fe.get_protocol_features().unwrap();
        assert!(proto.contains(VhostUserProtocolFeatures::CONFIG | VhostUserProtocolFeatures::MQ));
        fe.set_features(features).unwrap();
        fe.set_protocol_features(proto).unwrap();
        assert_eq!(fe.get_queue_num().unwrap(), 2);

        let memfd =
            nix::sys::memfd::memfd_create(name, nix::sys::memfd::MFdFlags::empty()).unwrap();
        let file = File::from(memfd);
        file.set_len(MEM).unwrap();
        let mem = GuestMemoryMmap::<()>::from_ranges_with_files(&[(
            GuestAddress(0),
            MEM as usize,
            Some(FileOffset::new(file, 0)),
        )])
        .unwrap();
        let host = mem.get_host_address(GuestAddress(0)).unwrap() as u64;
        let region = mem.find_region(GuestAddress(0)).unwrap();
        let info = VhostUserMemoryRegionInfo::from_guest_region(region).unwrap();
        fe.set_mem_table(&[info]).unwrap();

        fe.set_vring_num(0, QSIZE).unwrap();
        fe.set_vring_addr(
            0,
            &VringConfigData {
                queue_max_size: QSIZE,
                queue_size: QSIZE,
                flags: 0,
                desc_table_addr: host + DESC,
                used_ring_addr: host + USED,
                avail_ring_addr: host + AVAIL,
                log_addr: None,
            },
        )
        .unwrap();
        fe.set_vring_base(0, 0).unwrap();
        let kick = EventFd::new(EFD_NONBLOCK).unwrap();
        let call = EventFd::new(EFD_NONBLOCK).unwrap();
        fe.set_vring_kick(0, &kick).unwrap();
        fe.set_vring_call(0, &call).unwrap();
        fe.set_vring_enable(0, true).unwrap();
        Session {
            fe,
            mem,
            kick,
            call,
            next: 0,
        }
    }

    fn config(&mut self) -> Vec<u8> {
        let (_, data) = self
            .fe
            .get_config(
                0,
                CONFIG_SIZE as u32,
                VhostUserConfigFlags::WRITABLE,
                &[0; CONFIG_SIZE],
            )
            .unwrap();
        data
    }

    /// Submits header + segments + status on queue 0 and waits for the call eventfd.
    fn request(&mut self, h: ReqHeader, segs: &[(u64, u32, bool)]) -> ReqStatus {
        self.mem.write_obj(h, GuestAddress(HDR)).unwrap();
        let mut all = vec![(HDR, REQ_HEADER_SIZE, false)];
        all.extend_from_slice(segs);
        all.push((STATUS, REQ_STATUS_SIZE, true));
        for (i, &(addr, len, write)) in all.iter().enumerate() {
            let mut flags = if write { VRING_DESC_F_WRITE as u16 } else { 0 };
            if i + 1 < all.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            let d = Descriptor::new(addr, len, flags, i as u16 + 1);
            self.mem
                .write_obj(d, GuestAddress(DESC + 16 * i as u64))
                .unwrap();
        }
        self.mem
            .write_obj(
                0u16,
                GuestAddress(AVAIL + 4 + 2 * u64::from(self.next % QSIZE)),
            )
            .unwrap();
        self.next = self.next.wrapping_add(1);
        self.mem
            .write_obj(self.next, GuestAddress(AVAIL + 2))
            .unwrap();
        self.kick.write(1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let used: u16 = self.mem.read_obj(GuestAddress(USED + 2)).unwrap();
            if used == self.next {
                break;
            }
            assert!(Instant::now() < deadline, "no completion within 10 s");
            let _ = self.call.read();
            std::thread::sleep(Duration::from_millis(2));
        }
        self.mem.read_obj(GuestAddress(STATUS)).unwrap()
    }
}

fn start_in_process(dir: &Path) -> (Arc<ZcardBackend>, std::path::PathBuf) {
    start_withholding(dir, 0)
}

fn start_withholding(dir: &Path, withheld: u64) -> (Arc<ZcardBackend>, std::path::PathBuf) {
    let sock = dir.join("zcard.sock");
    let storage = Storage::open(&dir.join("card.img"), Some(1 << 20)).unwrap();
    let card = Card::new(Limits::default(), storage, 0).unwrap();
    let backend = Arc::new(ZcardBackend::new(Arc::new(card)).withholding(withheld));
    let mut listener = Listener::new(&sock, true).unwrap();
    let b = backend.clone();
    std::thread::spawn(move || serve(b, &mut listener, false));
    (backend, sock)
}

#[test]
fn a_withheld_feature_bit_is_not_offered() {
    let access_platform = 1u64 << VIRTIO_F_ACCESS_PLATFORM;
    for withheld in [0, access_platform] {
        let dir = tempfile::tempdir().unwrap();
        let (_backend, sock) = start_withholding(dir.path(), withheld);
        let deadline = Instant::now() + Duration::from_secs(5);
        let fe = loop {
            match Frontend::connect(&sock, 2) {
                Ok(fe) => break fe,
                Err(e) if Instant::now() > deadline => panic!("connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        fe.set_owner().unwrap();
        let offered = fe.get_features().unwrap() & DEVICE_FEATURES;
        assert_eq!(
            offered,
            DEVICE_FEATURES & !withheld,
            "withheld {withheld:#x}"
        );
    }
}

#[test]
fn negotiation_config_round_trip_and_reconnect() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, sock) = start_in_process(dir.path());

    let mut s = Session::connect(&sock);
    let cfg = s.config();
    assert_eq!(&cfg[0..4], b"ZCRD");
    assert_eq!(u16::from_le_bytes([cfg[8], cfg[9]]), 2);
    assert_eq!(u64::from_le_bytes(cfg[16..24].try_into().unwrap()), 1 << 20);
    assert!(backend.card().stats().config_reads() >= 1);

    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    s.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    let st = s.request(
        ReqHeader {
            opcode: Op::Copy as u8,
            length: 4096,
            tag: 9,
            ..Default::default()
        },
        &[(DATA, 4096, false), (DATA + 0x10000, 4096, true)],
    );
    assert_eq!((st.status, st.tag), (Status::Ok as u8, 9));
    let mut out = vec![0; 4096];
    s.mem
        .read_slice(&mut out, GuestAddress(DATA + 0x10000))
        .unwrap();
    assert_eq!(out, data);
    let st = s.request(
        ReqHeader {
            opcode: Op::StorageWrite as u8,
            length: 4096,
            storage_offset: 8192,
            ..Default::default()
        },
        &[(DATA, 4096, false)],
    );
    assert_eq!(st.status, Status::Ok as u8);

    // The front end goes away (QEMU quits or restarts); the daemon takes the next one.
    drop(s);
    let mut s = Session::connect(&sock);
    let st = s.request(
        ReqHeader {
            opcode: Op::StorageRead as u8,
            length: 4096,
            storage_offset: 8192,
            ..Default::default()
        },
        &[(DATA + 0x30000, 4096, true)],
    );
    assert_eq!(
        st.status,
        Status::Ok as u8,
        "storage survives the reconnect"
    );
    s.mem
        .read_slice(&mut out, GuestAddress(DATA + 0x30000))
        .unwrap();
    assert_eq!(out, data);
    assert!(
        backend.card().stats().snapshot()["connections"]
            .as_u64()
            .unwrap()
            >= 2
    );

    // A device reset clears NEEDS_RESET.
    backend.card().set_needs_reset();
    let st = s.request(
        ReqHeader {
            opcode: Op::Nop as u8,
            ..Default::default()
        },
        &[],
    );
    assert_eq!(st.status, Status::NeedsReset as u8);
    s.fe.reset_device().unwrap();
    assert!(!backend.card().needs_reset());
}

/// Lines of /proc/self/maps that map the memfd `name`.
fn memfd_mappings(name: &str) -> Vec<String> {
    let path = format!("/memfd:{name}");
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.split_whitespace().nth(5) == Some(path.as_str()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn guest_memory_is_unmapped_when_the_front_end_goes() {
    let dir = tempfile::tempdir().unwrap();
    let (backend, sock) = start_in_process(dir.path());
    let name = "zcard-test-disconnect";
    let mut s = Session::connect_named(&sock, name);
    let st = s.request(
        ReqHeader {
            opcode: Op::Nop as u8,
            tag: 1,
            ..Default::default()
        },
        &[],
    );
    assert_eq!(st.status, Status::Ok as u8);
    drop(s);
    // The front end's own mapping went with the session: whatever is left is
    // the back end's, and it must go once the daemon has seen the disconnect.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = memfd_mappings(name);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "guest memory still mapped 5 s after the front end left: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        backend.card().stats().snapshot()["connections"].as_u64(),
        Some(1)
    );
}

/// A back end in this process with a session that has had one NOP
/// served, its interrupts read: the used ring's state is then known.
fn served_once(dir: &Path) -> (Arc<ZcardBackend>, Session) {
    let (backend, sock) = start_in_process(dir);
    let mut s = Session::connect(&sock);
    let st = s.request(
        ReqHeader {
            opcode: Op::Nop as u8,
            ..Default::default()
        },
        &[],
    );
    assert_eq!(st.status, Status::Ok as u8);
    while s.call.read().is_ok() {}
    (backend, s)
}

/// `stray_used` puts one used entry for descriptor 0 on the used ring,
/// with nothing in flight, and signals: what a driver must survive.
#[test]
fn the_stray_used_command_completes_descriptor_0_unasked() {
    use zcard_vhost::control::handle_line;
    let dir = tempfile::tempdir().unwrap();
    let (backend, s) = served_once(dir.path());
    let used_idx = |s: &Session| -> u16 { s.mem.read_obj(GuestAddress(USED + 2)).unwrap() };
    let before = used_idx(&s);

    let reply = handle_line(&backend, r#"{"cmd":"stray_used","queue":0}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while used_idx(&s) == before || s.call.read().is_err() {
        assert!(Instant::now() < deadline, "no stray used entry");
        std::thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(used_idx(&s), before.wrapping_add(1), "one entry");
    let at = USED + 4 + 8 * u64::from(before % QSIZE);
    let (id, len): (u32, u32) = (
        s.mem.read_obj(GuestAddress(at)).unwrap(),
        s.mem.read_obj(GuestAddress(at + 4)).unwrap(),
    );
    assert_eq!((id, len), (0, 0));
    let reply = handle_line(&backend, r#"{"cmd":"stray_used","queue":9}"#);
    assert_eq!(reply["ok"], false, "{reply}");
}

#[test]
fn the_interrupt_command_signals_with_nothing_on_the_used_ring() {
    use zcard_vhost::control::handle_line;
    let dir = tempfile::tempdir().unwrap();
    let (backend, mut s) = served_once(dir.path());
    let used_before: u16 = s.mem.read_obj(GuestAddress(USED + 2)).unwrap();

    let reply = handle_line(&backend, r#"{"cmd":"interrupt","queue":0,"count":3}"#);
    assert_eq!(reply["ok"], true, "{reply}");
    let spurious = || backend.card().stats().snapshot()["queues"][0]["spurious_interrupts"].clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut signalled = 0;
    while spurious() != 3 || signalled == 0 {
        assert!(
            Instant::now() < deadline,
            "3 spurious interrupts: {}",
            spurious()
        );
        signalled += s.call.read().unwrap_or(0);
        std::thread::sleep(Duration::from_millis(2));
    }
    signalled += s.call.read().unwrap_or(0);
    assert!(
        (1..=3).contains(&signalled),
        "call eventfd counted {signalled}"
    );
    let used_after: u16 = s.mem.read_obj(GuestAddress(USED + 2)).unwrap();
    assert_eq!(used_after, used_before, "nothing new on the used ring");
    assert_eq!(
        backend.card().stats().snapshot()["queues"][0]["requests"],
        1,
        "no request was made up"
    );

    for bad in [
        r#"{"cmd":"interrupt","queue":0,"count":0}"#,
        r#"{"cmd":"interrupt","queue":0,"count":10001}"#,
        r#"{"cmd":"interrupt","queue":9}"#,
    ] {
        let reply = handle_line(&backend, bad);
        assert_eq!(reply["ok"], false, "{bad}: {reply}");
    }
    // The card still serves.
    let st = s.request(
        ReqHeader {
            opcode: Op::Nop as u8,
            ..Default::default()
        },
        &[],
    );
    assert_eq!(st.status, Status::Ok as u8);
}

/// NEEDS_RESET set from the control socket reaches the front end as
/// `VHOST_USER_BACKEND_CONFIG_CHANGE_MSG` on the back-end request channel it
/// handed over (the real binary: the channel is found in its process).
#[test]
fn needs_reset_sends_a_config_change_on_the_backend_channel() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let ctl = dir.path().join("zcard.ctl");
    // Killed however the test ends.
    struct Daemon(Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _daemon = Daemon(spawn_daemon(
        dir.path(),
        &["--control", ctl.to_str().unwrap()],
    ));
    let mut s = Session::connect(&dir.path().join("zcard.sock"));
    let (ours, mut theirs) = UnixStream::pair().unwrap();
    s.fe.set_backend_request_fd(&ours).unwrap();
    drop(ours);
    theirs
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut c = loop {
        match UnixStream::connect(&ctl) {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => panic!("control socket: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    writeln!(c, r#"{{"cmd":"needs_reset"}}"#).unwrap();
    let mut reply = String::new();
    BufReader::new(&c).read_line(&mut reply).unwrap();
    assert!(reply.contains(r#""ok":true"#), "{reply}");
    let mut hdr = [0u8; 12];
    theirs
        .read_exact(&mut hdr)
        .expect("a message on the back-end channel");
    assert_eq!(
        u32::from_le_bytes(hdr[0..4].try_into().unwrap()),
        2,
        "VHOST_USER_BACKEND_CONFIG_CHANGE_MSG"
    );
    assert_eq!(
        u32::from_le_bytes(hdr[8..12].try_into().unwrap()),
        0,
        "no payload"
    );
    drop(s);
}

fn spawn_daemon(dir: &Path, extra: &[&str]) -> Child {
    spawn_daemon_on(dir, &dir.join("card.img"), "1M", extra)
}

fn spawn_daemon_on(dir: &Path, storage: &Path, size: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_zcard-vhost"))
        .arg("--socket")
        .arg(dir.join("zcard.sock"))
        .arg("--storage")
        .arg(storage)
        .args(["--storage-size", size])
        .args(extra)
        .spawn()
        .unwrap()
}

/// A small tmpfs mounted on a directory for the test's life.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts `size` of tmpfs on `dir`, or says why it cannot (not root).
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_filesystem_is_an_io_error_and_the_card_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let fs = match Tmpfs::mount(&dir.path().join("small"), "1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("SKIPPED: cannot mount a 1 MiB tmpfs ({why}); needs root");
            return;
        }
    };
    let mut daemon = spawn_daemon_on(dir.path(), &fs.0.join("card.img"), "64M", &[]);
    let sock = dir.path().join("zcard.sock");
    let mut s = Session::connect(&sock);
    let len = 2u32 << 20;
    let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    s.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    let st = s.request(
        ReqHeader {
            opcode: Op::StorageWrite as u8,
            length: u64::from(len),
            storage_offset: 1 << 20,
            tag: 7,
            ..Default::default()
        },
        &[(DATA, len, false)],
    );
    assert_eq!(
        (st.status, st.tag),
        (Status::IoError as u8, 7),
        "2 MiB into 1 MiB of tmpfs"
    );
    assert!(
        daemon.try_wait().unwrap().is_none(),
        "the daemon survives a full filesystem"
    );
    // The card serves on: a write that fits, read back.
    let st = s.request(
        ReqHeader {
            opcode: Op::StorageWrite as u8,
            length: 4096,
            storage_offset: 32 << 20,
            ..Default::default()
        },
        &[(DATA, 4096, false)],
    );
    let freed = st.status;
    let st = s.request(
        ReqHeader {
            opcode: Op::StorageRead as u8,
            length: 4096,
            storage_offset: 32 << 20,
            ..Default::default()
        },
        &[(DATA + 0x30_0000, 4096, true)],
    );
    assert_eq!(st.status, Status::Ok as u8);
    let mut back = vec![0; 4096];
    s.mem
        .read_slice(&mut back, GuestAddress(DATA + 0x30_0000))
        .unwrap();
    if freed == Status::Ok as u8 {
        assert_eq!(back, data[..4096]);
    } else {
        // Still full: the small write fails the same way, and the block reads as never written.
        assert_eq!(freed, Status::IoError as u8);
        assert_eq!(back, vec![0; 4096]);
    }
    let st = s.request(
        ReqHeader {
            opcode: Op::Flush as u8,
            ..Default::default()
        },
        &[],
    );
    assert_eq!(st.status, Status::Ok as u8);
    drop(s);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("zcard-vhost did not exit within {within:?}");
}

#[test]
fn crash_fault_exits_mid_request_and_a_restart_keeps_flushed_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = spawn_daemon(dir.path(), &["--fault", "crash:op=nop"]);
    let sock = dir.path().join("zcard.sock");
    let mut s = Session::connect(&sock);
    let data = vec![0x5au8; 512];
    s.mem.write_slice(&data, GuestAddress(DATA)).unwrap();
    let w = ReqHeader {
        opcode: Op::StorageWrite as u8,
        length: 512,
        storage_offset: 1024,
        ..Default::default()
    };
    assert_eq!(s.request(w, &[(DATA, 512, false)]).status, 0);
    assert_eq!(
        s.request(
            ReqHeader {
                opcode: Op::Flush as u8,
                ..Default::default()
            },
            &[]
        )
        .status,
        0
    );
    // The NOP takes the crash: the daemon exits with 75 and never completes it.
    s.mem
        .write_obj(
            ReqHeader {
                opcode: Op::Nop as u8,
                ..Default::default()
            },
            GuestAddress(HDR),
        )
        .unwrap();
    let d = Descriptor::new(HDR, REQ_HEADER_SIZE, VRING_DESC_F_NEXT as u16, 1);
    s.mem.write_obj(d, GuestAddress(DESC)).unwrap();
    let d = Descriptor::new(STATUS, REQ_STATUS_SIZE, VRING_DESC_F_WRITE as u16, 0);
    s.mem.write_obj(d, GuestAddress(DESC + 16)).unwrap();
    s.mem
        .write_obj(0u16, GuestAddress(AVAIL + 4 + 2 * u64::from(s.next)))
        .unwrap();
    s.mem
        .write_obj(s.next + 1, GuestAddress(AVAIL + 2))
        .unwrap();
    s.kick.write(1).unwrap();
    assert_eq!(wait_exit(&mut daemon, Duration::from_secs(10)), Some(75));
    let used: u16 = s.mem.read_obj(GuestAddress(USED + 2)).unwrap();
    assert_eq!(used, s.next, "the crashing request was not completed");
    drop(s);

    let mut daemon = spawn_daemon(dir.path(), &[]);
    let mut s = Session::connect(&sock);
    let r = ReqHeader {
        opcode: Op::StorageRead as u8,
        length: 512,
        storage_offset: 1024,
        ..Default::default()
    };
    assert_eq!(s.request(r, &[(DATA + 0x8000, 512, true)]).status, 0);
    let mut back = vec![0; 512];
    s.mem
        .read_slice(&mut back, GuestAddress(DATA + 0x8000))
        .unwrap();
    assert_eq!(back, data);

    // The control socket answers next to the vhost-user one.
    let mut ctl = UnixStream::connect(dir.path().join("zcard.sock.ctl")).unwrap();
    writeln!(ctl, r#"{{"cmd":"stats"}}"#).unwrap();
    let mut line = String::new();
    BufReader::new(&ctl).read_line(&mut line).unwrap();
    let stats: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(stats["stats"]["ops"]["storage_read"]["requests"], 1);
    drop(s);
    daemon.kill().unwrap();
    daemon.wait().unwrap();
}

#[test]
fn bad_options_exit_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_zcard-vhost"))
        .args(["--socket", "/nonexistent-dir/zcard.sock", "--queues", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--queues 0 is outside 1..=64"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_zcard-vhost"))
        .args(["--socket", "/nonexistent-dir/zcard.sock"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot listen on"),
        "{out:?}"
    );
}

/// Runs the daemon, which is expected to refuse to start: its exit code
/// and stderr (a daemon that serves instead fails the test in 10 s).
fn refused(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_zcard-vhost"))
        .args(args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut child, Duration::from_secs(10));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (code, err)
}

#[test]
fn a_socket_path_holding_a_file_is_refused_and_the_file_kept() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("card.img");
    std::fs::write(&precious, b"the user's data").unwrap();
    let storage = dir.path().join("other.img");
    // The storage file given as the socket by mistake.
    let (code, err) = refused(&[
        "--socket".as_ref(),
        precious.as_os_str(),
        "--storage".as_ref(),
        storage.as_os_str(),
        "--storage-size".as_ref(),
        "1M".as_ref(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is not a socket"), "{err}");
    assert_eq!(std::fs::read(&precious).unwrap(), b"the user's data");
    // Refused before anything was made: no storage, no control socket.
    let made: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(made, [std::ffi::OsString::from("card.img")]);
    // One path for both: refused before either is touched.
    let (code, err) = refused(&[
        "--socket".as_ref(),
        precious.as_os_str(),
        "--storage".as_ref(),
        precious.as_os_str(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("is also a socket's path"), "{err}");
    assert_eq!(std::fs::read(&precious).unwrap(), b"the user's data");
}

#[test]
fn a_second_daemon_on_a_served_socket_is_refused_and_the_first_serves_on() {
    /// Killed however the test ends.
    struct Daemon(Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let _first = Daemon(spawn_daemon(dir.path(), &[]));
    let sock = dir.path().join("zcard.sock");
    // Served once a front end gets through.
    drop(Session::connect(&sock));
    let other = dir.path().join("other.img");
    let (code, err) = refused(&[
        "--socket".as_ref(),
        sock.as_os_str(),
        "--storage".as_ref(),
        other.as_os_str(),
        "--storage-size".as_ref(),
        "1M".as_ref(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("another daemon is serving it"), "{err}");
    assert!(!other.exists(), "made its storage before it refused");
    // With a control path of its own the probe finds no daemon there;
    // the lock on the socket does.
    let ctl = dir.path().join("other.ctl");
    let (code, err) = refused(&[
        "--socket".as_ref(),
        sock.as_os_str(),
        "--control".as_ref(),
        ctl.as_os_str(),
        "--storage".as_ref(),
        other.as_os_str(),
        "--storage-size".as_ref(),
        "1M".as_ref(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("another daemon is serving it (it holds"),
        "{err}"
    );
    assert!(
        !other.exists() && !ctl.exists(),
        "made files before it refused"
    );
    // The first one's sockets are still its own.
    let mut s = Session::connect(&sock);
    assert_eq!(s.config().len(), CONFIG_SIZE);
}
