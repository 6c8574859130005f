//! zcard.ko's probe against what the card offers. In every boot, the card's
//! negotiated virtio features (sysfs) and its config space (as the card
//! reports it on its control port) say whether the driver must drive the
//! card or refuse it, and a refusal must name its reason in the kernel log;
//! an oops at probe kills the insmod of the guest's setup, which fails the
//! boot.
//! `make qemu-test` boots cards that withhold feature bits or report limits
//! the driver cannot use (ZCOPY_CARD_ARGS, see ci/qemu-test.sh) and runs
//! this test on each, besides the ordinary card of the main boot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use zcard_virtio::{ConfigSpace, VIRTIO_ID_ZCARD, ZCARD_MAGIC, ZCARD_VERSION};
use zcopy::card::{Buf, Card, Sqe};
use zcopy_vm_tests::{read_attr, zcard_control};

/// Feature bits (virtio 1.x) the driver needs, and how its refusal names them.
const REQUIRED: [(u32, &str); 2] = [
    (33, "the card must offer VIRTIO_F_ACCESS_PLATFORM"),
    (28, "the card must offer VIRTIO_RING_F_INDIRECT_DESC"),
];

/// The card's virtio device: /sys/bus/virtio/devices/virtioN.
fn virtio_device() -> PathBuf {
    let id = format!("{VIRTIO_ID_ZCARD:#06x}");
    std::fs::read_dir("/sys/bus/virtio/devices")
        .expect("/sys/bus/virtio/devices")
        .map(|e| e.expect("virtio device entry").path())
        .find(|d| read_attr(d.join("device")).is_ok_and(|v| v == id))
        .unwrap_or_else(|| panic!("no virtio device {id}: is the card attached?"))
}

/// Negotiated features: sysfs prints bit n as character n.
fn features(dev: &Path) -> u64 {
    let bits = read_attr(dev.join("features")).expect("features");
    bits.bytes()
        .take(64)
        .enumerate()
        .filter(|&(_, b)| b == b'1')
        .fold(0, |f, (i, _)| f | 1 << i)
}

/// The config space as the card reports it on its control port.
fn config_space() -> ConfigSpace {
    let r = zcard_control(r#"{"cmd":"config"}"#);
    assert_eq!(r["ok"], true, "config: {r}");
    let c = &r["config"];
    let field = |name: &str| {
        c[name]
            .as_u64()
            .unwrap_or_else(|| panic!("config field {name}: {c}"))
    };
    let narrow = |name: &str| u32::try_from(field(name)).expect("a 32-bit field");
    ConfigSpace {
        magic: narrow("magic"),
        version: narrow("version"),
        num_queues: u16::try_from(field("num_queues")).expect("a 16-bit field"),
        max_segments: u16::try_from(field("max_segments")).expect("a 16-bit field"),
        max_request_bytes: narrow("max_request_bytes"),
        storage_capacity: field("storage_capacity"),
        block_size: narrow("block_size"),
        supported_ops: narrow("supported_ops"),
        device_state: narrow("device_state"),
        max_queue_size: narrow("max_queue_size"),
        reserved: [0; 6],
    }
}

/// What the driver must do with a card offering `features` and `c`: drive
/// it, or refuse it with a message containing the text returned.
fn verdict(features: u64, c: &ConfigSpace) -> Result<(), &'static str> {
    if c.magic != ZCARD_MAGIC || c.version >> 16 != ZCARD_VERSION >> 16 {
        return Err("not a zcard 1.x");
    }
    if !(1..=64).contains(&c.num_queues)
        || !(2..=256).contains(&c.max_segments)
        || !c.block_size.is_power_of_two()
        || c.storage_capacity % u64::from(c.block_size) != 0
    {
        return Err("config out of range");
    }
    match REQUIRED.iter().find(|(bit, _)| features & 1 << bit == 0) {
        Some((_, why)) => Err(why),
        None => Ok(()),
    }
}

fn kernel_log() -> String {
    let out = Command::new("dmesg").output().expect("dmesg");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// N of the /dev/zcardN the driver registered for `dev`, if it did.
fn misc_index(dev: &Path) -> Option<u32> {
    std::fs::read_dir(dev.join("misc"))
        .ok()?
        .filter_map(|e| e.ok())
        .find_map(|e| e.file_name().to_str()?.strip_prefix("zcard")?.parse().ok())
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn the_driver_drives_the_card_or_refuses_it_with_a_reason() {
    let dev = virtio_device();
    let name = dev.file_name().unwrap().to_str().unwrap().to_string();
    let features = features(&dev);
    let config = config_space();
    let bound = std::fs::read_link(dev.join("driver"))
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
    let expect = verdict(features, &config);
    println!("{name}: features {features:#x}, {config:?}, driver {bound:?}, expected {expect:?}");
    match expect {
        Ok(()) => {
            assert_eq!(
                bound.as_deref(),
                Some("zcard"),
                "a usable card is not driven"
            );
            let n = misc_index(&dev).expect("a /dev/zcardN for the card");
            let card = Card::open_index(n).unwrap();
            let i = card.info();
            assert_eq!(
                (
                    i.num_queues,
                    i.max_segments,
                    i.block_size,
                    i.storage_capacity
                ),
                (
                    config.num_queues,
                    config.max_segments,
                    config.block_size,
                    config.storage_capacity
                ),
                "INFO disagrees with the card's config space"
            );
            // It works: a NOP and a COPY between two pools.
            let a = card.create_pool(1 << 16).unwrap();
            let b = card.create_pool(1 << 16).unwrap();
            let (ma, mb) = (a.map().unwrap(), b.map().unwrap());
            let data: Vec<u8> = (0..4096u32).map(|i| (i * 13) as u8).collect();
            ma.write(100, &data).unwrap();
            let mut rings = card.setup_rings(8).unwrap();
            let sqes = [
                Sqe::nop().user_data(1),
                Sqe::copy(Buf::new(&a, 100), Buf::new(&b, 7), 4096).user_data(2),
            ];
            let cqes = rings.run(&sqes, Duration::from_secs(30)).unwrap();
            let mut results: Vec<(u64, i32)> =
                cqes.iter().map(|c| (c.user_data, c.result)).collect();
            results.sort();
            assert_eq!(results, [(1, 0), (2, 4096)]);
            let mut got = vec![0u8; 4096];
            mb.read(7, &mut got).unwrap();
            assert!(got == data, "COPY moved the wrong bytes");
        }
        Err(why) => {
            assert_eq!(bound, None, "a card the driver cannot use is bound");
            assert_eq!(misc_index(&dev), None, "a refused card has a /dev/zcardN");
            let log = kernel_log();
            assert!(
                log.lines().any(|l| l.contains(&name) && l.contains(why)),
                "the kernel log does not say why {name} was refused ({why:?})"
            );
        }
    }
}

/// The oracle itself, on the host: each reason it knows, in the driver's order.
#[test]
fn the_verdict_names_the_first_reason() {
    let good = ConfigSpace {
        magic: ZCARD_MAGIC,
        version: ZCARD_VERSION,
        num_queues: 2,
        max_segments: 16,
        block_size: 512,
        storage_capacity: 1 << 20,
        ..Default::default()
    };
    let all = 1u64 << 33 | 1 << 28;
    assert_eq!(verdict(all, &good), Ok(()));
    assert_eq!(verdict(1 << 28, &good), Err(REQUIRED[0].1));
    assert_eq!(verdict(1 << 33, &good), Err(REQUIRED[1].1));
    let one_segment = ConfigSpace {
        max_segments: 1,
        ..good
    };
    assert_eq!(verdict(0, &one_segment), Err("config out of range"));
    let wrong = ConfigSpace { magic: 0, ..good };
    assert_eq!(verdict(all, &wrong), Err("not a zcard 1.x"));
}
