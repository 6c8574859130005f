//! The zcard's virtio wire format: identity, config space, request header and
//! status, opcodes and status codes (docs/zcard-spec.md).
//!
//! The C header `driver/include/uapi/zcard_virtio.h` is the single source of
//! truth; this crate is its one Rust definition, used by the device model
//! (zcard-vhost) and by anything else that speaks to the card. A test
//! compiles the header and compares every size, offset and constant.
//!
//! Everything is little-endian on the wire and `#[repr(C)]` with explicit
//! padding, read and written natively (so big-endian hosts are refused at
//! build time). Nothing here touches guest memory.
//!
//! Features: `serde` (Op and Status by their lower-case names), `vm-memory`
//! (`ByteValued` for the wire structures).

#![deny(missing_docs)]

#[cfg(target_endian = "big")]
compile_error!("the zcard wire format is little-endian and is mapped natively");

use std::fmt;

/// Virtio device id of the zcard (unused by Linux; QEMU accepts it).
pub const VIRTIO_ID_ZCARD: u32 = 38;
/// PCI device id a guest sees for a modern virtio device of id 38.
pub const PCI_DEVICE_ID: u16 = 0x1040 + VIRTIO_ID_ZCARD as u16;
/// `ConfigSpace::magic`: the bytes "ZCRD" read as a little-endian `u32`.
pub const ZCARD_MAGIC: u32 = u32::from_le_bytes(*b"ZCRD");
/// `ConfigSpace::version`: spec version 1.0 (major in the high 16 bits).
pub const ZCARD_VERSION: u32 = 1 << 16;
/// Size in bytes of the config space the card exposes.
pub const CONFIG_SIZE: usize = 64;
/// `ConfigSpace::device_state` bit: the card needs a reset before it serves again.
pub const STATE_NEEDS_RESET: u32 = 1 << 0;

/// Operation codes (`ReqHeader::opcode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[repr(u8)]
pub enum Op {
    /// Do nothing; complete with `Ok`.
    Nop = 0,
    /// Gather the sources and scatter them over the destinations.
    Copy = 1,
    /// Write the 8-byte pattern repeatedly over the destinations.
    Fill = 2,
    /// CRC32C (Castagnoli) of the sources, returned in `ReqStatus::result`.
    Crc32c = 3,
    /// Read storage at `storage_offset` into the destinations.
    StorageRead = 4,
    /// Write the sources to storage at `storage_offset`.
    StorageWrite = 5,
    /// Make every completed storage write durable.
    Flush = 6,
}

impl Op {
    /// Every operation, in opcode order.
    pub const ALL: [Op; 7] = [
        Op::Nop,
        Op::Copy,
        Op::Fill,
        Op::Crc32c,
        Op::StorageRead,
        Op::StorageWrite,
        Op::Flush,
    ];

    /// The operation with this opcode, if there is one.
    pub fn from_opcode(opcode: u8) -> Option<Op> {
        Op::ALL.get(usize::from(opcode)).copied()
    }

    /// Lower-case name, as used by the control socket and the logs.
    pub fn name(self) -> &'static str {
        match self {
            Op::Nop => "nop",
            Op::Copy => "copy",
            Op::Fill => "fill",
            Op::Crc32c => "crc32c",
            Op::StorageRead => "storage_read",
            Op::StorageWrite => "storage_write",
            Op::Flush => "flush",
        }
    }

    /// Whether the request carries source (device-readable) segments.
    pub fn has_sources(self) -> bool {
        matches!(self, Op::Copy | Op::Crc32c | Op::StorageWrite)
    }

    /// Whether the request carries destination (device-writable) segments.
    pub fn has_destinations(self) -> bool {
        matches!(self, Op::Copy | Op::Fill | Op::StorageRead)
    }
}

/// Completion status codes (`ReqStatus::status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[repr(u8)]
pub enum Status {
    /// The operation completed.
    Ok = 0,
    /// Unknown or unsupported opcode.
    Unsupported = 1,
    /// Header too short, or nonzero flags or reserved fields.
    BadHeader = 2,
    /// Descriptor directions out of order, or a zero-length segment.
    BadDescriptor = 3,
    /// Segment lengths do not add up to the header's length, or too long a request.
    BadLength = 4,
    /// More segments than `ConfigSpace::max_segments` in one direction.
    TooManySegments = 5,
    /// A segment lies (partly) outside guest memory.
    BadAddress = 6,
    /// Storage range beyond capacity or not block-aligned, or a nonzero field the op forbids.
    OutOfRange = 7,
    /// The storage backing failed (or a fault said so).
    IoError = 8,
    /// The card needs a reset; the request was not executed.
    NeedsReset = 9,
}

impl Status {
    /// Every status, in code order.
    pub const ALL: [Status; 10] = [
        Status::Ok,
        Status::Unsupported,
        Status::BadHeader,
        Status::BadDescriptor,
        Status::BadLength,
        Status::TooManySegments,
        Status::BadAddress,
        Status::OutOfRange,
        Status::IoError,
        Status::NeedsReset,
    ];

    /// The status with this code, if there is one.
    pub fn from_code(code: u8) -> Option<Status> {
        Status::ALL.get(usize::from(code)).copied()
    }

    /// Lower-case name, as used by the control socket.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Unsupported => "unsupported",
            Status::BadHeader => "bad_header",
            Status::BadDescriptor => "bad_descriptor",
            Status::BadLength => "bad_length",
            Status::TooManySegments => "too_many_segments",
            Status::BadAddress => "bad_address",
            Status::OutOfRange => "out_of_range",
            Status::IoError => "io_error",
            Status::NeedsReset => "needs_reset",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The device-specific config space (read-only; little-endian).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ConfigSpace {
    /// `ZCARD_MAGIC`.
    pub magic: u32,
    /// Spec version, major << 16 | minor.
    pub version: u32,
    /// Number of request queues.
    pub num_queues: u16,
    /// Largest number of source segments, and of destination segments, per request.
    pub max_segments: u16,
    /// Largest `ReqHeader::length` accepted.
    pub max_request_bytes: u32,
    /// Storage capacity in bytes (a multiple of `block_size`).
    pub storage_capacity: u64,
    /// Storage alignment and durability unit in bytes.
    pub block_size: u32,
    /// Bit n set: opcode n is implemented.
    pub supported_ops: u32,
    /// `STATE_*` bits.
    pub device_state: u32,
    /// Largest virtqueue size the card accepts.
    pub max_queue_size: u32,
    /// Reserved, read as zero.
    pub reserved: [u32; 6],
}

#[cfg(feature = "vm-memory")]
// SAFETY: ConfigSpace is repr(C), made only of integers, with no padding
// (checked by the layout test), so every byte pattern is a valid value.
unsafe impl vm_memory::ByteValued for ConfigSpace {}

/// Request header: the first, device-readable descriptor of every chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ReqHeader {
    /// `Op` code.
    pub opcode: u8,
    /// Must be zero in version 1.
    pub flags: u8,
    /// Must be zero.
    pub reserved0: u16,
    /// Must be zero.
    pub reserved1: u32,
    /// Driver's cookie, echoed in `ReqStatus::tag`.
    pub tag: u64,
    /// Payload bytes of the operation.
    pub length: u64,
    /// Byte offset into storage (`StorageRead`, `StorageWrite`), else zero.
    pub storage_offset: u64,
    /// `Fill`: the 8-byte pattern. `Crc32c`: initial CRC in the low 32 bits. Else zero.
    pub pattern: u64,
    /// Must be zero.
    pub reserved2: u64,
}

#[cfg(feature = "vm-memory")]
// SAFETY: ReqHeader is repr(C), made only of integers, with no padding
// (checked by the layout test), so every byte pattern is a valid value.
unsafe impl vm_memory::ByteValued for ReqHeader {}

/// Request status: the last, device-writable descriptor of every chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ReqStatus {
    /// `Status` code.
    pub status: u8,
    /// Zero.
    pub reserved: [u8; 3],
    /// `Crc32c`: the CRC. Otherwise zero.
    pub result: u32,
    /// `ReqHeader::tag` of the request (zero if the header could not be read).
    pub tag: u64,
}

#[cfg(feature = "vm-memory")]
// SAFETY: ReqStatus is repr(C), made only of integers, with no padding
// (checked by the layout test), so every byte pattern is a valid value.
unsafe impl vm_memory::ByteValued for ReqStatus {}

/// 8-byte words of a [`ReqHeader`], in memory order.
pub const REQ_HEADER_WORDS: usize = 6;

impl ReqHeader {
    /// The header whose bytes are `w` (native byte order, as in memory).
    /// A device that loads the header as whole words and builds it from
    /// them keeps it in registers: loading the struct field by field from
    /// a copy made with wider stores costs the CPU a store-forwarding
    /// stall per field.
    #[inline]
    pub fn from_words(w: [u64; REQ_HEADER_WORDS]) -> ReqHeader {
        let b = w[0].to_ne_bytes();
        ReqHeader {
            opcode: b[0],
            flags: b[1],
            reserved0: u16::from_ne_bytes([b[2], b[3]]),
            reserved1: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
            tag: w[1],
            length: w[2],
            storage_offset: w[3],
            pattern: w[4],
            reserved2: w[5],
        }
    }
}

impl ReqStatus {
    /// This status as the two 8-byte words it is in memory (native byte
    /// order): a device stores them whole instead of field by field.
    #[inline]
    pub fn to_words(self) -> [u64; 2] {
        let r = self.result.to_ne_bytes();
        let [a, b, c] = self.reserved;
        [
            u64::from_ne_bytes([self.status, a, b, c, r[0], r[1], r[2], r[3]]),
            self.tag,
        ]
    }
}

/// Size of `ReqHeader` on the wire.
pub const REQ_HEADER_SIZE: u32 = std::mem::size_of::<ReqHeader>() as u32;
/// Size of `ReqStatus` on the wire.
pub const REQ_STATUS_SIZE: u32 = std::mem::size_of::<ReqStatus>() as u32;

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn config_layout_matches_spec() {
        assert_eq!(size_of::<ConfigSpace>(), CONFIG_SIZE);
        assert_eq!(offset_of!(ConfigSpace, magic), 0x00);
        assert_eq!(offset_of!(ConfigSpace, version), 0x04);
        assert_eq!(offset_of!(ConfigSpace, num_queues), 0x08);
        assert_eq!(offset_of!(ConfigSpace, max_segments), 0x0a);
        assert_eq!(offset_of!(ConfigSpace, max_request_bytes), 0x0c);
        assert_eq!(offset_of!(ConfigSpace, storage_capacity), 0x10);
        assert_eq!(offset_of!(ConfigSpace, block_size), 0x18);
        assert_eq!(offset_of!(ConfigSpace, supported_ops), 0x1c);
        assert_eq!(offset_of!(ConfigSpace, device_state), 0x20);
        assert_eq!(offset_of!(ConfigSpace, max_queue_size), 0x24);
        assert_eq!(offset_of!(ConfigSpace, reserved), 0x28);
    }

    #[test]
    fn request_layout_matches_spec() {
        assert_eq!(size_of::<ReqHeader>(), 48);
        assert_eq!(offset_of!(ReqHeader, opcode), 0);
        assert_eq!(offset_of!(ReqHeader, flags), 1);
        assert_eq!(offset_of!(ReqHeader, reserved0), 2);
        assert_eq!(offset_of!(ReqHeader, reserved1), 4);
        assert_eq!(offset_of!(ReqHeader, tag), 8);
        assert_eq!(offset_of!(ReqHeader, length), 16);
        assert_eq!(offset_of!(ReqHeader, storage_offset), 24);
        assert_eq!(offset_of!(ReqHeader, pattern), 32);
        assert_eq!(offset_of!(ReqHeader, reserved2), 40);
        assert_eq!(size_of::<ReqStatus>(), 16);
        assert_eq!(offset_of!(ReqStatus, status), 0);
        assert_eq!(offset_of!(ReqStatus, result), 4);
        assert_eq!(offset_of!(ReqStatus, tag), 8);
    }

    /// The bytes of a value of a `repr(C)` integer-only struct.
    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: T is a repr(C) struct of integers without padding (the
        // layout test), so all its size_of::<T>() bytes are initialized.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn words_are_the_structs_bytes() {
        let h = ReqHeader {
            opcode: 0x11,
            flags: 0x22,
            reserved0: 0x3344,
            reserved1: 0x5566_7788,
            tag: 0x0102_0304_0506_0708,
            length: 0x1112_1314_1516_1718,
            storage_offset: 0x2122_2324_2526_2728,
            pattern: 0x3132_3334_3536_3738,
            reserved2: 0x4142_4344_4546_4748,
        };
        let bytes = bytes_of(&h);
        let words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(ReqHeader::from_words(words.try_into().unwrap()), h);
        let st = ReqStatus {
            status: 0x9a,
            reserved: [0xbc, 0xde, 0xf0],
            result: 0x1234_5678,
            tag: 0xfedc_ba98_7654_3210,
        };
        let words: Vec<u8> = st.to_words().iter().flat_map(|w| w.to_ne_bytes()).collect();
        assert_eq!(words, bytes_of(&st));
    }

    #[test]
    fn codes_round_trip() {
        for op in Op::ALL {
            assert_eq!(Op::from_opcode(op as u8), Some(op));
        }
        assert_eq!(Op::from_opcode(7), None);
        for s in Status::ALL {
            assert_eq!(Status::from_code(s as u8), Some(s));
        }
        assert_eq!(Status::from_code(10), None);
        assert_eq!(ZCARD_MAGIC.to_le_bytes(), *b"ZCRD");
        assert_eq!(PCI_DEVICE_ID, 0x1066);
    }
}
