//! The zcard user ABI, mirrored by hand from `driver/include/uapi/zcard.h`
//! (the single source of truth). The tests below pin every size and offset,
//! and compile a C program against the header to check that it agrees.

#![allow(missing_docs)] // Each item is documented in the C header, field by field.

/// `ZCARD_ABI_VERSION`: major << 16 | minor.
pub const ZCARD_ABI_VERSION: u32 = 1 << 16;
/// `ZCARD_EXPORT_CLOEXEC`.
pub const ZCARD_EXPORT_CLOEXEC: u32 = 1 << 0;
/// `ZCARD_OFF_RINGS`: mmap offset of the ring area.
pub const ZCARD_OFF_RINGS: u64 = 0;
/// `ZCARD_IOC_MAGIC`.
pub const ZCARD_IOC_MAGIC: u8 = 0xCD;

/// `enum zcard_op`.
pub const ZCARD_OP_NOP: u8 = 0;
pub const ZCARD_OP_COPY: u8 = 1;
pub const ZCARD_OP_FILL: u8 = 2;
pub const ZCARD_OP_CRC32C: u8 = 3;
pub const ZCARD_OP_STORAGE_READ: u8 = 4;
pub const ZCARD_OP_STORAGE_WRITE: u8 = 5;
pub const ZCARD_OP_FLUSH: u8 = 6;
pub const ZCARD_OP_COUNT: u8 = 7;

/// `struct zcard_info`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZcardInfo {
    pub size: u32,
    pub abi_version: u32,
    pub features: u64,
    pub card_version: u32,
    pub instance: u32,
    pub num_queues: u16,
    pub max_segments: u16,
    pub supported_ops: u32,
    pub block_size: u32,
    pub max_op_bytes: u32,
    pub storage_capacity: u64,
    pub max_pool_bytes: u64,
    pub pool_align: u32,
    pub max_ring_entries: u32,
    pub pinned_limit: u64,
    pub reserved: [u64; 7],
}

/// `struct zcard_pool_create`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ZcardPoolCreate {
    pub size: u64,
    pub flags: u32,
    pub pool_id: u32,
    pub mmap_offset: u64,
    pub reserved: [u64; 4],
}

/// `struct zcard_pool_export`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ZcardPoolExport {
    pub pool_id: u32,
    pub flags: u32,
    pub fd: i32,
    pub reserved0: u32,
    pub reserved: [u64; 2],
}

/// `struct zcard_pool_import`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ZcardPoolImport {
    pub fd: i32,
    pub flags: u32,
    pub pool_id: u32,
    pub reserved0: u32,
    pub size: u64,
    pub mmap_offset: u64,
    pub reserved: [u64; 2],
}

/// `struct zcard_ring_offsets`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZcardRingOffsets {
    pub sq_tail: u32,
    pub sq_head: u32,
    pub cq_tail: u32,
    pub cq_head: u32,
    pub cq_overflow: u32,
    pub reserved0: u32,
    pub sqes: u32,
    pub cqes: u32,
    pub reserved: [u64; 2],
}

/// `struct zcard_ring_setup`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ZcardRingSetup {
    pub sq_entries: u32,
    pub cq_entries: u32,
    pub flags: u32,
    pub size: u32,
    pub ring_size: u64,
    pub off: ZcardRingOffsets,
    pub reserved: [u64; 4],
}

/// `struct zcard_sqe`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZcardSqe {
    pub opcode: u8,
    pub flags: u8,
    pub reserved0: u16,
    pub length: u32,
    pub src_pool: u32,
    pub dst_pool: u32,
    pub src_offset: u64,
    pub dst_offset: u64,
    pub storage_offset: u64,
    pub pattern: u64,
    pub user_data: u64,
    pub reserved1: u64,
}

/// `struct zcard_cqe`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZcardCqe {
    pub user_data: u64,
    pub result: i32,
    pub flags: u32,
    pub value: u64,
    pub reserved: u64,
}

/// `struct zcard_enter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ZcardEnter {
    pub to_submit: u32,
    pub min_complete: u32,
    pub timeout_ns: u64,
    pub flags: u32,
    pub submitted: u32,
    pub reserved: [u64; 2],
}

/// `struct zcard_eventfd`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct ZcardEventfd {
    pub fd: i32,
    pub reserved0: u32,
}

nix::ioctl_read!(zcard_ioc_info, ZCARD_IOC_MAGIC, 0x00, ZcardInfo);
nix::ioctl_readwrite!(
    zcard_ioc_pool_create,
    ZCARD_IOC_MAGIC,
    0x01,
    ZcardPoolCreate
);
nix::ioctl_write_ptr!(zcard_ioc_pool_destroy, ZCARD_IOC_MAGIC, 0x02, u32);
nix::ioctl_readwrite!(
    zcard_ioc_pool_export,
    ZCARD_IOC_MAGIC,
    0x03,
    ZcardPoolExport
);
nix::ioctl_readwrite!(
    zcard_ioc_pool_import,
    ZCARD_IOC_MAGIC,
    0x04,
    ZcardPoolImport
);
nix::ioctl_readwrite!(zcard_ioc_ring_setup, ZCARD_IOC_MAGIC, 0x05, ZcardRingSetup);
nix::ioctl_readwrite!(zcard_ioc_enter, ZCARD_IOC_MAGIC, 0x06, ZcardEnter);
nix::ioctl_write_ptr!(zcard_ioc_set_eventfd, ZCARD_IOC_MAGIC, 0x07, ZcardEventfd);

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::path::Path;
    use std::process::Command;

    /// (name, Rust value) of every size and offset the C header pins.
    fn layout() -> Vec<(&'static str, usize)> {
        vec![
            ("sizeof(struct zcard_info)", size_of::<ZcardInfo>()),
            (
                "offsetof(struct zcard_info, num_queues)",
                offset_of!(ZcardInfo, num_queues),
            ),
            (
                "offsetof(struct zcard_info, storage_capacity)",
                offset_of!(ZcardInfo, storage_capacity),
            ),
            (
                "offsetof(struct zcard_info, pinned_limit)",
                offset_of!(ZcardInfo, pinned_limit),
            ),
            (
                "sizeof(struct zcard_pool_create)",
                size_of::<ZcardPoolCreate>(),
            ),
            (
                "offsetof(struct zcard_pool_create, mmap_offset)",
                offset_of!(ZcardPoolCreate, mmap_offset),
            ),
            (
                "sizeof(struct zcard_pool_export)",
                size_of::<ZcardPoolExport>(),
            ),
            (
                "offsetof(struct zcard_pool_export, fd)",
                offset_of!(ZcardPoolExport, fd),
            ),
            (
                "sizeof(struct zcard_pool_import)",
                size_of::<ZcardPoolImport>(),
            ),
            (
                "offsetof(struct zcard_pool_import, size)",
                offset_of!(ZcardPoolImport, size),
            ),
            (
                "offsetof(struct zcard_pool_import, mmap_offset)",
                offset_of!(ZcardPoolImport, mmap_offset),
            ),
            (
                "sizeof(struct zcard_ring_offsets)",
                size_of::<ZcardRingOffsets>(),
            ),
            (
                "offsetof(struct zcard_ring_offsets, cqes)",
                offset_of!(ZcardRingOffsets, cqes),
            ),
            (
                "sizeof(struct zcard_ring_setup)",
                size_of::<ZcardRingSetup>(),
            ),
            (
                "offsetof(struct zcard_ring_setup, ring_size)",
                offset_of!(ZcardRingSetup, ring_size),
            ),
            (
                "offsetof(struct zcard_ring_setup, off)",
                offset_of!(ZcardRingSetup, off),
            ),
            ("sizeof(struct zcard_sqe)", size_of::<ZcardSqe>()),
            (
                "offsetof(struct zcard_sqe, length)",
                offset_of!(ZcardSqe, length),
            ),
            (
                "offsetof(struct zcard_sqe, src_pool)",
                offset_of!(ZcardSqe, src_pool),
            ),
            (
                "offsetof(struct zcard_sqe, dst_pool)",
                offset_of!(ZcardSqe, dst_pool),
            ),
            (
                "offsetof(struct zcard_sqe, src_offset)",
                offset_of!(ZcardSqe, src_offset),
            ),
            (
                "offsetof(struct zcard_sqe, dst_offset)",
                offset_of!(ZcardSqe, dst_offset),
            ),
            (
                "offsetof(struct zcard_sqe, storage_offset)",
                offset_of!(ZcardSqe, storage_offset),
            ),
            (
                "offsetof(struct zcard_sqe, pattern)",
                offset_of!(ZcardSqe, pattern),
            ),
            (
                "offsetof(struct zcard_sqe, user_data)",
                offset_of!(ZcardSqe, user_data),
            ),
            (
                "offsetof(struct zcard_sqe, reserved1)",
                offset_of!(ZcardSqe, reserved1),
            ),
            ("sizeof(struct zcard_cqe)", size_of::<ZcardCqe>()),
            (
                "offsetof(struct zcard_cqe, result)",
                offset_of!(ZcardCqe, result),
            ),
            (
                "offsetof(struct zcard_cqe, value)",
                offset_of!(ZcardCqe, value),
            ),
            ("sizeof(struct zcard_enter)", size_of::<ZcardEnter>()),
            (
                "offsetof(struct zcard_enter, timeout_ns)",
                offset_of!(ZcardEnter, timeout_ns),
            ),
            (
                "offsetof(struct zcard_enter, submitted)",
                offset_of!(ZcardEnter, submitted),
            ),
            ("sizeof(struct zcard_eventfd)", size_of::<ZcardEventfd>()),
            ("ZCARD_IOC_INFO", zcard_ioc_info_nr() as usize),
            (
                "ZCARD_IOC_POOL_CREATE",
                nix::request_code_readwrite!(ZCARD_IOC_MAGIC, 0x01, size_of::<ZcardPoolCreate>())
                    as usize,
            ),
            (
                "ZCARD_IOC_POOL_DESTROY",
                nix::request_code_write!(ZCARD_IOC_MAGIC, 0x02, size_of::<u32>()) as usize,
            ),
            (
                "ZCARD_IOC_ENTER",
                nix::request_code_readwrite!(ZCARD_IOC_MAGIC, 0x06, size_of::<ZcardEnter>())
                    as usize,
            ),
            ("ZCARD_ABI_VERSION", ZCARD_ABI_VERSION as usize),
            ("ZCARD_OP_FLUSH", usize::from(ZCARD_OP_FLUSH)),
            ("ZCARD_OP_COUNT", usize::from(ZCARD_OP_COUNT)),
        ]
    }

    fn zcard_ioc_info_nr() -> u64 {
        nix::request_code_read!(ZCARD_IOC_MAGIC, 0x00, size_of::<ZcardInfo>()) as u64
    }

    #[test]
    fn sizes_are_pinned() {
        assert_eq!(size_of::<ZcardInfo>(), 128);
        assert_eq!(size_of::<ZcardPoolCreate>(), 56);
        assert_eq!(size_of::<ZcardPoolExport>(), 32);
        assert_eq!(size_of::<ZcardPoolImport>(), 48);
        assert_eq!(size_of::<ZcardRingOffsets>(), 48);
        assert_eq!(size_of::<ZcardRingSetup>(), 104);
        assert_eq!(size_of::<ZcardSqe>(), 64);
        assert_eq!(offset_of!(ZcardSqe, user_data), 48);
        assert_eq!(size_of::<ZcardCqe>(), 32);
        assert_eq!(offset_of!(ZcardCqe, value), 16);
        assert_eq!(size_of::<ZcardEnter>(), 40);
        assert_eq!(size_of::<ZcardEventfd>(), 8);
    }

    /// Compiles a C program against the header and compares every number.
    #[test]
    fn layout_matches_the_c_header() {
        let header =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../driver/include/uapi/zcard.h");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let dir = std::env::temp_dir().join(format!("zcard-uapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut prog = format!(
            "#include <stdio.h>\n#include <stddef.h>\n#include \"{}\"\nint main(void) {{\n",
            header.display()
        );
        let items = layout();
        for (name, _) in &items {
            prog.push_str(&format!(
                "\tprintf(\"%llu\\n\", (unsigned long long)({name}));\n"
            ));
        }
        prog.push_str("\treturn 0;\n}\n");
        std::fs::write(dir.join("layout.c"), prog).unwrap();
        let status = Command::new(&cc)
            .args(["-Wall", "-Werror", "-o"])
            .arg(dir.join("layout"))
            .arg(dir.join("layout.c"))
            .status()
            .unwrap_or_else(|e| panic!("{cc} (a C compiler is needed for this test): {e}"));
        assert!(status.success(), "the C layout program failed to build");
        let out = Command::new(dir.join("layout")).output().unwrap();
        let c_values: Vec<usize> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        std::fs::remove_dir_all(&dir).ok();
        assert_eq!(c_values.len(), items.len());
        for ((name, rust), c) in items.iter().zip(c_values) {
            assert_eq!(*rust, c, "{name}: Rust {rust}, C header {c}");
        }
    }
}
