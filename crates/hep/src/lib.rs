//! HEP (Homer Encapsulation Protocol) codec.
//!
//! Pure functions over byte slices: no I/O, no async, no allocation beyond the
//! decoded message. [`decode`] accepts HEPv1, HEPv2 and HEPv3 datagrams;
//! [`encode_v3`] writes HEPv3; [`StreamFramer`] cuts a TCP byte stream into
//! HEPv3 messages; [`sip::extract`] pulls the fields people search calls by.

mod error;
mod framing;
mod legacy;
mod message;
pub mod sample;
pub mod sip;
mod v3;

pub use error::DecodeError;
pub use framing::{FramerStats, StreamFramer};
pub use legacy::encode_legacy;
pub use message::{HepMessage, TimeWindow, ip_family};
pub use v3::{encode_v3, encode_v3_into, replace_auth_key};

/// Largest datagram or stream message accepted (HEPv3's length field is 16 bits).
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// Decodes one HEP message (v1, v2 or v3) from a complete datagram.
pub fn decode(buf: &[u8]) -> Result<HepMessage, DecodeError> {
    if buf.len() > MAX_MESSAGE_LEN {
        return Err(DecodeError::TooLarge(buf.len()));
    }
    match buf.first() {
        None => Err(DecodeError::Truncated { needed: 1, have: 0 }),
        Some(b'H') | Some(b'E') => v3::decode(buf),
        Some(1) | Some(2) => legacy::decode(buf),
        Some(&other) => Err(DecodeError::UnknownVersion(other)),
    }
}
