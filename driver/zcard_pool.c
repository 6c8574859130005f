// SPDX-License-Identifier: GPL-2.0
/*
 * zcard pools: page-backed DMA buffer pools.
 *
 * A pool is ordinary struct-page memory (order-4 blocks split into order-0
 * pages), so a mapping of it works with get_user_pages: ibv_reg_mr, O_DIRECT
 * and io_uring accept it. Each block is DMA-mapped once, with the streaming
 * API, when the pool is created, and requests sync the ranges they touch;
 * on kernels whose virtqueues take no premapped chains the ring maps each
 * request's pages instead (zcard_compat.h). The pages are charged to the
 * memory cgroup of the process that creates the pool, until the last of
 * them is freed. Each mapping holds a reference to the pool: a pool
 * destroyed while mapped stays, with its pages and its share of the card's
 * pinned limit, until the last mapping goes, and a page dropped from a
 * mapping (madvise MADV_DONTNEED) comes back on the next access.
 */

#include <linux/anon_inodes.h>
#include <linux/dma-mapping.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "zcard_internal.h"

static void zcard_pool_unmap(struct zcard_pool *pool)
{
	struct device *dev = pool->card->dma_dev;
	unsigned int i;

	if (!ZCARD_PREMAPPED)
		return;
	for (i = 0; i < pool->nchunks; i++) {
		u64 len = min_t(u64, ZCARD_CHUNK, pool->size - (u64)i * ZCARD_CHUNK);

		/*
		 * The CPU owns the pages here (no request is in flight and each
		 * one synced its destination back): a sync now would copy stale
		 * bounce-buffer contents over what user space wrote since.
		 */
		dma_unmap_page_attrs(dev, pool->chunk_dma[i], len, DMA_BIDIRECTIONAL,
				     DMA_ATTR_SKIP_CPU_SYNC);
	}
	pool->mapped = false;
}

static void zcard_pool_free_pages(struct zcard_pool *pool)
{
	unsigned long i;

	/* The page array itself may be what could not be allocated. */
	for (i = 0; pool->pages && i < pool->npages; i++)
		if (pool->pages[i])
			put_page(pool->pages[i]);
	kvfree(pool->pages);
	kvfree(pool->chunk_dma);
}

static void zcard_pool_free_work(struct work_struct *work)
{
	struct zcard_pool *pool = container_of(work, struct zcard_pool, free_work);
	struct zcard *card = pool->card;

	mutex_lock(&card->lock);
	list_del(&pool->node);
	if (pool->mapped)
		zcard_pool_unmap(pool);
	mutex_unlock(&card->lock);
	zcard_pool_free_pages(pool);
	atomic64_sub(pool->size, &card->stats.pinned);
	atomic64_dec(&card->stats.pools);
	kfree(pool);
	zcard_put(card);
}

static void zcard_pool_release(struct kref *ref)
{
	struct zcard_pool *pool = container_of(ref, struct zcard_pool, ref);

	/* The last reference may go in the completion interrupt. */
	queue_work(zcard_wq, &pool->free_work);
}

/**
 * zcard_pool_put() - drop a reference to a pool.
 * @pool: the pool.
 *
 * Context: any; the pool is freed from a work item.
 */
void zcard_pool_put(struct zcard_pool *pool)
{
	kref_put(&pool->ref, zcard_pool_release);
}

static int zcard_pool_alloc_chunk(struct zcard_pool *pool, unsigned int c)
{
	unsigned long first = (unsigned long)c << ZCARD_CHUNK_ORDER;
	unsigned long n = min_t(unsigned long, 1UL << ZCARD_CHUNK_ORDER,
				pool->npages - first);
	struct page *page;
	unsigned long i;
	dma_addr_t dma;

	/*
	 * Charged to the creator's memory cgroup; split_page() gives each page
	 * its share of the charge. __GFP_NORETRY: a cgroup at its limit fails
	 * the pool with ENOMEM instead of calling its OOM killer.
	 */
	page = alloc_pages(GFP_KERNEL_ACCOUNT | __GFP_ZERO | __GFP_NOWARN |
			   __GFP_NORETRY, ZCARD_CHUNK_ORDER);
	if (!page)
		return -ENOMEM;
	/* Ordinary order-0 pages from here on, each with its own refcount. */
	split_page(page, ZCARD_CHUNK_ORDER);
	for (i = 0; i < (1UL << ZCARD_CHUNK_ORDER); i++) {
		if (i < n)
			pool->pages[first + i] = page + i;
		else
			__free_page(page + i);
	}
	if (!ZCARD_PREMAPPED)
		return 0;	/* the ring maps the pages per request */
	dma = dma_map_page(pool->card->dma_dev, page, 0, n << PAGE_SHIFT,
			   DMA_BIDIRECTIONAL);
	if (dma_mapping_error(pool->card->dma_dev, dma))
		return -ENOMEM;
	pool->chunk_dma[c] = dma;
	return 0;
}

/**
 * zcard_pool_try_alloc() - allocate, zero and DMA-map a pool.
 * @card: the card.
 * @size: bytes, a nonzero multiple of PAGE_SIZE within the limits.
 *
 * Context: process; takes card->lock.
 * The pool counts against the card's pinned limit from here until it is
 * freed, after its last reference (file table, exported fd, mapping,
 * request) is gone.
 *
 * Return: the pool with one reference, or an ERR_PTR: -ENOMEM when memory
 * (the caller's memory cgroup included), DMA mappings or the card's pinned
 * limit run out, -ENODEV when the card is gone.
 */
static struct zcard_pool *zcard_pool_try_alloc(struct zcard *card, u64 size)
{
	struct zcard_pool *pool;
	unsigned int c;
	int err;

	if (atomic64_add_return(size, &card->stats.pinned) > card->info.pinned_limit) {
		atomic64_sub(size, &card->stats.pinned);
		/*
		 * Destroyed pools are freed from zcard_wq: a pool destroyed just
		 * before this call may still count. Let those frees finish (they
		 * take card->lock, which is not held here), then check again.
		 */
		flush_workqueue(zcard_wq);
		if (atomic64_add_return(size, &card->stats.pinned) >
		    card->info.pinned_limit) {
			atomic64_sub(size, &card->stats.pinned);
			return ERR_PTR(-ENOMEM);
		}
	}
	err = -ENOMEM;
	pool = kzalloc(sizeof(*pool), GFP_KERNEL);
	if (!pool)
		goto err_unpin;
	kref_init(&pool->ref);
	INIT_WORK(&pool->free_work, zcard_pool_free_work);
	INIT_LIST_HEAD(&pool->node);
	pool->card = card;
	pool->size = size;
	pool->npages = size >> PAGE_SHIFT;
	pool->nchunks = DIV_ROUND_UP(size, ZCARD_CHUNK);
	pool->pages = kvcalloc(pool->npages, sizeof(*pool->pages),
			       GFP_KERNEL_ACCOUNT | __GFP_NORETRY);
	pool->chunk_dma = kvcalloc(pool->nchunks, sizeof(*pool->chunk_dma),
				   GFP_KERNEL_ACCOUNT | __GFP_NORETRY);
	if (!pool->pages || !pool->chunk_dma)
		goto err_free;

	mutex_lock(&card->lock);
	if (card->removed) {
		err = -ENODEV;
		goto err_unlock;
	}
	for (c = 0; c < pool->nchunks; c++) {
		err = zcard_pool_alloc_chunk(pool, c);
		if (err) {
			pool->nchunks = c;	/* unmap only what was mapped */
			zcard_pool_unmap(pool);
			goto err_unlock;
		}
	}
	pool->mapped = ZCARD_PREMAPPED;
	list_add(&pool->node, &card->pools);
	kref_get(&card->ref);
	mutex_unlock(&card->lock);
	atomic64_inc(&card->stats.pools);
	return pool;

err_unlock:
	mutex_unlock(&card->lock);
err_free:
	zcard_pool_free_pages(pool);
	kfree(pool);
err_unpin:
	atomic64_sub(size, &card->stats.pinned);
	return ERR_PTR(err);
}

/**
 * zcard_pool_alloc() - allocate, pin and DMA-map a pool.
 * @card: the card.
 * @size: bytes, a nonzero multiple of PAGE_SIZE within the limits.
 *
 * Context: process; takes card->lock.
 * A pool destroyed just before this call gives back its pages and its DMA
 * mappings (bounce buffers under swiotlb) only when its free work has run:
 * when the first try runs out of either, those frees are let finish and
 * the allocation is tried once more.
 *
 * Return: the pool with one reference, or an ERR_PTR as
 * zcard_pool_try_alloc() gives.
 */
struct zcard_pool *zcard_pool_alloc(struct zcard *card, u64 size)
{
	struct zcard_pool *pool = zcard_pool_try_alloc(card, size);

	if (PTR_ERR_OR_ZERO(pool) != -ENOMEM)
		return pool;
	flush_workqueue(zcard_wq);
	return zcard_pool_try_alloc(card, size);
}

/**
 * zcard_pools_unmap() - drop the DMA mappings of every pool of a card that
 * is going away. The pages stay (mappings keep working as memory).
 * @card: the card, already marked removed.
 *
 * Context: process; takes card->lock.
 */
void zcard_pools_unmap(struct zcard *card)
{
	struct zcard_pool *pool;

	mutex_lock(&card->lock);
	list_for_each_entry(pool, &card->pools, node)
		if (pool->mapped)
			zcard_pool_unmap(pool);
	mutex_unlock(&card->lock);
}

/**
 * zcard_pool_segments() - describe a pool range as DMA segments.
 * @pool: the pool (mapped, where pools are: zcard_compat.h).
 * @off: byte offset, checked by the caller to lie in the pool with @len.
 * @len: bytes (nonzero).
 * @sg: filled with one entry per segment: premapped, or the segment's pages
 *	for the ring to map.
 * @max: entries available in @sg.
 *
 * Return: the number of segments, or -E2BIG when more than @max are needed.
 */
int zcard_pool_segments(struct zcard_pool *pool, u64 off, u32 len,
			struct scatterlist *sg, unsigned int max)
{
	unsigned int n = 0;

	while (len) {
		u64 c = off / ZCARD_CHUNK, in = off % ZCARD_CHUNK;
		u32 part = min_t(u64, len, ZCARD_CHUNK - in);

		if (n == max)
			return -E2BIG;
		if (ZCARD_PREMAPPED) {
			sg_set_page(&sg[n], NULL, part, 0);
			sg_dma_address(&sg[n]) = pool->chunk_dma[c] + in;
			sg_dma_len(&sg[n]) = part;
		} else {
			/* A chunk is contiguous: one entry spans its pages. */
			sg_set_page(&sg[n], pool->pages[off >> PAGE_SHIFT], part,
				    offset_in_page(off));
		}
		n++;
		off += part;
		len -= part;
	}
	return n;
}

/**
 * zcard_pool_sync() - hand a pool range to the card or back to the CPU.
 * @pool: the pool (mapped).
 * @off: byte offset.
 * @len: bytes.
 * @for_cpu: true after the card is done with it, false before.
 *
 * Nothing to do where the ring maps pool pages per request: its map and
 * unmap hand them over.
 */
void zcard_pool_sync(struct zcard_pool *pool, u64 off, u32 len, bool for_cpu)
{
	struct device *dev = pool->card->dma_dev;

	if (!ZCARD_PREMAPPED)
		return;

	while (len) {
		u64 c = off / ZCARD_CHUNK, in = off % ZCARD_CHUNK;
		u32 part = min_t(u64, len, ZCARD_CHUNK - in);

		if (for_cpu)
			dma_sync_single_range_for_cpu(dev, pool->chunk_dma[c], in,
						      part, DMA_BIDIRECTIONAL);
		else
			dma_sync_single_range_for_device(dev, pool->chunk_dma[c],
							 in, part,
							 DMA_BIDIRECTIONAL);
		off += part;
		len -= part;
	}
}

static void zcard_pool_vm_open(struct vm_area_struct *vma)
{
	struct zcard_pool *pool = vma->vm_private_data;

	/* A split or moved mapping: each part holds the pool. */
	kref_get(&pool->ref);
}

static void zcard_pool_vm_close(struct vm_area_struct *vma)
{
	zcard_pool_put(vma->vm_private_data);
}

/*
 * Every page is inserted at mmap time; this puts one back after it was
 * dropped from the page tables (madvise MADV_DONTNEED).
 */
static vm_fault_t zcard_pool_vm_fault(struct vm_fault *vmf)
{
	struct zcard_pool *pool = vmf->vma->vm_private_data;
	struct page *page;

	if (vmf->pgoff >= pool->npages)
		return VM_FAULT_SIGBUS;
	page = pool->pages[vmf->pgoff];
	get_page(page);
	vmf->page = page;
	return 0;
}

static const struct vm_operations_struct zcard_pool_vm_ops = {
	.open = zcard_pool_vm_open,
	.close = zcard_pool_vm_close,
	.fault = zcard_pool_vm_fault,
};

/**
 * zcard_pool_mmap() - map a whole pool.
 * @pool: the pool; the mapping takes a reference of its own.
 * @vma: a shared, non-executable mapping exactly the pool's size (read-only
 *	when the file was opened read-only: the kernel then clears VM_SHARED
 *	and keeps VM_MAYSHARE).
 *
 * Return: 0, -EINVAL for a wrong size or a private mapping, -EPERM for an
 * executable one, or the error of vm_insert_pages().
 */
int zcard_pool_mmap(struct zcard_pool *pool, struct vm_area_struct *vma)
{
	unsigned long num = pool->npages;
	int err;

	if (vma->vm_end - vma->vm_start != pool->size)
		return -EINVAL;
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	vm_flags_mod(vma, VM_DONTCOPY | VM_DONTDUMP | VM_DONTEXPAND, VM_MAYEXEC);
	/*
	 * From here the mapping's page offset is the page's index in the pool
	 * (the fault handler and the parts of a split mapping rely on it).
	 */
	vma->vm_pgoff = 0;
	/* Each inserted page gets a reference of the mapping's own. */
	err = vm_insert_pages(vma, vma->vm_start, pool->pages, &num);
	if (!err && num)
		err = -ENOMEM;
	if (err)
		return err;
	/* Installed last: a failed mmap calls no close. */
	kref_get(&pool->ref);
	vma->vm_private_data = pool;
	vma->vm_ops = &zcard_pool_vm_ops;
	return 0;
}

static int zcard_pool_fd_release(struct inode *inode, struct file *file)
{
	zcard_pool_put(file->private_data);
	return 0;
}

static const struct file_operations zcard_pool_fops = {
	.owner = THIS_MODULE,
	.release = zcard_pool_fd_release,
};

/**
 * zcard_pool_export_file() - a new file that stands for a pool, not yet in
 * any descriptor table.
 * @pool: the pool (the file takes a reference of its own).
 *
 * The caller installs it with fd_install() once nothing can fail any more,
 * or drops it with fput().
 *
 * Return: the file or an ERR_PTR.
 */
struct file *zcard_pool_export_file(struct zcard_pool *pool)
{
	struct file *file;

	kref_get(&pool->ref);
	file = anon_inode_getfile("[zcard-pool]", &zcard_pool_fops, pool, O_RDWR);
	if (IS_ERR(file))
		zcard_pool_put(pool);
	return file;
}

/**
 * zcard_pool_from_fd() - the pool an exported descriptor stands for.
 * @fd: a descriptor.
 *
 * Return: the pool with a new reference, ERR_PTR(-EBADF) when @fd is not
 * open, ERR_PTR(-EINVAL) when it is not an exported pool.
 */
struct zcard_pool *zcard_pool_from_fd(int fd)
{
	struct zcard_pool *pool;
	struct fd f = fdget(fd);

	if (!fd_file(f))
		return ERR_PTR(-EBADF);
	if (fd_file(f)->f_op != &zcard_pool_fops) {
		fdput(f);
		return ERR_PTR(-EINVAL);
	}
	pool = fd_file(f)->private_data;
	kref_get(&pool->ref);
	fdput(f);
	return pool;
}
