//! The safe RDMA layer on Soft-RoCE in the guest: devices, ports and GIDs,
//! memory registration of ordinary memory, shm segments and zcard pools,
//! (tests/channel_rdma.rs has the channel). Guest only (the rxe pair
//! zrxe0/zrxe1 on veth zcv0/zcv1): make qemu-test.

use memmap2::MmapMut;
use zcopy::rdma;
use zcopy::rdma::verbs::{Access, Pd};
use zcopy_vm_tests::channel::{rdma_addrs, rdma_resources};

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn devices_ports_and_the_ipv4_gid() {
    let devs = rdma::devices().unwrap();
    let (a, b) = rdma_addrs();
    for (name, ip) in [("zrxe0", a), ("zrxe1", b)] {
        let d = devs
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("{name} in {devs:?}"));
        let port = &d.ports[0];
        assert_eq!(port.state, "ACTIVE");
        assert_eq!(port.active_mtu, 4096, "MTU 9000 gives IB MTU 4096");
        assert_eq!(
            port.ipv4_gid(),
            Some((1, ip)),
            "GID index 1 is the IPv4-mapped one"
        );
        assert!(d.max_mr_size > 1 << 30);
    }
    assert!(matches!(
        Pd::open("nosuchdev"),
        Err(rdma::Error::NoDevice(_))
    ));
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn ordinary_memory_shm_segments_and_card_pools_register() {
    let pd = Pd::open("zrxe0").unwrap();
    let before = rdma_resources("mr");
    let anon = pd
        .register(MmapMut::map_anon(1 << 20).unwrap(), Access::Local)
        .unwrap();
    assert_eq!(anon.len(), 1 << 20);
    assert_ne!(anon.lkey(), 0);
    // A shared-memory segment: a memfd mapping.
    let fd = nix::sys::memfd::memfd_create(c"zcopy-rdma-test", nix::sys::memfd::MFdFlags::empty())
        .unwrap();
    let file = std::fs::File::from(fd);
    file.set_len(256 << 10).unwrap();
    // SAFETY: the memfd is private to this test and not truncated.
    let seg = unsafe { MmapMut::map_mut(&file) }.unwrap();
    let shm = pd.register(seg, Access::RemoteRead).unwrap();
    assert_eq!(shm.len(), 256 << 10);
    // A zcard pool mapping: struct-page backed, so it registers.
    let card = zcopy::card::Card::open_index(0).expect("/dev/zcard0");
    let pool = card.create_pool(1 << 20).unwrap();
    let mr = pd
        .register(pool.map().unwrap(), Access::RemoteWrite)
        .unwrap();
    assert_eq!(mr.len(), 1 << 20);
    assert_eq!(rdma_resources("mr"), before + 3);
    drop((anon, shm, mr));
    assert_eq!(rdma_resources("mr"), before);
}
