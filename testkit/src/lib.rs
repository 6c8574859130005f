//! What every zcopy test shares, kept small so that any crate can take it
//! as a dev-dependency (it pulls in nothing but proptest).
//!
//! [`repo_root`] is where the tree is. [`proptest_config`] is the one configuration of every property test in
//! the tree: its case count and seed come from the environment
//! ([`CASES_ENV`], [`SEED_ENV`]) and the seed is printed, so a failure found
//! anywhere (host, guest, nightly) replays with one variable.

#![deny(missing_docs)]

use std::path::{Path, PathBuf};

use proptest::test_runner::{Config, RngSeed};

/// The project's root directory (the guest shares it read-write at the same
/// path), for tests that read the tree or run its scripts.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testkit/ is in the project root")
        .to_path_buf()
}

/// Sets the case count of every property test (nightly runs raise it;
/// empty means unset).
pub const CASES_ENV: &str = "ZCOPY_PROPTEST_CASES";

/// Fixes the seed of every property test, and of the randomised tests
/// that take theirs from [`seed`] (the one a failure printed).
pub const SEED_ENV: &str = "ZCOPY_PROPTEST_SEED";

/// The configuration of the property test `name`: `cases` cases unless
/// [`CASES_ENV`] says otherwise, a seed from [`SEED_ENV`] or else the clock.
/// Prints the name, seed and case count to stderr (the test harness shows it
/// with a failure) with the variable that replays the run.
///
/// # Panics
///
/// When either variable is set to something that is not a number (a typo
/// must not silently run the defaults), or the case count is 0.
pub fn proptest_config(name: &str, cases: u32) -> Config {
    let env = |key: &str| std::env::var(key).ok();
    let config = config_from(
        cases,
        env(CASES_ENV).as_deref(),
        env(SEED_ENV).as_deref(),
        clock_seed,
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    let RngSeed::Fixed(seed) = config.rng_seed else {
        unreachable!("config_from always fixes the seed")
    };
    eprintln!(
        "{name}: proptest seed {seed}, {} cases (replay: {SEED_ENV}={seed})",
        config.cases
    );
    config
}

/// [`proptest_config`] without the environment: `cases_var` and `seed_var`
/// are the variables' values, `clock` gives a seed when none is set.
fn config_from(
    cases: u32,
    cases_var: Option<&str>,
    seed_var: Option<&str>,
    clock: impl FnOnce() -> u64,
) -> Result<Config, String> {
    let cases = match set(cases_var) {
        None => cases,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(format!(
                    "{CASES_ENV}={v:?}: a number of cases from 1 to {}",
                    u32::MAX
                ))
            }
        },
    };
    let seed = seed_from(seed_var, clock)?;
    Ok(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    })
}

/// The seed [`SEED_ENV`]'s value `seed_var` gives, or else `clock`'s.
fn seed_from(seed_var: Option<&str>, clock: impl FnOnce() -> u64) -> Result<u64, String> {
    match set(seed_var) {
        None => Ok(clock()),
        Some(v) => v.parse::<u64>().map_err(|_| {
            format!(
                "{SEED_ENV}={v:?}: a seed is a number from 0 to {}",
                u64::MAX
            )
        }),
    }
}

/// The seed of the randomised test `name` that is not a property test
/// (its own generator): from [`SEED_ENV`] or else the clock, printed to
/// stderr with the variable that replays it, as [`proptest_config`] does.
///
/// # Panics
///
/// When [`SEED_ENV`] is set to something that is not a number.
pub fn seed(name: &str) -> u64 {
    let seed = seed_from(std::env::var(SEED_ENV).ok().as_deref(), clock_seed)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    eprintln!("{name}: seed {seed} (replay: {SEED_ENV}={seed})");
    seed
}

/// A variable's value, `None` when unset or empty.
fn set(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// A seed from the clock: a new one each run.
fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(c: &Config) -> u64 {
        match c.rng_seed {
            RngSeed::Fixed(s) => s,
            RngSeed::Random => panic!("a random seed cannot be printed"),
        }
    }

    #[test]
    fn unset_variables_give_the_tests_cases_and_a_clock_seed() {
        let c = config_from(48, None, None, || 7).unwrap();
        assert_eq!((c.cases, seed(&c)), (48, 7));
        assert!(c.failure_persistence.is_none());
    }

    #[test]
    fn an_empty_variable_is_unset() {
        // The workflow sets ZCOPY_PROPTEST_CASES to '' outside the nightly.
        let c = config_from(48, Some(""), Some(" "), || 7).unwrap();
        assert_eq!((c.cases, seed(&c)), (48, 7));
    }

    #[test]
    fn the_variables_set_cases_and_seed() {
        let c = config_from(48, Some("2048"), Some("18446744073709551615"), || 7).unwrap();
        assert_eq!((c.cases, seed(&c)), (2048, u64::MAX));
    }

    #[test]
    fn a_bad_value_is_an_error_naming_the_variable() {
        let e = config_from(48, Some("lots"), None, || 7).unwrap_err();
        assert!(e.starts_with("ZCOPY_PROPTEST_CASES=\"lots\""), "{e}");
        let e = config_from(48, Some("0"), None, || 7).unwrap_err();
        assert!(e.contains("from 1"), "{e}");
        let e = config_from(48, None, Some("-1"), || 7).unwrap_err();
        assert!(e.starts_with("ZCOPY_PROPTEST_SEED=\"-1\""), "{e}");
    }

    #[test]
    fn the_same_seed_draws_the_same_values() {
        use proptest::strategy::{Strategy, ValueTree};
        use proptest::test_runner::TestRunner;
        let draw = || {
            let mut runner = TestRunner::new(config_from(1, None, Some("42"), || 0).unwrap());
            (0u64..u64::MAX).new_tree(&mut runner).unwrap().current()
        };
        assert_eq!(draw(), draw());
    }
}
