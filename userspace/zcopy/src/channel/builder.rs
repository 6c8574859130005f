//! [`Builder`]: a channel's shape, then where it lives.

use std::time::Duration;

use super::segment::Segment;
#[cfg(feature = "card")]
use super::CardSlots;
use super::{Geometry, Result, Sender, Shm, Transport, TransportKind, Wait};

/// Slots of a channel whose builder did not say ([`Builder::new`]).
pub const DEFAULT_SLOT_COUNT: u32 = 64;

/// How long connecting to a remote peer may take unless the builder says
/// ([`Builder::connect_timeout`]).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bytes a stream keeps in flight ([`stream_slot_count`]). A sent slot
/// comes back only once the receiver has taken the message and let it go,
/// a longer loop than a NIC's acknowledgement, so a stream's window is
/// counted in bytes, not messages (docs/benchmarks.md measures it).
pub const STREAM_IN_FLIGHT: u64 = 4 << 20;

/// The bounds of [`stream_slot_count`].
pub const STREAM_SLOTS: std::ops::RangeInclusive<u32> = 16..=1024;

/// Slots of `slot_size` bytes for a channel that streams: enough for
/// [`STREAM_IN_FLIGHT`] bytes in flight, within [`STREAM_SLOTS`].
pub fn stream_slot_count(slot_size: usize) -> u32 {
    let (lo, hi) = (*STREAM_SLOTS.start(), *STREAM_SLOTS.end());
    // The clamp bounds it to u32 before the cast.
    (STREAM_IN_FLIGHT / slot_size.max(1) as u64).clamp(lo.into(), hi.into()) as u32
}

/// Builds a channel: slot size and count, then where it lives.
#[derive(Debug, Clone)]
pub struct Builder {
    slot_size: usize,
    slot_count: u32,
    backpressure: Wait,
    connect_timeout: Duration,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// Slot size, slot count, backpressure and the connect timeout, for
    /// transports built outside this module.
    #[cfg(feature = "rdma")]
    pub(crate) fn shape(&self) -> (usize, u32, Wait, Duration) {
        (
            self.slot_size,
            self.slot_count,
            self.backpressure,
            self.connect_timeout,
        )
    }

    /// 64 slots of 4 KiB, blocking when full.
    pub fn new() -> Builder {
        Builder {
            slot_size: 4096,
            slot_count: DEFAULT_SLOT_COUNT,
            backpressure: Wait::Forever,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// Payload bytes per slot.
    pub fn slot_size(mut self, bytes: usize) -> Builder {
        self.slot_size = bytes;
        self
    }

    /// Slots that can be loaned or in flight at once.
    pub fn slot_count(mut self, n: u32) -> Builder {
        self.slot_count = n;
        self
    }

    /// Slots sized for one `P`.
    pub fn slot_for<P: bytemuck::Pod>(self) -> Builder {
        self.slot_size(std::mem::size_of::<P>().max(1))
    }

    /// What [`Sender::loan`] does when every slot is taken (default: wait).
    pub fn backpressure(mut self, wait: Wait) -> Builder {
        self.backpressure = wait;
        self
    }

    /// How long connecting to a remote peer may take in all (default
    /// [`DEFAULT_CONNECT_TIMEOUT`]): for an RDMA channel, resolving the
    /// peer's address and route and the connection itself (with a
    /// second's grace for the kernel's report of its own timeout).
    /// Channels in this machine's memory are made at once and do not
    /// wait.
    pub fn connect_timeout(mut self, timeout: Duration) -> Builder {
        self.connect_timeout = timeout;
        self
    }

    /// An shm channel in a sealed memfd, shared by [`Sender::share`].
    pub fn create(self) -> Result<Sender<Shm>> {
        self.create_with::<Shm>(&())
    }

    /// An shm channel named `/dev/shm/zcopy.<name>`, opened by
    /// [`Receiver::open_named`](super::Receiver::open_named). The name goes when the sender drops. A stale
    /// one (its sender crashed) gives [`Error::Stale`](super::Error::Stale): remove it with
    /// [`remove_stale`](super::remove_stale). Named segments are files (0600) and cannot be
    /// sealed; share by descriptor where the peer is not trusted.
    pub fn create_named(self, name: &str) -> Result<Sender<Shm>> {
        let geo = Geometry::new(TransportKind::Shm, self.slot_size, self.slot_count)?;
        let seg = Segment::create_named(name, geo)?;
        let slots = Shm::create(&(), &seg, geo.slots_bytes)?;
        Ok(Sender::new(seg, slots, self.backpressure))
    }

    /// A channel whose slots live in a new pool on `card`.
    #[cfg(feature = "card")]
    pub fn create_on_card(self, card: &crate::card::Card) -> Result<Sender<CardSlots>> {
        self.create_with::<CardSlots>(card)
    }

    /// A channel over transport `T` (segment in a sealed memfd).
    pub fn create_with<T: Transport>(self, ctx: &T::Context) -> Result<Sender<T>> {
        let geo = Geometry::new(T::KIND, self.slot_size, self.slot_count)?;
        let seg = Segment::create_memfd(geo)?;
        let slots = T::create(ctx, &seg, geo.slots_bytes)?;
        Ok(Sender::new(seg, slots, self.backpressure))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_keeps_4_mib_in_flight_within_its_bounds() {
        let n = stream_slot_count;
        assert_eq!(
            [n(4096), n(16 << 10), n(64 << 10), n(256 << 10)],
            [1024, 256, 64, 16]
        );
        assert_eq!([n(1), n(0), n(1 << 30)], [1024, 1024, 16]);
    }
}
