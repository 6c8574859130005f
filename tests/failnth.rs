//! Allocation failures in every call of the user ABI: with the debug
//! kernel's fault injection (`/proc/thread-self/fail-nth`), each ioctl (and
//! the open and the pool mmap) is driven through its first allocation
//! failures, one failure per try, until a try makes no more allocations than
//! the one failed. Every try must end in success or its documented errno
//! (`ENOMEM`; a NOP's CQE may carry it too), and leave the driver's counters at
//! baseline; an oops, a KASAN report or a leak fails the debug run itself
//! (`make qemu-test-debug`).
//!
//! The probe goes the same way: zcard is bound to the card with its 1st,
//! 2nd, ... allocation failing (the probe runs in the task that writes
//! `bind`). A bind must succeed with a card that serves, or fail with
//! `ENOMEM` and leave nothing bound; a reset card (virtio-pci bound again)
//! then serves as after boot.
//!
//! On a kernel without fault injection (stock, backports) there is nothing to
//! drive and the test says so and returns; on the debug kernel
//! (`ZCOPY_KERNEL=debug`) a missing `fail-nth` is a failure.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use nix::errno::Errno;
use zcopy::card::uapi::{self, ZcardEventfd, ZcardPoolCreate, ZcardRingSetup};
use zcopy::card::{Card, Error, Sqe};
use zcopy_vm_tests::settle_zcard0;

/// Most failures driven into one call: a call that still fails at its
/// 64th allocation allocates in a loop, and that is a finding by itself.
const MAX_NTH: u32 = 64;

/// Most failures driven into one bind: the probe registers a device, its
/// sysfs and debugfs files and the card's virtqueues, some hundred
/// allocations of the driver core and of virtio before and around zcard's.
const MAX_PROBE_NTH: u32 = 600;

/// The calling thread's fail-nth file, opened once (opening allocates).
struct FailNth(File);

impl FailNth {
    fn open() -> Option<FailNth> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open("/proc/thread-self/fail-nth")
            .ok()
            .map(FailNth)
    }

    /// Runs `call` with its `n`th fault-injectable allocation failing; true
    /// when the failure was injected (the call made at least `n`).
    fn run<T>(&self, n: u32, call: impl FnOnce() -> T) -> (T, bool) {
        self.0
            .write_at(n.to_string().as_bytes(), 0)
            .expect("arm fail-nth");
        let out = call();
        let mut buf = [0u8; 16];
        let len = self.0.read_at(&mut buf, 0).expect("read fail-nth");
        self.0.write_at(b"0", 0).expect("disarm fail-nth");
        let left: u32 = std::str::from_utf8(&buf[..len])
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or(1);
        (out, left == 0)
    }
}

/// Failslab and fail_page_alloc act on every allocation of the task, the
/// sleeping ones and order 0 included, and print nothing per failure.
fn configure_fault_injection() {
    for (file, value) in [
        ("failslab/ignore-gfp-wait", "N"),
        ("failslab/verbose", "0"),
        ("fail_page_alloc/ignore-gfp-wait", "N"),
        ("fail_page_alloc/ignore-gfp-highmem", "N"),
        ("fail_page_alloc/min-order", "0"),
        ("fail_page_alloc/verbose", "0"),
    ] {
        let path = format!("/sys/kernel/debug/{file}");
        std::fs::write(&path, value).unwrap_or_else(|e| panic!("{path}: {e}"));
    }
}

/// The errno behind a failed call of `zcopy::card`.
fn errno_of(e: Error) -> Errno {
    match e {
        Error::Open { source, .. } | Error::Map { source, .. } => {
            Errno::from_raw(source.raw_os_error().unwrap_or(0))
        }
        other => other.errno().unwrap_or(Errno::UnknownErrno),
    }
}

/// Drives `call` (run on state `prepare` makes, outside the window) through
/// its allocation failures; `call` returns the errno it ended with, if any.
fn sweep<S>(
    nth: &FailNth,
    name: &str,
    mut prepare: impl FnMut() -> S,
    mut call: impl FnMut(&mut S) -> Option<Errno>,
) {
    let before = settle_zcard0();
    for n in 1..=MAX_NTH {
        let mut state = prepare();
        let (errno, injected) = nth.run(n, || call(&mut state));
        drop(state);
        if let Some(e) = errno {
            assert!(
                injected && e == Errno::ENOMEM,
                "{name}: allocation {n} failed ({injected}), the call said {e}"
            );
        }
        let after = settle_zcard0();
        assert_eq!(
            (after.errors, after.timeouts, after.resets),
            (before.errors, before.timeouts, before.resets),
            "{name}: failure {n} left the card in trouble"
        );
        if !injected {
            println!("{name}: {} allocations, each failure handled", n - 1);
            return;
        }
    }
    panic!("{name}: still allocating at its {MAX_NTH}th allocation");
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn every_call_survives_its_allocation_failures() {
    let Some(nth) = FailNth::open() else {
        assert_ne!(
            std::env::var("ZCOPY_KERNEL").as_deref(),
            Ok("debug"),
            "the debug kernel has no /proc/thread-self/fail-nth"
        );
        println!("no fault injection in this kernel: nothing to drive (make qemu-test-debug does)");
        return;
    };
    configure_fault_injection();
    let card = || Card::open_index(0).expect("/dev/zcard0");

    sweep(
        &nth,
        "open + INFO",
        || (),
        |_| Card::open_index(0).err().map(errno_of),
    );
    sweep(&nth, "POOL_CREATE", card, |c| {
        let mut pc = ZcardPoolCreate {
            size: 256 << 10,
            ..Default::default()
        };
        // SAFETY: an open descriptor and a valid `struct zcard_pool_create`.
        unsafe { uapi::zcard_ioc_pool_create(c.as_fd().as_raw_fd(), &mut pc) }.err()
    });
    sweep(
        &nth,
        "POOL_DESTROY",
        || {
            // A pool without a handle: the file's close frees it if the
            // destroy fails.
            let c = card();
            let mut pc = ZcardPoolCreate {
                size: 64 << 10,
                ..Default::default()
            };
            // SAFETY: an open descriptor and a valid `struct zcard_pool_create`.
            unsafe { uapi::zcard_ioc_pool_create(c.as_fd().as_raw_fd(), &mut pc) }.expect("a pool");
            (c, pc.pool_id)
        },
        |(c, id)| {
            // SAFETY: an open descriptor and a valid `u32`.
            unsafe { uapi::zcard_ioc_pool_destroy(c.as_fd().as_raw_fd(), id) }.err()
        },
    );
    sweep(
        &nth,
        "POOL_EXPORT",
        || {
            let c = card();
            let p = c.create_pool(64 << 10).expect("a pool");
            (c, p)
        },
        |(_, p)| p.export().err().map(errno_of),
    );
    sweep(
        &nth,
        "POOL_IMPORT",
        || {
            let c = card();
            let p = c.create_pool(64 << 10).expect("a pool");
            let fd = p.export().expect("exported");
            (card(), c, p, fd)
        },
        |(other, _, _, fd)| other.import_pool(fd.as_fd()).err().map(errno_of),
    );
    sweep(
        &nth,
        "mmap of a pool",
        || {
            let c = card();
            let p = c.create_pool(64 << 10).expect("a pool");
            (c, p)
        },
        |(_, p)| p.map().err().map(errno_of),
    );
    sweep(&nth, "RING_SETUP", card, |c| {
        let mut rs = ZcardRingSetup {
            sq_entries: 8,
            ..Default::default()
        };
        // SAFETY: an open descriptor and a valid `struct zcard_ring_setup`.
        unsafe { uapi::zcard_ioc_ring_setup(c.as_fd().as_raw_fd(), &mut rs) }.err()
    });
    sweep(
        &nth,
        "ENTER (a NOP)",
        || {
            let c = card();
            let mut rings = c.setup_rings(8).expect("rings");
            // One round first: every ring page is mapped before the window.
            assert_eq!(
                rings.run(&[Sqe::nop()], Duration::from_secs(10)).unwrap()[0].result,
                0
            );
            rings.push(Sqe::nop()).expect("an SQ slot");
            (c, rings)
        },
        |(_, rings)| {
            let e = rings.submit().err().map(errno_of);
            if e.is_none() {
                let _ = rings.wait(1, Some(Duration::from_secs(10)));
                let cqe = rings.pop().expect("the NOP's completion");
                if cqe.result < 0 {
                    return Some(Errno::from_raw(-cqe.result));
                }
            }
            e
        },
    );
    sweep(
        &nth,
        "SET_EVENTFD",
        || {
            let efd = nix::sys::eventfd::EventFd::new().expect("an eventfd");
            (card(), efd)
        },
        |(c, efd)| {
            let ef = ZcardEventfd {
                fd: efd.as_fd().as_raw_fd(),
                reserved0: 0,
            };
            // SAFETY: an open descriptor and a valid `struct zcard_eventfd`.
            unsafe { uapi::zcard_ioc_set_eventfd(c.as_fd().as_raw_fd(), &ef) }.err()
        },
    );
}

/// The virtio device zcard is bound to, and the PCI function under it.
fn card_devices() -> (String, String) {
    let vdev = std::fs::read_dir("/sys/bus/virtio/drivers/zcard")
        .expect("zcard driver registered")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("virtio"))
        .expect("a device bound to zcard");
    let real = std::fs::canonicalize(format!("/sys/bus/virtio/devices/{vdev}")).unwrap();
    let pci = real
        .parent()
        .and_then(|p| p.file_name())
        .expect("a PCI function under the virtio device")
        .to_string_lossy()
        .into_owned();
    (vdev, pci)
}

/// A card as after boot: virtio-pci unbound from `pci` and bound again,
/// which resets the device and registers a new virtio device, to which the
/// bus binds zcard. Returns that virtio device.
fn fresh_card(pci: &str) -> String {
    let drv = Path::new("/sys/bus/pci/drivers/virtio-pci");
    if drv.join(pci).exists() {
        std::fs::write(drv.join("unbind"), pci).expect("unbind virtio-pci");
    }
    std::fs::write(drv.join("bind"), pci).expect("bind virtio-pci");
    let (vdev, again) = card_devices();
    assert_eq!(again, pci);
    vdev
}

/// A bound card serves: zcard0 opens and a NOP completes.
fn card_serves(why: &str) {
    let card = Card::open_index(0).unwrap_or_else(|e| panic!("{why}: zcard0: {e}"));
    let mut rings = card.setup_rings(2).expect("rings");
    let cqe = rings
        .run(&[Sqe::nop()], Duration::from_secs(10))
        .expect("a NOP")[0];
    assert_eq!(cqe.result, 0, "{why}: the NOP");
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_probe_survives_its_allocation_failures() {
    let Some(nth) = FailNth::open() else {
        assert_ne!(
            std::env::var("ZCOPY_KERNEL").as_deref(),
            Ok("debug"),
            "the debug kernel has no /proc/thread-self/fail-nth"
        );
        println!("no fault injection in this kernel: nothing to drive (make qemu-test-debug does)");
        return;
    };
    configure_fault_injection();
    let (mut vdev, pci) = card_devices();
    settle_zcard0();
    let zcard = Path::new("/sys/bus/virtio/drivers/zcard");
    let (mut bound_ok, mut refused) = (0, 0);
    for n in 1..=MAX_PROBE_NTH {
        std::fs::write(zcard.join("unbind"), &vdev).expect("unbind zcard");
        assert!(!Path::new("/dev/zcard0").exists());
        // The probe runs in the writing task, so its allocations count.
        let (bound, injected) = nth.run(n, || std::fs::write(zcard.join("bind"), &vdev));
        match bound {
            Ok(()) => {
                card_serves(&format!("bound with allocation {n} failed"));
                bound_ok += 1;
            }
            Err(e) => {
                assert!(
                    injected && e.raw_os_error() == Some(libc::ENOMEM),
                    "bind with allocation {n} failed ({injected}): {e}"
                );
                assert!(
                    !zcard.join(&vdev).exists() && !Path::new("/dev/zcard0").exists(),
                    "a failed probe left the card bound"
                );
                // virtio leaves a device whose probe failed in FAILED state:
                // start from a reset card, as after boot.
                vdev = fresh_card(&pci);
                card_serves(&format!("after the probe failed at allocation {n}"));
                refused += 1;
            }
        }
        let c = settle_zcard0();
        assert_eq!((c.errors, c.timeouts), (0, 0), "probe try {n}");
        if !injected {
            eprintln!(
                "probe: {} allocations; {refused} failures refused the bind with ENOMEM, \
                 {bound_ok} were absorbed and the card served",
                n - 1
            );
            return;
        }
    }
    panic!("probe: still allocating at its {MAX_PROBE_NTH}th allocation");
}
