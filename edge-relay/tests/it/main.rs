//! The relay's integration tests, one binary (see crates/lake/tests/it).
mod crash;
mod kinesis_errors;
mod relay;
