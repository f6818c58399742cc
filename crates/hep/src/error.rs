use thiserror::Error;

/// Why a buffer is not a valid HEP message. Every malformed input maps to one
/// of these; the decoder never panics.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("truncated: need {needed} bytes, have {have}")]
    Truncated { needed: usize, have: usize },
    #[error("message of {0} bytes exceeds the 64 KiB limit")]
    TooLarge(usize),
    #[error("unknown HEP version byte 0x{0:02x}")]
    UnknownVersion(u8),
    #[error("bad magic: not HEP3/EEP1")]
    BadMagic,
    #[error("header length {declared} does not match buffer length {actual}")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("chunk {vendor}:{kind} declares length {len} (< 6)")]
    ChunkTooShort { vendor: u16, kind: u16, len: usize },
    #[error("chunk {vendor}:{kind} declares length {len} past the end of the message")]
    ChunkOverrun { vendor: u16, kind: u16, len: usize },
    #[error("chunk {kind} must carry {expected} bytes, has {actual}")]
    BadChunkSize {
        kind: u16,
        expected: usize,
        actual: usize,
    },
    #[error("unknown address family {0}")]
    BadFamily(u8),
    #[error("compressed payload chunk is not supported")]
    CompressedPayloadUnsupported,
    #[error("message has no payload chunk")]
    MissingPayload,
}
