//! The channel with its slots in a zcard pool: the conformance suite, and
//! the card moving data straight into a loaned slot. Guest only (needs
//! /dev/zcard0): make qemu-test.

use std::time::Duration;

use zcopy::card::{Buf, Card, Sqe};
use zcopy::channel::CardSlots;
use zcopy_vm_tests::channel::pair;
use zcopy_vm_tests::crc32c_reference;

zcopy_vm_tests::conformance_suite!(CardSlots, #[ignore = "runs in the zcopy guest: make qemu-test"]);
zcopy_vm_tests::shared_memory_suite!(CardSlots, #[ignore = "runs in the zcopy guest: make qemu-test"]);

/// STORAGE_READ lands in a loaned slot, which is sent without the CPU
/// touching the payload; the receiver reads the card's bytes in place, and
/// the card's CRC of the receiver's slot (in its own import of the pool)
/// matches.
#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn card_dma_into_a_slot_then_send() {
    let card = Card::open_index(0).unwrap();
    let (tx, rx) = pair::<CardSlots>(&card, 64 << 10, 4);
    let mut rings = card.setup_rings(8).unwrap();
    let data: Vec<u8> = (0..64u32 << 10).map(|i| (i * 31 % 251) as u8).collect();

    // Put the data on the card's storage through a scratch pool.
    let scratch = card.create_pool(64 << 10).unwrap();
    scratch.map().unwrap().write(0, &data).unwrap();
    let cqes = rings
        .run(
            &[Sqe::storage_write(Buf::new(&scratch, 0), 4096, 64 << 10)],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(cqes[0].bytes().unwrap(), 64 << 10);

    let loan = tx.loan().unwrap();
    let dst = Buf::new(tx.pool(), loan.offset());
    let cqes = rings
        .run(
            &[Sqe::storage_read(4096, dst, 64 << 10)],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(cqes[0].bytes().unwrap(), 64 << 10);
    loan.send(64 << 10).unwrap();

    let s = rx.recv().unwrap();
    assert_eq!(&*s, &data[..]);
    let cqes = rings
        .run(
            &[Sqe::crc32c(Buf::new(tx.pool(), s.offset()), 64 << 10, 0)],
            Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(cqes[0].value as u32, crc32c_reference(0, &data));
    drop(s);
    assert_eq!(tx.in_flight(), 0);
    // Both ends' pools are imports of one set of pages.
    assert_eq!(rx.pool().size(), tx.pool().size());
}
