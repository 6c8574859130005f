// SPDX-License-Identifier: GPL-2.0
/*
 * zcard: the request path. A checked SQE becomes a descriptor chain on the
 * file's queue (header and status in the queue's wire area, pool ranges as
 * DMA segments: premapped, or mapped by the ring, see zcard_compat.h); the
 * completion interrupt, or the watchdog when an interrupt was lost, matches
 * it to its slot, checks the card's status and tag and posts the CQE. The
 * watchdog also gives up on a request past its deadline and has the card
 * reset (zcard_main.c).
 *
 * The driver distrusts the card: a completion is matched to its request by
 * the driver's own slot, its tag is checked, and a status the card never
 * wrote reads as an I/O error.
 */

#include <linux/dma-mapping.h>
#include <linux/slab.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "zcard_internal.h"

static unsigned int timeout_ms = 5000;
module_param(timeout_ms, uint, 0644);
MODULE_PARM_DESC(timeout_ms, "Milliseconds before a request the card does not complete fails with -ETIMEDOUT and the card is reset (default 5000)");

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

/*
 * A virtqueue the card broke (a used entry for a descriptor it was never
 * given, say) takes nothing more and completes nothing more until the card
 * is reset: reset it now, whatever is in flight, so that the requests on
 * it fail with -ECANCELED and the queue serves again.
 */
static void zcard_reset_broken(struct zcard_queue *q, struct virtqueue *vq)
{
	struct zcard *card = q->card;

	if (!virtqueue_is_broken(vq) || READ_ONCE(card->stopped))
		return;
	dev_err_ratelimited(&card->vdev->dev,
			    "queue %u: the card broke its virtqueue: resetting it\n", q->index);
	schedule_work(&card->reset_work);
}

/* Harvests the used ring of @vq, @q's virtqueue. Called with q->lock held. */
static void zcard_reap(struct zcard_queue *q, struct virtqueue *vq)
{
	struct zcard_slot *s;
	unsigned int len;

	/* The used length is the card's word: only the status is read. */
	while ((s = virtqueue_get_buf(vq, &len)))
		zcard_finish(q, s, s->timed_out ? -ETIMEDOUT : 0);
	zcard_reset_broken(q, vq);
}

/*
 * Points @sg at @len bytes at @off in slot @s's wire area: by DMA address on
 * premapped queues (the area is coherent), else by address for the ring to
 * map.
 */
static void zcard_wire_sg(struct zcard_queue *q, struct zcard_slot *s,
			  struct scatterlist *sg, size_t off, unsigned int len)
{
	if (ZCARD_PREMAPPED) {
		sg_set_page(sg, NULL, len, 0);
		sg_dma_address(sg) = q->wire_dma + s->index * sizeof(*q->wire) + off;
		sg_dma_len(sg) = len;
	} else {
		sg_set_buf(sg, (void *)&q->wire[s->index] + off, len);
	}
	sg_mark_end(sg);
}

/**
 * zcard_vq_done() - the request queues' virtqueue callback.
 * @vq: the virtqueue whose used ring has new entries.
 *
 * Context: interrupt.
 */
void zcard_vq_done(struct virtqueue *vq)
{
	struct zcard *card = vq->vdev->priv;
	struct zcard_queue *q = &card->queues[vq->index];
	unsigned long flags;

	/*
	 * Only @vq, never q->vq: zcard_queue_cancel() clears q->vq before the
	 * virtqueues (and their interrupt) are deleted, and what it leaves on
	 * @vq is nothing to reap.
	 */
	spin_lock_irqsave(&q->lock, flags);
	do {
		virtqueue_disable_cb(vq);
		zcard_reap(q, vq);
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
 * and the pools), -EBUSY when the queue is full or the card broke it (a
 * reset is then on its way).
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
	zcard_wire_sg(q, s, &q->sg[0], offsetof(struct zcard_wire, hdr), sizeof(w->hdr));
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
	zcard_wire_sg(q, s, &q->sg[1 + nsrc + ndst], offsetof(struct zcard_wire, st),
		      sizeof(w->st));
	sgs[out + in++] = &q->sg[1 + nsrc + ndst];

	/* The card reads the sources and may leave part of a destination. */
	if (nsrc)
		zcard_pool_sync(src, sqe->src_offset, sqe->length, false);
	if (ndst)
		zcard_pool_sync(dst, sqe->dst_offset, sqe->length, false);

	err = virtqueue_add_sgs(q->vq, sgs, out, in, s, GFP_ATOMIC);
	if (err) {
		/* A broken queue is reset: retrying after it is what works. */
		zcard_reset_broken(q, q->vq);
		goto err_unlock;
	}

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

/**
 * zcard_watchdog() - card->watchdog: reaps used rings (a completion whose
 * interrupt was lost is found here), and when the oldest request of a queue
 * is past its deadline, marks it timed out and has the card reset.
 * @work: card->watchdog.work.
 */
void zcard_watchdog(struct work_struct *work)
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
		zcard_reap(q, q->vq);
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

/**
 * zcard_queue_cancel() - fail every request still on a stopped queue.
 * @q: the queue; the card has been reset, so nothing it does can race with
 *	the queue being emptied.
 * @err: the errno of requests the card had not completed.
 *
 * Requests the card completed before the reset keep their results. The
 * queue is left without a virtqueue.
 *
 * Context: process, card->reset_sem held for writing.
 */
void zcard_queue_cancel(struct zcard_queue *q, int err)
{
	struct zcard_slot *s;
	unsigned long flags;

	spin_lock_irqsave(&q->lock, flags);
	zcard_reap(q, q->vq);
	while ((s = virtqueue_detach_unused_buf(q->vq)))
		zcard_finish(q, s, s->timed_out ? -ETIMEDOUT : err);
	q->vq = NULL;
	spin_unlock_irqrestore(&q->lock, flags);
}

/**
 * zcard_alloc_queues() - slots and wire areas for the queues found at probe.
 * @card: the card; its queues have their virtqueues and card->dma_dev is set.
 *
 * Return: 0, or -ENOMEM (zcard_free_queues() frees what was allocated).
 */
int zcard_alloc_queues(struct zcard *card)
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
	BUILD_BUG_ON(sizeof(struct zcard_wire) != 64);
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
		/*
		 * Coherent memory on premapped queues; else kernel memory for
		 * the ring to map, 64-byte aligned as kmalloc keeps multiples
		 * of 64: a status the card writes shares no cache line with
		 * another slot.
		 */
		if (ZCARD_PREMAPPED)
			q->wire = dma_alloc_coherent(card->dma_dev,
						     q->nslots * sizeof(*q->wire),
						     &q->wire_dma, GFP_KERNEL);
		else
			q->wire = kcalloc(q->nslots, sizeof(*q->wire), GFP_KERNEL);
		if (!q->slots || !q->sg || !q->wire)
			return -ENOMEM;
		for (j = 0; j < q->nslots; j++) {
			q->slots[j].index = j;
			list_add_tail(&q->slots[j].node, &q->free);
		}
	}
	return 0;
}

/**
 * zcard_free_queues() - frees what zcard_alloc_queues() allocated.
 * @card: the card (its dma_dev is still set: the wire areas need it).
 */
void zcard_free_queues(struct zcard *card)
{
	unsigned int i;

	for (i = 0; i < card->info.num_queues; i++) {
		struct zcard_queue *q = &card->queues[i];

		if (!ZCARD_PREMAPPED)
			kfree(q->wire);
		else if (q->wire)
			dma_free_coherent(card->dma_dev, q->nslots * sizeof(*q->wire),
					  q->wire, q->wire_dma);
		q->wire = NULL;
		kfree(q->slots);
		q->slots = NULL;
		kfree(q->sg);
		q->sg = NULL;
	}
}
