//! The submission and completion rings of one card file.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;

use super::uapi::{self, ZcardCqe, ZcardRingOffsets, ZcardSqe};
use super::{ioctl_err, Card, Error, Pool, Result};

/// A place in a pool: (pool id, byte offset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    /// Pool id on the submitting file.
    pub pool: u32,
    /// Byte offset in the pool.
    pub offset: u64,
}

impl Buf {
    /// `offset` bytes into `pool`.
    pub fn new(pool: &Pool, offset: u64) -> Buf {
        Buf {
            pool: pool.id(),
            offset,
        }
    }
}

/// A submission queue entry: the ABI's `struct zcard_sqe`, built by the
/// constructors below (or field by field, to test the driver's checks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sqe(pub ZcardSqe);

impl Sqe {
    /// Does nothing; completes with 0.
    pub fn nop() -> Sqe {
        Sqe(ZcardSqe {
            opcode: uapi::ZCARD_OP_NOP,
            ..Default::default()
        })
    }

    /// Copies `len` bytes from `src` to `dst`.
    pub fn copy(src: Buf, dst: Buf, len: u32) -> Sqe {
        Sqe(ZcardSqe {
            opcode: uapi::ZCARD_OP_COPY,
            length: len,
            src_pool: src.pool,
            src_offset: src.offset,
            dst_pool: dst.pool,
            dst_offset: dst.offset,
            ..Default::default()
        })
    }

    /// Writes the 8-byte little-endian `pattern`, repeated, over `len` bytes at `dst`.
    pub fn fill(dst: Buf, len: u32, pattern: u64) -> Sqe {
        Sqe(ZcardSqe {
            opcode: uapi::ZCARD_OP_FILL,
            length: len,
            dst_pool: dst.pool,
            dst_offset: dst.offset,
            pattern,
            ..Default::default()
        })
    }

    /// CRC-32C of `len` bytes at `src`, continuing from `seed` (0 to start).
    pub fn crc32c(src: Buf, len: u32, seed: u32) -> Sqe {
        Sqe(ZcardSqe {
            opcode: uapi::ZCARD_OP_CRC32C,
            length: len,
            src_pool: src.pool,
            src_offset: src.offset,
            pattern: u64::from(seed),
            ..Default::default()
        })
    }

    /// Reads `len` bytes of card storage at `storage_offset` into `dst`.
    pub fn storage_read(storage_offset: u64, dst: Buf, len: u32) -> Sqe {
        Sqe(ZcardSqe {
            opcode: uapi::ZCARD_OP_STORAGE_READ,
            length: len,
            dst_pool: dst.pool,
            dst_offset: dst.offset,
            storage_offset,
            ..Default::default()
        })
    }

    /// Writes `len` bytes at `src` to card storage at `storage_offset`.
    pub fn storage_write(src: Buf, storage_offset: u64, len: u32) -> Sqe {
        Sqe(ZcardSqe {
            opcode: uapi::ZCARD_OP_STORAGE_WRITE,
            length: len,
            src_pool: src.pool,
            src_offset: src.offset,
            storage_offset,
            ..Default::default()
        })
    }

    /// Makes every completed storage write durable.
    pub fn flush() -> Sqe {
        Sqe(ZcardSqe {
            opcode: uapi::ZCARD_OP_FLUSH,
            ..Default::default()
        })
    }

    /// Sets the value the completion carries back.
    pub fn user_data(mut self, user_data: u64) -> Sqe {
        self.0.user_data = user_data;
        self
    }
}

/// A completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cqe {
    /// The SQE's user_data.
    pub user_data: u64,
    /// Bytes moved, or a negative errno.
    pub result: i32,
    /// CRC32C: the CRC.
    pub value: u64,
}

impl Cqe {
    /// Bytes moved, or the request's error.
    pub fn bytes(&self) -> Result<u32> {
        if self.result < 0 {
            Err(Error::Request(Errno::from_raw(-self.result)))
        } else {
            Ok(self.result as u32)
        }
    }
}

/// The SQ and CQ of one card file, mapped into this process.
///
/// [`Rings::push`] fills SQ entries, [`Rings::submit`] (one `ioctl` for the
/// whole batch) hands them to the driver, [`Rings::pop`] takes completions.
#[derive(Debug)]
pub struct Rings {
    card: Card,
    map: MmapRaw,
    off: ZcardRingOffsets,
    sq_entries: u32,
    cq_entries: u32,
    /// Local SQ tail: entries pushed, published to the kernel at once.
    sq_tail: u32,
    /// Local CQ head: completions taken.
    cq_head: u32,
}

impl Rings {
    pub(crate) fn setup(card: Card, sq_entries: u32, cq_entries: u32) -> Result<Rings> {
        let mut rs = uapi::ZcardRingSetup {
            sq_entries,
            cq_entries,
            ..Default::default()
        };
        // SAFETY: an open descriptor and a valid `struct zcard_ring_setup`.
        unsafe { uapi::zcard_ioc_ring_setup(card.file().as_raw_fd(), &mut rs) }
            .map_err(ioctl_err("ZCARD_IOC_RING_SETUP"))?;
        let map = MmapOptions::new()
            .offset(uapi::ZCARD_OFF_RINGS)
            .len(rs.ring_size as usize)
            .map_raw(card.file())
            .map_err(|source| Error::Map {
                what: "the rings",
                source,
            })?;
        let mut rings = Rings {
            card,
            map,
            off: rs.off,
            sq_entries: rs.sq_entries,
            cq_entries: rs.cq_entries,
            sq_tail: 0,
            cq_head: 0,
        };
        rings.sq_tail = rings.index(rings.off.sq_tail).load(Ordering::Relaxed);
        rings.cq_head = rings.index(rings.off.cq_head).load(Ordering::Relaxed);
        Ok(rings)
    }

    fn index(&self, off: u32) -> &AtomicU32 {
        let ptr = self.map.as_mut_ptr().wrapping_add(off as usize).cast();
        // SAFETY: the driver places each index 4-byte aligned inside the
        // ring area (pinned by the ABI), which stays mapped while `self`
        // lives; the kernel accesses it only as a 32-bit word too.
        unsafe { AtomicU32::from_ptr(ptr) }
    }

    /// SQ size.
    pub fn sq_entries(&self) -> u32 {
        self.sq_entries
    }

    /// CQ size.
    pub fn cq_entries(&self) -> u32 {
        self.cq_entries
    }

    /// The card these rings belong to.
    pub fn card(&self) -> &Card {
        &self.card
    }

    /// SQ entries pushed and not yet consumed by the driver.
    pub fn sq_pending(&self) -> u32 {
        // Acquire: pairs with the kernel's release of sq_head.
        self.sq_tail
            .wrapping_sub(self.index(self.off.sq_head).load(Ordering::Acquire))
    }

    /// Completions waiting in the CQ.
    pub fn cq_ready(&self) -> u32 {
        // Acquire: pairs with the kernel's release of cq_tail (CQE first).
        self.index(self.off.cq_tail)
            .load(Ordering::Acquire)
            .wrapping_sub(self.cq_head)
    }

    /// Completions the driver could not post because the CQ was full.
    pub fn cq_overflow(&self) -> u32 {
        self.index(self.off.cq_overflow).load(Ordering::Relaxed)
    }

    /// Writes `sqe` into the next SQ entry (not yet visible to the driver:
    /// [`Rings::submit`] publishes and submits).
    pub fn push(&mut self, sqe: Sqe) -> Result<()> {
        if self.sq_pending() >= self.sq_entries {
            return Err(Error::SqFull);
        }
        let slot = (self.sq_tail & (self.sq_entries - 1)) as usize;
        let entry = self.map.as_mut_ptr().wrapping_add(self.off.sqes as usize);
        let entry = entry.cast::<ZcardSqe>().wrapping_add(slot);
        // SAFETY: `slot < sq_entries`, and the SQE array of `sq_entries`
        // entries lies inside the mapping at `off.sqes` (64-byte aligned).
        // The kernel reads this entry only after the release store of the
        // tail in `publish`.
        unsafe { entry.write_volatile(sqe.0) };
        self.sq_tail = self.sq_tail.wrapping_add(1);
        Ok(())
    }

    /// Writes raw entries as they are (a test aid: the driver must refuse
    /// bad ones). Only with the `test-aids` feature.
    #[cfg(feature = "test-aids")]
    pub fn push_raw(&mut self, sqe: ZcardSqe) -> Result<()> {
        self.push(Sqe(sqe))
    }

    fn publish(&self) {
        // Release: the SQEs written before are visible to the kernel's
        // acquire load of sq_tail.
        self.index(self.off.sq_tail)
            .store(self.sq_tail, Ordering::Release);
    }

    fn enter(&self, to_submit: u32, min_complete: u32, timeout: Option<Duration>) -> Result<u32> {
        let mut en = uapi::ZcardEnter {
            to_submit,
            min_complete,
            timeout_ns: timeout.map_or(0, |t| t.as_nanos().clamp(1, u64::MAX.into()) as u64),
            ..Default::default()
        };
        // SAFETY: an open descriptor and a valid `struct zcard_enter`.
        let r = unsafe { uapi::zcard_ioc_enter(self.card.file().as_raw_fd(), &mut en) };
        match r {
            Ok(_) => Ok(en.submitted),
            Err(e) => Err(ioctl_err("ZCARD_IOC_ENTER")(e)),
        }
    }

    /// Submits every pushed SQE in one call; returns how many the driver took
    /// (it stops early when completions would not fit in the CQ).
    pub fn submit(&mut self) -> Result<u32> {
        self.publish();
        self.enter(self.sq_pending(), 0, None)
    }

    /// Submits every pushed SQE, then waits until at least `min_complete`
    /// completions are in the CQ (or `timeout` passes: `ETIME`).
    pub fn submit_and_wait(&mut self, min_complete: u32, timeout: Option<Duration>) -> Result<u32> {
        self.publish();
        self.enter(self.sq_pending(), min_complete, timeout)
    }

    /// Waits for `min_complete` completions without submitting.
    pub fn wait(&self, min_complete: u32, timeout: Option<Duration>) -> Result<()> {
        self.enter(0, min_complete, timeout).map(|_| ())
    }

    /// Takes the next completion, if any.
    pub fn pop(&mut self) -> Option<Cqe> {
        if self.cq_ready() == 0 {
            return None;
        }
        let slot = (self.cq_head & (self.cq_entries - 1)) as usize;
        let entry = self.map.as_mut_ptr().wrapping_add(self.off.cqes as usize);
        let entry = entry.cast::<ZcardCqe>().wrapping_add(slot);
        // SAFETY: `slot < cq_entries` inside the CQE array of the mapping;
        // the acquire load in `cq_ready` ordered this read after the
        // kernel's write of the entry.
        let cqe = unsafe { entry.read_volatile() };
        self.cq_head = self.cq_head.wrapping_add(1);
        // Release: the entry is read before the kernel may reuse it.
        self.index(self.off.cq_head)
            .store(self.cq_head, Ordering::Release);
        Some(Cqe {
            user_data: cqe.user_data,
            result: cqe.result,
            value: cqe.value,
        })
    }

    /// Moves the CQ head to an arbitrary value (a test aid: a corrupt head
    /// must be survived by the driver and reported as overflow). Only with
    /// the `test-aids` feature.
    #[cfg(feature = "test-aids")]
    pub fn set_cq_head_raw(&mut self, head: u32) {
        self.cq_head = head;
        self.index(self.off.cq_head).store(head, Ordering::Release);
    }

    /// Runs `sqes` to completion as one batch and returns their completions
    /// in completion order. A convenience for simple callers and tests.
    pub fn run(&mut self, sqes: &[Sqe], timeout: Duration) -> Result<Vec<Cqe>> {
        let mut out = Vec::with_capacity(sqes.len());
        let mut next = 0;
        while out.len() < sqes.len() {
            while next < sqes.len() && self.push(sqes[next]).is_ok() {
                next += 1;
            }
            match self.submit_and_wait(1, Some(timeout)) {
                Ok(_) => {}
                // The CQ is full of our own completions: reap below.
                Err(e) if e.errno() == Some(Errno::EBUSY) => {}
                Err(e) => return Err(e),
            }
            while let Some(c) = self.pop() {
                out.push(c);
            }
        }
        Ok(out)
    }
}
