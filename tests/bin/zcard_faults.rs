//! Platform faults under a bound zcard driver, run in the guest by the shell
//! cases `tests/sh/fault-*.sh` in a boot with the platform port
//! (`ZCOPY_PLATFORM_PORT=1`, `qemu/platform.py` on the host end):
//!
//! - `card-restart`: `kill -9` of the card's process (zcard-vhost) with
//!   requests in flight, the process started again on the same sockets and
//!   storage file, and the card given back to the guest (unplug, replug):
//!   the requests in flight fail with `ENODEV`, data flushed before the kill
//!   reads back from the new card, nothing stays pinned or in flight, and the
//!   card's control port answers again.
//! - `hot-unplug`: QMP `device_del` of the live card with requests in flight
//!   and `device_add` back: the requests complete with their result or
//!   `ENODEV`, a thread asleep in `ENTER` on another file wakes with
//!   `ENODEV`, every other call on the old file is `ENODEV`, `poll` says
//!   `EPOLLERR | EPOLLHUP`, pool mappings stay memory, and the card comes back
//!   as zcard0 and serves.
//!
//! Both end with zcard.ko unloaded and loaded again (no file, mapping or
//! request left holding it). Each prints what it checks and exits 0 when
//! everything held; a broken expectation panics (exit 101).

use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags};
use zcopy::card::{Buf, Card, Counters, Cqe, Rings, Sqe};
use zcopy_vm_tests::{platform, zcard_control};

const WAIT: Duration = Duration::from_secs(60);
const TIMEOUT_PARAM: &str = "/sys/module/zcard/parameters/timeout_ms";
/// Requests kept in flight at the fault.
const INFLIGHT: u32 = 16;
/// The storage range written and flushed before the kill.
const STORED_AT: u64 = 1 << 20;
const STORED_LEN: u32 = 64 << 10;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    match what.as_str() {
        "card-restart" => card_restart(),
        "hot-unplug" => hot_unplug(),
        _ => {
            eprintln!("usage: zcard-faults card-restart | hot-unplug");
            std::process::exit(2);
        }
    }
    println!("zcard-faults {what}: all held");
}

/// Waits until zcard0 exists with nothing in flight, pinned or alive.
fn settle() -> Counters {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(c) = Counters::read(0) {
            if c.inflight == 0 && c.pools == 0 && c.pinned == 0 {
                return c;
            }
            assert!(Instant::now() < deadline, "counters not at baseline: {c:?}");
        } else {
            assert!(Instant::now() < deadline, "no zcard0 within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(77).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

/// Keeps the card slow (each request takes 20 ms) while alive, so requests
/// are surely in flight at the fault. The rule dies with the card's process
/// in `card-restart`; otherwise it is cleared here.
struct Slow(Option<u64>);

impl Slow {
    fn new() -> Slow {
        let r = zcard_control(r#"{"cmd":"fault","rule":{"kind":"delay","delay_us":20000}}"#);
        assert_eq!(r["ok"], true, "delay rule: {r}");
        Slow(r["id"].as_u64())
    }
}

impl Slow {
    /// The card's process is gone, and its rules with it.
    fn died_with_the_card(mut self) {
        self.0 = None;
    }
}

impl Drop for Slow {
    fn drop(&mut self) {
        if let Some(id) = self.0.take() {
            zcard_control(&format!(r#"{{"cmd":"clear","id":{id}}}"#));
        }
    }
}

/// Fills `INFLIGHT` pages of `pool` (at page 1 onwards) and checks that
/// requests are on the card.
fn submit_fills(rings: &mut Rings, pool: &zcopy::card::Pool) {
    for i in 0..INFLIGHT {
        rings
            .push(
                Sqe::fill(Buf::new(pool, 4096 * u64::from(i + 1)), 4096, u64::from(i))
                    .user_data(u64::from(i)),
            )
            .expect("SQ room");
    }
    assert_eq!(rings.submit().expect("ENTER"), INFLIGHT);
    let c = Counters::read(0).expect("counters");
    assert!(c.inflight > 0, "requests in flight at the fault: {c:?}");
    println!("{} requests in flight", c.inflight);
}

/// Reaps the `INFLIGHT` completions the removal of the card gives: each is
/// the request's result or `ENODEV`. Returns how many were `ENODEV`.
fn reap_after_removal(rings: &mut Rings) -> u32 {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while seen.len() < INFLIGHT as usize {
        match rings.pop() {
            Some(c) => seen.push(c),
            None => {
                assert!(
                    Instant::now() < deadline,
                    "only {} completions: {seen:?}",
                    seen.len()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
    let mut users: Vec<u64> = seen.iter().map(|c| c.user_data).collect();
    users.sort_unstable();
    assert_eq!(
        users,
        (0..u64::from(INFLIGHT)).collect::<Vec<_>>(),
        "one CQE per request"
    );
    let enodev = seen
        .iter()
        .filter(|c: &&Cqe| c.result == -libc::ENODEV)
        .count() as u32;
    for c in &seen {
        assert!(
            c.result == 4096 || c.result == -libc::ENODEV,
            "request {}: result {} (expected 4096 or -ENODEV)",
            c.user_data,
            c.result
        );
    }
    println!(
        "{INFLIGHT} completions: {} done, {enodev} ENODEV",
        INFLIGHT - enodev
    );
    enodev
}

/// The old file after removal: every call but INFO is `ENODEV`, poll says
/// the card is gone, the node is gone.
fn check_removed(card: &Card, rings: &mut Rings) {
    assert_eq!(
        card.create_pool(4096).unwrap_err().errno(),
        Some(Errno::ENODEV)
    );
    rings.push(Sqe::nop()).expect("SQ room");
    assert_eq!(rings.submit().unwrap_err().errno(), Some(Errno::ENODEV));
    let mut fds = [PollFd::new(card.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, 1000u16).expect("poll");
    let ev = fds[0].revents().unwrap_or(PollFlags::empty());
    assert!(
        ev.contains(PollFlags::POLLERR | PollFlags::POLLHUP),
        "poll after removal: {ev:?}"
    );
    assert!(
        !std::path::Path::new("/dev/zcard0").exists(),
        "/dev/zcard0 gone"
    );
    println!("old file: ENODEV, poll ERR|HUP, node gone");
}

fn replug_and_open() -> Card {
    platform("replug");
    let deadline = Instant::now() + WAIT;
    loop {
        match Card::open_index(0) {
            Ok(c) => return c,
            Err(e) => {
                assert!(Instant::now() < deadline, "zcard0 after replug: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn run_one(rings: &mut Rings, sqe: Sqe) -> Cqe {
    let cqes = rings.run(&[sqe], WAIT).expect("ENTER");
    assert_eq!(cqes.len(), 1);
    cqes[0]
}

/// Sets the driver's request timeout, restored when dropped.
struct TimeoutMs(String);

impl TimeoutMs {
    fn set(ms: u32) -> TimeoutMs {
        let old = std::fs::read_to_string(TIMEOUT_PARAM).expect("zcard timeout_ms parameter");
        std::fs::write(TIMEOUT_PARAM, ms.to_string()).expect("timeout_ms writable");
        TimeoutMs(old.trim().to_string())
    }
}

impl Drop for TimeoutMs {
    fn drop(&mut self) {
        let _ = std::fs::write(TIMEOUT_PARAM, &self.0);
    }
}

/// With every file closed, zcard.ko unloads (nothing holds it) and loads
/// again onto the card.
fn reload_module() {
    let run = |cmd: &mut Command| assert!(cmd.status().expect("kmod tools").success(), "{cmd:?}");
    run(Command::new("rmmod").arg("zcard"));
    assert!(!std::path::Path::new("/sys/module/zcard").exists());
    run(Command::new("insmod").arg(zcopy_vm_tests::repo_root().join("driver/zcard.ko")));
    settle();
    println!("zcard.ko unloaded and loaded again");
}

fn card_restart() {
    settle();
    // No timeout before the card is given back: a timeout has the driver
    // reset the card, and QEMU aborts starting a device whose vhost-user
    // back end is gone (docs/zcard-spec.md, "Reconnect and reset").
    let timeout = TimeoutMs::set(120_000);

    let card = Card::open_index(0).expect("zcard0");
    let src = card.create_pool(1 << 20).unwrap();
    let dst = card.create_pool(1 << 20).unwrap();
    let src_map = src.map().unwrap();
    let dst_map = dst.map().unwrap();
    let data = pattern(3, STORED_LEN as usize);
    src_map.write(0, &data).unwrap();
    let mut rings = card.setup_rings(32).unwrap();
    assert_eq!(
        run_one(
            &mut rings,
            Sqe::storage_write(Buf::new(&src, 0), STORED_AT, STORED_LEN)
        )
        .result,
        STORED_LEN as i32
    );
    assert_eq!(run_one(&mut rings, Sqe::flush()).result, 0, "FLUSH");
    println!("{STORED_LEN} bytes written at {STORED_AT} and flushed");

    let slow = Slow::new();
    submit_fills(&mut rings, &dst);
    let killed = platform("card_kill");
    slow.died_with_the_card();
    println!("card's process killed: {killed}");
    platform("card_start");
    println!("card's process started again");
    let c = Counters::read(0).expect("counters");
    assert!(c.inflight > 0, "requests still on the dead card: {c:?}");

    platform("unplug");
    let enodev = reap_after_removal(&mut rings);
    assert!(
        enodev > 0,
        "requests in flight at the kill fail with ENODEV"
    );
    check_removed(&card, &mut rings);
    let mut got = vec![0u8; 8];
    src_map.read(0, &mut got).unwrap();
    assert_eq!(got, data[..8], "the mapping is still the pool's memory");
    dst_map.write(0, b"mine").unwrap();

    let fresh = replug_and_open();
    let mut fr = fresh.setup_rings(4).unwrap();
    let back = fresh.create_pool(1 << 20).unwrap();
    let back_map = back.map().unwrap();
    assert_eq!(
        run_one(
            &mut fr,
            Sqe::storage_read(STORED_AT, Buf::new(&back, 0), STORED_LEN)
        )
        .result,
        STORED_LEN as i32
    );
    let mut read = vec![0u8; STORED_LEN as usize];
    back_map.read(0, &mut read).unwrap();
    assert!(
        read == data,
        "flushed data read back intact from the restarted card"
    );
    println!("flushed data read back intact");
    let pong = zcard_control(r#"{"cmd":"ping"}"#);
    assert_eq!(pong["ok"], true, "the new card's control port: {pong}");

    drop((back_map, back, fr, fresh));
    drop((rings, src, dst, card));
    drop((src_map, dst_map));
    let after = settle();
    println!("counters at baseline: {after:?}");
    drop(timeout);
    reload_module();
}

fn hot_unplug() {
    settle();
    let card = Card::open_index(0).expect("zcard0");
    let pool = card.create_pool(1 << 20).unwrap();
    let map = pool.map().unwrap();
    map.write(0, b"before unplug").unwrap();
    let mut rings = card.setup_rings(32).unwrap();
    let slow = Slow::new();
    // A second file, its thread asleep in ENTER for more completions than
    // it has requests: only the card going away can wake it.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let card = Card::open_index(0).expect("zcard0");
        let pool = card.create_pool(1 << 20).unwrap();
        let mut rings = card.setup_rings_with(16, 32).unwrap();
        for i in 0..16 {
            rings
                .push(Sqe::fill(Buf::new(&pool, i * 4096), 4096, i))
                .unwrap();
        }
        assert_eq!(rings.submit().unwrap(), 16);
        ready_tx.send(()).unwrap();
        rings.wait(17, None).unwrap_err().errno()
    });
    ready_rx.recv().expect("the waiter submitted");
    submit_fills(&mut rings, &pool);
    // The queues stop after the request in progress: whatever the unplug
    // takes, some of every file's requests are still on the card then.
    for q in 0..card.info().num_queues {
        let r = zcard_control(&format!(r#"{{"cmd":"stall","queue":{q}}}"#));
        assert_eq!(r["ok"], true, "stall queue {q}: {r}");
    }
    platform("unplug");
    drop(slow);
    assert_eq!(
        waiter.join().expect("the waiter thread"),
        Some(Errno::ENODEV),
        "a waiter in ENTER wakes with ENODEV"
    );
    println!("a waiter in ENTER woke with ENODEV");
    reap_after_removal(&mut rings);
    check_removed(&card, &mut rings);
    let mut got = [0u8; 13];
    map.read(0, &mut got).unwrap();
    assert_eq!(&got, b"before unplug");
    map.write(0, b"after unplug!").unwrap();

    let fresh = replug_and_open();
    let mut fr = fresh.setup_rings(4).unwrap();
    let q = fresh.create_pool(4096).unwrap();
    assert_eq!(
        run_one(&mut fr, Sqe::fill(Buf::new(&q, 0), 4096, 1)).result,
        4096
    );
    println!("zcard0 back and serving");
    drop((q, fr, fresh, rings, pool, card));
    map.read(0, &mut got).unwrap();
    assert_eq!(&got, b"after unplug!", "the old mapping outlives the card");
    drop(map);
    let after = settle();
    println!("counters at baseline: {after:?}");
    reload_module();
}
