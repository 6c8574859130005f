//! The wire format, from the `zcard-virtio` crate (its single Rust
//! definition, mirroring driver/include/uapi/zcard_virtio.h), and the values
//! this card puts in it.

pub use zcard_virtio::*;

/// Storage durability and alignment unit (`ConfigSpace::block_size`).
pub const BLOCK_SIZE: u32 = 512;
/// Largest virtqueue the card accepts (`ConfigSpace::max_queue_size`).
pub const MAX_QUEUE_SIZE: u16 = 1024;
/// Bitmap of every operation this card implements (`ConfigSpace::supported_ops`).
pub const SUPPORTED_OPS: u32 = (1 << Op::ALL.len()) - 1;

/// Default number of request queues.
pub const DEFAULT_QUEUES: u16 = 2;
/// Default limit of source (and, separately, destination) segments per request.
pub const DEFAULT_MAX_SEGMENTS: u16 = 16;
/// Default limit of payload bytes per request.
pub const DEFAULT_MAX_REQUEST_BYTES: u32 = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_card_implements_every_version_1_opcode() {
        assert_eq!(SUPPORTED_OPS, 0x7f);
        assert!(BLOCK_SIZE.is_power_of_two());
        assert!(MAX_QUEUE_SIZE.is_power_of_two());
    }
}
