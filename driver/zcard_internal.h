/* SPDX-License-Identifier: GPL-2.0 */
/*
 * zcard driver internals shared by zcard_main.c (the card's lifetime:
 * probe, reset, suspend, removal), zcard_req.c (the request path: requests
 * on the queues, completions, the timeout watchdog), zcard_pool.c
 * (page-backed DMA pools) and zcard_file.c (/dev/zcardN: ioctls, rings,
 * mmap, poll).
 */
#ifndef ZCARD_INTERNAL_H
#define ZCARD_INTERNAL_H

#include <linux/bits.h>
#include <linux/types.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/workqueue.h>
#include <linux/miscdevice.h>
#include <linux/scatterlist.h>
#include <linux/xarray.h>
#include <linux/virtio.h>

#include "include/uapi/zcard.h"
#include "include/uapi/zcard_virtio.h"
#include "zcard_compat.h"

/**
 * struct zcard_wire - one request slot's header and status: the header is
 * device-readable, the status device-writable. In coherent DMA memory on
 * premapped queues, else in kernel memory the ring maps per request
 * (zcard_compat.h); one cache line either way.
 * @hdr: the request header.
 * @st: the request status (written by the card).
 */
struct zcard_wire {
	struct zcard_req_hdr hdr;
	struct zcard_req_status st;
};

/* zcard_req_status.status before the card writes it: no status came back. */
#define ZCARD_ST_UNWRITTEN	0xff

/*
 * Pools are built from physically contiguous chunks of this size (an
 * order-4 allocation split into ordinary pages), each DMA-mapped as one
 * range (once, or per request by the ring: zcard_compat.h), so a buffer of
 * n bytes needs at most n / ZCARD_CHUNK + 2 segments.
 */
#define ZCARD_CHUNK_ORDER	4
#define ZCARD_CHUNK		(PAGE_SIZE << ZCARD_CHUNK_ORDER)

#define ZCARD_MAX_RING_ENTRIES	4096
#define ZCARD_MAX_QUEUES	64

struct zcard;
struct zcard_ctx;

/**
 * struct zcard_pool - a page-backed DMA buffer pool.
 * @ref: held by each file that has it in its table, each exported fd, each
 *	mapping and each request in flight on it.
 * @card: the card (a reference is held).
 * @size: bytes (a multiple of PAGE_SIZE).
 * @npages: pages.
 * @pages: the pages; ordinary order-0 pages, refcounted one by one.
 * @nchunks: DMA chunks.
 * @chunk_dma: DMA address of each chunk (valid while @mapped).
 * @mapped: chunks are DMA-mapped; cleared when the card goes away, never
 *	set where the ring maps pool pages per request (ZCARD_PREMAPPED 0)
 *	(protected by card->lock).
 * @node: entry in card->pools (protected by card->lock).
 * @free_work: frees the pool outside atomic context.
 */
struct zcard_pool {
	struct kref ref;
	struct zcard *card;
	u64 size;
	unsigned long npages;
	struct page **pages;
	unsigned int nchunks;
	dma_addr_t *chunk_dma;
	bool mapped;
	struct list_head node;
	struct work_struct free_work;
};

/**
 * struct zcard_slot - a request in flight on a queue.
 * @node: entry in the queue's free or in-flight list.
 * @ctx: the submitting file (a reference is held).
 * @src: source pool or NULL (a reference is held).
 * @dst: destination pool or NULL (a reference is held).
 * @src_off: source offset.
 * @dst_off: destination offset.
 * @length: bytes.
 * @opcode: enum zcard_op.
 * @user_data: for the CQE.
 * @tag: the header tag (checked against the status).
 * @deadline: jiffies after which the request has timed out.
 * @timed_out: the watchdog gave up on it; it completes with -ETIMEDOUT.
 * @index: position in the queue's slot array and wire area.
 */
struct zcard_slot {
	struct list_head node;
	struct zcard_ctx *ctx;
	struct zcard_pool *src;
	struct zcard_pool *dst;
	u64 src_off;
	u64 dst_off;
	u32 length;
	u8 opcode;
	bool timed_out;
	u64 user_data;
	u64 tag;
	unsigned long deadline;
	unsigned int index;
};

/**
 * struct zcard_queue - a request queue.
 * @card: the card.
 * @vq: the virtqueue (replaced on reset; protected by @lock and by the
 *	card's reset_sem).
 * @lock: protects @vq operations, @free, @inflight and the slots; taken in
 *	interrupt context.
 * @free: free slots.
 * @inflight: slots on the card, oldest first.
 * @slots: @nslots slots.
 * @nslots: slots (the virtqueue size at probe).
 * @wire: @nslots wire areas (struct zcard_wire says where they live).
 * @wire_dma: their DMA address (premapped queues only).
 * @sg: scatterlist used while adding a request (under @lock).
 * @nsg: entries in @sg.
 * @next_tag: tag of the next request.
 * @index: queue number.
 * @name: the virtqueue's name ("req.N"), which the virtqueue points to
 *	rather than copies, so it lives as long as the queue.
 */
struct zcard_queue {
	struct zcard *card;
	struct virtqueue *vq;
	spinlock_t lock;	/* vq, free, inflight, slots; irq-safe */
	struct list_head free;
	struct list_head inflight;
	struct zcard_slot *slots;
	unsigned int nslots;
	struct zcard_wire *wire;
	dma_addr_t wire_dma;
	struct scatterlist *sg;
	unsigned int nsg;
	u64 next_tag;
	unsigned int index;
	char name[16];
};

/**
 * struct zcard_stats - live counters (sysfs).
 * @submitted: requests handed to the card.
 * @completed: CQEs posted (including requests refused before the card).
 * @errors: CQEs with a negative result.
 * @timeouts: requests the watchdog gave up on.
 * @resets: card resets.
 * @pools: pools alive.
 * @pinned: bytes pinned by pools.
 * @inflight: requests on the card.
 * @cq_overflows: completions lost to a full CQ.
 */
struct zcard_stats {
	atomic64_t submitted;
	atomic64_t completed;
	atomic64_t errors;
	atomic64_t timeouts;
	atomic64_t resets;
	atomic64_t pools;
	atomic64_t pinned;
	atomic64_t inflight;
	atomic64_t cq_overflows;
};

/**
 * struct zcard - one card.
 * @ref: held by the virtio device (until remove), each open file and each
 *	pool.
 * @vdev: the virtio device (NULL once removed).
 * @dma_dev: the device to DMA-map against.
 * @misc: /dev/zcardN.
 * @name: "zcardN".
 * @instance: N.
 * @info: what ZCARD_IOC_INFO returns.
 * @queues: @info.num_queues queues.
 * @reset_sem: held for reading while submitting, for writing while the
 *	card is reset or removed (no submission sees half-built queues).
 * @lock: protects @pools and the pools' mapped state.
 * @pools: every pool of this card.
 * @removed: the card is gone; every operation fails with -ENODEV.
 * @stopped: the queues are down (during a reset or suspend; under
 *	reset_sem): nothing may be submitted, no further reset is scheduled.
 * @reset_owner: the task running reset_work's virtio_device_freeze() and
 *	restore() with reset_sem held for writing, so that the freeze and
 *	restore callbacks it calls know they hold reset_sem; NULL otherwise.
 * @suspended: frozen for system sleep (under reset_sem): no reset runs
 *	until the card is restored.
 * @fail_restarts: fault injection (debugfs, zcardN/fail_restarts): this
 *	many restarts of the card, after a reset or on resume, fail as if its
 *	queues could not be set up (under reset_sem).
 * @late_interrupt: fault injection (debugfs, zcardN/late_interrupt): this
 *	many stops of the card (reset, suspend, removal) run the queues'
 *	interrupt callback once more after their requests were failed,
 *	before the virtqueues are deleted (under reset_sem).
 * @debugfs: the card's debugfs directory.
 * @ctxs: open files, to wake their waiters on removal (under @lock).
 * @watchdog: looks for lost completions and timed-out requests.
 * @reset_work: resets the card.
 * @config_work: reads the config after a config-change interrupt.
 * @next_ctx: spreads files over the queues.
 * @stats: counters.
 */
struct zcard {
	struct kref ref;
	struct virtio_device *vdev;
	struct device *dma_dev;
	struct miscdevice misc;
	char name[16];
	int instance;
	struct zcard_info info;
	struct zcard_queue *queues;
	struct rw_semaphore reset_sem;
	struct mutex lock;	/* pools, pool->mapped, removed */
	struct list_head pools;
	bool removed;
	bool stopped;
	struct task_struct *reset_owner;
	bool suspended;
	u32 fail_restarts;
	u32 late_interrupt;
	struct dentry *debugfs;
	struct list_head ctxs;
	struct delayed_work watchdog;
	struct work_struct reset_work;
	struct work_struct config_work;
	atomic_t next_ctx;
	struct zcard_stats stats;
};

/**
 * struct zcard_ctx - one open file of /dev/zcardN.
 * @ref: held by the file and by each request in flight.
 * @card: the card (a reference is held).
 * @queue: the queue this file submits on.
 * @lock: protects @pools, @ring setup and @eventfd changes.
 * @submit_lock: serialises SQ consumption (ENTER).
 * @pools: pool id -> struct zcard_pool (a reference each).
 * @ring: the ring area (vmalloc_user), NULL before ZCARD_IOC_RING_SETUP.
 * @ring_size: its size.
 * @off: its layout.
 * @sq_entries: SQ size.
 * @cq_entries: CQ size.
 * @sqes: SQE array inside @ring.
 * @cqes: CQE array inside @ring.
 * @sq_head: kernel copy of the SQ head (under @submit_lock).
 * @cq_lock: protects @cq_tail and CQE writes; taken in interrupt context.
 * @cq_tail: kernel copy of the CQ tail.
 * @inflight: this file's requests on the card.
 * @wait: woken when CQEs are posted or the card goes away.
 * @eventfd: signalled when CQEs are posted (RCU-protected).
 * @free_work: frees the context outside atomic context.
 * @node: entry in card->ctxs.
 */
struct zcard_ctx {
	struct kref ref;
	struct zcard *card;
	struct zcard_queue *queue;
	struct mutex lock;	/* pools, ring setup, eventfd */
	struct mutex submit_lock;	/* SQ consumption */
	struct xarray pools;
	void *ring;
	size_t ring_size;
	struct zcard_ring_offsets off;
	u32 sq_entries;
	u32 cq_entries;
	struct zcard_sqe *sqes;
	struct zcard_cqe *cqes;
	u32 sq_head;
	spinlock_t cq_lock;	/* cq_tail, CQE writes; irq-safe */
	u32 cq_tail;
	atomic_t inflight;
	wait_queue_head_t wait;
	struct eventfd_ctx __rcu *eventfd;
	struct work_struct free_work;
	struct list_head node;
};

/* zcard_main.c */
extern struct workqueue_struct *zcard_wq;
void zcard_put(struct zcard *card);

/* zcard_req.c */
int zcard_alloc_queues(struct zcard *card);
void zcard_free_queues(struct zcard *card);
int zcard_submit(struct zcard_ctx *ctx, const struct zcard_sqe *sqe,
		 struct zcard_pool *src, struct zcard_pool *dst);
void zcard_kick(struct zcard_queue *q);
void zcard_vq_done(struct virtqueue *vq);
void zcard_watchdog(struct work_struct *work);
void zcard_queue_cancel(struct zcard_queue *q, int err);

/* zcard_pool.c */
struct zcard_pool *zcard_pool_alloc(struct zcard *card, u64 size);
void zcard_pool_put(struct zcard_pool *pool);
int zcard_pool_segments(struct zcard_pool *pool, u64 off, u32 len,
			struct scatterlist *sg, unsigned int max);
void zcard_pool_sync(struct zcard_pool *pool, u64 off, u32 len, bool for_cpu);
void zcard_pools_unmap(struct zcard *card);
struct file *zcard_pool_export_file(struct zcard_pool *pool);
struct zcard_pool *zcard_pool_from_fd(int fd);
int zcard_pool_mmap(struct zcard_pool *pool, struct vm_area_struct *vma);

/* zcard_file.c */
extern const struct file_operations zcard_fops;
void zcard_ctx_get(struct zcard_ctx *ctx);
void zcard_ctx_put(struct zcard_ctx *ctx);
void zcard_post_cqe(struct zcard_ctx *ctx, u64 user_data, s32 result,
		    u64 value, bool was_inflight);

#endif /* ZCARD_INTERNAL_H */
