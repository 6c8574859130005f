//! Where a channel's slots live, behind one trait.
//!
//! - [`Shm`]: in the control segment itself (memfd or `/dev/shm` file).
//! - [`CardSlots`]: in a zcard pool, shared by the pool's exported fd, so the
//!   card can DMA straight into a slot (e.g. STORAGE_READ into a loaned slot,
//!   then send it).

#[cfg(feature = "card")]
use std::os::fd::AsFd;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::ptr::NonNull;

use super::segment::Segment;
use super::TransportKind;
use super::{Error, Result};
#[cfg(feature = "card")]
use crate::card::{Card, Pool, PoolMap};

mod sealed {
    pub trait Sealed {}
}

/// A transport: the memory slots live in and what a peer needs to reach it.
/// Sealed: the crate provides the transports.
pub trait Transport: sealed::Sealed + Sized + Send + std::fmt::Debug {
    /// What creating or opening one needs (the card for [`CardSlots`]).
    type Context;
    /// Recorded in the segment; an opener of another kind is refused.
    const KIND: TransportKind;

    /// Makes slot memory of `bytes` bytes for a new channel.
    #[doc(hidden)]
    fn create(ctx: &Self::Context, seg: &Segment, bytes: u64) -> Result<Self>;
    /// Reaches an existing channel's slot memory, given the descriptors its
    /// creator shared besides the segment's.
    #[doc(hidden)]
    fn open(ctx: &Self::Context, seg: &Segment, bytes: u64, fds: Vec<OwnedFd>) -> Result<Self>;
    /// Slot 0, mapped in this process; `bytes` long.
    #[doc(hidden)]
    fn base(&self) -> NonNull<u8>;
    /// The descriptors a peer needs besides the segment's, in order.
    #[doc(hidden)]
    fn fds(&self) -> Vec<BorrowedFd<'_>>;
}

/// Slots in the shared-memory segment.
#[derive(Debug)]
pub struct Shm {
    base: NonNull<u8>,
}

// SAFETY: `base` points into the segment mapping, which the channel end
// holding this value also holds; nothing here is tied to a thread.
unsafe impl Send for Shm {}

impl sealed::Sealed for Shm {}

impl Transport for Shm {
    type Context = ();
    const KIND: TransportKind = TransportKind::Shm;

    fn create(_: &(), seg: &Segment, _bytes: u64) -> Result<Shm> {
        Shm::at(seg)
    }

    fn open(_: &(), seg: &Segment, _bytes: u64, fds: Vec<OwnedFd>) -> Result<Shm> {
        if !fds.is_empty() {
            return Err(Error::Layout(format!(
                "an shm channel comes with one descriptor, got {}",
                fds.len() + 1
            )));
        }
        Shm::at(seg)
    }

    fn base(&self) -> NonNull<u8> {
        self.base
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        Vec::new()
    }
}

impl Shm {
    fn at(seg: &Segment) -> Result<Shm> {
        NonNull::new(seg.slots_ptr())
            .map(|base| Shm { base })
            .ok_or(Error::NotAChannel)
    }
}

/// Slots in a zcard pool (one per channel), shared by exported fd.
#[cfg(feature = "card")]
#[derive(Debug)]
pub struct CardSlots {
    pool: Pool,
    map: PoolMap,
    export: OwnedFd,
}

#[cfg(feature = "card")]
impl sealed::Sealed for CardSlots {}

/// The card pool granule: pools are whole 64 KiB chunks.
#[cfg(feature = "card")]
const POOL_GRANULE: u64 = 64 << 10;

#[cfg(feature = "card")]
impl Transport for CardSlots {
    type Context = Card;
    const KIND: TransportKind = TransportKind::Card;

    fn create(card: &Card, _seg: &Segment, bytes: u64) -> Result<CardSlots> {
        let pool = card.create_pool(bytes.div_ceil(POOL_GRANULE) * POOL_GRANULE)?;
        CardSlots::with(pool, bytes)
    }

    fn open(card: &Card, _seg: &Segment, bytes: u64, fds: Vec<OwnedFd>) -> Result<CardSlots> {
        let [fd]: [OwnedFd; 1] = fds.try_into().map_err(|v: Vec<OwnedFd>| {
            Error::Layout(format!(
                "a card channel comes with two descriptors, got {}",
                v.len() + 1
            ))
        })?;
        let pool = card.import_pool(fd.as_fd())?;
        CardSlots::with(pool, bytes)
    }

    fn base(&self) -> NonNull<u8> {
        NonNull::new(self.map.as_ptr()).expect("a mapping is never at address 0")
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.export.as_fd()]
    }
}

#[cfg(feature = "card")]
impl CardSlots {
    fn with(pool: Pool, bytes: u64) -> Result<CardSlots> {
        if pool.size() < bytes {
            return Err(Error::Layout(format!(
                "the pool holds {} bytes, the slots need {bytes}",
                pool.size()
            )));
        }
        let map = pool.map()?;
        let export = pool.export()?;
        Ok(CardSlots { pool, map, export })
    }

    /// The pool the slots live in (on this process's card file): name it in
    /// SQEs with a slot's offset to have the card move data into or out of it.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}
