//! Which slots a shared-memory channel lends: a strict ping-pong stays on
//! the slots it got back.

use std::collections::BTreeSet;
use std::os::unix::net::UnixStream;

use zcopy::channel::{Builder, Receiver, Sender, Shm};

fn pair(slots: u32) -> (Sender<Shm>, Receiver<Shm>) {
    let (a, b) = UnixStream::pair().unwrap();
    let tx = Builder::new()
        .slot_size(4096)
        .slot_count(slots)
        .create()
        .unwrap();
    tx.share(&a).unwrap();
    let rx = Receiver::<Shm>::from_socket(&(), &b).unwrap();
    (tx, rx)
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
        loan.set_len(4).unwrap();
        loan.send().unwrap();
        let got = rx.recv().unwrap();
        assert_eq!(got[..4], i.to_le_bytes());
    }
    assert!(used.len() <= 2, "slots used: {used:?}");
}
