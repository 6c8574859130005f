//! Sizes as every zcopy command line takes them, with no dependencies so
//! that the device model, the CLI and the benchmarks share one parser, and
//! the rule by which zcopy's benches judge a goal from repeated runs
//! ([`verdict`]).
//!
//! A size is decimal digits with an optional binary suffix: `K`, `M`, `G`
//! or `T` (any case, powers of 1024), which may be written `KiB`, `MiB`,
//! `GiB`, `TiB`; a bare `B` means bytes. `KB` and the like are refused
//! rather than guessed (1000 or 1024?), as are signs, fractions and
//! anything that does not fit in a `u64`.

#![deny(missing_docs)]

pub mod verdict;

/// What [`parse_size`] accepts, for help texts and error messages.
pub const SIZE_SYNTAX: &str =
    "digits with an optional K, M, G or T (powers of 1024; KiB... alike), e.g. 4096, 64K, 1MiB";

/// Parses a size in bytes (see the crate docs for the syntax); the error
/// names the text and says what a size looks like.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(format!("{text:?} is not a size: {SIZE_SYNTAX}")),
    };
    if digits.is_empty() {
        return Err(format!("{text:?} is not a size: {SIZE_SYNTAX}"));
    }
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{text:?} is too large (at most {} bytes)", u64::MAX))
}

/// [`parse_size`] for a size that must fit in a `usize` (a length in memory).
pub fn parse_usize(text: &str) -> Result<usize, String> {
    let n = parse_size(text)?;
    usize::try_from(n).map_err(|_| format!("{text:?} is too large (at most {} bytes)", usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_and_every_suffix() {
        for (text, bytes) in [
            ("0", 0),
            ("4096", 4096),
            ("4096B", 4096),
            ("4k", 4 << 10),
            ("64K", 64 << 10),
            ("64KiB", 64 << 10),
            ("64kib", 64 << 10),
            ("1M", 1 << 20),
            ("1MiB", 1 << 20),
            ("1G", 1 << 30),
            ("2GiB", 2 << 30),
            ("3T", 3 << 40),
            ("1TiB", 1 << 40),
            (" 8M ", 8 << 20),
            ("007", 7),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn the_edges_of_u64() {
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_size("18446744073709551616")
            .unwrap_err()
            .contains("too large"));
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
        assert!(parse_size("16777216T").unwrap_err().contains("too large"));
        assert!(parse_size("99999999999G")
            .unwrap_err()
            .contains("too large"));
        assert!(parse_size("99999999999999999999G")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn what_is_not_a_size_is_refused_with_the_syntax() {
        for bad in [
            "", " ", "K", "KiB", "B", "x", "lots", "-1", "+1", "1.5M", "1,024", "1_024", "64KB",
            "64kb", "1iB", "1Mi", "1MB", "4 K", "1e6", "0x10", "1KK", "1P",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("{bad:?} is not a size: ")),
                "{bad:?}: {e}"
            );
            assert!(e.contains("64K"), "{e}");
        }
    }

    #[test]
    fn usize_sizes() {
        assert_eq!(parse_usize("64K"), Ok(64 << 10));
        assert!(parse_usize("x").is_err());
        #[cfg(target_pointer_width = "32")]
        assert!(parse_usize("4G").unwrap_err().contains("too large"));
    }
}
