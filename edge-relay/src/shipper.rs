//! Ships PutRecords batches with retries; spools what Kinesis will not take
//! and drains the spool when it recovers.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::batcher::Record;
use crate::queue::ShipReceiver;
use crate::sink::{RecordSink, SinkError};
use crate::spool::Spool;
use listen::{add, get, inc};

#[derive(Debug, Clone)]
pub struct RetryConfig {
    pub base: Duration,
    pub max: Duration,
    /// Retrying one batch stops after this long; what is left goes to the spool.
    pub give_up_after: Duration,
    /// One PutRecords call taking longer is abandoned and retried (a hung
    /// connection must not hold the batch past `give_up_after`).
    pub call_timeout: Duration,
    /// After a permanent error (the stream missing, access denied) batches go
    /// to the spool, and Kinesis is asked again this often.
    pub blocked_probe: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            give_up_after: Duration::from_secs(20),
            call_timeout: Duration::from_secs(10),
            blocked_probe: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default)]
pub struct ShipMetrics {
    pub records_put: AtomicU64,
    pub bytes_put: AtomicU64,
    pub put_calls: AtomicU64,
    pub put_retries: AtomicU64,
    pub spooled_batches: AtomicU64,
    pub unspooled_batches: AtomicU64,
    /// Records lost because the spool was full or failing.
    pub lost_records: AtomicU64,
    /// Calls abandoned after `call_timeout`.
    pub put_timeouts: AtomicU64,
    /// Calls refused for good (stream missing, access denied, ...).
    pub permanent_errors: AtomicU64,
    /// 1 while shipping is stopped by a permanent error (a gauge).
    pub blocked: AtomicU64,
}

impl ShipMetrics {
    pub fn rows(&self) -> Vec<(&'static str, &'static str, u64)> {
        vec![
            (
                "records_put",
                "Kinesis records accepted",
                get(&self.records_put),
            ),
            (
                "bytes_put",
                "Kinesis record bytes accepted",
                get(&self.bytes_put),
            ),
            ("put_calls", "PutRecords calls", get(&self.put_calls)),
            (
                "put_retries",
                "PutRecords retries (throttling, partial failures, errors)",
                get(&self.put_retries),
            ),
            (
                "spooled_batches",
                "batches written to the disk spool",
                get(&self.spooled_batches),
            ),
            (
                "unspooled_batches",
                "spooled batches delivered",
                get(&self.unspooled_batches),
            ),
            (
                "lost_records",
                "records lost: spool full or failing",
                get(&self.lost_records),
            ),
            (
                "put_timeouts",
                "PutRecords calls abandoned after the call timeout",
                get(&self.put_timeouts),
            ),
            (
                "permanent_errors",
                "PutRecords calls refused for good: stream missing, access denied",
                get(&self.permanent_errors),
            ),
        ]
    }
}

/// Exponential backoff with full jitter: uniform in [0, min(max, base·2^attempt)].
pub fn backoff(cfg: &RetryConfig, attempt: u32, random: u64) -> Duration {
    let ceiling = cfg
        .base
        .saturating_mul(1u32 << attempt.min(16))
        .min(cfg.max);
    let nanos = ceiling.as_nanos() as u64;
    Duration::from_nanos(if nanos == 0 { 0 } else { random % nanos })
}

fn random() -> u64 {
    // Jitter only needs to differ between relays and attempts.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    crate::batcher::mix(t ^ (std::process::id() as u64).rotate_left(32))
}

pub struct Shipper {
    pub sink: Arc<dyn RecordSink>,
    pub spool: Arc<Mutex<Spool>>,
    pub retry: RetryConfig,
    pub metrics: Arc<ShipMetrics>,
}

impl Shipper {
    /// Sends `records`, retrying failed ones until `give_up_after`; returns what is still unsent.
    pub async fn send(&self, mut pending: Vec<Record>, give_up_after: Duration) -> Vec<Record> {
        let start = Instant::now();
        let mut attempt = 0;
        loop {
            inc(&self.metrics.put_calls);
            let put = tokio::time::timeout(self.retry.call_timeout, self.sink.put(&pending));
            let result = put.await.unwrap_or_else(|_| {
                inc(&self.metrics.put_timeouts);
                Err(SinkError::Retriable(format!(
                    "PutRecords took longer than {:?}",
                    self.retry.call_timeout
                )))
            });
            match result {
                Ok(failed) => {
                    self.set_blocked(None);
                    let ok = pending.len() - failed.len();
                    add(&self.metrics.records_put, ok as u64);
                    let sent: usize = pending
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !failed.contains(i))
                        .map(|(_, r)| r.data.len())
                        .sum();
                    add(&self.metrics.bytes_put, sent as u64);
                    if failed.is_empty() {
                        return Vec::new();
                    }
                    tracing::debug!(
                        failed = failed.len(),
                        of = pending.len(),
                        "partial PutRecords failure"
                    );
                    pending = failed.into_iter().map(|i| pending[i].clone()).collect();
                }
                // No retry can succeed: the batch goes to the spool now.
                Err(e) if e.is_permanent() => {
                    self.set_blocked(Some(&e));
                    return pending;
                }
                Err(e) => tracing::warn!(error = %e, records = pending.len(), "PutRecords failed"),
            }
            if start.elapsed() >= give_up_after {
                return pending;
            }
            inc(&self.metrics.put_retries);
            tokio::time::sleep(backoff(&self.retry, attempt, random())).await;
            attempt += 1;
        }
    }

    /// Records a permanent error (`Some`), or a call that went through:
    /// the log says when shipping stops and starts again, once each.
    fn set_blocked(&self, error: Option<&SinkError>) {
        let now = u64::from(error.is_some());
        let was = self.metrics.blocked.swap(now, Ordering::AcqRel);
        match error {
            Some(e) => {
                inc(&self.metrics.permanent_errors);
                if was == 0 {
                    tracing::error!(
                        error = %e,
                        probe_every = ?self.retry.blocked_probe,
                        "Kinesis refuses the relay's records and will until this is fixed; \
                         batches go to the spool (shipping_blocked 1)"
                    );
                }
            }
            None if was == 1 => tracing::warn!("Kinesis takes records again; the spool drains"),
            None => {}
        }
    }

    fn is_blocked(&self) -> bool {
        get(&self.metrics.blocked) == 1
    }

    /// Stores a batch on disk; counts it lost when the spool is full or failing.
    pub fn spool(&self, records: &[Record]) {
        if records.is_empty() {
            return;
        }
        match self.spool.lock().expect("spool lock").push(records) {
            Ok(true) => inc(&self.metrics.spooled_batches),
            Ok(false) => {
                tracing::error!(records = records.len(), "spool full: records lost");
                add(&self.metrics.lost_records, records.len() as u64);
            }
            Err(e) => {
                tracing::error!(error = %e, records = records.len(), "spool write failed: records lost");
                add(&self.metrics.lost_records, records.len() as u64);
            }
        }
    }

    /// Tries to deliver the oldest spooled batch once; true if it went.
    async fn drain_one(&self) -> bool {
        let oldest = self.spool.lock().expect("spool lock").oldest();
        let (path, records) = match oldest {
            Ok(Some(x)) => x,
            Ok(None) => return true,
            Err(e) => {
                tracing::error!(error = %e, "reading spool failed");
                return false;
            }
        };
        let left = self.send(records, self.retry.max).await;
        let mut spool = self.spool.lock().expect("spool lock");
        if !left.is_empty() {
            // What is left replaces the file in place: it keeps its turn and needs
            // no new room, so a full spool loses nothing. If that fails the old
            // file stays whole: at worst some records go twice.
            if let Err(e) = spool.replace(&path, &left) {
                tracing::error!(error = %e, "rewriting spool file failed; it is kept whole");
            }
            return false;
        }
        inc(&self.metrics.unspooled_batches);
        if let Err(e) = spool.remove(&path) {
            tracing::error!(error = %e, "removing spool file failed");
        }
        true
    }

    fn spool_empty(&self) -> bool {
        self.spool.lock().expect("spool lock").is_empty()
    }

    /// Runs until the batch channel closes: sends while Kinesis is healthy,
    /// spools while it is not, drains the spool as soon as it is again.
    pub async fn run(self: Arc<Self>, mut rx: ShipReceiver) {
        let mut healthy = true;
        let mut probe_attempt = 0;
        loop {
            let wait = if self.spool_empty() {
                Duration::from_secs(3600)
            } else if healthy {
                Duration::ZERO
            } else if self.is_blocked() {
                self.retry.blocked_probe
            } else {
                backoff(&self.retry, probe_attempt, random()).max(self.retry.base)
            };
            tokio::select! {
                biased;
                put = rx.recv() => match put {
                    // The put keeps its memory until it is sent or spooled.
                    Some(put) if healthy => {
                        let left = self.send(put.records.clone(), self.retry.give_up_after).await;
                        if !left.is_empty() {
                            healthy = false;
                            self.spool(&left);
                        }
                    }
                    // While Kinesis is down new batches go straight to disk.
                    Some(put) => self.spool(&put.records),
                    None => break,
                },
                _ = tokio::time::sleep(wait) => {
                    healthy = self.drain_one().await;
                    probe_attempt = if healthy { 0 } else { probe_attempt + 1 };
                }
            }
        }
        // Shutdown: what the spool holds stays for the next start.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::ship_queue;

    /// Kinesis that refuses every call until `up_at` (tokio's clock).
    struct DownUntil {
        up_at: tokio::time::Instant,
        delivered: Mutex<Vec<Record>>,
    }

    #[async_trait::async_trait]
    impl RecordSink for DownUntil {
        async fn put(&self, records: &[Record]) -> Result<Vec<usize>, SinkError> {
            if tokio::time::Instant::now() < self.up_at {
                return Err(SinkError::Retriable("unreachable".into()));
            }
            self.delivered.lock().unwrap().extend_from_slice(records);
            Ok(Vec::new())
        }
    }

    fn record(i: usize) -> Record {
        Record {
            partition_key: format!("{i:08}"),
            data: i.to_be_bytes().to_vec(),
        }
    }

    /// An hour without Kinesis, played on tokio's paused clock: a put a second
    /// goes to the spool, and once Kinesis is back every record arrives once.
    #[tokio::test(start_paused = true)]
    async fn an_hour_long_outage_is_spooled_then_delivered_once() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(DownUntil {
            up_at: tokio::time::Instant::now() + Duration::from_secs(3600),
            delivered: Mutex::default(),
        });
        let metrics = Arc::new(ShipMetrics::default());
        let shipper = Arc::new(Shipper {
            sink: sink.clone(),
            spool: Arc::new(Mutex::new(Spool::open(dir.path(), 1 << 30).unwrap())),
            retry: RetryConfig {
                base: Duration::from_millis(100),
                max: Duration::from_secs(30),
                give_up_after: Duration::from_secs(20),
                ..RetryConfig::default()
            },
            metrics: metrics.clone(),
        });
        let (tx, rx) = ship_queue(64 << 20);
        let run = tokio::spawn(shipper.clone().run(rx));
        let seconds = 4000;
        for s in 0..seconds {
            tx.send(vec![record(s)]).await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        // Kinesis has been back for 400 s: the spool drained meanwhile.
        assert!(shipper.spool_empty(), "spool drained");
        drop(tx);
        run.await.unwrap();
        let got = sink.delivered.lock().unwrap().clone();
        let mut keys: Vec<_> = got.iter().map(|r| r.partition_key.clone()).collect();
        keys.sort();
        let want: Vec<_> = (0..seconds).map(|i| record(i).partition_key).collect();
        assert_eq!(keys, want, "every record once");
        assert_eq!(get(&metrics.lost_records), 0);
        let spooled = get(&metrics.spooled_batches);
        assert!(spooled > 10, "the outage went to disk: {spooled}");
        assert_eq!(get(&metrics.unspooled_batches), spooled);
    }

    /// Kinesis that refuses for good (a deleted stream) or never answers.
    struct Refusing {
        hang: bool,
        calls: AtomicU64,
    }

    #[async_trait::async_trait]
    impl RecordSink for Refusing {
        async fn put(&self, _: &[Record]) -> Result<Vec<usize>, SinkError> {
            inc(&self.calls);
            if self.hang {
                std::future::pending::<()>().await;
            }
            Err(SinkError::Permanent("ResourceNotFoundException".into()))
        }
    }

    fn shipper_over(sink: Arc<Refusing>, dir: &std::path::Path) -> Arc<Shipper> {
        Arc::new(Shipper {
            sink,
            spool: Arc::new(Mutex::new(Spool::open(dir, 1 << 30).unwrap())),
            retry: RetryConfig {
                give_up_after: Duration::from_secs(20),
                call_timeout: Duration::from_secs(10),
                ..RetryConfig::default()
            },
            metrics: Arc::default(),
        })
    }

    /// A permanent error is not retried: the batch goes to the spool at
    /// once, shipping stops (the gauge says so) and Kinesis is asked again
    /// only every `blocked_probe`.
    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_spools_at_once_and_stops_shipping() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Refusing {
            hang: false,
            calls: AtomicU64::new(0),
        });
        let shipper = shipper_over(sink.clone(), dir.path());
        let (tx, rx) = ship_queue(64 << 20);
        let run = tokio::spawn(shipper.clone().run(rx));
        for i in 0..10 {
            tx.send(vec![record(i)]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Ten minutes: ten probes at most, besides the first call.
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(tx);
        run.await.unwrap();
        let m = &shipper.metrics;
        assert_eq!(get(&m.put_retries), 0, "nothing retried");
        assert_eq!(get(&m.blocked), 1);
        assert_eq!(get(&m.spooled_batches), 10, "every batch kept");
        assert_eq!(get(&m.lost_records), 0);
        let calls = get(&sink.calls);
        assert!((1..=11).contains(&calls), "{calls} calls in ten minutes");
        assert_eq!(get(&m.permanent_errors), calls);
    }

    /// A call that never returns is abandoned after `call_timeout` and
    /// retried; the batch reaches the spool once `give_up_after` has passed.
    #[tokio::test(start_paused = true)]
    async fn a_hung_call_times_out_and_the_batch_is_spooled() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Refusing {
            hang: true,
            calls: AtomicU64::new(0),
        });
        let shipper = shipper_over(sink.clone(), dir.path());
        let left = shipper.send(vec![record(1)], Duration::from_secs(20)).await;
        assert_eq!(left.len(), 1, "still unsent");
        let m = &shipper.metrics;
        let timeouts = get(&m.put_timeouts);
        assert!(
            (2..=3).contains(&timeouts),
            "{timeouts} timeouts of 10 s in 20 s"
        );
        assert_eq!(get(&sink.calls), timeouts);
        assert_eq!(get(&m.blocked), 0, "a timeout is not permanent");
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let cfg = RetryConfig {
            base: Duration::from_millis(100),
            max: Duration::from_secs(5),
            give_up_after: Duration::ZERO,
            ..RetryConfig::default()
        };
        for attempt in 0..40 {
            for r in [0, 1, 12345, u64::MAX] {
                let d = backoff(&cfg, attempt, r);
                assert!(
                    d <= Duration::from_millis(100 << attempt.min(6)).min(Duration::from_secs(5))
                );
            }
        }
        assert_ne!(backoff(&cfg, 5, 1), backoff(&cfg, 5, 999_999_937));
    }
}
