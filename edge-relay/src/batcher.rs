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

/// When a record closes, and over how many partition keys records spread.
/// Both follow the traffic: a quiet relay sends about one record a second to
/// one key (one shard: one ingest invocation per batching window, whatever
/// the stream's shard count), a busy one closes records as soon as they are
/// worth sending and spreads them over as many keys as its volume needs.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    /// A record closes once this much uncompressed HEP is in it (it compresses to well under 1 MiB).
    pub max_raw_bytes: usize,
    /// A record holding `full_raw_bytes` closes this long after its first packet...
    pub linger: Duration,
    pub full_raw_bytes: usize,
    /// ...and any record this long after it: the latency bound.
    pub max_linger: Duration,
    /// Uncompressed bytes a second one partition key carries before records
    /// spread over another (a shard takes 1 MB/s of compressed records).
    pub raw_bytes_per_key: usize,
    /// Records spread over at least this many keys whatever the rate.
    pub min_keys: usize,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self {
            max_raw_bytes: 4 << 20,
            linger: Duration::from_millis(200),
            full_raw_bytes: 64 << 10,
            max_linger: Duration::from_secs(1),
            raw_bytes_per_key: 2 << 20,
            min_keys: 1,
        }
    }
}

impl BatcherConfig {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.max_linger < self.linger {
            return Err(format!(
                "max linger ({:?}) must be at least the linger ({:?})",
                self.max_linger, self.linger
            ));
        }
        if self.raw_bytes_per_key == 0 || self.max_raw_bytes == 0 {
            return Err("record and key sizes must be more than 0".into());
        }
        if !(1..=MAX_KEYS).contains(&self.min_keys) {
            return Err(format!("the least number of keys must be 1 to {MAX_KEYS}"));
        }
        Ok(())
    }
}

/// Keys spread over at most this many (a busy relay over many shards).
const MAX_KEYS: usize = 64;
/// The rate behind the key count is measured over this long.
const RATE_WINDOW: Duration = Duration::from_secs(1);

pub struct Batcher {
    cfg: BatcherConfig,
    builder: RecordBuilder,
    opened: Option<Instant>,
    keys: PartitionKeys,
    /// Raw bytes since `window_start`, for the key count.
    window_bytes: usize,
    window_start: Option<Instant>,
}

impl Batcher {
    pub fn new(cfg: BatcherConfig, seed: u64) -> Self {
        Self {
            keys: PartitionKeys::new(seed, cfg.min_keys),
            cfg,
            builder: RecordBuilder::new(),
            opened: None,
            window_bytes: 0,
            window_start: None,
        }
    }

    pub fn buffered(&self) -> usize {
        self.builder.len()
    }

    /// Partition keys records go to now.
    pub fn keys_in_use(&self) -> usize {
        self.keys.used
    }

    /// Adds a packet (already validated, ≤ 64 KiB); returns records when one closed.
    pub fn push(&mut self, packet: &[u8], now: Instant) -> Vec<Record> {
        self.opened.get_or_insert(now);
        self.builder
            .push(packet)
            .expect("validated HEP packets are at most 64 KiB");
        self.measure(packet.len(), now);
        self.close_if_due(now)
    }

    /// Records whose time has come.
    pub fn poll(&mut self, now: Instant) -> Vec<Record> {
        self.measure(0, now);
        self.close_if_due(now)
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

    /// The closing rule: full, or worth sending and lingered, or waited the most it may.
    fn close_if_due(&mut self, now: Instant) -> Vec<Record> {
        let Some(opened) = self.opened else {
            return Vec::new();
        };
        let (raw, age) = (self.builder.raw_bytes(), now.duration_since(opened));
        let due = raw >= self.cfg.max_raw_bytes
            || (raw >= self.cfg.full_raw_bytes && age >= self.cfg.linger)
            || age >= self.cfg.max_linger;
        if due { self.flush() } else { Vec::new() }
    }

    /// Counts raw bytes; each window, sets the key count to what the rate needs.
    fn measure(&mut self, bytes: usize, now: Instant) {
        let start = *self.window_start.get_or_insert(now);
        self.window_bytes += bytes;
        let elapsed = now.duration_since(start);
        if elapsed >= RATE_WINDOW {
            let per_sec = self.window_bytes as f64 / elapsed.as_secs_f64();
            let keys = (per_sec / self.cfg.raw_bytes_per_key as f64).ceil() as usize;
            self.keys.used = keys.clamp(self.cfg.min_keys.clamp(1, MAX_KEYS), MAX_KEYS);
            self.window_bytes = 0;
            self.window_start = Some(now);
        }
    }
}

/// A relay's partition keys: fixed per relay (from its seed), used in turn.
/// Each hashes to a uniformly random point of the stream's key space, so
/// relays (and a busy relay's keys) spread over all shards.
struct PartitionKeys {
    keys: Vec<String>,
    used: usize,
    next: usize,
}

impl PartitionKeys {
    fn new(seed: u64, used: usize) -> Self {
        let keys = (0..MAX_KEYS as u64)
            .map(|i| {
                format!(
                    "{:016x}",
                    mix(seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                )
            })
            .collect();
        Self {
            keys,
            used: used.clamp(1, MAX_KEYS),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        self.next = (self.next + 1) % self.used;
        self.keys[self.next].clone()
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
    fn closes_on_size_and_linger_and_keeps_a_quiet_relay_on_one_key() {
        let t0 = Instant::now();
        let cfg = BatcherConfig {
            max_raw_bytes: 10_000,
            ..Default::default()
        };
        let mut b = Batcher::new(cfg.clone(), 1);
        let mut records = Vec::new();
        for i in 0..100 {
            records.extend(b.push(&packet(i), t0));
        }
        assert!(!records.is_empty(), "size limit closes records");
        // Under full_raw_bytes: only the max linger closes it.
        assert!(b.poll(t0 + cfg.linger).is_empty());
        records.extend(b.poll(t0 + cfg.max_linger));
        assert_eq!(b.buffered(), 0);
        let back: Vec<Vec<u8>> = records
            .iter()
            .flat_map(|r| kinesis_record::messages(&r.data).unwrap())
            .collect();
        assert_eq!(back, (0..100).map(packet).collect::<Vec<_>>());
        // A few KB a second: one key, one shard.
        let keys: std::collections::HashSet<_> = records.iter().map(|r| &r.partition_key).collect();
        assert_eq!((keys.len(), b.keys_in_use()), (1, 1));
    }

    #[test]
    fn a_busy_relay_closes_full_records_early_and_spreads_over_keys() {
        let cfg = BatcherConfig::default();
        let mut b = Batcher::new(cfg.clone(), 7);
        let t0 = Instant::now();
        let p = packet(1);
        // 3 s at about 20 MB/s: records close at the linger (full), never wait for the max.
        let per_ms = 20_000 / p.len();
        let mut records = Vec::new();
        for ms in 0..3000u64 {
            let now = t0 + Duration::from_millis(ms);
            for _ in 0..per_ms {
                records.extend(b.push(&p, now));
            }
            records.extend(b.poll(now));
        }
        let want = (20_000_000f64 / cfg.raw_bytes_per_key as f64).ceil() as usize;
        assert!(
            (want - 1..=want + 1).contains(&b.keys_in_use()),
            "{} keys for 20 MB/s",
            b.keys_in_use()
        );
        let keys: std::collections::HashSet<_> = records.iter().map(|r| &r.partition_key).collect();
        assert!(keys.len() >= want - 1, "{} keys used", keys.len());
        // Each record closed on size or at the linger with a full record, long before the max linger.
        let per_sec = records.len() as f64 / 3.0;
        assert!(
            per_sec >= 0.8 / cfg.linger.as_secs_f64(),
            "{per_sec} records/s"
        );
        // Quiet again: back to one key after a window.
        let later = t0 + Duration::from_secs(10);
        b.push(&p, later);
        b.poll(later + RATE_WINDOW);
        assert_eq!(b.keys_in_use(), 1);
    }

    #[test]
    fn a_max_linger_under_the_linger_is_refused() {
        let d = BatcherConfig::default();
        assert!(d.check().is_ok());
        let bad = BatcherConfig {
            max_linger: d.linger / 2,
            ..d
        };
        assert!(bad.check().is_err());
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
