/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note OR MIT */
/*
 * zcard user ABI: page-backed DMA pools and io_uring-style rings on /dev/zcardN.
 *
 * This header is the single source of truth of the ABI. The Rust binding
 * (userspace/zcopy/src/card/uapi.rs) mirrors it and tests pin both layouts.
 *
 * Use:
 *
 *	fd = open("/dev/zcard0", O_RDWR);
 *	ioctl(fd, ZCARD_IOC_INFO, &info);              // limits, ops, ABI version
 *	pc.size = 1 << 20;
 *	ioctl(fd, ZCARD_IOC_POOL_CREATE, &pc);          // pool id + mmap offset
 *	buf = mmap(NULL, pc.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
 *		   pc.mmap_offset);
 *	rs.sq_entries = 64;
 *	ioctl(fd, ZCARD_IOC_RING_SETUP, &rs);           // ring geometry
 *	ring = mmap(NULL, rs.ring_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd,
 *		    ZCARD_OFF_RINGS);
 *	// write an SQE at sqes[tail & sq_mask], then store tail + 1 (release)
 *	en.to_submit = 1; en.min_complete = 1;
 *	ioctl(fd, ZCARD_IOC_ENTER, &en);
 *	// read the CQE at cqes[head & cq_mask] (after an acquire load of the
 *	// CQ tail), then store head + 1 (release)
 *
 * Indices are free-running __u32 counters; an entry lives at index & mask.
 * The producer of a ring writes its tail, the consumer its head. Every other
 * word of the ring area is written by the kernel only.
 *
 * No physical or DMA address crosses this boundary: an SQE names memory as
 * (pool id, offset, length), and the driver translates and bounds-checks it.
 */
#ifndef _UAPI_ZCARD_H
#define _UAPI_ZCARD_H

#include <linux/types.h>
#include <linux/ioctl.h>

/* The ABI version reported in zcard_info.abi_version (major << 16 | minor). */
#define ZCARD_ABI_VERSION	(1U << 16)

/* zcard_info.features: what this driver supports beyond ABI 1.0. None yet. */
#define ZCARD_FEAT_NONE		0

/**
 * enum zcard_op - SQE opcodes; they mirror the card's operations.
 * @ZCARD_OP_NOP: nothing; completes with result 0.
 * @ZCARD_OP_COPY: copy @length bytes from the source to the destination.
 * @ZCARD_OP_FILL: write the 8-byte @pattern (little-endian, repeated) over
 *	the destination.
 * @ZCARD_OP_CRC32C: CRC-32C of the source; the low 32 bits of @pattern are
 *	the CRC of the bytes before (0 to start); the CRC is in zcard_cqe.value.
 * @ZCARD_OP_STORAGE_READ: read card storage at @storage_offset into the
 *	destination.
 * @ZCARD_OP_STORAGE_WRITE: write the source to card storage at
 *	@storage_offset.
 * @ZCARD_OP_FLUSH: make every completed STORAGE_WRITE durable.
 * @ZCARD_OP_COUNT: number of opcodes (not an opcode).
 */
enum zcard_op {
	ZCARD_OP_NOP = 0,
	ZCARD_OP_COPY = 1,
	ZCARD_OP_FILL = 2,
	ZCARD_OP_CRC32C = 3,
	ZCARD_OP_STORAGE_READ = 4,
	ZCARD_OP_STORAGE_WRITE = 5,
	ZCARD_OP_FLUSH = 6,
	ZCARD_OP_COUNT = 7,
};

/**
 * struct zcard_info - ZCARD_IOC_INFO: what the card and the driver offer.
 * @size: sizeof(struct zcard_info) as the kernel knows it.
 * @abi_version: ZCARD_ABI_VERSION.
 * @features: ZCARD_FEAT_* bits.
 * @card_version: the card's config-space version (major << 16 | minor).
 * @instance: N of /dev/zcardN.
 * @num_queues: request queues the card has.
 * @max_segments: the card's limit of source (and of destination) segments.
 * @supported_ops: bit (1U << op) set for every op the card executes.
 * @block_size: storage alignment unit in bytes (offsets and lengths of
 *	STORAGE_* must be multiples of it).
 * @storage_capacity: card storage in bytes.
 * @max_op_bytes: largest SQE length accepted for every op, wherever in a
 *	pool its buffers lie.
 * @max_pool_bytes: largest pool size.
 * @pool_align: pool sizes must be multiples of this (the page size).
 * @max_ring_entries: largest sq_entries / cq_entries of ZCARD_IOC_RING_SETUP.
 * @pinned_limit: bytes all pools of this card may pin together.
 * @reserved: zero.
 */
struct zcard_info {
	__u32 size;
	__u32 abi_version;
	__u64 features;
	__u32 card_version;
	__u32 instance;
	__u16 num_queues;
	__u16 max_segments;
	__u32 supported_ops;
	__u32 block_size;
	__u32 max_op_bytes;
	__u64 storage_capacity;
	__u64 max_pool_bytes;
	__u32 pool_align;
	__u32 max_ring_entries;
	__u64 pinned_limit;
	__u64 reserved[7];
};

/**
 * struct zcard_pool_create - ZCARD_IOC_POOL_CREATE.
 * @size: in: pool size in bytes, a nonzero multiple of info.pool_align, at
 *	most info.max_pool_bytes. The pool is zero-filled.
 * @flags: in: zero.
 * @pool_id: out: the pool's id on this file (used in SQEs).
 * @mmap_offset: out: the mmap offset that maps the whole pool.
 * @reserved: in: zero.
 */
struct zcard_pool_create {
	__u64 size;
	__u32 flags;
	__u32 pool_id;
	__u64 mmap_offset;
	__u64 reserved[4];
};

/**
 * struct zcard_pool_export - ZCARD_IOC_POOL_EXPORT: a file descriptor that
 * stands for a pool, to pass to another process (SCM_RIGHTS).
 * @pool_id: in: a pool on this file (created or imported).
 * @flags: in: 0 or ZCARD_EXPORT_CLOEXEC.
 * @fd: out: the new descriptor.
 * @reserved0: zero.
 * @reserved: in: zero.
 */
struct zcard_pool_export {
	__u32 pool_id;
	__u32 flags;
	__s32 fd;
	__u32 reserved0;
	__u64 reserved[2];
};

/* zcard_pool_export.flags: the new descriptor is close-on-exec. */
#define ZCARD_EXPORT_CLOEXEC	(1U << 0)

/**
 * struct zcard_pool_import - ZCARD_IOC_POOL_IMPORT: make an exported pool
 * usable on this file.
 * @fd: in: a descriptor from ZCARD_IOC_POOL_EXPORT (of the same card).
 * @flags: in: zero.
 * @pool_id: out: the pool's id on this file.
 * @reserved0: zero.
 * @size: out: pool size in bytes.
 * @mmap_offset: out: the mmap offset that maps the whole pool.
 * @reserved: in: zero.
 */
struct zcard_pool_import {
	__s32 fd;
	__u32 flags;
	__u32 pool_id;
	__u32 reserved0;
	__u64 size;
	__u64 mmap_offset;
	__u64 reserved[2];
};

/**
 * struct zcard_ring_offsets - where the parts of the ring area lie, in bytes
 * from the start of the ZCARD_OFF_RINGS mapping.
 * @sq_tail: __u32 SQ producer index (user writes).
 * @sq_head: __u32 SQ consumer index (kernel writes).
 * @cq_tail: __u32 CQ producer index (kernel writes).
 * @cq_head: __u32 CQ consumer index (user writes).
 * @cq_overflow: __u32 completions lost because the CQ was full (kernel
 *	writes; nonzero only if user space moved cq_head past cq_tail).
 * @reserved0: zero.
 * @sqes: the struct zcard_sqe array (sq_entries of them).
 * @cqes: the struct zcard_cqe array (cq_entries of them).
 * @reserved: zero.
 *
 * The four indices each sit on their own 64-byte cache line.
 */
struct zcard_ring_offsets {
	__u32 sq_tail;
	__u32 sq_head;
	__u32 cq_tail;
	__u32 cq_head;
	__u32 cq_overflow;
	__u32 reserved0;
	__u32 sqes;
	__u32 cqes;
	__u64 reserved[2];
};

/**
 * struct zcard_ring_setup - ZCARD_IOC_RING_SETUP: create the file's rings
 * (once per file).
 * @sq_entries: in: SQ size, a power of two, 1..info.max_ring_entries.
 * @cq_entries: in: CQ size, a power of two >= @sq_entries (0: twice
 *	@sq_entries, capped at info.max_ring_entries).
 *	out: the CQ size used.
 * @flags: in: zero.
 * @size: out: sizeof(struct zcard_ring_setup).
 * @ring_size: out: bytes to mmap at ZCARD_OFF_RINGS.
 * @off: out: the layout of the ring area.
 * @reserved: in: zero.
 */
struct zcard_ring_setup {
	__u32 sq_entries;
	__u32 cq_entries;
	__u32 flags;
	__u32 size;
	__u64 ring_size;
	struct zcard_ring_offsets off;
	__u64 reserved[4];
};

/**
 * struct zcard_sqe - one request (64 bytes).
 * @opcode: an enum zcard_op.
 * @flags: zero (reserved for future use).
 * @reserved0: zero.
 * @length: bytes to operate on (0..info.max_op_bytes).
 * @src_pool: source pool id (COPY, CRC32C, STORAGE_WRITE; else zero).
 * @dst_pool: destination pool id (COPY, FILL, STORAGE_READ; else zero).
 * @src_offset: byte offset of the source in @src_pool (else zero).
 * @dst_offset: byte offset of the destination in @dst_pool (else zero).
 * @storage_offset: card storage offset (STORAGE_*; else zero).
 * @pattern: FILL pattern, or CRC32C initial CRC in the low 32 bits (else
 *	zero).
 * @user_data: copied to the CQE untouched.
 * @reserved1: zero.
 */
struct zcard_sqe {
	__u8 opcode;
	__u8 flags;
	__u16 reserved0;
	__u32 length;
	__u32 src_pool;
	__u32 dst_pool;
	__u64 src_offset;
	__u64 dst_offset;
	__u64 storage_offset;
	__u64 pattern;
	__u64 user_data;
	__u64 reserved1;
};

/**
 * struct zcard_cqe - one completion (32 bytes).
 * @user_data: the SQE's user_data.
 * @result: bytes moved (@length of the SQE; 0 for NOP, FLUSH) or a
 *	negative errno (see docs/uapi.md for which and when).
 * @flags: zero (reserved).
 * @value: CRC32C: the CRC. Otherwise 0.
 * @reserved: zero.
 */
struct zcard_cqe {
	__u64 user_data;
	__s32 result;
	__u32 flags;
	__u64 value;
	__u64 reserved;
};

/**
 * struct zcard_enter - ZCARD_IOC_ENTER: submit and/or wait.
 * @to_submit: in: SQEs to consume from the SQ (at most what it holds).
 * @min_complete: in: wait until at least this many CQEs are unconsumed
 *	(0: do not wait).
 * @timeout_ns: in: give up waiting after this long with -ETIME (0: no
 *	limit).
 * @flags: in: zero.
 * @submitted: out: SQEs consumed (each gives exactly one CQE).
 * @reserved: in: zero.
 */
struct zcard_enter {
	__u32 to_submit;
	__u32 min_complete;
	__u64 timeout_ns;
	__u32 flags;
	__u32 submitted;
	__u64 reserved[2];
};

/**
 * struct zcard_eventfd - ZCARD_IOC_SET_EVENTFD.
 * @fd: in: an eventfd to signal when CQEs are posted, or -1 to stop.
 * @reserved0: in: zero.
 */
struct zcard_eventfd {
	__s32 fd;
	__u32 reserved0;
};

/* mmap offset of the ring area. Pool offsets come from the ioctls. */
#define ZCARD_OFF_RINGS		0ULL

#define ZCARD_IOC_MAGIC		0xCD
#define ZCARD_IOC_INFO		_IOR(ZCARD_IOC_MAGIC, 0x00, struct zcard_info)
#define ZCARD_IOC_POOL_CREATE	_IOWR(ZCARD_IOC_MAGIC, 0x01, struct zcard_pool_create)
#define ZCARD_IOC_POOL_DESTROY	_IOW(ZCARD_IOC_MAGIC, 0x02, __u32)
#define ZCARD_IOC_POOL_EXPORT	_IOWR(ZCARD_IOC_MAGIC, 0x03, struct zcard_pool_export)
#define ZCARD_IOC_POOL_IMPORT	_IOWR(ZCARD_IOC_MAGIC, 0x04, struct zcard_pool_import)
#define ZCARD_IOC_RING_SETUP	_IOWR(ZCARD_IOC_MAGIC, 0x05, struct zcard_ring_setup)
#define ZCARD_IOC_ENTER		_IOWR(ZCARD_IOC_MAGIC, 0x06, struct zcard_enter)
#define ZCARD_IOC_SET_EVENTFD	_IOW(ZCARD_IOC_MAGIC, 0x07, struct zcard_eventfd)

#ifdef __KERNEL__
/* Layout pins; the Rust binding's tests pin the same numbers. */
static_assert(sizeof(struct zcard_info) == 128);
static_assert(sizeof(struct zcard_pool_create) == 56);
static_assert(sizeof(struct zcard_pool_export) == 32);
static_assert(sizeof(struct zcard_pool_import) == 48);
static_assert(sizeof(struct zcard_ring_offsets) == 48);
static_assert(sizeof(struct zcard_ring_setup) == 104);
static_assert(sizeof(struct zcard_sqe) == 64);
static_assert(__builtin_offsetof(struct zcard_sqe, length) == 4);
static_assert(__builtin_offsetof(struct zcard_sqe, src_offset) == 16);
static_assert(__builtin_offsetof(struct zcard_sqe, user_data) == 48);
static_assert(sizeof(struct zcard_cqe) == 32);
static_assert(__builtin_offsetof(struct zcard_cqe, result) == 8);
static_assert(__builtin_offsetof(struct zcard_cqe, value) == 16);
static_assert(sizeof(struct zcard_enter) == 40);
static_assert(sizeof(struct zcard_eventfd) == 8);
#endif

#endif /* _UAPI_ZCARD_H */
