//! Shared pieces of the zcopy benchmarks.

pub mod plot;
