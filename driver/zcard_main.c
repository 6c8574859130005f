// SPDX-License-Identifier: GPL-2.0
/*
 * zcard: driver for the zcard DMA card (virtio device id 38), the card of
 * docs/zcard-spec.md. It gives user space page-backed DMA pools and
 * io_uring-style rings on /dev/zcardN (zcard_file.c, zcard_pool.c) and
 * sends the card their work (zcard_req.c); this file is the card's
 * lifetime: probe and config validation, reset, suspend and resume,
 * removal, and the sysfs counters.
 */

#include <linux/debugfs.h>
#include <linux/dma-mapping.h>
#include <linux/idr.h>
#include <linux/module.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/virtio_config.h>
#include <linux/virtio_ring.h>

#include "zcard_internal.h"

static unsigned int pinned_limit_mb = 256;
module_param(pinned_limit_mb, uint, 0444);
MODULE_PARM_DESC(pinned_limit_mb, "MiB all pools of one card may pin together (default 256)");

static DEFINE_IDA(zcard_ida);

/*
 * Frees contexts and pools; drained before the module goes away. Unbound:
 * the frees need no particular CPU (and newer kernels, 7.3.4 among them,
 * warn about a workqueue that names neither WQ_UNBOUND nor WQ_PERCPU).
 */
struct workqueue_struct *zcard_wq;

/* /sys/kernel/debug/zcard: a directory per card (fault injection). */
static struct dentry *zcard_debugfs;

static void zcard_free(struct kref *ref)
{
	struct zcard *card = container_of(ref, struct zcard, ref);

	/* A completion or config change during removal may have queued a reset. */
	cancel_work_sync(&card->config_work);
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

/*
 * Stops the card and fails every request still on it: the device is reset
 * first, so nothing it does can race with the queues being emptied.
 * Called with reset_sem held for writing.
 */
static void zcard_stop(struct zcard *card, int err)
{
	struct virtqueue *vq;
	unsigned int i;

	WRITE_ONCE(card->stopped, true);
	virtio_reset_device(card->vdev);
	for (i = 0; i < card->info.num_queues; i++) {
		struct zcard_queue *q = &card->queues[i];

		if (q->vq)	/* else already stopped (a reset that failed) */
			zcard_queue_cancel(q, err);
	}
	/*
	 * The queues are emptied and q->vq cleared, but the virtqueues and
	 * their interrupt live until del_vqs(): fault injection runs their
	 * callback here, as an interrupt arriving late would.
	 */
	if (card->late_interrupt) {
		card->late_interrupt--;
		dev_warn(&card->vdev->dev, "late interrupt on purpose (debugfs late_interrupt)\n");
		virtio_device_for_each_vq(card->vdev, vq)
			zcard_vq_done(vq);
	}
	card->vdev->config->del_vqs(card->vdev);
}

static int zcard_find_vqs(struct zcard *card)
{
	unsigned int i, n = card->info.num_queues;
	struct virtqueue_info *info;
	struct virtqueue **vqs;
	int err = -ENOMEM;

	info = kcalloc(n, sizeof(*info), GFP_KERNEL);
	vqs = kcalloc(n, sizeof(*vqs), GFP_KERNEL);
	if (!info || !vqs)
		goto out;
	for (i = 0; i < n; i++) {
		info[i].name = card->queues[i].name;
		info[i].callback = zcard_vq_done;
	}
	err = virtio_find_vqs(card->vdev, n, vqs, info, NULL);
	if (err) {
		dev_err(&card->vdev->dev, "cannot set up the card's %u queues (%d)\n", n, err);
		goto out;
	}
	for (i = 0; i < n; i++) {
		/* Where the kernel lets it: zcard_compat.h. */
		err = zcard_vq_set_premapped(vqs[i]);
		if (err) {
			dev_err(&card->vdev->dev, "queue %u cannot take premapped DMA (%d)\n",
				i, err);
			card->vdev->config->del_vqs(card->vdev);
			goto out;
		}
	}
	for (i = 0; i < n; i++)
		card->queues[i].vq = vqs[i];
	WRITE_ONCE(card->stopped, false);
out:
	kfree(vqs);
	kfree(info);
	return err;
}

/*
 * Marks the card gone, so that every operation fails with -ENODEV, and
 * wakes every waiter and poller of its files, which then see EPOLLERR |
 * EPOLLHUP even with nothing in flight.
 */
static void zcard_mark_removed(struct zcard *card)
{
	struct zcard_ctx *ctx;

	mutex_lock(&card->lock);
	WRITE_ONCE(card->removed, true);
	list_for_each_entry(ctx, &card->ctxs, node)
		wake_up_all(&ctx->wait);
	mutex_unlock(&card->lock);
}

static void zcard_reset_work(struct work_struct *work)
{
	struct zcard *card = container_of(work, struct zcard, reset_work);
	int err;

	down_write(&card->reset_sem);
	/* A card frozen for sleep is restarted by its restore, not here. */
	if (card->removed || card->suspended)
		goto out;
	atomic64_inc(&card->stats.resets);
	WRITE_ONCE(card->reset_owner, current);
	err = virtio_device_freeze(card->vdev);
	if (!err)
		err = virtio_device_restore(card->vdev);
	WRITE_ONCE(card->reset_owner, NULL);
	if (err) {
		dev_err(&card->vdev->dev, "reset failed (%d): the card is unusable\n", err);
		zcard_mark_removed(card);
	} else {
		dev_info(&card->vdev->dev, "card reset\n");
	}
out:
	up_write(&card->reset_sem);
}

/* Whether the caller is zcard_reset_work(), which holds reset_sem. */
static bool zcard_in_reset(struct zcard *card)
{
	return READ_ONCE(card->reset_owner) == current;
}

/*
 * virtio_device_freeze() calls this for a reset (from zcard_reset_work(),
 * which holds reset_sem) and for system sleep. For sleep, taking reset_sem
 * waits for a reset in progress, and once the card is marked suspended no
 * reset starts until zcard_restore(); the reset work and the watchdog are
 * then stopped outside reset_sem, which both take.
 */
static int zcard_freeze(struct virtio_device *vdev)
{
	struct zcard *card = vdev->priv;

	if (zcard_in_reset(card)) {
		zcard_stop(card, -ECANCELED);
		return 0;
	}
	down_write(&card->reset_sem);
	card->suspended = true;
	zcard_stop(card, -ECANCELED);
	up_write(&card->reset_sem);
	cancel_work_sync(&card->config_work);
	cancel_work_sync(&card->reset_work);
	cancel_delayed_work_sync(&card->watchdog);
	return 0;
}

/* virtio_device_restore() calls this after a reset and on resume. */
static int zcard_restore(struct virtio_device *vdev)
{
	struct zcard *card = vdev->priv;
	bool in_reset = zcard_in_reset(card);
	int err;

	if (!in_reset)
		down_write(&card->reset_sem);
	if (card->fail_restarts) {
		card->fail_restarts--;
		dev_warn(&vdev->dev, "restart failed on purpose (debugfs fail_restarts)\n");
		err = -EIO;
	} else {
		err = zcard_find_vqs(card);
	}
	if (!err)
		virtio_device_ready(vdev);
	if (!in_reset) {
		card->suspended = false;
		if (err) {
			dev_err(&vdev->dev, "resume failed (%d): the card is unusable\n", err);
			zcard_mark_removed(card);
		}
		up_write(&card->reset_sem);
	}
	return err;
}

#ifdef CONFIG_PM_SLEEP
/*
 * debugfs zcardN/pm_cycle (fault injection): a write puts the card through
 * what system sleep does to it, virtio_device_freeze() and then
 * virtio_device_restore(), from the writer's task as from the PM core's,
 * without suspending the machine (whose other devices may not come back).
 * A reset in progress finishes before the freeze stops the card, and none
 * runs between the freeze and the restore.
 */
static ssize_t zcard_pm_cycle_write(struct file *file, const char __user *ubuf,
				    size_t count, loff_t *ppos)
{
	struct zcard *card = file->private_data;
	int err;

	if (READ_ONCE(card->removed))
		return -ENODEV;
	err = virtio_device_freeze(card->vdev);
	if (!err)
		err = virtio_device_restore(card->vdev);
	return err ? err : count;
}

static const struct file_operations zcard_pm_cycle_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.write = zcard_pm_cycle_write,
	.llseek = noop_llseek,
};

static void zcard_debugfs_pm(struct zcard *card)
{
	debugfs_create_file("pm_cycle", 0200, card->debugfs, card, &zcard_pm_cycle_fops);
}
#else
static void zcard_debugfs_pm(struct zcard *card)
{
}
#endif

/*
 * The card's config changed: read device_state and reset the card if it
 * asks. The config is read here, in process context, because reading it may
 * sleep and zcard_config_changed() runs in the interrupt handler.
 */
static void zcard_config_work(struct work_struct *work)
{
	struct zcard *card = container_of(work, struct zcard, config_work);
	u32 state;

	virtio_cread_le(card->vdev, struct zcard_config, device_state, &state);
	/*
	 * A reset in progress (or a stop) already handles it: the card also
	 * announces a NEEDS_RESET that a request's status has reported.
	 */
	if ((state & ZCARD_STATE_NEEDS_RESET) && !READ_ONCE(card->stopped))
		schedule_work(&card->reset_work);
}

static void zcard_config_changed(struct virtio_device *vdev)
{
	struct zcard *card = vdev->priv;

	schedule_work(&card->config_work);
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

/* The transport features the driver cannot work without. */
static int zcard_check_features(struct virtio_device *vdev)
{
	/*
	 * Pool memory reaches the card through the DMA API (mapped once by
	 * the driver, or per request by the ring: zcard_compat.h); without
	 * ACCESS_PLATFORM the ring bypasses the DMA API and has no DMA device
	 * to map against.
	 */
	if (!virtio_has_feature(vdev, VIRTIO_F_ACCESS_PLATFORM)) {
		dev_err(&vdev->dev, "the card must offer VIRTIO_F_ACCESS_PLATFORM (the driver maps pool memory with the DMA API)\n");
		return -ENODEV;
	}
	/* A request needs up to 2 * max_segments + 2 descriptors: one indirect. */
	if (!virtio_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC)) {
		dev_err(&vdev->dev, "the card must offer VIRTIO_RING_F_INDIRECT_DESC\n");
		return -ENODEV;
	}
	return 0;
}

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
	INIT_WORK(&card->config_work, zcard_config_work);
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
		snprintf(q->name, sizeof(q->name), "req.%u", i);
		spin_lock_init(&q->lock);
		INIT_LIST_HEAD(&q->free);
		INIT_LIST_HEAD(&q->inflight);
	}
	err = zcard_check_features(vdev);
	if (err)
		goto err_put;
	err = zcard_find_vqs(card);
	if (err)
		goto err_put;
	card->dma_dev = virtqueue_dma_dev(card->queues[0].vq);
	if (!card->dma_dev) {
		dev_err(&vdev->dev, "the card's queues have no DMA device\n");
		err = -ENODEV;
		goto err_vqs;
	}
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
	card->debugfs = debugfs_create_dir(card->name, zcard_debugfs);
	debugfs_create_u32("fail_restarts", 0600, card->debugfs, &card->fail_restarts);
	debugfs_create_u32("late_interrupt", 0600, card->debugfs, &card->late_interrupt);
	zcard_debugfs_pm(card);
	dev_info(&vdev->dev, "%s: %u queues, %u segments, storage %llu bytes, max op %u bytes, pools mapped %s\n",
		 card->name, card->info.num_queues, card->info.max_segments,
		 card->info.storage_capacity, card->info.max_op_bytes,
		 ZCARD_PREMAPPED ? "once" : "per request");
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

	misc_deregister(&card->misc);
	debugfs_remove_recursive(card->debugfs);
	mutex_lock(&card->lock);
	WRITE_ONCE(card->removed, true);
	mutex_unlock(&card->lock);
	cancel_delayed_work_sync(&card->watchdog);
	cancel_work_sync(&card->config_work);
	cancel_work_sync(&card->reset_work);

	down_write(&card->reset_sem);
	zcard_stop(card, -ENODEV);
	up_write(&card->reset_sem);
	cancel_delayed_work_sync(&card->watchdog);

	/* Waiters and pollers with nothing in flight learn of it here. */
	zcard_mark_removed(card);
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

	zcard_wq = alloc_workqueue("zcard", WQ_UNBOUND, 0);
	if (!zcard_wq)
		return -ENOMEM;
	zcard_debugfs = debugfs_create_dir(KBUILD_MODNAME, NULL);
	err = register_virtio_driver(&zcard_driver);
	if (err) {
		debugfs_remove_recursive(zcard_debugfs);
		destroy_workqueue(zcard_wq);
	}
	return err;
}
module_init(zcard_init);

static void __exit zcard_exit(void)
{
	unregister_virtio_driver(&zcard_driver);
	debugfs_remove_recursive(zcard_debugfs);
	/* Frees of contexts and pools closed last run to completion first. */
	destroy_workqueue(zcard_wq);
}
module_exit(zcard_exit);

MODULE_DESCRIPTION("zcard DMA card: page-backed DMA pools and user rings");
MODULE_LICENSE("GPL");
