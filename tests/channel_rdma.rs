//! The channel over RDMA between the guest's two Soft-RoCE devices: the
//! conformance suite every transport passes, the same seeded stream through
//! every transport, dead peers and broken links, and the RDMA resources
//! given back. Guest only: make qemu-test.

use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use zcopy::channel::{Builder, CardSlots, Error, Rx, Shm, Tx, TxLoan, Wait};
use zcopy::rdma::{BuilderExt, PeerHello};
use zcopy_vm_tests::channel::{
    check_message, pair, rdma_addrs, rdma_resources, read_line, scaled, send_message,
    spawn_with_fd3, Harness, Rdma,
};
use zcopy_vm_tests::conformance::{pattern_byte, peer_exe};

zcopy_vm_tests::conformance_suite!(Rdma, #[ignore = "runs in the zcopy guest: make qemu-test"]);

/// Sends `sizes` (one message each, bytes from pattern_byte) and returns
/// what arrived, in arrival order.
fn stream<H: Harness>(ctx: &H::Ctx, slot: usize, sizes: &[usize]) -> Vec<Vec<u8>> {
    let (tx, rx) = pair::<H>(ctx, slot, 4);
    let mut out = Vec::new();
    for (chunk_start, chunk) in sizes.chunks(4).enumerate() {
        for (k, &len) in chunk.iter().enumerate() {
            let seq = (chunk_start * 4 + k) as u64;
            let mut loan = tx
                .loan_with(Wait::Timeout(Duration::from_secs(30)))
                .unwrap();
            for (i, b) in loan.as_mut_slice()[..len].iter_mut().enumerate() {
                *b = pattern_byte(seq, i);
            }
            loan.send(len).unwrap();
        }
        for _ in chunk {
            out.push(rx.recv_timeout(Duration::from_secs(30)).unwrap().to_vec());
        }
    }
    out
}

/// The same seeded message stream through shared memory, card pool slots
/// and RDMA comes out as the same bytes in the same order.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn same_stream_same_bytes_over_every_transport() {
    let config = zcopy_testkit::proptest_config("differential_transports", scaled(8, 4) as u32);
    let mut runner = TestRunner::new(config);
    let card = zcopy::card::Card::open_index(0).ok();
    runner
        .run(
            &(
                prop_oneof![Just(64u32), Just(4096), Just(65536)],
                prop::collection::vec(any::<u32>(), 1..60),
            ),
            |(slot, raw)| {
                let sizes: Vec<usize> = raw
                    .iter()
                    .map(|r| *r as usize % (slot as usize + 1))
                    .collect();
                let shm = stream::<Shm>(&(), slot as usize, &sizes);
                let rdma = stream::<Rdma>(&(), slot as usize, &sizes);
                prop_assert_eq!(shm.len(), sizes.len());
                for (i, m) in shm.iter().enumerate() {
                    prop_assert_eq!(m.len(), sizes[i]);
                    prop_assert!(m
                        .iter()
                        .enumerate()
                        .all(|(j, &b)| b == pattern_byte(i as u64, j)));
                }
                prop_assert!(rdma == shm, "RDMA differs from shm");
                if let Some(card) = &card {
                    let c = stream::<CardSlots>(card, slot as usize, &sizes);
                    prop_assert!(c == shm, "card slots differ from shm");
                }
                Ok(())
            },
        )
        .unwrap();
    assert!(card.is_some(), "the guest has the card: the card leg ran");
}

const KINDS: [&str; 5] = ["qp", "cq", "mr", "pd", "cm_id"];

fn resources() -> Vec<usize> {
    KINDS.iter().map(|k| rdma_resources(k)).collect()
}

/// Resource counts come back to `base` within `limit` (the kernel tears a
/// killed process's down asynchronously).
fn back_to(base: &[usize], limit: Duration) {
    let t = Instant::now();
    loop {
        let now = resources();
        if now == base {
            return;
        }
        assert!(
            t.elapsed() < limit,
            "RDMA resources {KINDS:?}: {now:?}, before {base:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// kill -9 of the receiver mid-stream: the sender errors within the bound
/// and every QP, CQ, MR, PD and cm_id of both is released.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn killed_receiver_errors_the_sender_and_resources_go() {
    let base = resources();
    let (a, b) = UnixStream::pair().unwrap();
    let mut child = spawn_with_fd3(&peer_exe(), &["rdma", "recv-forever"], &b);
    let tx = Rdma::offer(&(), 4096, 16, &a).unwrap();
    assert_eq!(read_line(&mut child), "attached");
    let during = resources();
    assert!(
        during.iter().zip(&base).all(|(d, b)| d > b),
        "{during:?} vs {base:?}"
    );
    let mut seq = 0;
    let t = loop {
        send_message(&tx, seq).unwrap();
        seq += 1;
        if seq == 200 {
            kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
            break Instant::now();
        }
    };
    let err = loop {
        match send_message(&tx, seq) {
            Ok(()) => seq += 1,
            Err(e) => break e,
        }
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still sending {:?} after the kill",
            t.elapsed()
        );
    };
    assert!(
        matches!(err, Error::PeerDied { pid, .. } if pid == child.id()),
        "{err}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "noticed after {:?}",
        t.elapsed()
    );
    child.wait().unwrap();
    drop(tx);
    back_to(&base, Duration::from_secs(10));
}

/// Nothing listens there: connecting fails at once with a clear error.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn connecting_to_nothing_fails_clearly() {
    let (a, b) = rdma_addrs();
    let t = Instant::now();
    let r = Builder::new().connect_rdma(Some(b.into()), (a, 1).into());
    let e = r.map(|_| ()).unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    assert!(
        e.to_string().contains("REJECTED") || e.to_string().contains("refused"),
        "{e}"
    );
    // An address on no RDMA device.
    let e = Builder::new()
        .connect_rdma(None, ([127, 0, 0, 1], 7471).into())
        .map(|_| ())
        .unwrap_err();
    assert!(e.transport::<zcopy::rdma::Error>().is_some(), "{e}");
    // Shapes the transport cannot carry are refused before connecting.
    let e = Builder::new()
        .slot_count(1 << 20)
        .connect_rdma(None, (a, 1).into())
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}

/// A receiver with a ring cap refuses a sender whose ring is larger (the
/// sender learns why; the listener reports it and takes the next one).
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_ring_above_the_receivers_cap_is_refused_with_why() {
    let (a, b) = rdma_addrs();
    let mut l = zcopy::rdma::Listener::bind((a, 0).into()).unwrap();
    l.set_max_ring(1 << 20);
    let dst = l.local_addr().unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let wait = Some(Duration::from_secs(30));
            let refused = l.accept(wait).map(|_| ()).unwrap_err();
            let rx = l.accept(wait).unwrap();
            let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            (refused, m.to_vec())
        });
        let e = Builder::new()
            .slot_size(1 << 20)
            .slot_count(4)
            .connect_rdma(Some(b.into()), dst)
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(e.transport::<zcopy::rdma::Error>(),
                Some(zcopy::rdma::Error::Refused(why)) if why.contains("takes at most 1048576")),
            "{e}"
        );
        let tx = Builder::new()
            .slot_size(64 << 10)
            .slot_count(4)
            .connect_rdma(Some(b.into()), dst)
            .unwrap();
        tx.send_copy(b"small enough").unwrap();
        let (refused, got) = h.join().unwrap();
        assert!(matches!(refused, Error::Config(_)), "{refused}");
        assert_eq!(got, b"small enough");
    });
}

/// The link stops carrying anything under a live connection (every packet
/// leaving zcv1 dropped, as a cut cable or a dead machine would): both
/// ends learn within the transport's retry bound (no hang), and once it
/// carries again a new connection works. (The netdev stays up: taking it
/// down also drops the route over the RDMA device, which a new connection
/// needs and this test is not about.)
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn link_down_is_noticed_and_a_new_connection_follows() {
    let (tx, rx) = pair::<Rdma>(&(), 256, 8);
    send_message(&tx, 0).unwrap();
    drop(rx.recv_timeout(Duration::from_secs(10)).unwrap());
    let tc = |args: &[&str]| {
        let st = Command::new("tc").args(args).status().unwrap();
        assert!(st.success(), "tc {args:?}");
    };
    tc(&[
        "qdisc", "add", "dev", "zcv1", "root", "netem", "loss", "100%",
    ]);
    let t = Instant::now();
    let sent = (1..=8)
        .take_while(|&s| send_message(&tx, s).is_ok())
        .count();
    let err = tx
        .loan_with(Wait::Timeout(Duration::from_secs(30)))
        .map(|_| ());
    let r_err = rx
        .recv_with(Wait::Timeout(Duration::from_secs(30)))
        .map(|s| s.map(|s| s.len()));
    let noticed = t.elapsed();
    tc(&["qdisc", "del", "dev", "zcv1", "root"]);
    assert!(
        matches!(err, Err(Error::PeerDied { .. })),
        "sender after {sent} sends: {err:?}"
    );
    assert!(
        matches!(r_err, Err(Error::PeerDied { .. })),
        "receiver: {r_err:?}"
    );
    // Each end gives up after the transport's retries (about a second).
    assert!(
        noticed < Duration::from_secs(10),
        "noticed after {noticed:?}"
    );
    drop((tx, rx));
    let (tx, rx) = pair::<Rdma>(&(), 256, 8);
    send_message(&tx, 7).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap().len(),
        zcopy_vm_tests::channel::message_len(7, 256)
    );
}

/// The card reads its storage straight into a loaned slot of an RDMA
/// sender whose ring is a zcard pool mapping; the slot goes out by RDMA
/// WRITE: no CPU copy from storage to the receiver's memory.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn card_storage_read_into_a_pool_slot_then_rdma() {
    use zcopy::card::{Buf, Card, Sqe};
    let card = Card::open_index(0).unwrap();
    let mut rings = card.setup_rings(8).unwrap();
    let data: Vec<u8> = (0..64u32 << 10).map(|i| (i * 7 % 253) as u8).collect();
    let scratch = card.create_pool(64 << 10).unwrap();
    scratch.map().unwrap().write(0, &data).unwrap();
    let cqes = rings
        .run(
            &[Sqe::storage_write(Buf::new(&scratch, 0), 8192, 64 << 10)],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(cqes[0].bytes().unwrap(), 64 << 10);

    let pool = card.create_pool(256 << 10).unwrap();
    let (a, b) = rdma_addrs();
    let l = zcopy::rdma::Listener::bind((a, 0).into()).unwrap();
    let dst = l.local_addr().unwrap();
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let rx = l.accept(Some(Duration::from_secs(30))).unwrap();
            let m = rx.recv_timeout(Duration::from_secs(30)).unwrap();
            m.to_vec()
        });
        let tx = Builder::new()
            .slot_size(64 << 10)
            .slot_count(4)
            .connect_rdma_on(pool.map().unwrap(), Some(b.into()), dst)
            .unwrap();
        let loan = tx.loan().unwrap();
        let cqes = rings
            .run(
                &[Sqe::storage_read(
                    8192,
                    Buf::new(&pool, loan.offset()),
                    64 << 10,
                )],
                Duration::from_secs(30),
            )
            .unwrap();
        assert_eq!(cqes[0].bytes().unwrap(), 64 << 10);
        loan.send(64 << 10).unwrap();
        assert_eq!(
            h.join().unwrap(),
            data,
            "the card's bytes arrived over RDMA"
        );
    });
    // A ring too small for the shape is refused before connecting.
    let small = card.create_pool(64 << 10).unwrap();
    let e = Builder::new()
        .slot_size(64 << 10)
        .slot_count(4)
        .connect_rdma_on(small.map().unwrap(), Some(b.into()), dst)
        .map(|_| ())
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e}");
}

/// RNR NAKs the guest's Soft-RoCE devices have sent (their hw_counters).
fn rnr_naks_sent() -> u64 {
    let mut total = 0;
    for dev in std::fs::read_dir("/sys/class/infiniband").unwrap() {
        let path = dev.unwrap().path().join("ports/1/hw_counters/send_rnr_err");
        if let Ok(s) = std::fs::read_to_string(&path) {
            total += s.trim().parse::<u64>().unwrap();
        }
    }
    total
}

/// Either end leaving (dropped) mid-stream: the receiver while the
/// sender's writes are still arriving, or the sender while the receiver
/// still credits. The one left gets the error its side is told to expect,
/// and no message is answered with an RNR NAK. (An end that moved its QP to
/// the error state under the peer's traffic made Soft-RoCE run the message
/// it was handling again, taking receives until none was left: an RNR NAK,
/// and for a WRITE WITH IMMEDIATE a leaked memory-region reference and a
/// kernel WARN on 6.12.)
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn either_end_leaving_mid_stream_leaves_no_rnr() {
    let before = rnr_naks_sent();
    let rounds = scaled(200, 60);
    for round in 0..rounds {
        let (tx, rx) = pair::<Rdma>(&(), 64, 4);
        if round % 2 == 0 {
            // A message in flight as the receiver leaves, right after it
            // gave slots back.
            for seq in 0..3 {
                send_message(&tx, seq).unwrap();
            }
            let held: Vec<_> = (0..3)
                .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
                .collect();
            drop(held);
            send_message(&tx, 3).unwrap();
            drop(rx);
            let t = Instant::now();
            let e = loop {
                if let Err(e) = send_message(&tx, 4) {
                    break e;
                }
            };
            assert!(matches!(e, Error::PeerDied { .. }), "round {round}: {e}");
            assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        } else {
            // The sender leaves while the receiver drains and credits.
            let n = 16 + round;
            let receiver = std::thread::spawn(move || {
                let mut got = 0;
                loop {
                    match rx.recv_timeout(Duration::from_secs(30)) {
                        Ok(s) => drop(s),
                        Err(e) => return (got, e),
                    }
                    got += 1;
                }
            });
            for seq in 0..n {
                send_message(&tx, seq).unwrap();
            }
            drop(tx);
            let (got, e) = receiver.join().unwrap();
            assert_eq!(got, n, "round {round}");
            assert!(matches!(e, Error::Closed), "round {round}: {e}");
        }
    }
    assert_eq!(
        rnr_naks_sent(),
        before,
        "RNR NAKs sent over {rounds} rounds"
    );
}

/// A sender signals one message write in `SIGNAL_EVERY`: the receiver's
/// board frees a slot, the writes' completions only give the send queue
/// room back. With 256 slots and a receiver that keeps up, the sender
/// seldom runs out of slots, so few board reads (which are signaled)
/// drain its send queue: 5,000 messages fill that queue many times over,
/// and the signaled writes' completions make room. With 4 slots, reads
/// and writes mix. Every message arrives whole and in order.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_sender_signals_one_write_in_a_batch_and_never_stalls() {
    let every = u64::from(zcopy::rdma::SIGNAL_EVERY);
    for (slots, n) in [(256u32, 5_000u64), (4, 3_000)] {
        let slot = 256;
        let (tx, rx) = pair::<Rdma>(&(), slot, slots);
        let receiver = std::thread::spawn(move || {
            for seq in 0..n {
                let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
                assert_eq!(check_message(&s[..], slot), Ok(seq), "{slots} slots");
            }
            rx
        });
        for seq in 0..n {
            send_message(&tx, seq).unwrap();
        }
        let rx = receiver.join().unwrap();
        let (t, r) = (tx.stats(), rx.stats());
        assert_eq!((t.messages, r.messages), (n, n), "{slots} slots");
        assert!(
            t.signaled_writes <= n / every,
            "{slots} slots: {} of {n} writes signaled: {t:?}",
            t.signaled_writes
        );
        // Besides the signaled writes: a completion per credit write
        // received, per board read and per probe (one a second of waiting:
        // a slow kernel waits more).
        let others = t.credit_writes + t.reads + t.probes;
        assert!(
            t.completions <= t.signaled_writes + others,
            "{slots} slots: {} completions for {n} messages: {t:?}",
            t.completions
        );
        // Each other request on the send queue (a read, a probe) starts
        // the count of unsignaled writes again, so it can skip up to one
        // signal each.
        assert!(
            t.signaled_writes + t.reads + t.probes + 1 >= n / every,
            "{slots} slots: {} of {n} writes signaled: {t:?}",
            t.signaled_writes
        );
    }
}

/// Released slots go back in batches, not one credit per message, and a
/// sender out of slots gets back what the receiver released even when the
/// receiver's process does nothing more (it reads the receiver's board).
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn credits_go_back_in_batches_and_a_starved_sender_reads_them() {
    let (tx, rx) = pair::<Rdma>(&(), 64, 16);
    let n = 2_000u64;
    for seq in 0..n {
        send_message(&tx, seq).unwrap();
        drop(rx.recv_timeout(Duration::from_secs(30)).unwrap());
    }
    let (t, r) = (tx.stats(), rx.stats());
    assert_eq!((t.messages, r.messages), (n, n));
    assert!(
        r.credit_writes <= n / 4,
        "{} credit writes for {n} messages (a batch is half the ring)",
        r.credit_writes
    );
    assert!(t.credit_writes <= r.credit_writes);

    // Twelve of sixteen slots sent, seven released and never written back
    // (below the batch of eight, and the sender has slots left): the
    // sender gets exactly those seven by reading.
    let (tx, rx) = pair::<Rdma>(&(), 64, 16);
    for seq in 0..12 {
        send_message(&tx, seq).unwrap();
    }
    let mut held: Vec<_> = (0..12)
        .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect();
    held.truncate(5);
    assert_eq!(rx.stats().credit_writes, 0, "nothing written back");
    let t = Instant::now();
    while tx.in_flight() != 5 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the reads found nothing"
        );
        std::thread::yield_now();
    }
    let s = tx.stats();
    assert!(s.reads >= 1 && s.credited_by_reads == 7, "{s:?}");
    let loans: Vec<_> = (0..11).map(|_| tx.try_loan().unwrap()).collect();
    assert!(matches!(tx.try_loan(), Err(Error::Full)));
    drop((loans, held));
}

/// Ends told to busy-poll without end (`set_spin(u32::MAX)`, as a
/// latency-bound user or the bench's `--tx-spin` asks) still keep their
/// timeouts, and a sender out of slots still reads the receiver's board
/// while it spins: a release that comes after the first read, below the
/// batch that would be written back, reaches it within a read period.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn ends_that_spin_on_keep_their_timeouts_and_read_the_board() {
    let (tx, rx) = pair::<Rdma>(&(), 64, 16);
    tx.set_spin(u32::MAX);
    rx.set_spin(u32::MAX);
    let t = Instant::now();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(100)),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // Twelve of sixteen slots sent, the other four loaned: the sender is
    // out of slots, and its first read of the board finds nothing.
    for seq in 0..12 {
        send_message(&tx, seq).unwrap();
    }
    let spare: Vec<_> = (0..4).map(|_| tx.try_loan().unwrap()).collect();
    let (got_slot, wait_for_it) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let mut held: Vec<_> = (0..12)
                .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
                .collect();
            // Seven released: below the batch of eight, and not every
            // slot is here, so nothing is written back.
            held.truncate(5);
            let _ = wait_for_it.recv_timeout(Duration::from_secs(60));
            assert_eq!(rx.stats().credit_writes, 0, "a credit write");
            drop(held);
        });
        let t = Instant::now();
        let loan = tx.loan_with(Wait::Timeout(Duration::from_secs(30)));
        let waited = t.elapsed();
        got_slot.send(()).unwrap();
        assert!(loan.is_ok(), "{:?} after {waited:?}", loan.err());
        assert!(waited < Duration::from_secs(10), "{waited:?}");
        assert!(tx.stats().credited_by_reads >= 1);
        drop((loan, spare));
    });
}

/// A hostile peer's connection: a QP and one registered page to write
/// from, whose Hello names that page as its ring and its board.
fn hostile_qp(conn: &mut zcopy::rdma::cm::Connection) -> zcopy::rdma::cm::MrHandle {
    conn.create_qp(zcopy::rdma::cm::QpConfig {
        send_depth: 4,
        recv_depth: 4,
        max_inline: 0,
        events: false,
    })
    .unwrap();
    let page = memmap2::MmapMut::map_anon(4096).unwrap();
    conn.register(page, zcopy::rdma::verbs::Access::RemoteWrite)
        .unwrap()
}

/// Writes 4 bytes (a board word) to `(addr, rkey)` and returns the
/// write's completion status.
fn write_status(
    conn: &mut zcopy::rdma::cm::Connection,
    from: zcopy::rdma::cm::MrHandle,
    (addr, rkey): (u64, u32),
) -> u32 {
    conn.post_write(7, from, 0, 4, addr, rkey, None, true)
        .unwrap();
    completion_status(conn)
}

/// Reads 4 bytes from `(addr, rkey)` and returns the read's completion
/// status.
fn read_status(
    conn: &mut zcopy::rdma::cm::Connection,
    into: zcopy::rdma::cm::MrHandle,
    (addr, rkey): (u64, u32),
) -> u32 {
    conn.post_read(8, into, 0, 4, addr, rkey).unwrap();
    completion_status(conn)
}

fn completion_status(conn: &mut zcopy::rdma::cm::Connection) -> u32 {
    let mut wcs = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while wcs.is_empty() {
        assert!(Instant::now() < deadline, "no completion for the write");
        conn.poll(&mut wcs, 1).unwrap();
    }
    wcs[0].status
}

/// Takes a real sender's connection on `l` as a hostile receiver (the
/// sender connects from `from`) and runs `check` on it, with the page the
/// receiver writes from and the sender's half of the handshake.
fn as_hostile_receiver(
    l: &zcopy::rdma::cm::Listener,
    from: std::net::Ipv4Addr,
    check: impl FnOnce(&mut zcopy::rdma::cm::Connection, zcopy::rdma::cm::MrHandle, PeerHello),
) {
    let dst = l.local_addr().unwrap();
    std::thread::scope(|s| {
        let tx = s.spawn(move || {
            Builder::new()
                .slot_size(4096)
                .slot_count(4)
                .connect_rdma(Some(from.into()), dst)
                .unwrap()
        });
        let (mut conn, private) = l.next_request(Some(Duration::from_secs(30))).unwrap();
        let sender = PeerHello::parse(&private).unwrap();
        let page = hostile_qp(&mut conn);
        let me = PeerHello {
            ring: (page.addr, page.rkey),
            board: (page.addr, page.rkey),
            ..sender
        };
        conn.accept(&me.to_bytes(), Duration::from_secs(30))
            .unwrap();
        let tx = tx.join().unwrap();
        check(&mut conn, page, sender);
        drop((tx, conn));
    });
}

/// A peer may do to a channel end's memory only what the protocol needs:
/// a receiver cannot write or read the slots the sender is sending from,
/// a sender cannot write the receiver's counts of released slots. Each
/// such request fails on the peer's QP (remote access error), where the
/// protocol's own (credits into the sender's board, a message into the
/// receiver's ring) go through.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn a_peer_can_only_write_what_the_protocol_writes() {
    const REM_ACCESS_ERR: u32 = 10;
    let (a, b) = rdma_addrs();
    // A hostile receiver (an error ends the QP, so each refusal takes a
    // connection of its own).
    let l = zcopy::rdma::cm::Listener::bind((a, 0).into()).unwrap();
    as_hostile_receiver(&l, b, |conn, page, sender| {
        // What a receiver does: credits into the sender's board.
        assert_eq!(write_status(conn, page, sender.board), 0);
        // What it must not: the sender's slots.
        assert_eq!(write_status(conn, page, sender.ring), REM_ACCESS_ERR);
    });
    as_hostile_receiver(&l, b, |conn, page, sender| {
        assert_eq!(read_status(conn, page, sender.ring), REM_ACCESS_ERR);
    });
    // A hostile sender.
    let l = zcopy::rdma::Listener::bind((a, 0).into()).unwrap();
    let dst = l.local_addr().unwrap();
    std::thread::scope(|s| {
        let rx = s.spawn(move || l.accept(Some(Duration::from_secs(30))).unwrap());
        let mut conn =
            zcopy::rdma::cm::Connection::resolve(Some((b, 0).into()), dst, Duration::from_secs(30))
                .unwrap();
        let page = hostile_qp(&mut conn);
        let me = PeerHello {
            slot_size: 4096,
            slot_count: 4,
            ring: (page.addr, page.rkey),
            board: (page.addr, page.rkey),
        };
        let reply = conn
            .connect(&me.to_bytes(), Duration::from_secs(30))
            .unwrap();
        let receiver = PeerHello::parse(&reply).unwrap();
        let rx = rx.join().unwrap();
        // What a sender does: write into the receiver's ring, read its
        // board.
        assert_eq!(write_status(&mut conn, page, receiver.ring), 0);
        assert_eq!(read_status(&mut conn, page, receiver.board), 0);
        // The receiver's board is for reading: its counts stay its own.
        assert_eq!(
            write_status(&mut conn, page, receiver.board),
            REM_ACCESS_ERR
        );
        drop(rx);
    });
}
