//! Packets → Kinesis records → PutRecords batches. Pure: no I/O, the clock is a parameter.
use std::time::{Duration, Instant};

use kinesis_record::RecordBuilder;

/// Kinesis PutRecords limits.
pub const MAX_RECORDS_PER_PUT: usize = 500;
pub const MAX_BYTES_PER_PUT: usize = 5 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition_key: String,
    pub data: Vec<u8>,
}

impl Record {
    /// What Kinesis counts against its limits.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// Close a record once this much uncompressed HEP is in it (it compresses to well under 1 MiB).
    pub max_raw_bytes: usize,
    /// Close a record this long after its first packet.
    pub linger: Duration,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_raw_bytes: 4 << 20,
            linger: Duration::from_millis(200),
        }
    }
}

pub struct Batcher {
    cfg: BatcherConfig,
    builder: RecordBuilder,
    opened: Option<Instant>,
    keys: PartitionKeys,
}

impl Batcher {
    pub fn new(cfg: BatcherConfig, seed: u64) -> Self {
        Self {
            cfg,
            builder: RecordBuilder::new(),
            opened: None,
            keys: PartitionKeys(seed),
        }
    }

    pub fn buffered(&self) -> usize {
        self.builder.len()
    }

    /// Adds a packet (already validated, ≤ 64 KiB); returns records when one filled up.
    pub fn push(&mut self, packet: &[u8], now: Instant) -> Vec<Record> {
        self.opened.get_or_insert(now);
        self.builder
            .push(packet)
            .expect("validated HEP packets are at most 64 KiB");
        if self.builder.raw_bytes() >= self.cfg.max_raw_bytes {
            self.flush()
        } else {
            Vec::new()
        }
    }

    /// Records whose linger time has passed.
    pub fn poll(&mut self, now: Instant) -> Vec<Record> {
        match self.opened {
            Some(t) if now.duration_since(t) >= self.cfg.linger => self.flush(),
            _ => Vec::new(),
        }
    }

    pub fn flush(&mut self) -> Vec<Record> {
        self.opened = None;
        let b = std::mem::take(&mut self.builder);
        b.finish()
            .into_iter()
            .map(|data| Record {
                partition_key: self.keys.next(),
                data,
            })
            .collect()
    }
}

/// Keys that hash uniformly over the stream's key space, so records spread over all shards.
struct PartitionKeys(u64);

impl PartitionKeys {
    fn next(&mut self) -> String {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        format!("{:016x}", mix(self.0))
    }
}

/// splitmix64's finaliser: spreads any counter or clock reading over all 64 bits.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Groups records into PutRecords calls within Kinesis' limits.
pub fn into_puts(records: Vec<Record>) -> Vec<Vec<Record>> {
    let mut out: Vec<Vec<Record>> = Vec::new();
    let mut bytes = 0;
    for r in records {
        let fits = out.last().is_some_and(|b| {
            b.len() < MAX_RECORDS_PER_PUT && bytes + r.size() <= MAX_BYTES_PER_PUT
        });
        if !fits {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += r.size();
        out.last_mut().expect("pushed above").push(r);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(i: u64) -> Vec<u8> {
        hep::encode_v3(&hep::sample::Call::new(3, i).log_line(1_764_000_000_000_000)).unwrap()
    }

    #[test]
    fn flushes_on_size_and_linger() {
        let t0 = Instant::now();
        let mut b = Batcher::new(
            BatcherConfig {
                max_raw_bytes: 10_000,
                linger: Duration::from_millis(200),
            },
            1,
        );
        let mut records = Vec::new();
        for i in 0..100 {
            records.extend(b.push(&packet(i), t0));
        }
        assert!(!records.is_empty(), "size limit closes records");
        assert!(b.poll(t0 + Duration::from_millis(100)).is_empty());
        records.extend(b.poll(t0 + Duration::from_millis(200)));
        assert_eq!(b.buffered(), 0);
        let back: Vec<Vec<u8>> = records
            .iter()
            .flat_map(|r| kinesis_record::messages(&r.data).unwrap())
            .collect();
        assert_eq!(back, (0..100).map(packet).collect::<Vec<_>>());
        // Keys differ record to record.
        let keys: std::collections::HashSet<_> = records.iter().map(|r| &r.partition_key).collect();
        assert_eq!(keys.len(), records.len());
    }

    #[test]
    fn puts_respect_kinesis_limits() {
        let small: Vec<Record> = (0..1234)
            .map(|i| Record {
                partition_key: format!("{i}"),
                data: vec![0; 10],
            })
            .collect();
        let puts = into_puts(small);
        assert_eq!(
            puts.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![500, 500, 234]
        );
        let big: Vec<Record> = (0..12)
            .map(|i| Record {
                partition_key: format!("{i}"),
                data: vec![0; 1_000_000],
            })
            .collect();
        let puts = into_puts(big);
        assert!(
            puts.iter()
                .all(|p| p.iter().map(Record::size).sum::<usize>() <= MAX_BYTES_PER_PUT)
        );
        assert_eq!(puts.iter().map(Vec::len).sum::<usize>(), 12);
        assert_eq!(puts.len(), 3);
    }
}
