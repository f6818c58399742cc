//! `hepop`'s end-to-end tests against the real binary, one binary (see
//! crates/lake/tests/it).
mod delta;
mod flight;
mod import;
mod kamailio;
mod metrics;
mod security;
mod server;
mod support;
mod ui;
