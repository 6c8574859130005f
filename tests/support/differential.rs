//! The differential check of the two drivers: one seeded random sequence
//! of valid operations, run through zcard.ko (`tests/differential.rs`, in
//! the normal boot) and through the VFIO driver (`tests/vfio.rs`, in the
//! VFIO boot). Each run is compared with a reference model of the card
//! here, and its trace (every result, then a CRC of every buffer and of the
//! storage it touched) is saved under `target/qemu-test/`; the run that
//! finds the other driver's trace there compares the two, line by line.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::{crc32c_reference, repo_root};

/// Buffers each sequence works on, and their size.
pub const BUFFERS: usize = 4;
/// Bytes per buffer.
pub const BUFFER_BYTES: usize = 64 << 10;
/// Storage bytes a sequence may touch (from offset 0 of a region of its own).
pub const STORAGE_BYTES: usize = 256 << 10;
/// Storage offset of that region: away from what other tests write.
pub const STORAGE_BASE: u64 = 32 << 20;
/// Storage block size the card requires for storage operations.
const BLOCK: usize = 512;

/// One operation, on (buffer, offset) places.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffOp {
    /// COPY `len` bytes.
    Copy {
        /// Source (buffer, offset).
        src: (usize, usize),
        /// Destination (buffer, offset).
        dst: (usize, usize),
        /// Bytes.
        len: usize,
    },
    /// FILL with `pattern`.
    Fill {
        /// Destination (buffer, offset).
        dst: (usize, usize),
        /// Bytes.
        len: usize,
        /// The pattern.
        pattern: u64,
    },
    /// CRC32C continuing from `seed`.
    Crc {
        /// Source (buffer, offset).
        src: (usize, usize),
        /// Bytes.
        len: usize,
        /// The CRC before.
        seed: u32,
    },
    /// STORAGE_WRITE at `STORAGE_BASE + soff`.
    StorageWrite {
        /// Source (buffer, offset).
        src: (usize, usize),
        /// Offset in the region.
        soff: usize,
        /// Bytes.
        len: usize,
    },
    /// STORAGE_READ from `STORAGE_BASE + soff`.
    StorageRead {
        /// Offset in the region.
        soff: usize,
        /// Destination (buffer, offset).
        dst: (usize, usize),
        /// Bytes.
        len: usize,
    },
    /// FLUSH.
    Flush,
}

/// SplitMix64: small, seedable, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A sequence: the buffers' initial contents and the operations.
pub struct Sequence {
    /// The seed it came from.
    pub seed: u64,
    /// Initial contents of each buffer.
    pub init: Vec<Vec<u8>>,
    /// The operations, in order.
    pub ops: Vec<DiffOp>,
}

/// The sequence of `steps` operations for `seed`.
pub fn sequence(seed: u64, steps: usize) -> Sequence {
    let mut r = Rng(seed);
    let init = (0..BUFFERS)
        .map(|_| (0..BUFFER_BYTES).map(|_| r.next() as u8).collect())
        .collect();
    let mut ops = Vec::with_capacity(steps);
    for _ in 0..steps {
        let len = 1 + r.below(8192);
        let place = |r: &mut Rng, len: usize| (r.below(BUFFERS), r.below(BUFFER_BYTES - len + 1));
        let blocks = 1 + r.below(16);
        let blen = blocks * BLOCK;
        let soff = r.below(STORAGE_BYTES / BLOCK - blocks + 1) * BLOCK;
        ops.push(match r.below(11) {
            0..=2 => {
                // Source and destination never overlap (the card leaves
                // the bytes of overlapping copies unspecified).
                let src = place(&mut r, len);
                let mut dst = place(&mut r, len);
                if dst.0 == src.0 && dst.1 < src.1 + len && src.1 < dst.1 + len {
                    dst.0 = (dst.0 + 1) % BUFFERS;
                }
                DiffOp::Copy { src, dst, len }
            }
            3 | 4 => DiffOp::Fill {
                dst: place(&mut r, len),
                len,
                pattern: r.next(),
            },
            5 | 6 => DiffOp::Crc {
                src: place(&mut r, len),
                len,
                seed: r.next() as u32,
            },
            7 | 8 => DiffOp::StorageWrite {
                src: place(&mut r, blen),
                soff,
                len: blen,
            },
            9 => DiffOp::StorageRead {
                soff,
                dst: place(&mut r, blen),
                len: blen,
            },
            _ => DiffOp::Flush,
        });
    }
    Sequence { seed, init, ops }
}

/// What a driver must do for the check: run one op, read a buffer back.
pub trait Driver {
    /// Loads the initial buffer contents (and zeroes the storage region).
    fn load(&mut self, init: &[Vec<u8>]);
    /// Runs one operation; returns the CRC for `Crc`, 0 otherwise; an error
    /// is the driver's or the card's, as text.
    fn run(&mut self, op: DiffOp) -> Result<u32, String>;
    /// A buffer's contents now.
    fn buffer(&mut self, i: usize) -> Vec<u8>;
    /// Storage region contents now (read through the card).
    fn storage(&mut self) -> Vec<u8>;
}

/// The reference: what the card must do, in plain Rust.
pub struct Model {
    bufs: Vec<Vec<u8>>,
    storage: Vec<u8>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            bufs: Vec::new(),
            storage: vec![0; STORAGE_BYTES],
        }
    }
}

impl Driver for Model {
    fn load(&mut self, init: &[Vec<u8>]) {
        self.bufs = init.to_vec();
        self.storage = vec![0; STORAGE_BYTES];
    }

    fn run(&mut self, op: DiffOp) -> Result<u32, String> {
        match op {
            DiffOp::Copy { src, dst, len } => {
                let data = self.bufs[src.0][src.1..src.1 + len].to_vec();
                self.bufs[dst.0][dst.1..dst.1 + len].copy_from_slice(&data);
            }
            DiffOp::Fill { dst, len, pattern } => {
                let p = pattern.to_le_bytes();
                for (i, b) in self.bufs[dst.0][dst.1..dst.1 + len].iter_mut().enumerate() {
                    *b = p[i % 8];
                }
            }
            DiffOp::Crc { src, len, seed } => {
                return Ok(crc32c_reference(
                    seed,
                    &self.bufs[src.0][src.1..src.1 + len],
                ));
            }
            DiffOp::StorageWrite { src, soff, len } => {
                let data = self.bufs[src.0][src.1..src.1 + len].to_vec();
                self.storage[soff..soff + len].copy_from_slice(&data);
            }
            DiffOp::StorageRead { soff, dst, len } => {
                let data = self.storage[soff..soff + len].to_vec();
                self.bufs[dst.0][dst.1..dst.1 + len].copy_from_slice(&data);
            }
            DiffOp::Flush => {}
        }
        Ok(0)
    }

    fn buffer(&mut self, i: usize) -> Vec<u8> {
        self.bufs[i].clone()
    }

    fn storage(&mut self) -> Vec<u8> {
        self.storage.clone()
    }
}

/// Runs `seq` through `d` and returns its trace: one line per op, then the
/// CRC of each buffer and of the storage region.
pub fn trace(d: &mut dyn Driver, seq: &Sequence) -> Vec<String> {
    d.load(&seq.init);
    let mut out = Vec::with_capacity(seq.ops.len() + BUFFERS + 1);
    for (i, &op) in seq.ops.iter().enumerate() {
        let line = match d.run(op) {
            Ok(v) => format!("{i} {op:?} -> ok {v:#010x}"),
            Err(e) => format!("{i} {op:?} -> error {e}"),
        };
        out.push(line);
    }
    for i in 0..BUFFERS {
        out.push(format!(
            "buffer {i} crc {:#010x}",
            crc32c_reference(0, &d.buffer(i))
        ));
    }
    out.push(format!(
        "storage crc {:#010x}",
        crc32c_reference(0, &d.storage())
    ));
    out
}

/// Where a driver's traces are saved (`target/qemu-test/differential-NAME.txt`).
pub fn trace_path(driver: &str) -> PathBuf {
    repo_root().join(format!("target/qemu-test/differential-{driver}.txt"))
}

/// The seeds of a run: `ZCOPY_DIFF_SEEDS` (comma-separated) or four fixed
/// ones, so the two boots of one `make qemu-test` run the same sequences.
pub fn seeds() -> Vec<u64> {
    std::env::var("ZCOPY_DIFF_SEEDS")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 2, 3, 0x5eed])
}

/// The whole check for one driver: every seed against the model, the traces
/// saved as `name`, and compared with `other`'s saved traces if present.
/// Returns a description of the first difference.
pub fn check(name: &str, other: &str, d: &mut dyn Driver, steps: usize) -> Result<(), String> {
    let mut all = String::new();
    for seed in seeds() {
        eprintln!(
            "differential {name}: seed {seed}, {steps} steps (replay: ZCOPY_DIFF_SEEDS={seed})"
        );
        let seq = sequence(seed, steps);
        let got = trace(d, &seq);
        let want = trace(&mut Model::default(), &seq);
        if let Some((g, w)) = got.iter().zip(&want).find(|(g, w)| g != w) {
            return Err(format!("seed {seed}: {name} gave {g:?}, the model {w:?}"));
        }
        let _ = writeln!(all, "seed {seed}");
        for l in &got {
            let _ = writeln!(all, "{l}");
        }
    }
    let path = trace_path(name);
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    std::fs::write(&path, &all).map_err(|e| format!("{}: {e}", path.display()))?;
    match std::fs::read_to_string(trace_path(other)) {
        Ok(theirs) if theirs != all => {
            let at = theirs
                .lines()
                .zip(all.lines())
                .find(|(a, b)| a != b)
                .map(|(a, b)| format!("{other}: {a:?}, {name}: {b:?}"))
                .unwrap_or_else(|| "different lengths".into());
            Err(format!("the traces of {other} and {name} differ: {at}"))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_are_reproducible_and_valid() {
        let (a, b) = (sequence(7, 200), sequence(7, 200));
        assert_eq!(a.ops, b.ops);
        assert_eq!(a.init, b.init);
        assert_ne!(sequence(8, 200).ops, a.ops);
        for op in &a.ops {
            if let DiffOp::StorageWrite { soff, len, .. } | DiffOp::StorageRead { soff, len, .. } =
                *op
            {
                assert_eq!((soff % BLOCK, len % BLOCK), (0, 0));
                assert!(soff + len <= STORAGE_BYTES);
            }
        }
        // The model against itself is the trivial differential.
        let t = trace(&mut Model::default(), &a);
        assert_eq!(t, trace(&mut Model::default(), &b));
        assert_eq!(t.len(), 200 + BUFFERS + 1);
    }
}
