/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * zcard virtio wire format: the card's identity, config space, request
 * header and status, opcodes and status codes (docs/zcard-spec.md).
 *
 * This header is the single source of truth of the wire format, shared by
 * the driver (zcard.ko) and the device side: the Rust crate zcard-virtio
 * (zcard-virtio/src/lib.rs) mirrors it, and its tests compile this header
 * and compare every size, offset and constant. The driver pins the layout
 * with BUILD_BUG_ON()s.
 *
 * Everything is little-endian. A request is one descriptor chain: the
 * header (device-readable), source segments (device-readable), destination
 * segments (device-writable), and the status (device-writable, last).
 *
 * Feature bits: version 1 has no device-specific ones. The card offers
 * VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX
 * and VIRTIO_F_ACCESS_PLATFORM (the device model can withhold the last
 * three; zcard.ko requires INDIRECT_DESC and ACCESS_PLATFORM); what the
 * card can do is described by the config space.
 */
#ifndef _UAPI_ZCARD_VIRTIO_H
#define _UAPI_ZCARD_VIRTIO_H

#include <linux/types.h>

/* Virtio device id (no Linux driver claims it; QEMU accepts it). */
#define VIRTIO_ID_ZCARD			38

/* zcard_config.magic: the bytes "ZCRD" read as a little-endian __u32. */
#define ZCARD_MAGIC			0x4452435aU

/* zcard_config.version: this spec, major << 16 | minor (1.0). */
#define ZCARD_VERSION			(1U << 16)

/* zcard_config.device_state: the card needs a reset before it serves. */
#define ZCARD_STATE_NEEDS_RESET		(1U << 0)

/**
 * struct zcard_config - the card's config space (64 bytes, read-only).
 * @magic: ZCARD_MAGIC.
 * @version: major << 16 | minor; a driver refuses a major it does not know.
 * @num_queues: request queues (1..64).
 * @max_segments: largest number of source segments, and separately of
 *	destination segments, in one request.
 * @max_request_bytes: largest zcard_req_hdr.length.
 * @storage_capacity: storage bytes, a multiple of @block_size.
 * @block_size: storage alignment and durability unit in bytes.
 * @supported_ops: bit (1U << opcode) set for every implemented opcode.
 * @device_state: ZCARD_STATE_* bits; the only field that changes.
 * @max_queue_size: largest virtqueue size the card accepts.
 * @reserved: read as zero.
 */
struct zcard_config {
	__le32 magic;
	__le32 version;
	__le16 num_queues;
	__le16 max_segments;
	__le32 max_request_bytes;
	__le64 storage_capacity;
	__le32 block_size;
	__le32 supported_ops;
	__le32 device_state;
	__le32 max_queue_size;
	__le32 reserved[6];
};

/**
 * enum zcard_req_op - request opcodes (zcard_req_hdr.opcode).
 * @ZCARD_REQ_NOP: nothing; @length 0.
 * @ZCARD_REQ_COPY: the sources over the destinations.
 * @ZCARD_REQ_FILL: the 8-byte little-endian pattern, repeated, over the
 *	destinations.
 * @ZCARD_REQ_CRC32C: CRC-32C of the sources, continuing from the low 32
 *	bits of @pattern; returned in zcard_req_status.result.
 * @ZCARD_REQ_STORAGE_READ: storage at @storage_offset into the destinations.
 * @ZCARD_REQ_STORAGE_WRITE: the sources into storage at @storage_offset.
 * @ZCARD_REQ_FLUSH: make every completed storage write durable; @length 0.
 */
enum zcard_req_op {
	ZCARD_REQ_NOP = 0,
	ZCARD_REQ_COPY = 1,
	ZCARD_REQ_FILL = 2,
	ZCARD_REQ_CRC32C = 3,
	ZCARD_REQ_STORAGE_READ = 4,
	ZCARD_REQ_STORAGE_WRITE = 5,
	ZCARD_REQ_FLUSH = 6,
};

/**
 * enum zcard_req_st - status codes (zcard_req_status.status).
 * @ZCARD_ST_OK: the operation completed.
 * @ZCARD_ST_UNSUPPORTED: unknown or unsupported opcode.
 * @ZCARD_ST_BAD_HEADER: header missing or short; nonzero flags, reserved
 *	field, or a field the operation forbids.
 * @ZCARD_ST_BAD_DESCRIPTOR: descriptor directions out of order, an empty
 *	segment, or segments of a kind the operation does not take.
 * @ZCARD_ST_BAD_LENGTH: segment totals differ from @length, or too long.
 * @ZCARD_ST_TOO_MANY_SEGMENTS: more than max_segments in one direction.
 * @ZCARD_ST_BAD_ADDRESS: the header or a segment lies outside guest memory.
 * @ZCARD_ST_OUT_OF_RANGE: storage range unaligned or beyond the capacity.
 * @ZCARD_ST_IO_ERROR: the storage failed.
 * @ZCARD_ST_NEEDS_RESET: the card needs a reset; nothing was executed.
 *
 * Anything but ZCARD_ST_OK means nothing was written to the destinations.
 */
enum zcard_req_st {
	ZCARD_ST_OK = 0,
	ZCARD_ST_UNSUPPORTED = 1,
	ZCARD_ST_BAD_HEADER = 2,
	ZCARD_ST_BAD_DESCRIPTOR = 3,
	ZCARD_ST_BAD_LENGTH = 4,
	ZCARD_ST_TOO_MANY_SEGMENTS = 5,
	ZCARD_ST_BAD_ADDRESS = 6,
	ZCARD_ST_OUT_OF_RANGE = 7,
	ZCARD_ST_IO_ERROR = 8,
	ZCARD_ST_NEEDS_RESET = 9,
};

/**
 * struct zcard_req_hdr - request header: the first descriptor of a chain,
 *	device-readable, 48 bytes (only these are read).
 * @opcode: an enum zcard_req_op.
 * @flags: zero in version 1.
 * @reserved0: zero.
 * @reserved1: zero.
 * @tag: the driver's cookie, echoed in zcard_req_status.tag.
 * @length: payload bytes of the operation.
 * @storage_offset: storage byte offset (STORAGE_READ, STORAGE_WRITE), else
 *	zero.
 * @pattern: FILL: the pattern; CRC32C: the initial CRC in the low 32 bits;
 *	else zero.
 * @reserved2: zero.
 */
struct zcard_req_hdr {
	__u8 opcode;
	__u8 flags;
	__le16 reserved0;
	__le32 reserved1;
	__le64 tag;
	__le64 length;
	__le64 storage_offset;
	__le64 pattern;
	__le64 reserved2;
};

/**
 * struct zcard_req_status - request status: the last descriptor of a chain,
 *	device-writable, 16 bytes; written after the operation finished and
 *	before the chain is used.
 * @status: an enum zcard_req_st.
 * @reserved: zero.
 * @result: CRC32C with ZCARD_ST_OK: the CRC; else zero.
 * @tag: the header's tag (zero when the header could not be read).
 */
struct zcard_req_status {
	__u8 status;
	__u8 reserved[3];
	__le32 result;
	__le64 tag;
};

#endif /* _UAPI_ZCARD_VIRTIO_H */
