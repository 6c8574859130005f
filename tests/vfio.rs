//! The card driven from user space through VFIO (userspace/zcard-vfio), in
//! the VFIO boot (`qemu/run.sh --vfio`, docs/vfio.md): every op on every
//! queue polled and with interrupts, batches filling the queues, buffers
//! across hugepages, the card's faults, kill -9 mid-stream followed by a
//! new process, many open/close cycles, an unbind refused while a process
//! has the card, and the card given back to virtio-pci. The guest test
//! entry runs this suite only in that boot.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zcard_vfio::selftest::{op_suite, pattern};
use zcard_vfio::sysfs::{PciCard, Sysfs, VFIO_DRIVER};
use zcard_vfio::wire::{Status, STATE_NEEDS_RESET};
use zcard_vfio::Buffer;
use zcard_vfio::{Card, Error, Options, Request};
use zcopy_vm_tests::differential::{
    self, DiffOp, Driver, BUFFERS, BUFFER_BYTES, STORAGE_BASE, STORAGE_BYTES,
};
use zcopy_vm_tests::{read_attr, zcard_control};

const WAIT: Duration = Duration::from_secs(30);

/// The card, bound to vfio-pci.
fn bound() -> PciCard {
    let s = Sysfs::default();
    let card = s.find(None).expect("a zcard on the PCI bus");
    s.bind_vfio(&card).unwrap_or_else(|e| panic!("{e}"))
}

fn open(interrupts: bool, event_idx: bool) -> Card {
    bound();
    let opts = Options {
        interrupts,
        event_idx,
        ..Options::default()
    };
    Card::open(&opts).unwrap_or_else(|e| panic!("{e}"))
}

/// The `zcard-vfio` binary, built next to this test's directory.
fn tool() -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps/..");
    let bin = dir.join("zcard-vfio");
    assert!(
        bin.exists(),
        "{} missing: cargo build -p zcard-vfio",
        bin.display()
    );
    bin
}

/// A fault rule on the card, cleared when dropped.
struct Fault(u64);

impl Fault {
    fn add(rule: &str) -> Fault {
        let r = zcard_control(&format!(r#"{{"cmd":"fault","rule":{rule}}}"#));
        assert_eq!(r["ok"], true, "{r}");
        Fault(r["id"].as_u64().expect("rule id"))
    }
}

impl Drop for Fault {
    fn drop(&mut self) {
        zcard_control(&format!(r#"{{"cmd":"clear","id":{}}}"#, self.0));
    }
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_card_is_alone_in_its_iommu_group_and_binds_to_vfio_pci() {
    let card = bound();
    assert_eq!(card.driver.as_deref(), Some(VFIO_DRIVER));
    let group = Sysfs::default().sole_group(&card).unwrap();
    assert!(Path::new(&format!("/dev/vfio/{group}")).exists());
    let out = Command::new(tool()).arg("list").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("driver=vfio-pci"));
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn every_op_on_every_queue_polled() {
    let card = open(false, true);
    assert!(card.num_queues() >= 2);
    // The suite writes storage; it puts back what was there.
    let blocks = card.alloc(4096 * usize::from(card.num_queues())).unwrap();
    let ours = pattern(blocks.len(), 0x5a);
    blocks.write(0, &ours).unwrap();
    let write = [Request::storage_write(blocks.all(), 0), Request::flush()];
    for c in card.run(0, &write, WAIT).unwrap() {
        assert!(c.is_ok(), "{c:?}");
    }
    for q in 0..card.num_queues() {
        op_suite(&card, q).unwrap_or_else(|e| panic!("{e}"));
    }
    let back = card.alloc(blocks.len()).unwrap();
    let c = card
        .run(0, &[Request::storage_read(0, back.all())], WAIT)
        .unwrap();
    assert!(c[0].is_ok(), "{c:?}");
    assert!(back.to_vec() == ours, "the suite left storage changed");
}

/// A request that needs more descriptors than its queue has: the library
/// says it can never fit (not that the queue is full, which a caller would
/// wait out), and the tool refuses such a queue size up front.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_request_larger_than_its_queue_is_refused() {
    bound();
    let opts = Options {
        queue_size: 2,
        interrupts: false,
        ..Options::default()
    };
    let card = Card::open(&opts).unwrap_or_else(|e| panic!("{e}"));
    let (a, b) = (card.alloc(64).unwrap(), card.alloc(64).unwrap());
    match card.run(0, &[Request::copy(a.all(), b.all())], WAIT) {
        Err(Error::TooBig { need, size: 2, .. }) => assert!(need > 2),
        other => panic!("a COPY on a queue of 2: {other:?}"),
    }
    drop(card);
    let out = Command::new(tool())
        .args(["selftest", "--queue-size", "2"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("4..=32768"), "{err}");
    // A bench of no time has nothing to measure or check.
    let out = Command::new(tool())
        .args(["bench", "--seconds", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
}

/// Interrupts taken so far by the card's MSI-X vector (the vfio-msix line
/// of /proc/interrupts, there while a process has the vector enabled).
fn msix_interrupts() -> u64 {
    let text = std::fs::read_to_string("/proc/interrupts").expect("/proc/interrupts");
    text.lines()
        .filter(|l| l.contains("vfio-msix"))
        .flat_map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|w| w.parse::<u64>().ok())
        })
        .sum()
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn every_op_on_every_queue_with_interrupts() {
    for event_idx in [true, false] {
        let card = open(true, event_idx);
        let before = msix_interrupts();
        for q in 0..card.num_queues() {
            op_suite(&card, q).unwrap_or_else(|e| panic!("event_idx {event_idx}: {e}"));
        }
        // The completions woke the waiter through the interrupt, not only
        // through the used ring's fallback polling.
        let after = msix_interrupts();
        assert!(
            after > before,
            "event_idx {event_idx}: no MSI-X interrupt ({before} -> {after})"
        );
    }
}

/// Queues filled with copies from two threads at once, data checked.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn full_batches_on_every_queue_at_once() {
    let card = open(true, true);
    let len = 16 << 10;
    std::thread::scope(|s| {
        for q in 0..card.num_queues() {
            let card = &card;
            s.spawn(move || {
                // A copy takes 4 descriptors, 5 when a buffer spans two hugepages.
                let depth = usize::from(card.queue_size(q).unwrap()) / 5;
                let pairs: Vec<_> = (0..depth)
                    .map(|i| {
                        let (a, b) = (card.alloc(len).unwrap(), card.alloc(len).unwrap());
                        a.write(0, &pattern(len, (i + 7 * usize::from(q)) as u8))
                            .unwrap();
                        (a, b)
                    })
                    .collect();
                for round in 0..8 {
                    let reqs: Vec<_> = pairs
                        .iter()
                        .enumerate()
                        .map(|(i, (a, b))| Request::copy(a.all(), b.all()).user_data(i as u64))
                        .collect();
                    let done = card.run(q, &reqs, WAIT).unwrap();
                    assert_eq!(done.len(), depth);
                    for c in done {
                        assert!(c.is_ok(), "queue {q} round {round}: {c:?}");
                        let i = c.user_data as usize;
                        assert!(
                            pairs[i].1.to_vec() == pattern(len, (i + 7 * usize::from(q)) as u8)
                        );
                    }
                    for (_, b) in &pairs {
                        b.write(0, &vec![0; len]).unwrap();
                    }
                }
            });
        }
    });
}

/// A 3 MiB copy spans two hugepages, which need not be physically
/// adjacent: the driver splits it into one segment per contiguous piece.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn buffers_across_hugepages() {
    let card = open(false, true);
    let len = 3 << 20;
    let (a, b) = (card.alloc(len).unwrap(), card.alloc(len).unwrap());
    let data = pattern(len, 0x5a);
    a.write(0, &data).unwrap();
    let c = card
        .run(0, &[Request::copy(a.all(), b.all())], WAIT)
        .unwrap();
    assert!(c[0].is_ok(), "{c:?}");
    assert!(b.to_vec() == data, "3 MiB copy differs");
    let c = card.run(1, &[Request::crc32c(b.all(), 0)], WAIT).unwrap();
    assert_eq!(c[0].result, zcopy_vm_tests::crc32c_reference(0, &data));
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_cards_faults_are_handled_as_the_spec_says() {
    let card = open(true, true);
    let (a, b) = (card.alloc(4096).unwrap(), card.alloc(4096).unwrap());

    // fail: the request completes with the rule's status, nothing written.
    {
        let _f = Fault::add(r#"{"kind":"fail","op":"copy","status":"io_error","nth":1}"#);
        let c = card
            .run(0, &[Request::copy(a.all(), b.all())], WAIT)
            .unwrap();
        assert_eq!(c[0].status(), Some(Status::IoError));
    }
    // delay: completes late, and the queue keeps serving.
    {
        let _f = Fault::add(r#"{"kind":"delay","op":"nop","delay_us":200000,"count":1}"#);
        let t = Instant::now();
        assert!(card.run(0, &[Request::nop()], WAIT).unwrap()[0].is_ok());
        assert!(t.elapsed() >= Duration::from_millis(200));
    }
    // lost_interrupt: no interrupt comes; the wait finds it by polling.
    {
        let _f = Fault::add(r#"{"kind":"lost_interrupt","nth":1}"#);
        assert!(card.run(1, &[Request::nop()], WAIT).unwrap()[0].is_ok());
    }
    // stall: nothing completes (a timeout), then release serves it.
    {
        let _f = Fault::add(r#"{"kind":"stall","queue":0,"op":"nop"}"#);
        card.submit(0, &[Request::nop().user_data(77)]).unwrap();
        let e = card.wait(0, Duration::from_millis(300)).unwrap_err();
        assert!(matches!(e, Error::Timeout { queue: 0, .. }), "{e}");
        let r = zcard_control(r#"{"cmd":"release","queue":0}"#);
        assert_eq!(r["ok"], true);
        assert_eq!(card.wait(0, WAIT).unwrap().user_data, 77);
    }
    drop(card);
    // needs_reset: every request says so until the driver resets the card.
    let mut card = open(true, true);
    {
        let _f = Fault::add(r#"{"kind":"needs_reset","op":"fill"}"#);
        let b = card.alloc(4096).unwrap();
        let c = card.run(0, &[Request::fill(b.all(), 1)], WAIT).unwrap();
        assert_eq!(c[0].status(), Some(Status::NeedsReset));
    }
    let c = card.run(1, &[Request::nop()], WAIT).unwrap();
    assert_eq!(c[0].status(), Some(Status::NeedsReset));
    assert_ne!(card.read_config().device_state & STATE_NEEDS_RESET, 0);
    card.reset(&Options::default()).unwrap();
    assert_eq!(card.read_config().device_state & STATE_NEEDS_RESET, 0);
    op_suite(&card, 0).unwrap_or_else(|e| panic!("after reset: {e}"));
}

/// kill -9 of a driver process with copies in flight, then a new process
/// opens the card and runs the op suite; the card model counts the resets.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn kill_9_mid_stream_then_a_new_process_runs_the_op_suite() {
    bound();
    for round in 0..3 {
        let mut child = Command::new(tool())
            .args(["stream", "--depth", "16"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "streaming", "round {round}");
        std::thread::sleep(Duration::from_millis(300));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let out = Command::new(tool())
            .args(["selftest", "--poll"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "round {round}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let card = open(true, true);
    op_suite(&card, 1).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_card_survives_many_open_close_cycles() {
    let before = zcard_control(r#"{"cmd":"stats"}"#)["stats"]["resets"]
        .as_u64()
        .unwrap();
    for i in 0..12 {
        let card = open(i % 2 == 0, true);
        let c = card
            .run(i % 2, &[Request::nop().user_data(u64::from(i))], WAIT)
            .unwrap();
        assert!(c[0].is_ok() && c[0].user_data == u64::from(i));
    }
    let after = zcard_control(r#"{"cmd":"stats"}"#)["stats"]["resets"]
        .as_u64()
        .unwrap();
    assert!(after >= before + 12, "resets {before} -> {after}");
}

/// While a process has the card open, `zcard-vfio unbind` is refused at
/// once: vfio-pci would make the unbind wait, past any signal, until that
/// process closed the card.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn unbinding_a_card_in_use_is_refused_at_once() {
    bound();
    let mut stream = Command::new(tool())
        .args(["stream", "--depth", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "streaming");
    let mut unbind = Command::new(tool())
        .arg("unbind")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Long enough for a slow guest; a waiting unbind never ends by itself.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut ended = None;
    while ended.is_none() && Instant::now() < deadline {
        ended = unbind.try_wait().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    // Ended or not, the stream goes: a waiting unbind then ends too.
    stream.kill().unwrap();
    stream.wait().unwrap();
    let out = unbind.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(ended.is_some(), "the unbind waited for the stream: {err}");
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("is in use"), "{err}");
    let card = open(false, true);
    op_suite(&card, 0).unwrap_or_else(|e| panic!("{e}"));
}

/// Unbinding from vfio-pci gives the card back to virtio-pci, which makes a
/// virtio device of id 38 of it again; then it binds to vfio-pci again.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn unbinding_gives_the_card_back_to_virtio_pci() {
    let s = Sysfs::default();
    let card = bound();
    let back = s.unbind_vfio(&card).unwrap();
    assert_eq!(back.driver.as_deref(), Some("virtio-pci"));
    let virtio = std::fs::read_dir(&back.path)
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("virtio"))
        .expect("a virtio device under the card");
    assert_eq!(read_attr(virtio.path().join("device")).unwrap(), "0x0026");
    assert_eq!(
        read_attr(back.path.join("driver_override")).unwrap(),
        "(null)"
    );
    let card = open(false, true);
    op_suite(&card, 0).unwrap_or_else(|e| panic!("after rebinding: {e}"));
}

/// The VFIO driver's half of the differential check (tests/differential.rs
/// is zcard.ko's): the same seeded sequences, compared with the model and
/// with zcard.ko's trace when the normal boot saved one.
struct Vfio {
    card: Card,
    bufs: Vec<Buffer>,
    scratch: Buffer,
}

impl Vfio {
    fn one(&self, r: Request) -> Result<u32, String> {
        let c = self.card.run(0, &[r], WAIT).map_err(|e| e.to_string())?;
        match c[0].status() {
            Some(Status::Ok) => Ok(c[0].result),
            _ => Err(format!("{:?}", c[0].outcome)),
        }
    }

    fn at(&self, (b, off): (usize, usize), len: usize) -> zcard_vfio::Slice {
        self.bufs[b].slice(off, len).expect("in the buffer")
    }
}

impl Driver for Vfio {
    fn load(&mut self, init: &[Vec<u8>]) {
        for (b, data) in self.bufs.iter().zip(init) {
            b.write(0, data).unwrap();
        }
        self.scratch.write(0, &vec![0; STORAGE_BYTES]).unwrap();
        self.one(Request::storage_write(self.scratch.all(), STORAGE_BASE))
            .expect("zero the storage region");
    }

    fn run(&mut self, op: DiffOp) -> Result<u32, String> {
        let r = match op {
            DiffOp::Copy { src, dst, len } => Request::copy(self.at(src, len), self.at(dst, len)),
            DiffOp::Fill { dst, len, pattern } => Request::fill(self.at(dst, len), pattern),
            DiffOp::Crc { src, len, seed } => Request::crc32c(self.at(src, len), seed),
            DiffOp::StorageWrite { src, soff, len } => {
                Request::storage_write(self.at(src, len), STORAGE_BASE + soff as u64)
            }
            DiffOp::StorageRead { soff, dst, len } => {
                Request::storage_read(STORAGE_BASE + soff as u64, self.at(dst, len))
            }
            DiffOp::Flush => Request::flush(),
        };
        self.one(r)
    }

    fn buffer(&mut self, i: usize) -> Vec<u8> {
        self.bufs[i].to_vec()
    }

    fn storage(&mut self) -> Vec<u8> {
        self.one(Request::storage_read(STORAGE_BASE, self.scratch.all()))
            .expect("read the storage region");
        self.scratch.to_vec()
    }
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_same_seeded_sequences_give_the_same_results_through_vfio() {
    let card = open(true, true);
    let bufs = (0..BUFFERS)
        .map(|_| card.alloc(BUFFER_BYTES).unwrap())
        .collect();
    let scratch = card.alloc(STORAGE_BYTES).unwrap();
    let mut v = Vfio {
        card,
        bufs,
        scratch,
    };
    differential::check("vfio", "zcard-ko", &mut v, 300).unwrap_or_else(|e| panic!("{e}"));
}
