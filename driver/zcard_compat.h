/* SPDX-License-Identifier: GPL-2.0 */
/*
 * zcard: what differs between the kernels the driver builds on, in one
 * place.
 *
 * A request is one chain that mixes directions: header and sources are read
 * by the card, destinations and status written. Where a virtqueue can be
 * switched to premapped DMA (virtqueue_set_dma_premapped(), up to Linux
 * 6.12), every buffer on it carries a DMA address the driver mapped: pools
 * are DMA-mapped once when they are created and synced per request, and a
 * queue's headers and statuses live in coherent memory.
 *
 * Linux 6.13 removed that switch. Premapped buffers now go only through
 * virtqueue_add_outbuf_premapped() and virtqueue_add_inbuf_premapped(), one
 * direction per chain, and virtqueue_add_sgs(), the one call that mixes
 * directions, maps every entry itself. There the driver hands the ring
 * page-backed entries (pool pages, and headers and statuses in ordinary
 * kernel memory), which it maps as the request is added and unmaps as it
 * completes or is detached. Pool pages are still never copied by the CPU
 * (beyond the bounce buffers of swiotlb, which copy on either path); what
 * it costs is a DMA map and unmap per segment per request, where the
 * premapped path has two cache syncs, and a pool holds no DMA mapping.
 *
 * Kbuild defines ZCARD_HAVE_SET_DMA_PREMAPPED when the target kernel's
 * <linux/virtio.h> declares virtqueue_set_dma_premapped().
 */
#ifndef ZCARD_COMPAT_H
#define ZCARD_COMPAT_H

#include <linux/virtio.h>

#ifdef ZCARD_HAVE_SET_DMA_PREMAPPED

/* Pools are DMA-mapped once; queues take their DMA addresses. */
#define ZCARD_PREMAPPED	1

static inline int zcard_vq_set_premapped(struct virtqueue *vq)
{
	return virtqueue_set_dma_premapped(vq);
}

#else

/* The ring maps each request's pages as the request is added. */
#define ZCARD_PREMAPPED	0

static inline int zcard_vq_set_premapped(struct virtqueue *vq)
{
	return 0;
}

#endif

#endif /* ZCARD_COMPAT_H */
