//! A channel's shape: slot size and count, and the layout that follows
//! from them (stride, ring offsets, sizes), the same computation at both
//! ends and for every transport.

use super::segment::SegmentHeader;
use super::{Error, Result};
use crate::ring::{ring_bytes, CACHE_LINE};

/// Largest slot payload.
pub const MAX_SLOT_SIZE: u32 = 1 << 30;
/// Most slots in one channel.
pub const MAX_SLOT_COUNT: u32 = 1 << 16;
/// Largest slot memory of one channel.
pub const MAX_SLOTS_BYTES: u64 = 16 << 30;

/// Which transport a channel's slots use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum TransportKind {
    /// Slots in the shared-memory segment itself.
    Shm = 1,
    /// Slots in a zcard pool shared by exported fd.
    Card = 2,
}

impl TransportKind {
    pub(crate) fn from_u32(v: u32) -> Option<TransportKind> {
        match v {
            1 => Some(TransportKind::Shm),
            2 => Some(TransportKind::Card),
            _ => None,
        }
    }
}

/// Everything about a channel's shape, computed from three numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Transport.
    pub transport: TransportKind,
    /// Payload bytes per slot.
    pub slot_size: u32,
    /// Number of slots.
    pub slot_count: u32,
    /// Entries per ring.
    pub ring_capacity: u32,
    /// Bytes between slots.
    pub slot_stride: u64,
    /// Submit ring offset.
    pub submit_ring: u64,
    /// Return ring offset.
    pub return_ring: u64,
    /// Slot 0's offset.
    pub slots_offset: u64,
    /// Bytes of slot memory.
    pub slots_bytes: u64,
    /// Bytes of the segment.
    pub segment_bytes: u64,
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

impl Geometry {
    /// The layout for a channel of `slot_count` slots of `slot_size` bytes.
    pub fn new(transport: TransportKind, slot_size: usize, slot_count: u32) -> Result<Geometry> {
        let slot_size = match u32::try_from(slot_size) {
            Ok(s @ 1..=MAX_SLOT_SIZE) => s,
            _ => {
                return Err(Error::Config(format!(
                    "slot size {slot_size}: must be 1..={MAX_SLOT_SIZE} bytes"
                )))
            }
        };
        if slot_count == 0 || slot_count > MAX_SLOT_COUNT {
            return Err(Error::Config(format!(
                "slot count {slot_count}: must be 1..={MAX_SLOT_COUNT}"
            )));
        }
        // Small slots pack on cache lines; page-sized and larger ones start on
        // a page, which is what DMA and big copies like.
        let slot_stride = if slot_size < 4096 {
            align_up(slot_size.into(), CACHE_LINE as u64)
        } else {
            align_up(slot_size.into(), 4096)
        };
        let slots_bytes = slot_stride * u64::from(slot_count);
        if slots_bytes > MAX_SLOTS_BYTES {
            return Err(Error::Config(format!(
                "{slot_count} slots of {slot_size} bytes need {slots_bytes} bytes: more than {MAX_SLOTS_BYTES}"
            )));
        }
        let ring_capacity = slot_count.next_power_of_two();
        let header = align_up(
            std::mem::size_of::<SegmentHeader>() as u64,
            CACHE_LINE as u64,
        );
        let ring = align_up(ring_bytes(ring_capacity) as u64, CACHE_LINE as u64);
        let submit_ring = header;
        let return_ring = submit_ring + ring;
        let rings_end = align_up(return_ring + ring, 4096);
        let (slots_offset, segment_bytes) = match transport {
            TransportKind::Shm => (rings_end, rings_end + slots_bytes),
            TransportKind::Card => (0, rings_end),
        };
        Ok(Geometry {
            transport,
            slot_size,
            slot_count,
            ring_capacity,
            slot_stride,
            submit_ring,
            return_ring,
            slots_offset,
            slots_bytes,
            segment_bytes,
        })
    }
}

impl Geometry {
    /// Payload bytes a slot holds.
    #[inline]
    pub fn capacity(&self) -> usize {
        self.slot_size as usize
    }

    /// Where slot `index` starts in the slot memory (the offset every
    /// transport names a slot by: in the segment's slots, the card pool,
    /// the RDMA ring).
    #[inline]
    pub fn slot_offset(&self, index: u32) -> u64 {
        u64::from(index) * self.slot_stride
    }

    /// A message of `len` bytes fits a slot, or [`Error::TooLarge`].
    #[inline]
    pub fn check_len(&self, len: usize) -> Result<()> {
        if len > self.capacity() {
            return Err(Error::TooLarge {
                len,
                capacity: self.capacity(),
            });
        }
        Ok(())
    }
}

/// Checks that a `P` fits a slot of `capacity` bytes at `ptr` and that
/// `ptr` is aligned for it.
pub(crate) fn check_pod<P>(ptr: *const u8, capacity: usize) -> Result<()> {
    let ty = std::any::type_name::<P>();
    if std::mem::size_of::<P>() > capacity {
        return Err(Error::Type {
            ty,
            why: format!(
                "{} bytes do not fit a {capacity}-byte slot",
                std::mem::size_of::<P>()
            ),
        });
    }
    if ptr.align_offset(std::mem::align_of::<P>()) != 0 {
        return Err(Error::Type {
            ty,
            why: format!("needs {}-byte alignment", std::mem::align_of::<P>()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_rejects_bad_shapes_and_places_things_aligned() {
        for (size, count) in [
            (0, 1),
            (1, 0),
            (MAX_SLOT_SIZE as usize + 1, 1),
            (usize::MAX, 1),
            (1 << 32, 1),
            (1, MAX_SLOT_COUNT + 1),
            (MAX_SLOT_SIZE as usize, 17),
        ] {
            assert!(matches!(
                Geometry::new(TransportKind::Shm, size, count),
                Err(Error::Config(_))
            ));
        }
        let g = Geometry::new(TransportKind::Shm, 100, 5).unwrap();
        assert_eq!(g.slot_stride, 128);
        assert_eq!(g.ring_capacity, 8);
        assert_eq!(g.submit_ring % 64, 0);
        assert_eq!(g.return_ring % 64, 0);
        assert_eq!(g.slots_offset % 4096, 0);
        assert_eq!(g.segment_bytes, g.slots_offset + 5 * 128);
        let big = Geometry::new(TransportKind::Card, 5000, 3).unwrap();
        assert_eq!(big.slot_stride, 8192);
        assert_eq!(big.slots_offset, 0);
        assert_eq!(big.segment_bytes % 4096, 0);
    }

    #[test]
    fn a_slot_is_found_by_its_stride_and_a_message_must_fit_it() {
        let g = Geometry::new(TransportKind::Shm, 100, 5).unwrap();
        assert_eq!(g.capacity(), 100);
        assert_eq!(g.slot_offset(0), 0);
        assert_eq!(g.slot_offset(4), 4 * 128);
        assert!(g.check_len(0).is_ok() && g.check_len(100).is_ok());
        assert!(matches!(
            g.check_len(101),
            Err(Error::TooLarge {
                len: 101,
                capacity: 100
            })
        ));
        let big = Geometry::new(TransportKind::Card, 5000, 3).unwrap();
        assert_eq!(big.slot_offset(2), 2 * 8192);
    }
}
