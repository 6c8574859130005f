//! The op suite: every operation of the card on one queue, data checked.
//! Run by `zcard-vfio selftest`, by the guest tests and by the host tests
//! against the in-process card model, so all three check the same things.

use std::time::Duration;

use crate::wire::{ReqHeader, Status};
use crate::{Card, Completion, Error, Request};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// CRC-32C of the ASCII bytes "123456789".
const CRC_CHECK: u32 = 0xe306_9283;

/// A check that failed, with what was seen.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The driver failed.
    #[error(transparent)]
    Driver(#[from] Error),
    /// The card answered, wrongly.
    #[error("queue {queue}: {what}")]
    Check {
        /// The queue.
        queue: u16,
        /// What was wrong.
        what: String,
    },
}

/// Bytes 0.. of a recognisable pattern that differs per `seed`.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

fn one(card: &Card, q: u16, r: Request) -> Result<Completion, Failure> {
    let mut c = card.run(q, &[r], TIMEOUT)?;
    Ok(c.remove(0))
}

fn expect(q: u16, c: &Completion, status: Status, what: &str) -> Result<(), Failure> {
    if c.status() == Some(status) {
        Ok(())
    } else {
        Err(Failure::Check {
            queue: q,
            what: format!("{what}: {:?}, {status} expected", c.outcome),
        })
    }
}

fn same(q: u16, got: &[u8], want: &[u8], what: &str) -> Result<(), Failure> {
    if got == want {
        return Ok(());
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Err(Failure::Check {
        queue: q,
        what: format!("{what}: data differs at byte {at}"),
    })
}

/// Every operation on queue `q`, each result and byte checked. Uses
/// storage blocks `[8 q, 8 q + 8)` (512 bytes each) and puts back what
/// they held: the card's storage outlives the test (a file, with
/// `--storage`).
pub fn op_suite(card: &Card, q: u16) -> Result<(), Failure> {
    let len = 3 * 4096 + 5;
    let src = card.alloc(len)?;
    let dst = card.alloc(len)?;
    let data = pattern(len, q as u8);
    src.write(0, &data)?;

    expect(
        q,
        &one(card, q, Request::nop().user_data(1))?,
        Status::Ok,
        "NOP",
    )?;
    let c = one(card, q, Request::copy(src.all(), dst.all()).user_data(2))?;
    expect(q, &c, Status::Ok, "COPY")?;
    if c.user_data != 2 {
        return Err(Failure::Check {
            queue: q,
            what: format!("COPY came back with user_data {}", c.user_data),
        });
    }
    same(q, &dst.to_vec(), &data, "COPY")?;

    let c = one(
        card,
        q,
        Request::fill(dst.slice(1, 20)?, 0x0807_0605_0403_0201),
    )?;
    expect(q, &c, Status::Ok, "FILL")?;
    let mut want = data.clone();
    for (i, b) in want[1..21].iter_mut().enumerate() {
        *b = (i % 8) as u8 + 1;
    }
    same(q, &dst.to_vec(), &want, "FILL")?;

    src.write(0, b"123456789")?;
    let c = one(card, q, Request::crc32c(src.slice(0, 9)?, 0))?;
    expect(q, &c, Status::Ok, "CRC32C")?;
    let c1 = one(card, q, Request::crc32c(src.slice(0, 4)?, 0))?;
    let c2 = one(card, q, Request::crc32c(src.slice(4, 5)?, c1.result))?;
    if c.result != CRC_CHECK || c2.result != CRC_CHECK {
        return Err(Failure::Check {
            queue: q,
            what: format!(
                "CRC32C of 123456789: {:#x} whole, {:#x} in two pieces",
                c.result, c2.result
            ),
        });
    }

    let off = 4096 * u64::from(q);
    let kept = card.alloc(4096)?;
    expect(
        q,
        &one(card, q, Request::storage_read(off, kept.all()))?,
        Status::Ok,
        "STORAGE_READ of the blocks to keep",
    )?;
    let checked = storage_round_trip(card, q, off);
    let restored = card.run(
        q,
        &[Request::storage_write(kept.all(), off), Request::flush()],
        TIMEOUT,
    );
    checked?;
    for c in restored? {
        expect(
            q,
            &c,
            Status::Ok,
            "STORAGE_WRITE + FLUSH of the kept blocks",
        )?;
    }

    // What the card must refuse, it refuses, and says why.
    let back = card.alloc(512)?;
    let c = one(card, q, Request::storage_read(100, back.all()))?;
    expect(q, &c, Status::OutOfRange, "unaligned STORAGE_READ")?;
    let c = one(
        card,
        q,
        Request::copy(src.slice(0, 100)?, dst.slice(0, 99)?),
    )?;
    expect(q, &c, Status::BadLength, "COPY of unequal lengths")?;
    let unknown = ReqHeader {
        opcode: 0x7f,
        ..Default::default()
    };
    let c = one(card, q, Request::raw(unknown, vec![], vec![]))?;
    expect(q, &c, Status::Unsupported, "unknown opcode")?;
    Ok(())
}

/// A block of a pattern written at `off`, flushed and read back.
fn storage_round_trip(card: &Card, q: u16, off: u64) -> Result<(), Failure> {
    let block = card.alloc(4096)?;
    let bdata = pattern(4096, 0x80 | q as u8);
    block.write(0, &bdata)?;
    for c in card.run(
        q,
        &[Request::storage_write(block.all(), off), Request::flush()],
        TIMEOUT,
    )? {
        expect(q, &c, Status::Ok, "STORAGE_WRITE + FLUSH")?;
    }
    let back = card.alloc(4096)?;
    expect(
        q,
        &one(card, q, Request::storage_read(off, back.all()))?,
        Status::Ok,
        "STORAGE_READ",
    )?;
    same(q, &back.to_vec(), &bdata, "STORAGE_READ")
}
