//! edge-relay: HEP over UDP/TCP on a capture host → validated, batched,
//! compressed Kinesis records (format in the `kinesis-record` crate).
pub mod batcher;
pub mod queue;
pub mod relay;
pub mod shipper;
pub mod sink;
pub mod spool;
