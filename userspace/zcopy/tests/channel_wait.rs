//! How a shared-memory channel waits and which slots it lends: a strict
//! ping-pong stays on the slots it got back (on one, with large slots),
//! and a receiver blocked on an idle sender sleeps (its spin is bounded).

use std::collections::BTreeSet;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use zcopy::channel::{Builder, Error, Receiver, Sender, Shm, RECLAIM_BEFORE_LOAN};

fn pair(slots: u32) -> (Sender<Shm>, Receiver<Shm>) {
    pair_of(4096, slots)
}

fn pair_of(slot_size: usize, slots: u32) -> (Sender<Shm>, Receiver<Shm>) {
    let (a, b) = UnixStream::pair().unwrap();
    let tx = Builder::new()
        .slot_size(slot_size)
        .slot_count(slots)
        .create()
        .unwrap();
    tx.share(&a).unwrap();
    let rx = Receiver::<Shm>::from_socket(&b).unwrap();
    (tx, rx)
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn a_ping_pong_reuses_the_slots_it_got_back() {
    // 64 slots, one message at a time: the sender lends the slot returned
    // last, so two slots at most carry the whole exchange (the slot just
    // sent, and the one coming back) instead of all 64 in turn.
    let (tx, rx) = pair(64);
    let mut used = BTreeSet::new();
    for i in 0..1000u32 {
        let mut loan = tx.loan().unwrap();
        used.insert(loan.index());
        loan.as_mut_slice()[..4].copy_from_slice(&i.to_le_bytes());
        loan.send(4).unwrap();
        let got = rx.recv().unwrap();
        assert_eq!(got[..4], i.to_le_bytes());
    }
    assert!(used.len() <= 2, "slots used: {used:?}");
}

#[test]
fn a_ping_pong_of_large_slots_stays_on_one() {
    // Large slots are taken back before each loan too: the message the
    // receiver dropped is back by the next loan, so a sender writing
    // whole messages writes the same memory every time.
    let (tx, rx) = pair_of(RECLAIM_BEFORE_LOAN, 8);
    let mut used = BTreeSet::new();
    for i in 0..100u32 {
        let mut loan = tx.loan().unwrap();
        used.insert(loan.index());
        loan.as_mut_slice().fill(i as u8);
        loan.send(RECLAIM_BEFORE_LOAN).unwrap();
        let got = rx.recv().unwrap();
        assert!(got.iter().all(|&b| b == i as u8), "message {i}");
    }
    assert_eq!(used.len(), 1, "slots used: {used:?}");
}

#[test]
fn a_receiver_blocked_on_an_idle_sender_sleeps() {
    // The default spin before sleeping is bounded: over 400 ms of waiting
    // on a sender that sends nothing, the receiver burns almost no CPU
    // (a spin that never ended would burn all 400 ms).
    let (_tx, rx) = pair(4);
    let wait = Duration::from_millis(400);
    let (c0, t0) = (thread_cpu(), Instant::now());
    assert!(matches!(rx.recv_timeout(wait), Err(Error::Timeout)));
    let (cpu, wall) = (thread_cpu() - c0, t0.elapsed());
    assert!(wall >= wait, "{wall:?}");
    assert!(
        cpu < wait / 10,
        "a receiver waiting {wall:?} used {cpu:?} of CPU"
    );
}

#[test]
fn a_blocked_receiver_wakes_for_a_message_after_its_spin() {
    // Past the spin, the receiver sleeps in the futex; a send from another
    // thread wakes it.
    let (a, b) = UnixStream::pair().unwrap();
    std::thread::scope(|s| {
        s.spawn(move || {
            let tx = Builder::new().slot_size(64).slot_count(4).create().unwrap();
            tx.share(&a).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            tx.send_copy(b"late").unwrap();
        });
        let rx = Receiver::<Shm>::from_socket(&b).unwrap();
        assert_eq!(&rx.recv().unwrap()[..], b"late");
    });
}
