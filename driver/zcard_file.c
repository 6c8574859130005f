// SPDX-License-Identifier: GPL-2.0
/*
 * /dev/zcardN: one struct zcard_ctx per open file. The file owns its pools
 * (created or imported), one SQ/CQ pair mapped at ZCARD_OFF_RINGS, and an
 * optional eventfd. ENTER consumes SQEs, checks every field against the
 * file's own pools, and either hands the request to the card or completes it
 * at once with an errno. The ABI is in include/uapi/zcard.h, explained in
 * docs/uapi.md.
 */

#include <linux/eventfd.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/hrtimer.h>
#include <linux/mm.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "zcard_internal.h"

static struct zcard *zcard_from_file(struct file *file)
{
	struct miscdevice *misc = file->private_data;

	return container_of(misc, struct zcard, misc);
}

static void zcard_ctx_free_work(struct work_struct *work)
{
	struct zcard_ctx *ctx = container_of(work, struct zcard_ctx, free_work);

	mutex_lock(&ctx->card->lock);
	list_del(&ctx->node);
	mutex_unlock(&ctx->card->lock);
	vfree(ctx->ring);
	zcard_put(ctx->card);
	kfree(ctx);
}

static void zcard_ctx_release(struct kref *ref)
{
	struct zcard_ctx *ctx = container_of(ref, struct zcard_ctx, ref);

	/* The last reference may go in the completion interrupt. */
	queue_work(zcard_wq, &ctx->free_work);
}

/**
 * zcard_ctx_get() - take a reference to a file context.
 * @ctx: the context.
 */
void zcard_ctx_get(struct zcard_ctx *ctx)
{
	kref_get(&ctx->ref);
}

/**
 * zcard_ctx_put() - drop a reference to a file context.
 * @ctx: the context.
 *
 * Context: any; the context is freed from a work item.
 */
void zcard_ctx_put(struct zcard_ctx *ctx)
{
	kref_put(&ctx->ref, zcard_ctx_release);
}

/* The ring area once set up, else NULL. */
static void *zcard_ring(struct zcard_ctx *ctx)
{
	/* Pairs with the release in zcard_ioc_ring_setup(): layout first. */
	return smp_load_acquire(&ctx->ring);
}

static u32 zcard_cq_pending(struct zcard_ctx *ctx)
{
	/* cq_head is written by user space: only the distance is trusted. */
	u32 *head = ctx->ring + ctx->off.cq_head;

	return READ_ONCE(ctx->cq_tail) - READ_ONCE(*head);
}

/**
 * zcard_post_cqe() - post one completion to a file's CQ and wake waiters.
 * @ctx: the file (its rings are set up).
 * @user_data: the SQE's user_data.
 * @result: bytes or a negative errno.
 * @value: CRC32C value or 0.
 * @was_inflight: the request was on the card: ctx->inflight drops, after
 *	the CQE is visible and before waiters are woken.
 *
 * Context: any; takes ctx->cq_lock.
 */
void zcard_post_cqe(struct zcard_ctx *ctx, u64 user_data, s32 result,
		    u64 value, bool was_inflight)
{
	struct zcard *card = ctx->card;
	u32 *tail = ctx->ring + ctx->off.cq_tail;
	u32 *overflow = ctx->ring + ctx->off.cq_overflow;
	struct eventfd_ctx *ev;
	unsigned long flags;

	spin_lock_irqsave(&ctx->cq_lock, flags);
	if (zcard_cq_pending(ctx) >= ctx->cq_entries) {
		/*
		 * Submission keeps in-flight + pending <= cq_entries, so this
		 * only happens when user space moved cq_head itself.
		 */
		WRITE_ONCE(*overflow, READ_ONCE(*overflow) + 1);
		atomic64_inc(&card->stats.cq_overflows);
	} else {
		struct zcard_cqe *cqe = &ctx->cqes[ctx->cq_tail & (ctx->cq_entries - 1)];

		cqe->user_data = user_data;
		cqe->result = result;
		cqe->flags = 0;
		cqe->value = value;
		cqe->reserved = 0;
		ctx->cq_tail++;
		/* Pairs with user space's acquire load of cq_tail: CQE first. */
		smp_store_release(tail, ctx->cq_tail);
	}
	spin_unlock_irqrestore(&ctx->cq_lock, flags);
	atomic64_inc(&card->stats.completed);
	if (result < 0)
		atomic64_inc(&card->stats.errors);
	if (was_inflight) {
		/* A waiter that sees inflight drop sees the CQE too. */
		smp_mb__before_atomic();
		atomic_dec(&ctx->inflight);
		atomic64_dec(&card->stats.inflight);
	}

	wake_up_all(&ctx->wait);
	rcu_read_lock();
	ev = rcu_dereference(ctx->eventfd);
	if (ev)
		eventfd_signal(ev);
	rcu_read_unlock();
}

static int zcard_open(struct inode *inode, struct file *file)
{
	struct zcard *card = zcard_from_file(file);
	struct zcard_ctx *ctx;

	if (READ_ONCE(card->removed))
		return -ENODEV;
	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	kref_init(&ctx->ref);
	kref_get(&card->ref);
	ctx->card = card;
	ctx->queue = &card->queues[(unsigned int)atomic_inc_return(&card->next_ctx) %
				   card->info.num_queues];
	mutex_init(&ctx->lock);
	mutex_init(&ctx->submit_lock);
	xa_init_flags(&ctx->pools, XA_FLAGS_ALLOC1);
	spin_lock_init(&ctx->cq_lock);
	init_waitqueue_head(&ctx->wait);
	INIT_WORK(&ctx->free_work, zcard_ctx_free_work);
	mutex_lock(&card->lock);
	list_add(&ctx->node, &card->ctxs);
	mutex_unlock(&card->lock);
	file->private_data = ctx;
	return stream_open(inode, file);
}

static int zcard_release(struct inode *inode, struct file *file)
{
	struct zcard_ctx *ctx = file->private_data;
	struct zcard_pool *pool;
	struct eventfd_ctx *ev;
	unsigned long id;

	xa_for_each(&ctx->pools, id, pool)
		zcard_pool_put(pool);
	xa_destroy(&ctx->pools);
	ev = rcu_replace_pointer(ctx->eventfd, NULL, true);
	if (ev) {
		synchronize_rcu();
		eventfd_ctx_put(ev);
	}
	/* Requests in flight hold their own references to ctx and pools. */
	zcard_ctx_put(ctx);
	return 0;
}

static struct zcard_pool *zcard_ctx_pool(struct zcard_ctx *ctx, u32 id)
{
	return id ? xa_load(&ctx->pools, id) : NULL;
}

/*
 * Puts @pool (whose reference the caller hands over) in ctx's table, fills
 * in its id and mmap offset in @out (*@id_out, *@offset_out point into it)
 * and copies @out to user space. On failure the pool is dropped again.
 *
 * The copy is made with ctx->lock released: a fault on @arg can wait as
 * long as user space makes it (userfaultfd, a FUSE mapping), and ENTER
 * waits for ctx->lock holding the card's reset_sem, which a reset and a
 * removal wait for.
 */
static int zcard_ctx_install_pool(struct zcard_ctx *ctx, struct zcard_pool *pool,
				  void __user *arg, void *out, size_t len,
				  u32 *id_out, u64 *offset_out)
{
	bool ours;
	u32 id;
	int err;

	mutex_lock(&ctx->lock);
	err = xa_alloc(&ctx->pools, &id, pool, XA_LIMIT(1, INT_MAX), GFP_KERNEL);
	if (!err)	/* Ours for the copy: the table's may go meanwhile. */
		kref_get(&pool->ref);
	mutex_unlock(&ctx->lock);
	if (err) {
		zcard_pool_put(pool);
		return err;
	}
	*id_out = id;
	*offset_out = (u64)id << 32;
	err = copy_to_user(arg, out, len) ? -EFAULT : 0;
	if (err) {
		/*
		 * The table's reference, unless a POOL_DESTROY of the id took
		 * it; ours keeps @pool from being freed and its address from
		 * being another pool's under the same id.
		 */
		mutex_lock(&ctx->lock);
		ours = xa_cmpxchg(&ctx->pools, id, pool, NULL, 0) == pool;
		mutex_unlock(&ctx->lock);
		if (ours)
			zcard_pool_put(pool);
	}
	zcard_pool_put(pool);
	return err;
}

static bool zcard_zero(const u64 *words, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (words[i])
			return false;
	return true;
}

static long zcard_ioc_info(struct zcard_ctx *ctx, void __user *arg)
{
	return copy_to_user(arg, &ctx->card->info, sizeof(ctx->card->info)) ?
	       -EFAULT : 0;
}

static long zcard_ioc_pool_create(struct zcard_ctx *ctx, void __user *arg)
{
	struct zcard *card = ctx->card;
	struct zcard_pool_create pc;
	struct zcard_pool *pool;

	if (copy_from_user(&pc, arg, sizeof(pc)))
		return -EFAULT;
	if (pc.flags || !zcard_zero(pc.reserved, ARRAY_SIZE(pc.reserved)))
		return -EINVAL;
	if (!pc.size || pc.size % PAGE_SIZE || pc.size > card->info.max_pool_bytes)
		return -EINVAL;
	pool = zcard_pool_alloc(card, pc.size);
	if (IS_ERR(pool))
		return PTR_ERR(pool);
	return zcard_ctx_install_pool(ctx, pool, arg, &pc, sizeof(pc), &pc.pool_id,
				      &pc.mmap_offset);
}

static long zcard_ioc_pool_destroy(struct zcard_ctx *ctx, void __user *arg)
{
	struct zcard_pool *pool;
	u32 id;

	if (get_user(id, (u32 __user *)arg))
		return -EFAULT;
	mutex_lock(&ctx->lock);
	pool = id ? xa_erase(&ctx->pools, id) : NULL;
	mutex_unlock(&ctx->lock);
	if (!pool)
		return -ENOENT;
	/* Mappings and requests in flight keep their own references. */
	zcard_pool_put(pool);
	return 0;
}

static long zcard_ioc_pool_export(struct zcard_ctx *ctx, void __user *arg)
{
	struct zcard_pool_export pe;
	struct zcard_pool *pool;
	struct file *file;
	int fd;

	if (copy_from_user(&pe, arg, sizeof(pe)))
		return -EFAULT;
	if ((pe.flags & ~ZCARD_EXPORT_CLOEXEC) || pe.reserved0 ||
	    !zcard_zero(pe.reserved, ARRAY_SIZE(pe.reserved)))
		return -EINVAL;
	fd = get_unused_fd_flags((pe.flags & ZCARD_EXPORT_CLOEXEC) ? O_CLOEXEC : 0);
	if (fd < 0)
		return fd;
	mutex_lock(&ctx->lock);
	pool = zcard_ctx_pool(ctx, pe.pool_id);
	file = pool ? zcard_pool_export_file(pool) : ERR_PTR(-ENOENT);
	mutex_unlock(&ctx->lock);
	if (IS_ERR(file)) {
		put_unused_fd(fd);
		return PTR_ERR(file);
	}
	pe.fd = fd;
	/*
	 * The descriptor is installed only once user space has been told its
	 * number: a failed copy leaves no descriptor behind.
	 */
	if (copy_to_user(arg, &pe, sizeof(pe))) {
		fput(file);
		put_unused_fd(fd);
		return -EFAULT;
	}
	fd_install(fd, file);
	return 0;
}

static long zcard_ioc_pool_import(struct zcard_ctx *ctx, void __user *arg)
{
	struct zcard_pool_import pi;
	struct zcard_pool *pool;

	if (copy_from_user(&pi, arg, sizeof(pi)))
		return -EFAULT;
	if (pi.flags || pi.reserved0 || !zcard_zero(pi.reserved, ARRAY_SIZE(pi.reserved)))
		return -EINVAL;
	pool = zcard_pool_from_fd(pi.fd);
	if (IS_ERR(pool))
		return PTR_ERR(pool);
	if (pool->card != ctx->card) {
		zcard_pool_put(pool);
		return -EXDEV;
	}
	pi.size = pool->size;
	return zcard_ctx_install_pool(ctx, pool, arg, &pi, sizeof(pi), &pi.pool_id,
				      &pi.mmap_offset);
}

static long zcard_ioc_ring_setup(struct zcard_ctx *ctx, void __user *arg)
{
	struct zcard_ring_setup rs;
	struct zcard_ring_offsets off = {};
	size_t size;
	void *ring;

	if (copy_from_user(&rs, arg, sizeof(rs)))
		return -EFAULT;
	if (rs.flags || !zcard_zero(rs.reserved, ARRAY_SIZE(rs.reserved)))
		return -EINVAL;
	if (!rs.sq_entries || !is_power_of_2(rs.sq_entries) ||
	    rs.sq_entries > ZCARD_MAX_RING_ENTRIES)
		return -EINVAL;
	if (!rs.cq_entries)
		rs.cq_entries = min(2 * rs.sq_entries, ZCARD_MAX_RING_ENTRIES);
	if (!is_power_of_2(rs.cq_entries) || rs.cq_entries < rs.sq_entries ||
	    rs.cq_entries > ZCARD_MAX_RING_ENTRIES)
		return -EINVAL;

	/* Each index on its own cache line, then the entry arrays. */
	off.sq_tail = 0;
	off.sq_head = 64;
	off.cq_tail = 128;
	off.cq_head = 192;
	off.cq_overflow = 256;
	off.sqes = 320;
	off.cqes = off.sqes + rs.sq_entries * sizeof(struct zcard_sqe);
	size = PAGE_ALIGN(off.cqes + rs.cq_entries * sizeof(struct zcard_cqe));

	/* READ_ONCE: a first answer only; the one that counts is under the lock. */
	if (READ_ONCE(ctx->ring))
		return -EBUSY;
	ring = vmalloc_user(size);
	if (!ring)
		return -ENOMEM;
	rs.size = sizeof(rs);
	rs.ring_size = size;
	rs.off = off;
	/*
	 * With no lock held, as in zcard_ctx_install_pool(); so a second
	 * RING_SETUP racing this one gets its answer and then -EBUSY.
	 */
	if (copy_to_user(arg, &rs, sizeof(rs))) {
		vfree(ring);
		return -EFAULT;
	}
	mutex_lock(&ctx->lock);
	if (ctx->ring) {
		mutex_unlock(&ctx->lock);
		vfree(ring);
		return -EBUSY;
	}
	ctx->off = off;
	ctx->sq_entries = rs.sq_entries;
	ctx->cq_entries = rs.cq_entries;
	ctx->sqes = ring + off.sqes;
	ctx->cqes = ring + off.cqes;
	ctx->ring_size = size;
	/* Publish last: ENTER, mmap and poll test ctx->ring. */
	smp_store_release(&ctx->ring, ring);
	mutex_unlock(&ctx->lock);
	return 0;
}

static long zcard_ioc_set_eventfd(struct zcard_ctx *ctx, void __user *arg)
{
	struct eventfd_ctx *ev = NULL, *old;
	struct zcard_eventfd ef;

	if (copy_from_user(&ef, arg, sizeof(ef)))
		return -EFAULT;
	if (ef.reserved0 || ef.fd < -1)
		return -EINVAL;
	if (ef.fd >= 0) {
		ev = eventfd_ctx_fdget(ef.fd);
		if (IS_ERR(ev))
			return PTR_ERR(ev);
	}
	mutex_lock(&ctx->lock);
	old = rcu_replace_pointer(ctx->eventfd, ev, lockdep_is_held(&ctx->lock));
	mutex_unlock(&ctx->lock);
	if (old) {
		synchronize_rcu();
		eventfd_ctx_put(old);
	}
	return 0;
}

/*
 * What each op takes: a source, a destination, a storage offset, a pattern
 * (any value, or a CRC seed whose high half must be zero), and whether the
 * length must be zero.
 */
struct zcard_op_shape {
	bool src, dst, storage, pattern, crc_seed, no_length;
};

static const struct zcard_op_shape zcard_shapes[ZCARD_OP_COUNT] = {
	[ZCARD_OP_NOP] = { .no_length = true },
	[ZCARD_OP_COPY] = { .src = true, .dst = true },
	[ZCARD_OP_FILL] = { .dst = true, .pattern = true },
	[ZCARD_OP_CRC32C] = { .src = true, .crc_seed = true },
	[ZCARD_OP_STORAGE_READ] = { .dst = true, .storage = true },
	[ZCARD_OP_STORAGE_WRITE] = { .src = true, .storage = true },
	[ZCARD_OP_FLUSH] = { .no_length = true },
};

static int zcard_check_range(struct zcard_pool *pool, u64 off, u32 len)
{
	if (!pool)
		return -ENOENT;
	if (off > pool->size || len > pool->size - off)
		return -ERANGE;
	return 0;
}

/*
 * Checks one SQE (a private copy: user space cannot change it meanwhile) and
 * looks up its pools. Return: 0, or the errno its CQE carries.
 */
static int zcard_check_sqe(struct zcard_ctx *ctx, const struct zcard_sqe *sqe,
			   struct zcard_pool **src, struct zcard_pool **dst)
{
	const struct zcard_info *info = &ctx->card->info;
	const struct zcard_op_shape *shape;
	int err;

	*src = NULL;
	*dst = NULL;
	if (sqe->opcode >= ZCARD_OP_COUNT || sqe->flags || sqe->reserved0 ||
	    sqe->reserved1)
		return -EINVAL;
	shape = &zcard_shapes[sqe->opcode];
	if ((!shape->src && (sqe->src_pool || sqe->src_offset)) ||
	    (!shape->dst && (sqe->dst_pool || sqe->dst_offset)) ||
	    (!shape->storage && sqe->storage_offset) ||
	    (!shape->pattern && !shape->crc_seed && sqe->pattern) ||
	    (shape->crc_seed && (sqe->pattern >> 32)) ||
	    (shape->no_length && sqe->length))
		return -EINVAL;
	if (sqe->length > info->max_op_bytes)
		return -EINVAL;
	if (shape->storage) {
		if (sqe->storage_offset % info->block_size ||
		    sqe->length % info->block_size)
			return -EINVAL;
		if (sqe->storage_offset > info->storage_capacity ||
		    sqe->length > info->storage_capacity - sqe->storage_offset)
			return -ERANGE;
	}
	if (!(info->supported_ops & (1U << sqe->opcode)))
		return -EOPNOTSUPP;
	if (shape->src) {
		*src = zcard_ctx_pool(ctx, sqe->src_pool);
		err = zcard_check_range(*src, sqe->src_offset, sqe->length);
		if (err)
			return err;
	}
	if (shape->dst) {
		*dst = zcard_ctx_pool(ctx, sqe->dst_pool);
		err = zcard_check_range(*dst, sqe->dst_offset, sqe->length);
		if (err)
			return err;
	}
	return 0;
}

static int zcard_submit_sqes(struct zcard_ctx *ctx, u32 to_submit, u32 *done)
{
	struct zcard *card = ctx->card;
	u32 *sq_tail = ctx->ring + ctx->off.sq_tail;
	u32 *sq_head = ctx->ring + ctx->off.sq_head;
	u32 tail, n = 0;
	int err = 0;

	/* Pairs with user space's release store of sq_tail: SQEs first. */
	tail = smp_load_acquire(sq_tail);
	if (tail - ctx->sq_head > ctx->sq_entries)
		return -EINVAL;	/* a tail no producer could have written */
	to_submit = min(to_submit, tail - ctx->sq_head);

	down_read(&card->reset_sem);
	if (READ_ONCE(card->removed)) {
		up_read(&card->reset_sem);
		return -ENODEV;
	}
	while (n < to_submit) {
		struct zcard_pool *src, *dst;
		struct zcard_sqe sqe;

		/* Room for this request's CQE whatever happens to the others. */
		mutex_lock(&ctx->lock);
		if ((u32)atomic_read(&ctx->inflight) + zcard_cq_pending(ctx) >=
		    ctx->cq_entries) {
			mutex_unlock(&ctx->lock);
			if (!n)
				err = -EBUSY;
			break;
		}
		memcpy(&sqe, &ctx->sqes[ctx->sq_head & (ctx->sq_entries - 1)],
		       sizeof(sqe));
		err = zcard_check_sqe(ctx, &sqe, &src, &dst);
		if (err) {
			mutex_unlock(&ctx->lock);
			zcard_post_cqe(ctx, sqe.user_data, err, 0, false);
			err = 0;
		} else {
			/* The request takes its own pool references. */
			err = zcard_submit(ctx, &sqe, src, dst);
			mutex_unlock(&ctx->lock);
			if (err) {
				/* Queue full: leave the SQE for the next ENTER. */
				if (n)
					err = 0;
				break;
			}
		}
		ctx->sq_head++;
		/* The SQE slot may be reused by user space from here on. */
		smp_store_release(sq_head, ctx->sq_head);
		n++;
	}
	zcard_kick(ctx->queue);
	up_read(&card->reset_sem);
	*done = n;
	return err;
}

/*
 * Done waiting when enough CQEs are there, or none can come (nothing in
 * flight), or the card is gone.
 */
static bool zcard_enter_done(struct zcard_ctx *ctx, u32 min_complete)
{
	return zcard_cq_pending(ctx) >= min_complete ||
	       !atomic_read(&ctx->inflight) || READ_ONCE(ctx->card->removed);
}

static long zcard_ioc_enter(struct zcard_ctx *ctx, void __user *arg)
{
	struct zcard *card = ctx->card;
	struct zcard_enter en;
	long ret = 0;
	u32 done = 0;

	if (copy_from_user(&en, arg, sizeof(en)))
		return -EFAULT;
	if (en.flags || !zcard_zero(en.reserved, ARRAY_SIZE(en.reserved)))
		return -EINVAL;
	if (!zcard_ring(ctx))
		return -ENXIO;
	if (en.min_complete > ctx->cq_entries)
		return -EINVAL;

	if (en.to_submit) {
		mutex_lock(&ctx->submit_lock);
		ret = zcard_submit_sqes(ctx, en.to_submit, &done);
		mutex_unlock(&ctx->submit_lock);
	}
	if (!ret && en.min_complete) {
		ktime_t limit = KTIME_MAX;

		if (en.timeout_ns && en.timeout_ns < (u64)KTIME_MAX)
			limit = ns_to_ktime(en.timeout_ns);

		ret = wait_event_interruptible_hrtimeout(ctx->wait,
							 zcard_enter_done(ctx, en.min_complete),
							 limit);
		if (ret == -ERESTARTSYS)
			ret = -EINTR;
		else if (!ret && zcard_cq_pending(ctx) < en.min_complete)
			ret = READ_ONCE(card->removed) ? -ENODEV : -EAGAIN;
	}
	en.submitted = done;
	if (copy_to_user(arg, &en, sizeof(en)))
		return -EFAULT;
	return ret;
}

static long zcard_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct zcard_ctx *ctx = file->private_data;
	void __user *uarg = (void __user *)arg;

	if (READ_ONCE(ctx->card->removed) && cmd != ZCARD_IOC_INFO)
		return -ENODEV;
	switch (cmd) {
	case ZCARD_IOC_INFO:
		return zcard_ioc_info(ctx, uarg);
	case ZCARD_IOC_POOL_CREATE:
		return zcard_ioc_pool_create(ctx, uarg);
	case ZCARD_IOC_POOL_DESTROY:
		return zcard_ioc_pool_destroy(ctx, uarg);
	case ZCARD_IOC_POOL_EXPORT:
		return zcard_ioc_pool_export(ctx, uarg);
	case ZCARD_IOC_POOL_IMPORT:
		return zcard_ioc_pool_import(ctx, uarg);
	case ZCARD_IOC_RING_SETUP:
		return zcard_ioc_ring_setup(ctx, uarg);
	case ZCARD_IOC_ENTER:
		return zcard_ioc_enter(ctx, uarg);
	case ZCARD_IOC_SET_EVENTFD:
		return zcard_ioc_set_eventfd(ctx, uarg);
	default:
		return -ENOTTY;
	}
}

/*
 * Every ring page is inserted at mmap time; this puts one back after it was
 * dropped from the page tables (madvise MADV_DONTNEED). The mapping holds
 * the file, so the context and its ring outlive it.
 */
static vm_fault_t zcard_ring_vm_fault(struct vm_fault *vmf)
{
	struct zcard_ctx *ctx = vmf->vma->vm_file->private_data;
	unsigned long i = vmf->pgoff - (ZCARD_OFF_RINGS >> PAGE_SHIFT);
	struct page *page;

	if (i >= ctx->ring_size >> PAGE_SHIFT)
		return VM_FAULT_SIGBUS;
	page = vmalloc_to_page(ctx->ring + (i << PAGE_SHIFT));
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct zcard_ring_vm_ops = {
	.fault = zcard_ring_vm_fault,
};

static int zcard_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct zcard_ctx *ctx = file->private_data;
	u64 off = (u64)vma->vm_pgoff << PAGE_SHIFT;
	struct zcard_pool *pool;
	int err;

	if (READ_ONCE(ctx->card->removed))
		return -ENODEV;
	if (off == ZCARD_OFF_RINGS) {
		void *ring = zcard_ring(ctx);

		if (!ring)
			return -ENXIO;
		/*
		 * VM_MAYSHARE, not VM_SHARED: a shared mapping of a file opened
		 * read-only has VM_SHARED cleared (and cannot be made writable).
		 */
		if (vma->vm_end - vma->vm_start != ctx->ring_size ||
		    !(vma->vm_flags & VM_MAYSHARE))
			return -EINVAL;
		if (vma->vm_flags & VM_EXEC)
			return -EPERM;
		vm_flags_mod(vma, VM_DONTCOPY | VM_DONTDUMP | VM_DONTEXPAND,
			     VM_MAYEXEC);
		err = remap_vmalloc_range(vma, ring, 0);
		if (!err)
			vma->vm_ops = &zcard_ring_vm_ops;
		return err;
	}
	if (off & GENMASK_ULL(31, 0))
		return -EINVAL;
	/*
	 * mmap_lock is held here: the pool is looked up under the xarray's
	 * own lock, so that ctx->lock is never taken under mmap_lock.
	 */
	xa_lock(&ctx->pools);
	pool = xa_load(&ctx->pools, off >> 32);
	if (pool)
		kref_get(&pool->ref);
	xa_unlock(&ctx->pools);
	if (!pool)
		return -EINVAL;
	err = zcard_pool_mmap(pool, vma);
	zcard_pool_put(pool);
	return err;
}

static __poll_t zcard_poll(struct file *file, poll_table *wait)
{
	struct zcard_ctx *ctx = file->private_data;
	__poll_t mask = 0;

	poll_wait(file, &ctx->wait, wait);
	if (zcard_ring(ctx) && zcard_cq_pending(ctx))
		mask |= EPOLLIN | EPOLLRDNORM;
	if (READ_ONCE(ctx->card->removed))
		mask |= EPOLLERR | EPOLLHUP;
	return mask;
}

const struct file_operations zcard_fops = {
	.owner = THIS_MODULE,
	.open = zcard_open,
	.release = zcard_release,
	.unlocked_ioctl = zcard_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = zcard_mmap,
	.poll = zcard_poll,
	.llseek = noop_llseek,
};
