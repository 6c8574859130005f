//! The platform contract, checked from inside the guest: the pinned kernel,
//! the vCPUs, no network device to the outside, the project shared
//! read-write, Soft-RoCE up on the veth pair, and an untainted kernel.

use std::fs;
use std::path::Path;
use zcopy_vm_tests::{ipv4_addrs, ipv4_of_gid, pinned_kernel, rdma_ports, read_attr, repo_root};

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn guest_runs_the_pinned_kernel() {
    let running = read_attr("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(running, pinned_kernel().unwrap());
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn guest_has_two_vcpus() {
    let online = read_attr("/sys/devices/system/cpu/online").unwrap();
    assert_eq!(online, "0-1", "guest CPUs online: {online}");
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn guest_has_no_network_device_to_the_outside() {
    // Every netdev is virtual (no `device` link to a bus): lo and veths only.
    for entry in fs::read_dir("/sys/class/net").unwrap() {
        let path = entry.unwrap().path();
        assert!(
            !path.join("device").exists(),
            "{} is backed by a device: the guest must run with -net none",
            path.display()
        );
    }
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn project_directory_is_shared_read_write() {
    let dir = repo_root().join("target/qemu-test");
    fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("guest-write-{}", std::process::id()));
    let payload = format!("written in the guest by pid {}", std::process::id());
    fs::write(&file, &payload).unwrap();
    assert_eq!(fs::read_to_string(&file).unwrap(), payload);
    fs::remove_file(&file).unwrap();
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn soft_roce_pair_is_up_on_the_veth() {
    let ports = rdma_ports().unwrap();
    let on_veth: Vec<_> = ports
        .iter()
        .filter(|p| matches!(p.netdev.as_deref(), Some("zcv0" | "zcv1")))
        .collect();
    assert_eq!(
        on_veth.len(),
        2,
        "expected rxe devices on zcv0 and zcv1: {ports:#?}"
    );
    for port in on_veth {
        let netdev = port.netdev.as_deref().unwrap();
        assert_eq!(port.state, "4: ACTIVE", "{}", port.device);
        assert!(
            Path::new("/sys/class/infiniband")
                .join(&port.device)
                .join("ports/1/hw_counters")
                .exists(),
            "{} is not an rxe device",
            port.device
        );
        // GID index 1 is the IPv4-mapped GID of the netdev's address.
        let (_, gid, ty) = port
            .gids
            .iter()
            .find(|(i, _, _)| *i == 1)
            .unwrap_or_else(|| panic!("{} has no GID 1: {:?}", port.device, port.gids));
        assert_eq!(ty, "RoCE v2");
        let ip = ipv4_of_gid(gid).unwrap_or_else(|| panic!("GID 1 {gid} is not IPv4-mapped"));
        assert_eq!(ipv4_addrs(netdev).unwrap(), vec![ip]);
        // MTU 9000 on the veth gives the largest IB MTU.
        if read_attr(format!("/sys/class/net/{netdev}/mtu")).unwrap() == "9000" {
            assert_eq!(port.active_mtu.as_deref(), Some("4096"), "{}", port.device);
        }
    }
}

#[test]
#[ignore = "runs in the zcopy guest: make qemu-test"]
fn kernel_is_not_tainted_by_a_warning() {
    // Bits allowed: 12 (O, out-of-tree module) and 13 (E, unsigned module),
    // which loading zcard.ko sets. Anything else (W = 9 for a WARN, D = 7
    // for an oops, ...) means the kernel is in trouble.
    let taint: u64 = read_attr("/proc/sys/kernel/tainted")
        .unwrap()
        .parse()
        .unwrap();
    let allowed = (1 << 12) | (1 << 13);
    assert_eq!(taint & !allowed, 0, "kernel taint flags {taint:#x}");
}
