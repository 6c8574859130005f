//! The Rust wire format against the C header it mirrors
//! (driver/include/uapi/zcard_virtio.h): a C program built against the
//! header prints every size, offset and constant, and each must equal the
//! Rust value.

use std::collections::BTreeSet;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use std::process::Command;

use zcard_virtio::*;

fn header() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../driver/include/uapi/zcard_virtio.h")
}

/// The C spelling of an opcode: `ZCARD_REQ_` and its upper-case name.
fn c_op(op: Op) -> String {
    format!("ZCARD_REQ_{}", op.name().to_uppercase())
}

/// The C spelling of a status code: `ZCARD_ST_` and its upper-case name.
fn c_status(status: Status) -> String {
    format!("ZCARD_ST_{}", status.name().to_uppercase())
}

/// (C expression, Rust value) of every number the header pins.
fn items() -> Vec<(String, u64)> {
    macro_rules! layout {
        ($out:ident, $c:literal, $ty:ty, [$($field:ident),* $(,)?]) => {
            $out.push((format!("sizeof(struct {})", $c), size_of::<$ty>() as u64));
            $(
                $out.push((
                    format!("offsetof(struct {}, {})", $c, stringify!($field)),
                    offset_of!($ty, $field) as u64,
                ));
                $out.push((
                    format!("sizeof(((struct {} *)0)->{})", $c, stringify!($field)),
                    size_of_field(|v: &$ty| &v.$field) as u64,
                ));
            )*
        };
    }
    let mut out = Vec::new();
    layout!(
        out,
        "zcard_config",
        ConfigSpace,
        [
            magic,
            version,
            num_queues,
            max_segments,
            max_request_bytes,
            storage_capacity,
            block_size,
            supported_ops,
            device_state,
            max_queue_size,
            reserved,
        ]
    );
    layout!(
        out,
        "zcard_req_hdr",
        ReqHeader,
        [
            opcode,
            flags,
            reserved0,
            reserved1,
            tag,
            length,
            storage_offset,
            pattern,
            reserved2,
        ]
    );
    layout!(
        out,
        "zcard_req_status",
        ReqStatus,
        [status, reserved, result, tag]
    );
    out.push(("VIRTIO_ID_ZCARD".into(), u64::from(VIRTIO_ID_ZCARD)));
    out.push(("ZCARD_MAGIC".into(), u64::from(ZCARD_MAGIC)));
    out.push(("ZCARD_VERSION".into(), u64::from(ZCARD_VERSION)));
    out.push((
        "ZCARD_STATE_NEEDS_RESET".into(),
        u64::from(STATE_NEEDS_RESET),
    ));
    out.push(("sizeof(struct zcard_config)".into(), CONFIG_SIZE as u64));
    out.push((
        "sizeof(struct zcard_req_hdr)".into(),
        u64::from(REQ_HEADER_SIZE),
    ));
    out.push((
        "sizeof(struct zcard_req_status)".into(),
        u64::from(REQ_STATUS_SIZE),
    ));
    for op in Op::ALL {
        out.push((c_op(op), op as u64));
    }
    for status in Status::ALL {
        out.push((c_status(status), status as u64));
    }
    out
}

fn size_of_field<T, F>(_: impl Fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// Builds and runs a C program that prints each expression, one per line.
fn c_values(exprs: &[String]) -> Vec<u64> {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let dir = tempdir();
    let mut prog = format!(
        "#include <stdio.h>\n#include <stddef.h>\n#include \"{}\"\nint main(void)\n{{\n",
        header().display()
    );
    for e in exprs {
        prog.push_str(&format!(
            "\tprintf(\"%llu\\n\", (unsigned long long)({e}));\n"
        ));
    }
    prog.push_str("\treturn 0;\n}\n");
    std::fs::write(dir.join("layout.c"), prog).unwrap();
    let status = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-o"])
        .arg(dir.join("layout"))
        .arg(dir.join("layout.c"))
        .status()
        .unwrap_or_else(|e| panic!("{cc} (a C compiler is needed for this test): {e}"));
    assert!(status.success(), "the C layout program failed to build");
    let out = Command::new(dir.join("layout")).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("zcard-virtio-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_size_offset_and_constant_matches_the_c_header() {
    let items = items();
    let exprs: Vec<String> = items.iter().map(|(c, _)| c.clone()).collect();
    let c = c_values(&exprs);
    assert_eq!(c.len(), items.len());
    for ((name, rust), c) in items.iter().zip(c) {
        assert_eq!(*rust, c, "{name}: Rust {rust}, C header {c}");
    }
}

/// Every opcode and status code the header names has its Rust variant.
#[test]
fn the_c_header_names_no_code_rust_lacks() {
    let text = std::fs::read_to_string(header()).unwrap();
    let named = |prefix: &str| -> BTreeSet<String> {
        text.lines()
            .filter_map(|l| {
                let l = l.trim();
                let (name, rest) = l.split_once(' ')?;
                (name.starts_with(prefix) && rest.starts_with("= ")).then(|| name.to_string())
            })
            .collect()
    };
    let rust_ops: BTreeSet<String> = Op::ALL.iter().map(|&o| c_op(o)).collect();
    let rust_status: BTreeSet<String> = Status::ALL.iter().map(|&s| c_status(s)).collect();
    assert_eq!(named("ZCARD_REQ_"), rust_ops);
    assert_eq!(named("ZCARD_ST_"), rust_status);
}
