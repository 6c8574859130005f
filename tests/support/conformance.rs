//! Tests every transport must pass, generic over it; [`conformance_suite!`](crate::conformance_suite)
//! turns them into `#[test]`s for one transport.

use std::collections::VecDeque;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use memmap2::{MmapOptions, MmapRaw};
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use nix::unistd::Pid;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use zcopy::channel::{Builder, Error, Receiver, Rx, RxSample, Sender, Transport, Tx, TxLoan, Wait};

use crate::channel::*;

/// The peer binary (built beside the test binaries: `target/<profile>/`).
pub fn peer_exe() -> String {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>/deps/");
    dir.join("channel-peer").to_string_lossy().into_owned()
}

/// Generates the conformance tests for one transport (every transport:
/// shm, card, RDMA).
#[macro_export]
macro_rules! conformance_suite {
    ($t:ty $(, #[$m:meta])*) => {
        $crate::conformance_suite!(@tests $t [$(#[$m])*]
            round_trip_in_place fifo_wraps_many_times backpressure_fails_times_out_and_blocks
            unsent_loan_returns_its_slot pod_payloads bad_lengths_and_types recv_on_empty
            close_drains_then_reports_closed sequences_match_the_model random_sizes_and_bursts
            two_processes_many_messages peer_process_sends kill_holding_receiver_reclaims_its_slots
            kill_receiver_at_random_points kill_sender_at_random_points
            try_recv_reports_a_closed_or_dead_sender next_loan_is_held_while_messages_are_in_flight);
    };
    (@tests $t:ty [$($attrs:tt)*] $name:ident $($rest:ident)*) => {
        #[test]
        $($attrs)*
        fn $name() {
            $crate::conformance::$name::<$t>();
        }
        $crate::conformance_suite!(@tests $t [$($attrs)*] $($rest)*);
    };
    (@tests $t:ty [$($attrs:tt)*]) => {};
}

/// Generates the tests only shared-memory transports (shm, card) have: a
/// receiver handing over to the next, and a peer scribbling on the rings.
#[macro_export]
macro_rules! shared_memory_suite {
    ($t:ty $(, #[$m:meta])*) => {
        $crate::conformance_suite!(@tests $t [$(#[$m])*]
            one_receiver_at_a_time_and_handover garbage_in_shared_indices_is_contained);
    };
}

/// A shared-memory transport: its harness ends are the channel's own.
pub trait Shared:
    Transport + Harness<Ctx = <Self as Transport>::Context, Tx = Sender<Self>, Rx = Receiver<Self>>
{
}
impl<T> Shared for T where
    T: Transport + Harness<Ctx = <T as Transport>::Context, Tx = Sender<T>, Rx = Receiver<T>>
{
}

/// Messages sent one by one arrive with their bytes, in the slot the
/// sender wrote (same offset in the shared memory: no copy).
pub fn round_trip_in_place<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 256, 4);
    for seq in 0..64u64 {
        let mut loan = tx.loan().unwrap();
        let offset = loan.offset();
        let len = fill_message(loan.as_mut_slice(), seq);
        loan.send(len).unwrap();
        let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(
            s.offset(),
            offset,
            "the receiver reads the slot the sender wrote"
        );
        assert_eq!(check_message(&s, 256), Ok(seq));
    }
    // Empty and full-slot messages.
    let mut loan = tx.loan().unwrap();
    loan.as_mut_slice().fill(0xa5);
    loan.send(256).unwrap();
    assert!(rx.recv().unwrap().iter().all(|&b| b == 0xa5));
    tx.loan().unwrap().send(0).unwrap();
    assert!(rx.recv().unwrap().is_empty());
    assert!(in_flight_soon(&tx, 0));
}

/// Order is kept and nothing is lost or repeated through many wraps of
/// the rings, with the receiver holding several slots at once.
pub fn fifo_wraps_many_times<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 64, 8);
    let mut held = VecDeque::new();
    let mut next = 0u64;
    for seq in 0..scaled(50_000, 5_000) {
        send_message(&tx, seq).unwrap();
        if seq % 3 == 0 {
            // Drain what was sent, holding up to 5 slots.
            while next <= seq {
                let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
                assert_eq!(check_message(&s, 64), Ok(next));
                next += 1;
                held.push_back(s);
                if held.len() > 5 {
                    held.pop_front();
                }
            }
        }
        if held.len() + tx.in_flight() as usize >= 8 {
            held.clear();
        }
    }
    drop(held);
    while next < scaled(50_000, 5_000) {
        let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(check_message(&s, 64), Ok(next));
        next += 1;
    }
    assert!(rx.try_recv().unwrap().is_none());
}

/// With every slot taken: Never fails at once, Timeout times out, and a
/// blocked loan goes through when the receiver drops a slot.
pub fn backpressure_fails_times_out_and_blocks<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 64, 4);
    for seq in 0..4 {
        send_message(&tx, seq).unwrap();
    }
    assert!(matches!(tx.try_loan(), Err(Error::Full)));
    let t = Instant::now();
    assert!(matches!(
        tx.loan_with(Wait::Timeout(Duration::from_millis(60))),
        Err(Error::Timeout)
    ));
    assert!(t.elapsed() >= Duration::from_millis(60));
    std::thread::scope(|s| {
        let (a, b) = std::sync::mpsc::channel();
        // The receiver end moves to another thread (it is Send, not Sync).
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            let first = rx.recv().unwrap();
            assert_eq!(check_message(&first, 64), Ok(0));
            drop(first);
            a.send(rx).unwrap();
        });
        let loan = tx
            .loan_with(SOON)
            .expect("a slot once the receiver drops one");
        drop(loan);
        let rx = b.recv().unwrap();
        for seq in 1..4 {
            assert_eq!(check_message(&rx.recv().unwrap(), 64), Ok(seq));
        }
    });
}

/// A loan dropped without sending gives its slot back; loans can be held
/// several at once and sent in any order.
pub fn unsent_loan_returns_its_slot<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 64, 3);
    for _ in 0..10 {
        let loans: Vec<_> = (0..3).map(|_| tx.try_loan().unwrap()).collect();
        assert!(matches!(tx.try_loan(), Err(Error::Full)));
        drop(loans);
    }
    let mut a = tx.try_loan().unwrap();
    let mut b = tx.try_loan().unwrap();
    let len = fill_message(b.as_mut_slice(), 1);
    b.send(len).unwrap();
    let len = fill_message(a.as_mut_slice(), 2);
    a.send(len).unwrap();
    assert_eq!(check_message(&rx.recv().unwrap(), 64), Ok(1));
    assert_eq!(check_message(&rx.recv().unwrap(), 64), Ok(2));
    assert!(in_flight_soon(&tx, 0));
}

/// A Pod value test messages carry.
#[derive(Debug, Clone, Copy, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C)]
pub struct Reading {
    /// Sequence.
    pub seq: u64,
    /// Values.
    pub values: [f32; 6],
}

/// Typed payloads are written and read in place.
pub fn pod_payloads<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, std::mem::size_of::<Reading>(), 2);
    for seq in 0..10u64 {
        let want = Reading {
            seq,
            values: [seq as f32; 6],
        };
        tx.loan().unwrap().send_pod(&want).unwrap();
        let s = rx.recv().unwrap();
        assert_eq!(*s.read_pod::<Reading>().unwrap(), want);
        assert!(
            matches!(s.read_pod::<u64>(), Err(Error::Type { .. })),
            "wrong size is refused"
        );
    }
    assert!(matches!(
        tx.loan().unwrap().send_pod(&[0u8; 4096]),
        Err(Error::Type { .. })
    ));
}

/// Lengths past the slot are refused and the slot goes back unsent.
pub fn bad_lengths_and_types<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 100, 2);
    let mut loan = tx.loan().unwrap();
    assert_eq!(loan.as_mut_slice().len(), 100);
    assert_eq!(loan.capacity(), 100);
    assert!(matches!(
        loan.send(101),
        Err(Error::TooLarge {
            len: 101,
            capacity: 100
        })
    ));
    assert!(matches!(rx.try_recv(), Ok(None)), "nothing was sent");
    assert!(in_flight_soon(&tx, 0));
    assert!(matches!(
        tx.send_copy(&[0; 101]),
        Err(Error::TooLarge { len: 101, .. })
    ));
    let mut loan = tx.loan().unwrap();
    assert_eq!(loan.as_mut_slice().len(), 100);
    loan.send(100).unwrap();
    assert_eq!(rx.recv().unwrap().len(), 100);
    let (a, _b) = UnixStream::pair().unwrap();
    for (size, count) in [(0, 4), (64, 0), (u32::MAX as usize, 1), (usize::MAX, 1)] {
        assert!(matches!(
            H::offer(&ctx, size, count, &a),
            Err(Error::Config(_))
        ));
    }
}

/// Nothing sent: try_recv gives None, recv_timeout times out in time.
pub fn recv_on_empty<H: Harness>() {
    let ctx = H::context();
    let (_tx, rx) = pair::<H>(&ctx, 64, 2);
    assert!(rx.try_recv().unwrap().is_none());
    let t = Instant::now();
    assert!(matches!(
        rx.recv_timeout(Duration::from_millis(50)),
        Err(Error::Timeout)
    ));
    let e = t.elapsed();
    assert!(
        e >= Duration::from_millis(50) && e < Duration::from_secs(5),
        "{e:?}"
    );
}

/// Messages sent before the sender closes are all received, then Closed;
/// a receiver blocked at the time wakes up.
pub fn close_drains_then_reports_closed<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 64, 4);
    for seq in 0..3 {
        send_message(&tx, seq).unwrap();
    }
    drop(tx);
    for seq in 0..3 {
        assert_eq!(check_message(&rx.recv().unwrap(), 64), Ok(seq));
    }
    assert!(matches!(rx.recv(), Err(Error::Closed)));

    let (tx, rx) = pair::<H>(&ctx, 64, 4);
    std::thread::scope(|s| {
        let h = s.spawn(move || {
            let t = Instant::now();
            let r = rx.recv_timeout(Duration::from_secs(30)).map(|_| ());
            (r, t.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(tx);
        let (r, waited) = h.join().unwrap();
        assert!(matches!(r, Err(Error::Closed)), "{r:?}");
        assert!(waited < Duration::from_secs(2), "noticed after {waited:?}");
    });
}

/// Busy-polls `rx` with try_recv until it fails: the messages that came
/// first (checked in order, `size`-byte slots), and the error.
fn poll_until_error<H: Harness>(rx: &H::Rx, size: usize) -> (u64, Error) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 0u64;
    loop {
        match rx.try_recv() {
            Ok(Some(s)) => {
                assert_eq!(check_message(&s, size), Ok(next));
                next += 1;
            }
            Ok(None) => assert!(
                Instant::now() < deadline,
                "try_recv kept saying None after {next} messages"
            ),
            Err(e) => return (next, e),
        }
    }
}

/// A receiver that only ever calls try_recv learns that the sender closed
/// (after the messages sent before) or was killed, with no watchdog of its
/// own; is_closed says so without taking a message.
pub fn try_recv_reports_a_closed_or_dead_sender<H: Harness>() {
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 64, 4);
    assert!(!rx.is_closed());
    for seq in 0..3 {
        send_message(&tx, seq).unwrap();
    }
    drop(tx);
    let (n, e) = poll_until_error::<H>(&rx, 64);
    assert!(matches!(e, Error::Closed), "{e}");
    assert_eq!(n, 3, "every message sent before the close came first");
    assert!(rx.is_closed());
    assert!(matches!(rx.try_recv(), Err(Error::Closed)));

    let (a, b) = UnixStream::pair().unwrap();
    let mut child = spawn_with_fd3(&peer_exe(), &[H::NAME, "send-forever", "64"], &b);
    let rx = H::accept(&ctx, &a).unwrap();
    assert_eq!(read_line(&mut child), "shared");
    let pid = child.id();
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    let (_, e) = poll_until_error::<H>(&rx, 64);
    assert!(matches!(e, Error::PeerDied { .. }), "{e}");
    assert!(rx.is_closed());
}

/// The next loan can be held next to its sender (the sender in an `Rc`,
/// the loan borrowing nothing) while earlier messages are in flight:
/// send, then take the next slot at once, across iterations.
pub fn next_loan_is_held_while_messages_are_in_flight<H: Harness>() {
    struct Pinger<S: Tx> {
        tx: std::rc::Rc<S>,
        next: Option<S::OwnedLoan>,
    }
    impl<S: Tx> Pinger<S> {
        fn ping(&mut self, seq: u64) -> Result<(), Error> {
            let mut loan = match self.next.take() {
                Some(l) => l,
                None => self.tx.loan_owned()?,
            };
            let len = fill_message(loan.as_mut_slice(), seq);
            loan.send(len)?;
            self.next = Some(self.tx.loan_owned()?);
            Ok(())
        }
    }
    let ctx = H::context();
    let (tx, rx) = pair::<H>(&ctx, 64, 4);
    let mut p = Pinger {
        tx: std::rc::Rc::new(tx),
        next: None,
    };
    for seq in 0..3 {
        p.ping(seq).unwrap();
    }
    for seq in 0..3 {
        let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(check_message(&s, 64), Ok(seq));
    }
    for seq in 3..200 {
        p.ping(seq).unwrap();
        let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(check_message(&s, 64), Ok(seq));
    }
    // The held loan is one of the four slots.
    assert!(in_flight_soon(&*p.tx, 0));
    let others: Vec<_> = (0..3).map(|_| p.tx.try_loan().unwrap()).collect();
    assert!(matches!(p.tx.try_loan(), Err(Error::Full)));
    drop(others);
    // Dropping the holder gives the slot back, then closes the channel.
    drop(p);
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(30)),
        Err(Error::Closed)
    ));
}

/// Only one receiver at a time; when it drops, the next one carries on
/// with what is queued.
pub fn one_receiver_at_a_time_and_handover<T: Shared>() {
    let ctx = T::context();
    let tx = Builder::new()
        .slot_size(64)
        .slot_count(4)
        .create_with::<T>(&ctx)
        .unwrap();
    let open = || {
        let (a, b) = UnixStream::pair().unwrap();
        tx.share(&a).unwrap();
        Receiver::<T>::from_socket_with(&ctx, &b)
    };
    let rx = open().unwrap();
    match open() {
        Err(Error::ReceiverAttached { pid, alive: true }) => assert_eq!(pid, std::process::id()),
        other => panic!("a second receiver: {other:?}"),
    }
    for seq in 0..4 {
        send_message(&tx, seq).unwrap();
    }
    assert_eq!(check_message(&rx.recv().unwrap(), 64), Ok(0));
    drop(rx);
    let rx = open().unwrap();
    for seq in 1..4 {
        assert_eq!(check_message(&rx.recv().unwrap(), 64), Ok(seq));
    }
    assert_eq!(tx.in_flight(), 0);
}

/// The segment's descriptor, fished out of a share, mapped for scribbling.
pub fn raw_segment<T: Transport>(tx: &Sender<T>) -> MmapRaw {
    let (a, b) = UnixStream::pair().unwrap();
    tx.share(&a).unwrap();
    let mut buf = [0u8; 64];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(b.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty()).unwrap();
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors; we own them.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    MmapOptions::new()
        .len(tx.geometry().segment_bytes as usize)
        .map_raw(&fds[0])
        .unwrap()
}

/// A peer writing garbage into the header's indices and the ring entries
/// gets a Corrupt error (or harmless results) out of the other side, never
/// a crash or an access outside the segment: every message handed out
/// names a real slot and fits it.
pub fn garbage_in_shared_indices_is_contained<T: Shared>() {
    let ctx = T::context();
    let config = zcopy_testkit::proptest_config("garbage_in_shared_indices", scaled(64, 8) as u32);
    let mut runner = TestRunner::new(config);
    let writes = prop::collection::vec((0u64..4096, any::<u32>()), 1..8);
    runner
        .run(&(writes, 0u64..6), |(writes, sent)| {
            let (tx, rx) = pair::<T>(&ctx, 64, 4);
            for seq in 0..sent.min(4) {
                send_message(&tx, seq).unwrap();
            }
            let g = *tx.geometry();
            let map = raw_segment(&tx);
            let rings = g.submit_ring;
            let rings_end = g.return_ring + (g.return_ring - g.submit_ring);
            for (off, val) in writes {
                // Anywhere in the two rings (indices, flags, entries).
                let off = rings + (off * 4) % (rings_end - rings);
                let word = map.as_mut_ptr().wrapping_add(off as usize).cast::<u32>();
                // SAFETY: off + 4 ≤ the rings' end < segment_bytes (the
                // mapping's length), 4-aligned; the channel's atomics race
                // with this store, which is the point of the test and
                // harmless to memory safety (a u32 store).
                unsafe { word.write_volatile(val) };
            }
            for _ in 0..8 {
                match rx.recv_with(Wait::Never) {
                    Ok(Some(s)) => {
                        prop_assert!(s.index() < 4 && s.len() <= 64);
                        prop_assert!(s.offset() + s.len() as u64 <= g.slots_bytes);
                    }
                    Ok(None) | Err(Error::Corrupt(_)) => {}
                    Err(e) => prop_assert!(false, "receiver: {e}"),
                }
                match tx.loan_with(Wait::Never) {
                    Ok(l) => {
                        prop_assert!(l.offset() < g.slots_bytes);
                        match l.send(0) {
                            Ok(()) | Err(Error::Corrupt(_)) => {}
                            Err(e) => prop_assert!(false, "send: {e}"),
                        }
                    }
                    Err(Error::Full) | Err(Error::Corrupt(_)) => {}
                    Err(e) => prop_assert!(false, "sender: {e}"),
                }
            }
            Ok(())
        })
        .unwrap();
}

#[derive(Debug, Clone)]
enum Op {
    Loan,
    Send(usize),
    DropLoan(usize),
    Recv,
    DropSample(usize),
}

/// True once `tx` has `want` messages in flight (slots given back may take
/// a moment to arrive: RDMA credits), within 30 s.
pub fn in_flight_soon<S: Tx>(tx: &S, want: usize) -> bool {
    let t = Instant::now();
    while tx.in_flight() as usize != want {
        if t.elapsed() > Duration::from_secs(30) {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// Random sequences of loan / send / drop loan / receive / drop sample
/// against a reference model: FIFO delivery of exact bytes, Full exactly
/// when the model has no free slot, nothing received that was not sent.
pub fn sequences_match_the_model<H: Harness>() {
    let ctx = H::context();
    let config = zcopy_testkit::proptest_config("channel_sequences", scaled(128, 16) as u32);
    let mut runner = TestRunner::new(config);
    let op = prop_oneof![
        3 => Just(Op::Loan),
        3 => (0usize..8).prop_map(Op::Send),
        1 => (0usize..8).prop_map(Op::DropLoan),
        3 => Just(Op::Recv),
        2 => (0usize..8).prop_map(Op::DropSample),
    ];
    runner
        .run(
            &(1u32..6, prop::collection::vec(op, 1..200)),
            |(count, ops)| {
                let (tx, rx) = pair::<H>(&ctx, 48, count);
                let mut loans = Vec::new();
                let mut samples = Vec::new();
                let mut queued = VecDeque::new(); // model: sent, not received
                let mut seq = 0u64;
                for op in ops {
                    // Model: slots in use = loans + queued + held samples.
                    let used = loans.len() + queued.len() + samples.len();
                    match op {
                        // A slot the model has free may still be on its way
                        // back (RDMA credits): wait for it, boundedly.
                        Op::Loan if used < count as usize => match tx.loan_with(SOON) {
                            Ok(l) => loans.push(l),
                            Err(e) => prop_assert!(false, "loan with a slot free: {e}"),
                        },
                        Op::Loan => prop_assert!(
                            matches!(tx.try_loan(), Err(Error::Full)),
                            "loan past the slot count"
                        ),
                        Op::Send(i) if !loans.is_empty() => {
                            let mut l = loans.swap_remove(i % loans.len());
                            let len = fill_message(l.as_mut_slice(), seq);
                            l.send(len).unwrap();
                            queued.push_back(seq);
                            seq += 1;
                        }
                        Op::DropLoan(i) if !loans.is_empty() => {
                            drop(loans.swap_remove(i % loans.len()))
                        }
                        // A message sent may still be on its way (RDMA).
                        Op::Recv if !queued.is_empty() => {
                            let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
                            prop_assert_eq!(
                                Some(check_message(&s, 48).unwrap()),
                                queued.pop_front()
                            );
                            samples.push(s);
                        }
                        Op::Recv => prop_assert!(rx.try_recv().unwrap().is_none()),
                        Op::DropSample(i) if !samples.is_empty() => {
                            drop(samples.swap_remove(i % samples.len()))
                        }
                        _ => {}
                    }
                    let want = queued.len() + samples.len();
                    prop_assert!(
                        in_flight_soon(&tx, want),
                        "in flight: {} not {want}",
                        tx.in_flight()
                    );
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Byte `i` of message `seq` in the random-size tests.
pub fn pattern_byte(seq: u64, i: usize) -> u8 {
    (seq.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as u8 ^ (i as u8).wrapping_mul(31)
}

/// Random message sizes from 0 to the whole slot, sent in bursts that run
/// the sender out of slots (credits): every message arrives byte-exact and
/// in order, Full comes exactly when every slot is out, and the receiver
/// draining gives the sender its slots back.
pub fn random_sizes_and_bursts<H: Harness>() {
    let ctx = H::context();
    let config = zcopy_testkit::proptest_config("channel_random_sizes", scaled(32, 6) as u32);
    let mut runner = TestRunner::new(config);
    let strategy = (
        prop_oneof![1u32..=64, 1u32..=4096, Just(65536u32)],
        1u32..=8,
        prop::collection::vec((1usize..20, any::<u64>()), 1..10),
    );
    runner
        .run(&strategy, |(slot, count, bursts)| {
            let (tx, rx) = pair::<H>(&ctx, slot as usize, count);
            let mut seq = 0u64;
            let mut next = 0u64;
            let mut lens = VecDeque::new();
            for (burst, sizes) in bursts {
                prop_assert!(in_flight_soon(&tx, 0), "credits never came back");
                for k in 0..burst {
                    match tx.try_loan() {
                        Ok(mut loan) => {
                            let len =
                                (sizes.rotate_left(k as u32 * 7) % (u64::from(slot) + 1)) as usize;
                            for (i, b) in loan.as_mut_slice()[..len].iter_mut().enumerate() {
                                *b = pattern_byte(seq, i);
                            }
                            loan.send(len).unwrap();
                            lens.push_back(len);
                            seq += 1;
                        }
                        Err(Error::Full) => {
                            prop_assert_eq!(k, count as usize, "Full with a slot free");
                            break;
                        }
                        Err(e) => prop_assert!(false, "loan: {e}"),
                    }
                }
                // Drain, holding what arrives until the end of the burst.
                let mut held = Vec::new();
                while next < seq {
                    let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
                    let len = lens.pop_front().unwrap();
                    prop_assert_eq!(s.len(), len, "message {} length", next);
                    for (i, &b) in s.iter().enumerate() {
                        prop_assert_eq!(b, pattern_byte(next, i), "message {} byte {}", next, i);
                    }
                    next += 1;
                    held.push(s);
                }
                drop(held);
            }
            prop_assert!(in_flight_soon(&tx, 0), "credits never came back");
            Ok(())
        })
        .unwrap();
}

/// A receiving process checks every message's order and bytes.
pub fn two_processes_many_messages<H: Harness>() {
    let ctx = H::context();
    let n = scaled(2_000_000, 100_000) / if H::NAME == "rdma" { 10 } else { 1 };
    let (a, b) = UnixStream::pair().unwrap();
    let mut child = spawn_with_fd3(&peer_exe(), &[H::NAME, "recv", &n.to_string()], &b);
    let tx = H::offer(&ctx, 64, 64, &a).unwrap();
    for seq in 0..n {
        send_message(&tx, seq).unwrap();
    }
    assert_eq!(read_line(&mut child), format!("ok {n}"));
    assert_eq!(wait_child(&mut child, Duration::from_secs(60)), Some(0));
}

/// The sender is the other process; the channel closes when it exits.
pub fn peer_process_sends<H: Harness>() {
    let ctx = H::context();
    let n = scaled(200_000, 20_000);
    let (a, b) = UnixStream::pair().unwrap();
    let mut child = spawn_with_fd3(&peer_exe(), &[H::NAME, "send", &n.to_string(), "300"], &b);
    let rx = H::accept(&ctx, &a).unwrap();
    for seq in 0..n {
        let s = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(check_message(&s, 300), Ok(seq));
    }
    assert_eq!(wait_child(&mut child, Duration::from_secs(60)), Some(0));
    assert!(matches!(
        rx.recv_timeout(Duration::from_secs(10)),
        Err(Error::Closed)
    ));
}

/// After a receiver died: where the transport lets a receiver follow
/// (shared memory), a new one gets exactly the `queued` messages that end
/// at `next`, in order; elsewhere (RDMA) a new connection works.
fn carry_on<H: Harness>(ctx: &H::Ctx, tx: &H::Tx, next: u64, queued: u32) {
    let (a, b) = UnixStream::pair().unwrap();
    if let Some(r) = H::reshare(tx, &a) {
        r.unwrap();
        let rx = H::accept(ctx, &b).unwrap();
        for want in next - u64::from(queued)..next {
            assert_eq!(
                check_message(&rx.try_recv().unwrap().expect("queued"), 64),
                Ok(want)
            );
        }
        assert!(rx.try_recv().unwrap().is_none());
    } else {
        assert_eq!(
            queued, 0,
            "nothing stays queued for a receiver that is gone"
        );
        let (tx, rx) = pair::<H>(ctx, 64, 8);
        send_message(&tx, next).unwrap();
        assert_eq!(
            check_message(&rx.recv_timeout(Duration::from_secs(30)).unwrap(), 64),
            Ok(next)
        );
    }
}

/// kill -9 of a receiver holding slots: the blocked sender learns within a
/// bounded time and gets its slots back; shared memory keeps the unread
/// messages for a new receiver, RDMA reclaims them too (they died with the
/// receiver's ring) and a new connection follows.
pub fn kill_holding_receiver_reclaims_its_slots<H: Harness>() {
    let ctx = H::context();
    let (a, b) = UnixStream::pair().unwrap();
    let mut child = spawn_with_fd3(&peer_exe(), &[H::NAME, "hold", "5"], &b);
    let tx = H::offer(&ctx, 64, 8, &a).unwrap();
    for seq in 0..8 {
        send_message(&tx, seq).unwrap();
    }
    assert_eq!(read_line(&mut child), "held");
    let keeps_queued = {
        let (c, _d) = UnixStream::pair().unwrap();
        H::reshare(&tx, &c).is_some()
    };
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let t = Instant::now();
    let want = if keeps_queued { 5 } else { 8 };
    // Every slot is taken: the loan waits, and the wait notices the death.
    match tx.loan_with(SOON) {
        Err(Error::PeerDied { pid, reclaimed }) if reclaimed == want => assert_eq!(pid, child.id()),
        other => panic!(
            "expected PeerDied with {want} slots reclaimed: {:?}",
            other.map(|_| ())
        ),
    }
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "noticed after {:?}",
        t.elapsed()
    );
    child.wait().unwrap();
    let queued = tx.in_flight();
    assert_eq!(
        queued,
        8 - want,
        "unread messages stay queued only in shared memory"
    );
    if keeps_queued {
        let loans: Vec<_> = (0..5).map(|_| tx.try_loan().unwrap()).collect();
        drop(loans);
    }
    carry_on::<H>(&ctx, &tx, 8, queued);
}

/// SIGKILLs `pid` after `delay_ms`; the thread's result is when.
fn kill_later(pid: u32, delay_ms: u64) -> std::thread::JoinHandle<Instant> {
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(delay_ms));
        kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
        Instant::now()
    })
}

/// The death was noticed (at `noticed`) within 2 s of the kill.
fn noticed_soon(noticed: Instant, killer: std::thread::JoinHandle<Instant>) {
    let after = noticed.saturating_duration_since(killer.join().unwrap());
    assert!(
        after < Duration::from_secs(2),
        "noticed {after:?} after the kill"
    );
}

fn random_delays(name: &str, n: usize, max_ms: u64) -> Vec<u64> {
    let config = zcopy_testkit::proptest_config(name, 1);
    let mut runner = TestRunner::new(config);
    let tree = prop::collection::vec(0..max_ms, n)
        .new_tree(&mut runner)
        .unwrap();
    tree.current()
}

/// kill -9 of a busy receiver at random moments: the sender always ends
/// with PeerDied (not a hang), every slot accounted for, and a new
/// receiver continues the sequence without gaps after what it gets.
pub fn kill_receiver_at_random_points<H: Harness>() {
    let ctx = H::context();
    for delay in random_delays("kill_receiver_at_random_points", 4, 150) {
        let (a, b) = UnixStream::pair().unwrap();
        let mut child = spawn_with_fd3(&peer_exe(), &[H::NAME, "recv-forever"], &b);
        let tx = H::offer(&ctx, 64, 8, &a).unwrap();
        // Attached first: with no receiver ever attached, a blocking loan
        // would rightly wait for one forever.
        assert_eq!(read_line(&mut child), "attached");
        let pid = child.id();
        let killer = kill_later(pid, delay);
        let mut seq = 0u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        let reclaimed = loop {
            assert!(
                Instant::now() < deadline,
                "the sender never noticed the kill"
            );
            match send_message(&tx, seq) {
                Ok(()) => seq += 1,
                Err(Error::PeerDied { pid: p, reclaimed }) => {
                    assert_eq!(p, pid);
                    break reclaimed;
                }
                Err(e) => panic!("send {seq}: {e}"),
            }
        };
        noticed_soon(Instant::now(), killer);
        child.wait().unwrap();
        assert!(reclaimed <= 8);
        let queued = tx.in_flight();
        assert!(queued <= 8);
        carry_on::<H>(&ctx, &tx, seq, queued);
    }
}

/// kill -9 of a busy sender at random moments: the receiver gets every
/// message sent before, in order, then PeerDied, not a hang.
pub fn kill_sender_at_random_points<H: Harness>() {
    let ctx = H::context();
    for delay in random_delays("kill_sender_at_random_points", 4, 150) {
        let (a, b) = UnixStream::pair().unwrap();
        let mut child = spawn_with_fd3(&peer_exe(), &[H::NAME, "send-forever", "128"], &b);
        let rx = H::accept(&ctx, &a).unwrap();
        assert_eq!(read_line(&mut child), "shared");
        let pid = child.id();
        let killer = kill_later(pid, delay);
        let mut next = 0u64;
        let noticed = loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(s) => {
                    assert_eq!(check_message(&s, 128), Ok(next));
                    next += 1;
                }
                Err(Error::PeerDied { pid: p, .. }) => {
                    assert_eq!(p, pid);
                    break Instant::now();
                }
                Err(e) => panic!("after {next}: {e}"),
            }
        };
        noticed_soon(noticed, killer);
        child.wait().unwrap();
    }
}
