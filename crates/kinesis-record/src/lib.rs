//! Kinesis record format v1: many HEP messages in one record.
//!
//! ```text
//! offset size
//! 0      4    magic "HEPK"
//! 4      1    format version (1)
//! 5      1    flags: bit 0 = body zstd-compressed
//! 6      4    message count, u32 big-endian
//! 10     ..   body: count × (u16 big-endian length, HEP packet bytes)
//! ```
//! A record is at most 1 MiB (Kinesis' limit, partition key included). A
//! record without the magic is a single raw HEP packet from some other
//! producer; consumers accept both (see [`messages`]).
use thiserror::Error;

pub const MAGIC: &[u8; 4] = b"HEPK";
pub const VERSION: u8 = 1;
const FLAG_ZSTD: u8 = 1;
const HEADER: usize = 10;
/// Kinesis accepts 1 MiB of data plus partition key per record; keep room for the key.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024 - 256;
/// zstd level: 3 compresses SIP ~6-8x at several hundred MB/s.
const LEVEL: i32 = 3;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    #[error("record too short for a header ({0} bytes)")]
    Truncated(usize),
    #[error("unsupported record format version {0}")]
    Version(u8),
    #[error("record body does not decompress: {0}")]
    Decompress(String),
    #[error("record body is cut off inside message {index}")]
    BodyTruncated { index: u32 },
    #[error("record says {declared} messages, body holds {found}")]
    CountMismatch { declared: u32, found: u32 },
    #[error("one message of {0} bytes exceeds the 64 KiB HEP limit")]
    MessageTooLarge(usize),
}

/// Accumulates HEP packets for one record.
#[derive(Debug, Default, Clone)]
pub struct RecordBuilder {
    body: Vec<u8>,
    count: u32,
}

impl RecordBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn len(&self) -> usize {
        self.count as usize
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    /// Uncompressed body bytes so far.
    pub fn raw_bytes(&self) -> usize {
        self.body.len()
    }

    pub fn push(&mut self, packet: &[u8]) -> Result<(), RecordError> {
        let len: u16 = packet
            .len()
            .try_into()
            .map_err(|_| RecordError::MessageTooLarge(packet.len()))?;
        self.body.extend_from_slice(&len.to_be_bytes());
        self.body.extend_from_slice(packet);
        self.count += 1;
        Ok(())
    }

    /// Encodes the record(s): normally one; if the compressed body would
    /// exceed [`MAX_RECORD_BYTES`] the messages are split over several.
    pub fn finish(self) -> Vec<Vec<u8>> {
        let packets: Vec<&[u8]> = iter_body(&self.body).collect();
        let mut out = Vec::new();
        encode_split(&packets, &mut out);
        out
    }
}

fn iter_body(mut body: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        if body.len() < 2 {
            return None;
        }
        let len = u16::from_be_bytes([body[0], body[1]]) as usize;
        let p = body.get(2..2 + len)?;
        body = &body[2 + len..];
        Some(p)
    })
}

fn encode(packets: &[&[u8]]) -> Vec<u8> {
    let mut body = Vec::with_capacity(packets.iter().map(|p| p.len() + 2).sum());
    for p in packets {
        body.extend_from_slice(&(p.len() as u16).to_be_bytes());
        body.extend_from_slice(p);
    }
    let compressed = zstd::bulk::compress(&body, LEVEL).expect("zstd compresses any input");
    let mut out = Vec::with_capacity(HEADER + compressed.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(FLAG_ZSTD);
    out.extend_from_slice(&(packets.len() as u32).to_be_bytes());
    out.extend_from_slice(&compressed);
    out
}

fn encode_split(packets: &[&[u8]], out: &mut Vec<Vec<u8>>) {
    if packets.is_empty() {
        return;
    }
    let r = encode(packets);
    if r.len() <= MAX_RECORD_BYTES || packets.len() == 1 {
        // One 64 KiB packet always fits, compressed or not.
        out.push(r);
        return;
    }
    let (a, b) = packets.split_at(packets.len() / 2);
    encode_split(a, out);
    encode_split(b, out);
}

/// Whether `data` is in this format (else: one raw HEP packet).
pub fn is_batch(data: &[u8]) -> bool {
    data.starts_with(MAGIC)
}

/// The HEP packets a Kinesis record carries: the batch's messages, or the
/// record itself when it is a single raw HEP packet.
pub fn messages(data: &[u8]) -> Result<Vec<Vec<u8>>, RecordError> {
    if !is_batch(data) {
        return Ok(vec![data.to_vec()]);
    }
    if data.len() < HEADER {
        return Err(RecordError::Truncated(data.len()));
    }
    if data[4] != VERSION {
        return Err(RecordError::Version(data[4]));
    }
    let declared = u32::from_be_bytes([data[6], data[7], data[8], data[9]]);
    let body = if data[5] & FLAG_ZSTD != 0 {
        // Bound the output: a record's messages cannot exceed count × (64 KiB + 2).
        let cap = (declared as usize).saturating_mul(65_537).min(64 << 20);
        zstd::bulk::decompress(&data[HEADER..], cap)
            .map_err(|e| RecordError::Decompress(e.to_string()))?
    } else {
        data[HEADER..].to_vec()
    };
    // `declared` is untrusted: never size an allocation by it alone.
    let mut out = Vec::with_capacity((declared as usize).min(body.len() / 2));
    let mut rest = &body[..];
    while !rest.is_empty() {
        if rest.len() < 2 {
            return Err(RecordError::BodyTruncated {
                index: out.len() as u32,
            });
        }
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let p = rest.get(2..2 + len).ok_or(RecordError::BodyTruncated {
            index: out.len() as u32,
        })?;
        out.push(p.to_vec());
        rest = &rest[2 + len..];
    }
    if out.len() as u32 != declared {
        return Err(RecordError::CountMismatch {
            declared,
            found: out.len() as u32,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn roundtrip_and_compression() {
        let msgs: Vec<Vec<u8>> = (0..2000u64)
            .flat_map(|i| hep::sample::Call::new(1, i).all(1_764_000_000_000_000))
            .map(|m| hep::encode_v3(&m).unwrap())
            .collect();
        let raw: usize = msgs.iter().map(Vec::len).sum();
        let mut b = RecordBuilder::new();
        for m in &msgs {
            b.push(m).unwrap();
        }
        let records = b.finish();
        let mut back = Vec::new();
        for r in &records {
            assert!(r.len() <= MAX_RECORD_BYTES);
            back.extend(messages(r).unwrap());
        }
        assert_eq!(back, msgs);
        let stored: usize = records.iter().map(Vec::len).sum();
        assert!(stored * 5 < raw, "{stored} bytes for {raw} raw");
    }

    #[test]
    fn incompressible_batches_split_under_the_limit() {
        let mut x: u64 = 88172645463325252;
        let msgs: Vec<Vec<u8>> = (0..40)
            .map(|_| {
                (0..60_000)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect()
            })
            .collect();
        let mut b = RecordBuilder::new();
        for m in &msgs {
            b.push(m).unwrap();
        }
        let records = b.finish();
        assert!(
            records.len() >= 3,
            "2.4 MB of noise needs at least 3 records, got {}",
            records.len()
        );
        assert!(records.iter().all(|r| r.len() <= MAX_RECORD_BYTES));
        assert_eq!(
            records
                .iter()
                .flat_map(|r| messages(r).unwrap())
                .collect::<Vec<_>>(),
            msgs
        );
    }

    #[test]
    fn raw_hep_records_pass_through() {
        let m = hep::encode_v3(&hep::sample::Call::new(1, 1).log_line(0)).unwrap();
        assert_eq!(messages(&m).unwrap(), vec![m]);
    }

    #[test]
    fn bad_records_are_typed_errors() {
        let mut b = RecordBuilder::new();
        b.push(b"HEP3abc").unwrap();
        let good = b.finish().remove(0);
        assert_eq!(messages(&good[..8]), Err(RecordError::Truncated(8)));
        let mut v = good.clone();
        v[4] = 9;
        assert_eq!(messages(&v), Err(RecordError::Version(9)));
        let mut c = good.clone();
        c[9] = 2;
        assert!(matches!(
            messages(&c),
            Err(RecordError::CountMismatch {
                declared: 2,
                found: 1
            }) | Err(RecordError::Decompress(_))
        ));
        let mut z = good.clone();
        z.truncate(good.len() - 3);
        assert!(messages(&z).is_err());
        assert!(matches!(
            RecordBuilder::new().push(&vec![0; 70_000]),
            Err(RecordError::MessageTooLarge(70_000))
        ));
    }

    proptest! {
        #[test]
        fn prop_never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = MAGIC.to_vec();
            d.extend(data);
            let _ = messages(&d);
        }

        #[test]
        fn prop_roundtrip(msgs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 0..50)) {
            let mut b = RecordBuilder::new();
            for m in &msgs { b.push(m).unwrap(); }
            let back: Vec<Vec<u8>> = b.finish().iter().flat_map(|r| messages(r).unwrap()).collect();
            prop_assert_eq!(back, msgs);
        }
    }
}
