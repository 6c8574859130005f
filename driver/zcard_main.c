// SPDX-License-Identifier: GPL-2.0
/*
 * zcard: driver for the zcard DMA card (virtio device id 38), the card of
 * docs/zcard-spec.md. It gives user space page-backed DMA pools and
 * io_uring-style rings on /dev/zcardN (zcard_file.c, zcard_pool.c); this
 * file drives the card: probe and config validation, the request queues,
 * completions, the timeout watchdog, reset and removal.
 *
 * The driver distrusts the card: a completion is matched to its request by
 * the driver's own slot, its tag is checked, and a status the card never
 * wrote reads as an I/O error.
 */

#include <linux/dma-mapping.h>
#include <linux/idr.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "zcard_internal.h"

static unsigned int timeout_ms = 5000;
module_param(timeout_ms, uint, 0644);
MODULE_PARM_DESC(timeout_ms, "Milliseconds before a request the card does not complete fails with -ETIMEDOUT and the card is reset (default 5000)");

static unsigned int pinned_limit_mb = 256;
module_param(pinned_limit_mb, uint, 0444);
MODULE_PARM_DESC(pinned_limit_mb, "MiB all pools of one card may pin together (default 256)");

static DEFINE_IDA(zcard_ida);

/* Frees contexts and pools; drained before the module goes away. */
struct workqueue_struct *zcard_wq;

static void zcard_free(struct kref *ref)
{
	struct zcard *card = container_of(ref, struct zcard, ref);

	/* A completion seen during removal may have queued a reset. */
	cancel_work_sync(&card->reset_work);
	cancel_delayed_work_sync(&card->watchdog);
	kfree(card->queues);
	kfree(card);
}

/**
 * zcard_put() - drop a reference to a card.
 * @card: the card.
 */
void zcard_put(struct zcard *card)
{
	kref_put(&card->ref, zcard_free);
}

static unsigned long zcard_timeout(void)
{
	return msecs_to_jiffies(max(READ_ONCE(timeout_ms), 10U));
}

static int zcard_errno(u8 status)
{
	switch (status) {
	case ZCARD_ST_OK:
		return 0;
	case ZCARD_ST_UNSUPPORTED:
		return -EOPNOTSUPP;
	case ZCARD_ST_BAD_ADDRESS:
		return -EFAULT;
	case ZCARD_ST_OUT_OF_RANGE:
		return -ERANGE;
	case ZCARD_ST_NEEDS_RESET:
		return -ECANCELED;
	default:	/* io_error, a malformed-request status, or none at all */
		return -EIO;
	}
}

/*
 * Completes a slot: syncs the destination back to the CPU, posts the CQE,
 * drops the slot's references and frees it. Called with q->lock held.
 */
static void zcard_finish(struct zcard_queue *q, struct zcard_slot *s, int err)
{
	struct zcard_wire *w = &q->wire[s->index];
	struct zcard_ctx *ctx = s->ctx;
	s32 result = 0;
	u64 value = 0;

	if (!err) {
		err = zcard_errno(READ_ONCE(w->st.status));
		if (!err && le64_to_cpu(READ_ONCE(w->st.tag)) != s->tag)
			err = -EIO;
		if (err == -EIO || err == -ECANCELED)
			dev_warn_ratelimited(&q->card->vdev->dev,
					     "queue %u: status %u for opcode %u\n",
					     q->index, w->st.status, s->opcode);
		/* A reset in progress (or a stop) already handles it. */
		if (w->st.status == ZCARD_ST_NEEDS_RESET && !READ_ONCE(q->card->stopped))
			schedule_work(&q->card->reset_work);
	}
	if (s->dst && s->length && s->dst->mapped)
		zcard_pool_sync(s->dst, s->dst_off, s->length, true);
	if (!err) {
		if (s->opcode != ZCARD_OP_NOP && s->opcode != ZCARD_OP_FLUSH)
			result = s->length;
		if (s->opcode == ZCARD_OP_CRC32C)
			value = le32_to_cpu(w->st.result);
	} else {
		result = err;
	}
	list_del(&s->node);
	zcard_post_cqe(ctx, s->user_data, result, value, true);
	if (s->src)
		zcard_pool_put(s->src);
	if (s->dst)
		zcard_pool_put(s->dst);
	zcard_ctx_put(ctx);
	s->ctx = NULL;
	s->src = NULL;
	s->dst = NULL;
	list_add(&s->node, &q->free);
}

/* Harvests the used ring. Called with q->lock held. */
static void zcard_reap(struct zcard_queue *q)
{
	struct zcard_slot *s;
	unsigned int len;

	/* The used length is the card's word: only the status is read. */
	while ((s = virtqueue_get_buf(q->vq, &len)))
		zcard_finish(q, s, s->timed_out ? -ETIMEDOUT : 0);
}

static void zcard_vq_done(struct virtqueue *vq)
{
	struct zcard *card = vq->vdev->priv;
	struct zcard_queue *q = &card->queues[vq->index];
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	do {
		virtqueue_disable_cb(vq);
		zcard_reap(q);
	} while (!virtqueue_enable_cb(vq));
	spin_unlock_irqrestore(&q->lock, flags);
}

/**
 * zcard_submit() - hand one checked SQE to the card.
 * @ctx: the submitting file.
 * @sqe: the SQE (checked by the caller against ctx's pools).
 * @src: its source pool or NULL.
 * @dst: its destination pool or NULL.
 *
 * Context: process, card->reset_sem held for reading, ctx->lock held.
 * Return: 0 when the request is on the queue (it takes references to ctx
 * and the pools), -EBUSY when the queue is full.
 */
int zcard_submit(struct zcard_ctx *ctx, const struct zcard_sqe *sqe,
		 struct zcard_pool *src, struct zcard_pool *dst)
{
	struct zcard_queue *q = ctx->queue;
	struct zcard *card = q->card;
	struct scatterlist *sgs[4];	/* header, sources, destinations, status */
	unsigned int nsrc = 0, ndst = 0, out = 0, in = 0, max;
	struct zcard_slot *s;
	struct zcard_wire *w;
	unsigned long flags;
	int err;

	max = card->info.max_segments;
	if (card->stopped)	/* a reset failed half-way; removal follows */
		return -EBUSY;
	spin_lock_irqsave(&q->lock, flags);
	s = list_first_entry_or_null(&q->free, struct zcard_slot, node);
	if (!s) {
		spin_unlock_irqrestore(&q->lock, flags);
		return -EBUSY;
	}
	w = &q->wire[s->index];
	memset(w, 0, sizeof(*w));
	w->hdr.opcode = sqe->opcode;	/* the same numbers: zcard_alloc_queues() */
	s->tag = q->next_tag++;
	w->hdr.tag = cpu_to_le64(s->tag);
	w->hdr.length = cpu_to_le64(sqe->length);
	w->hdr.storage_offset = cpu_to_le64(sqe->storage_offset);
	w->hdr.pattern = cpu_to_le64(sqe->pattern);
	w->st.status = ZCARD_ST_UNWRITTEN;

	/* Header, then sources, then destinations, then the status. */
	sg_init_table(q->sg, q->nsg);
	sg_set_page(&q->sg[0], NULL, sizeof(w->hdr), 0);
	sg_dma_address(&q->sg[0]) = q->wire_dma + s->index * sizeof(*w);
	sg_dma_len(&q->sg[0]) = sizeof(w->hdr);
	sg_mark_end(&q->sg[0]);
	sgs[out++] = &q->sg[0];
	if (src && sqe->length) {
		err = zcard_pool_segments(src, sqe->src_offset, sqe->length,
					  &q->sg[1], max);
		if (err < 0)
			goto err_unlock;
		nsrc = err;
		sg_mark_end(&q->sg[nsrc]);
		sgs[out++] = &q->sg[1];
	}
	if (dst && sqe->length) {
		err = zcard_pool_segments(dst, sqe->dst_offset, sqe->length,
					  &q->sg[1 + nsrc], max);
		if (err < 0)
			goto err_unlock;
		ndst = err;
		sg_mark_end(&q->sg[nsrc + ndst]);
		sgs[out + in++] = &q->sg[1 + nsrc];
	}
	sg_set_page(&q->sg[1 + nsrc + ndst], NULL, sizeof(w->st), 0);
	sg_dma_address(&q->sg[1 + nsrc + ndst]) = q->wire_dma +
		s->index * sizeof(*w) + offsetof(struct zcard_wire, st);
	sg_dma_len(&q->sg[1 + nsrc + ndst]) = sizeof(w->st);
	sg_mark_end(&q->sg[1 + nsrc + ndst]);
	sgs[out + in++] = &q->sg[1 + nsrc + ndst];

	/* The card reads the sources and may leave part of a destination. */
	if (nsrc)
		zcard_pool_sync(src, sqe->src_offset, sqe->length, false);
	if (ndst)
		zcard_pool_sync(dst, sqe->dst_offset, sqe->length, false);

	err = virtqueue_add_sgs(q->vq, sgs, out, in, s, GFP_ATOMIC);
	if (err)
		goto err_unlock;

	list_move_tail(&s->node, &q->inflight);
	zcard_ctx_get(ctx);
	s->ctx = ctx;
	s->src = (src && sqe->length) ? src : NULL;
	s->dst = (dst && sqe->length) ? dst : NULL;
	if (s->src)
		kref_get(&src->ref);
	if (s->dst)
		kref_get(&dst->ref);
	s->src_off = sqe->src_offset;
	s->dst_off = sqe->dst_offset;
	s->length = sqe->length;
	s->opcode = sqe->opcode;
	s->user_data = sqe->user_data;
	s->timed_out = false;
	s->deadline = jiffies + zcard_timeout();
	atomic_inc(&ctx->inflight);
	atomic64_inc(&card->stats.inflight);
	atomic64_inc(&card->stats.submitted);
	spin_unlock_irqrestore(&q->lock, flags);
	/* Not pushed back by later submissions: the oldest request counts. */
	schedule_delayed_work(&card->watchdog, zcard_timeout() / 4 + 1);
	return 0;

err_unlock:
	spin_unlock_irqrestore(&q->lock, flags);
	if (err == -E2BIG)	/* cannot happen within max_op_bytes */
		dev_warn_ratelimited(&card->vdev->dev, "request needs too many segments\n");
	return -EBUSY;
}

/**
 * zcard_kick() - notify the card of new requests on a queue.
 * @q: the queue.
 *
 * Context: process, card->reset_sem held for reading.
 */
void zcard_kick(struct zcard_queue *q)
{
	unsigned long flags;
	bool notify;

	if (q->card->stopped)
		return;
	spin_lock_irqsave(&q->lock, flags);
	notify = virtqueue_kick_prepare(q->vq);
	spin_unlock_irqrestore(&q->lock, flags);
	if (notify)
		virtqueue_notify(q->vq);
}

/*
 * The watchdog: reaps used rings (a completion whose interrupt was lost is
 * found here), and when the oldest request of a queue is past its deadline,
 * marks it timed out and resets the card.
 */
static void zcard_watchdog(struct work_struct *work)
{
	struct zcard *card = container_of(to_delayed_work(work), struct zcard,
					  watchdog);
	bool expired = false, busy = false;
	unsigned int i;

	if (!down_read_trylock(&card->reset_sem)) {
		/* A reset or removal is running; it fails whatever is left. */
		return;
	}
	if (READ_ONCE(card->removed) || card->stopped)
		goto out;
	for (i = 0; i < card->info.num_queues; i++) {
		struct zcard_queue *q = &card->queues[i];
		struct zcard_slot *s;
		unsigned long flags;

		spin_lock_irqsave(&q->lock, flags);
		zcard_reap(q);
		list_for_each_entry(s, &q->inflight, node) {
			busy = true;
			if (time_after(jiffies, s->deadline) && !s->timed_out) {
				s->timed_out = true;
				atomic64_inc(&card->stats.timeouts);
				expired = true;
			}
		}
		spin_unlock_irqrestore(&q->lock, flags);
	}
	if (expired) {
		dev_warn(&card->vdev->dev, "request timed out after %u ms: resetting the card\n",
			 READ_ONCE(timeout_ms));
		schedule_work(&card->reset_work);
	} else if (busy) {
		schedule_delayed_work(&card->watchdog, zcard_timeout() / 4 + 1);
	}
out:
	up_read(&card->reset_sem);
}

/*
 * Stops the card and fails every request still on it: the device is reset
 * first, so nothing it does can race with the queues being emptied.
 * Called with reset_sem held for writing.
 */
static void zcard_stop(struct zcard *card, int err)
{
	unsigned int i;

	WRITE_ONCE(card->stopped, true);
	virtio_reset_device(card->vdev);
	for (i = 0; i < card->info.num_queues; i++) {
		struct zcard_queue *q = &card->queues[i];
		struct zcard_slot *s;
		unsigned long flags;

		if (!q->vq)	/* already stopped (a reset that failed) */
			continue;
		spin_lock_irqsave(&q->lock, flags);
		zcard_reap(q);	/* completed before the reset: keep the results */
		while ((s = virtqueue_detach_unused_buf(q->vq)))
			zcard_finish(q, s, s->timed_out ? -ETIMEDOUT : err);
		q->vq = NULL;
		spin_unlock_irqrestore(&q->lock, flags);
	}
	card->vdev->config->del_vqs(card->vdev);
}

static int zcard_find_vqs(struct zcard *card)
{
	unsigned int i, n = card->info.num_queues;
	struct virtqueue_info *info;
	struct virtqueue **vqs;
	char (*names)[16];
	int err = -ENOMEM;

	info = kcalloc(n, sizeof(*info), GFP_KERNEL);
	vqs = kcalloc(n, sizeof(*vqs), GFP_KERNEL);
	names = kcalloc(n, sizeof(*names), GFP_KERNEL);
	if (!info || !vqs || !names)
		goto out;
	for (i = 0; i < n; i++) {
		snprintf(names[i], sizeof(names[i]), "req.%u", i);
		info[i].name = names[i];
		info[i].callback = zcard_vq_done;
	}
	err = virtio_find_vqs(card->vdev, n, vqs, info, NULL);
	if (err)
		goto out;
	for (i = 0; i < n; i++) {
		/* Pool memory is mapped once by the driver, not per request. */
		err = virtqueue_set_dma_premapped(vqs[i]);
		if (err) {
			dev_err(&card->vdev->dev,
				"the card must offer VIRTIO_F_ACCESS_PLATFORM (premapped DMA)\n");
			card->vdev->config->del_vqs(card->vdev);
			goto out;
		}
	}
	for (i = 0; i < n; i++)
		card->queues[i].vq = vqs[i];
	WRITE_ONCE(card->stopped, false);
out:
	kfree(names);
	kfree(vqs);
	kfree(info);
	return err;
}

static void zcard_reset_work(struct work_struct *work)
{
	struct zcard *card = container_of(work, struct zcard, reset_work);
	int err;

	down_write(&card->reset_sem);
	if (card->removed)
		goto out;
	atomic64_inc(&card->stats.resets);
	card->resetting = true;
	err = virtio_device_freeze(card->vdev);
	if (!err)
		err = virtio_device_restore(card->vdev);
	card->resetting = false;
	if (err) {
		dev_err(&card->vdev->dev, "reset failed (%d): the card is unusable\n", err);
		WRITE_ONCE(card->removed, true);
	} else {
		dev_info(&card->vdev->dev, "card reset\n");
	}
out:
	up_write(&card->reset_sem);
}

/*
 * virtio_device_freeze() calls this for a reset (reset_work holds reset_sem)
 * and on suspend (then the watchdog and reset work are stopped and the
 * queues stopped under reset_sem here).
 */
static int zcard_freeze(struct virtio_device *vdev)
{
	struct zcard *card = vdev->priv;

	if (card->resetting) {
		zcard_stop(card, -ECANCELED);
		return 0;
	}
	cancel_work_sync(&card->reset_work);
	cancel_delayed_work_sync(&card->watchdog);
	down_write(&card->reset_sem);
	zcard_stop(card, -ECANCELED);
	up_write(&card->reset_sem);
	return 0;
}

/* virtio_device_restore() calls this after a reset and on resume. */
static int zcard_restore(struct virtio_device *vdev)
{
	struct zcard *card = vdev->priv;
	int err;

	if (!card->resetting)
		down_write(&card->reset_sem);
	err = zcard_find_vqs(card);
	if (!err)
		virtio_device_ready(vdev);
	if (!card->resetting)
		up_write(&card->reset_sem);
	return err;
}

static void zcard_config_changed(struct virtio_device *vdev)
{
	struct zcard *card = vdev->priv;
	u32 state;

	virtio_cread_le(vdev, struct zcard_config, device_state, &state);
	if (state & ZCARD_STATE_NEEDS_RESET)
		schedule_work(&card->reset_work);
}

/* Slots and wire areas for the queues found by zcard_find_vqs(). */
static int zcard_alloc_queues(struct zcard *card)
{
	unsigned int i, j;

	/* The wire format of include/uapi/zcard_virtio.h, docs/zcard-spec.md. */
	BUILD_BUG_ON(sizeof(struct zcard_req_hdr) != 48);
	BUILD_BUG_ON(offsetof(struct zcard_req_hdr, tag) != 8);
	BUILD_BUG_ON(offsetof(struct zcard_req_hdr, reserved2) != 40);
	BUILD_BUG_ON(sizeof(struct zcard_req_status) != 16);
	BUILD_BUG_ON(offsetof(struct zcard_req_status, result) != 4);
	BUILD_BUG_ON(offsetof(struct zcard_req_status, tag) != 8);
	BUILD_BUG_ON(offsetof(struct zcard_wire, st) != sizeof(struct zcard_req_hdr));
	/* SQE opcodes go to the card unchanged. */
	BUILD_BUG_ON((int)ZCARD_OP_NOP != (int)ZCARD_REQ_NOP);
	BUILD_BUG_ON((int)ZCARD_OP_COPY != (int)ZCARD_REQ_COPY);
	BUILD_BUG_ON((int)ZCARD_OP_FILL != (int)ZCARD_REQ_FILL);
	BUILD_BUG_ON((int)ZCARD_OP_CRC32C != (int)ZCARD_REQ_CRC32C);
	BUILD_BUG_ON((int)ZCARD_OP_STORAGE_READ != (int)ZCARD_REQ_STORAGE_READ);
	BUILD_BUG_ON((int)ZCARD_OP_STORAGE_WRITE != (int)ZCARD_REQ_STORAGE_WRITE);
	BUILD_BUG_ON((int)ZCARD_OP_FLUSH != (int)ZCARD_REQ_FLUSH);
	BUILD_BUG_ON((int)ZCARD_OP_COUNT != (int)ZCARD_REQ_FLUSH + 1);

	for (i = 0; i < card->info.num_queues; i++) {
		struct zcard_queue *q = &card->queues[i];

		q->nslots = virtqueue_get_vring_size(q->vq);
		q->nsg = 2 * card->info.max_segments + 2;
		q->slots = kcalloc(q->nslots, sizeof(*q->slots), GFP_KERNEL);
		q->sg = kcalloc(q->nsg, sizeof(*q->sg), GFP_KERNEL);
		q->wire = dma_alloc_coherent(card->dma_dev, q->nslots * sizeof(*q->wire),
					     &q->wire_dma, GFP_KERNEL);
		if (!q->slots || !q->sg || !q->wire)
			return -ENOMEM;
		for (j = 0; j < q->nslots; j++) {
			q->slots[j].index = j;
			list_add_tail(&q->slots[j].node, &q->free);
		}
	}
	return 0;
}

/* Frees what zcard_alloc_queues() allocated (the wire areas need dma_dev). */
static void zcard_free_queues(struct zcard *card)
{
	unsigned int i;

	for (i = 0; i < card->info.num_queues; i++) {
		struct zcard_queue *q = &card->queues[i];

		if (q->wire)
			dma_free_coherent(card->dma_dev, q->nslots * sizeof(*q->wire),
					  q->wire, q->wire_dma);
		q->wire = NULL;
		kfree(q->slots);
		q->slots = NULL;
		kfree(q->sg);
		q->sg = NULL;
	}
}

static int zcard_read_config(struct zcard *card)
{
	struct virtio_device *vdev = card->vdev;
	struct zcard_info *info = &card->info;
	u32 magic, max_request;

	/* The config space of include/uapi/zcard_virtio.h. */
	BUILD_BUG_ON(sizeof(struct zcard_config) != 64);
	BUILD_BUG_ON(offsetof(struct zcard_config, storage_capacity) != 0x10);
	BUILD_BUG_ON(offsetof(struct zcard_config, device_state) != 0x20);
	BUILD_BUG_ON(offsetof(struct zcard_config, reserved) != 0x28);

	virtio_cread_le(vdev, struct zcard_config, magic, &magic);
	virtio_cread_le(vdev, struct zcard_config, version, &info->card_version);
	if (magic != ZCARD_MAGIC || info->card_version >> 16 != ZCARD_VERSION >> 16) {
		dev_err(&vdev->dev, "not a zcard 1.x (magic %#x, version %#x)\n",
			magic, info->card_version);
		return -ENODEV;
	}
	virtio_cread_le(vdev, struct zcard_config, num_queues, &info->num_queues);
	virtio_cread_le(vdev, struct zcard_config, max_segments, &info->max_segments);
	virtio_cread_le(vdev, struct zcard_config, max_request_bytes, &max_request);
	virtio_cread_le(vdev, struct zcard_config, storage_capacity,
			&info->storage_capacity);
	virtio_cread_le(vdev, struct zcard_config, block_size, &info->block_size);
	virtio_cread_le(vdev, struct zcard_config, supported_ops, &info->supported_ops);
	if (!info->num_queues || info->num_queues > ZCARD_MAX_QUEUES ||
	    info->max_segments < 2 || info->max_segments > 256 ||
	    !info->block_size || !is_power_of_2(info->block_size) ||
	    info->storage_capacity % info->block_size) {
		dev_err(&vdev->dev, "config out of range: %u queues, %u segments, block %u, capacity %llu\n",
			info->num_queues, info->max_segments, info->block_size,
			info->storage_capacity);
		return -EINVAL;
	}
	info->size = sizeof(*info);
	info->abi_version = ZCARD_ABI_VERSION;
	info->features = ZCARD_FEAT_NONE;
	info->supported_ops &= (1U << ZCARD_OP_COUNT) - 1;
	/* Any range of this length fits the card's segment limit. */
	info->max_op_bytes = min_t(u64, max_request,
				   (u64)(info->max_segments - 1) * ZCARD_CHUNK);
	info->max_op_bytes = rounddown(info->max_op_bytes, info->block_size);
	info->pinned_limit = (u64)pinned_limit_mb << 20;
	info->max_pool_bytes = min_t(u64, info->pinned_limit, 1ULL << 31);
	info->pool_align = PAGE_SIZE;
	info->max_ring_entries = ZCARD_MAX_RING_ENTRIES;
	return 0;
}

/* sysfs: one read-only file per counter in /sys/class/misc/zcardN/. */
static ssize_t zcard_stat_show(struct device *dev, struct device_attribute *attr,
			       char *buf)
{
	struct dev_ext_attribute *ea = container_of(attr, struct dev_ext_attribute, attr);
	struct miscdevice *misc = dev_get_drvdata(dev);
	struct zcard *card = container_of(misc, struct zcard, misc);
	atomic64_t *counter = (void *)&card->stats + (uintptr_t)ea->var;

	return sysfs_emit(buf, "%lld\n", atomic64_read(counter));
}

static struct dev_ext_attribute zcard_stat_attrs[] = {
	{ __ATTR(submitted, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, submitted) },
	{ __ATTR(completed, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, completed) },
	{ __ATTR(errors, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, errors) },
	{ __ATTR(timeouts, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, timeouts) },
	{ __ATTR(resets, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, resets) },
	{ __ATTR(pools, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, pools) },
	{ __ATTR(pinned, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, pinned) },
	{ __ATTR(inflight, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, inflight) },
	{ __ATTR(cq_overflows, 0444, zcard_stat_show, NULL),
	  (void *)offsetof(struct zcard_stats, cq_overflows) },
};

static struct attribute *zcard_attrs[] = {
	&zcard_stat_attrs[0].attr.attr,
	&zcard_stat_attrs[1].attr.attr,
	&zcard_stat_attrs[2].attr.attr,
	&zcard_stat_attrs[3].attr.attr,
	&zcard_stat_attrs[4].attr.attr,
	&zcard_stat_attrs[5].attr.attr,
	&zcard_stat_attrs[6].attr.attr,
	&zcard_stat_attrs[7].attr.attr,
	&zcard_stat_attrs[8].attr.attr,
	NULL,
};
ATTRIBUTE_GROUPS(zcard);

static int zcard_probe(struct virtio_device *vdev)
{
	struct zcard *card;
	unsigned int i;
	int err;

	card = kzalloc(sizeof(*card), GFP_KERNEL);
	if (!card)
		return -ENOMEM;
	err = ida_alloc(&zcard_ida, GFP_KERNEL);
	if (err < 0) {
		kfree(card);
		return err;
	}
	card->instance = err;
	kref_init(&card->ref);
	card->vdev = vdev;
	vdev->priv = card;
	init_rwsem(&card->reset_sem);
	mutex_init(&card->lock);
	INIT_LIST_HEAD(&card->pools);
	INIT_LIST_HEAD(&card->ctxs);
	INIT_DELAYED_WORK(&card->watchdog, zcard_watchdog);
	INIT_WORK(&card->reset_work, zcard_reset_work);
	snprintf(card->name, sizeof(card->name), "zcard%d", card->instance);
	card->info.instance = card->instance;

	err = zcard_read_config(card);
	if (err)
		goto err_put;
	/* Queue locks and lists must exist before a vq callback can run. */
	card->queues = kcalloc(card->info.num_queues, sizeof(*card->queues),
			       GFP_KERNEL);
	if (!card->queues) {
		err = -ENOMEM;
		goto err_put;
	}
	for (i = 0; i < card->info.num_queues; i++) {
		struct zcard_queue *q = &card->queues[i];

		q->card = card;
		q->index = i;
		spin_lock_init(&q->lock);
		INIT_LIST_HEAD(&q->free);
		INIT_LIST_HEAD(&q->inflight);
	}
	/* A request needs up to 2 * max_segments + 2 descriptors: one indirect. */
	if (!virtio_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC)) {
		dev_err(&vdev->dev, "the card must offer VIRTIO_RING_F_INDIRECT_DESC\n");
		err = -EINVAL;
		goto err_put;
	}
	err = zcard_find_vqs(card);
	if (err)
		goto err_put;
	card->dma_dev = virtqueue_dma_dev(card->queues[0].vq);
	err = zcard_alloc_queues(card);
	if (err)
		goto err_vqs;

	card->misc.minor = MISC_DYNAMIC_MINOR;
	card->misc.name = card->name;
	card->misc.fops = &zcard_fops;
	card->misc.mode = 0660;
	card->misc.parent = &vdev->dev;
	card->misc.groups = zcard_groups;
	virtio_device_ready(vdev);
	err = misc_register(&card->misc);
	if (err)
		goto err_reset;
	dev_info(&vdev->dev, "%s: %u queues, %u segments, storage %llu bytes, max op %u bytes\n",
		 card->name, card->info.num_queues, card->info.max_segments,
		 card->info.storage_capacity, card->info.max_op_bytes);
	return 0;

err_reset:
	virtio_reset_device(vdev);
err_vqs:
	vdev->config->del_vqs(vdev);
	zcard_free_queues(card);
err_put:
	ida_free(&zcard_ida, card->instance);
	zcard_put(card);
	return err;
}

static void zcard_remove(struct virtio_device *vdev)
{
	struct zcard *card = vdev->priv;
	struct zcard_ctx *ctx;

	misc_deregister(&card->misc);
	mutex_lock(&card->lock);
	WRITE_ONCE(card->removed, true);
	mutex_unlock(&card->lock);
	cancel_delayed_work_sync(&card->watchdog);
	cancel_work_sync(&card->reset_work);

	down_write(&card->reset_sem);
	zcard_stop(card, -ENODEV);
	up_write(&card->reset_sem);
	cancel_delayed_work_sync(&card->watchdog);

	/* Waiters and pollers with nothing in flight learn of it here. */
	mutex_lock(&card->lock);
	list_for_each_entry(ctx, &card->ctxs, node)
		wake_up_all(&ctx->wait);
	mutex_unlock(&card->lock);
	zcard_pools_unmap(card);
	zcard_free_queues(card);
	card->dma_dev = NULL;
	card->vdev = NULL;
	dev_info(&vdev->dev, "%s removed\n", card->name);
	/* The name is free again: a card probed next may be zcardN too. */
	ida_free(&zcard_ida, card->instance);
	zcard_put(card);
}

static const struct virtio_device_id zcard_id_table[] = {
	{ VIRTIO_ID_ZCARD, VIRTIO_DEV_ANY_ID },
	{ 0 },
};
MODULE_DEVICE_TABLE(virtio, zcard_id_table);

static struct virtio_driver zcard_driver = {
	.driver.name = KBUILD_MODNAME,
	.id_table = zcard_id_table,
	.probe = zcard_probe,
	.remove = zcard_remove,
	.config_changed = zcard_config_changed,
	.freeze = pm_sleep_ptr(zcard_freeze),
	.restore = pm_sleep_ptr(zcard_restore),
};

static int __init zcard_init(void)
{
	int err;

	zcard_wq = alloc_workqueue("zcard", 0, 0);
	if (!zcard_wq)
		return -ENOMEM;
	err = register_virtio_driver(&zcard_driver);
	if (err)
		destroy_workqueue(zcard_wq);
	return err;
}
module_init(zcard_init);

static void __exit zcard_exit(void)
{
	unregister_virtio_driver(&zcard_driver);
	/* Frees of contexts and pools closed last run to completion first. */
	destroy_workqueue(zcard_wq);
}
module_exit(zcard_exit);

MODULE_DESCRIPTION("zcard DMA card: page-backed DMA pools and user rings");
MODULE_LICENSE("GPL");
