//! `hepop serve`: HEP in over UDP/TCP, Parquet out, SQL over HTTP, compaction
//! in the background. Everything the Lambdas do, in one process.
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::get;
use hep::HepMessage;
use lake::compact::{CompactionConfig, Sweep};
use lake::engine::{QueryEngine, QueryLimits};
use lake::http::{ApiState, router};
use lake::writer::{PendingFile, WriteBuffer, WriterConfig};
use listen::CancellationToken;
use object_store::ObjectStore;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use listen::{add, bind_tcp_beside, bind_udp, inc, run_tcp, run_udp};

use crate::args::{CompactionArgs, TimeArgs};
use crate::metrics::Metrics;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on (HEP and HTTP).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// HEP port, UDP and TCP (0 picks a free one).
    #[arg(long = "hep-port", env = "PORT", default_value_t = 9060)]
    pub hep_port: u16,
    /// HTTP port for /query, /api/v3/query_sql and /metrics.
    #[arg(long, env = "HTTP_PORT", default_value_t = 9070)]
    pub http_port: u16,
    /// Where the lake lives: a directory, or s3://bucket/prefix.
    #[arg(long = "data", env = "PARQUET_DIR", default_value = "./data")]
    pub data: String,
    /// Name in every file this process writes; unique per writer sharing a lake.
    #[arg(long, env = "WRITER_ID", default_value = "hepop")]
    pub writer_id: String,
    /// Rows wait at most this long before they are written (queryable).
    #[arg(long, env = "HEPOP_FLUSH_SECS", default_value_t = 10.0)]
    pub flush_secs: f64,
    /// ...or until a table's hour buffer has this many rows.
    #[arg(long, env = "HEPOP_FLUSH_ROWS", default_value_t = 200_000)]
    pub flush_rows: usize,
    /// Messages queued between the listeners and the writer.
    #[arg(long, env = "HEPOP_QUEUE", default_value_t = 1_000_000)]
    pub queue: usize,
    /// Kernel receive buffer for the UDP socket, bytes.
    #[arg(long, env = "HEPOP_UDP_BUFFER", default_value_t = 64 << 20)]
    pub udp_buffer: usize,
    /// Seconds between compaction runs (0 turns compaction and retention off).
    #[arg(long, env = "HEPOP_COMPACT_EVERY_SECS", default_value_t = 60)]
    pub compact_every_secs: u64,
    #[command(flatten)]
    pub compaction: CompactionArgs,
    #[command(flatten)]
    pub time: TimeArgs,
    #[arg(long, env = "HEPOP_QUERY_TIMEOUT_SECS", default_value_t = 30)]
    pub query_timeout_secs: u64,
    #[arg(long, env = "HEPOP_QUERY_MAX_ROWS", default_value_t = 100_000)]
    pub query_max_rows: usize,
    #[arg(long, env = "HEPOP_QUERY_MEMORY_MB", default_value_t = 1024)]
    pub query_memory_mb: usize,
    /// Seconds between counter log lines (0: never).
    #[arg(long, env = "HEPOP_STATS_EVERY_SECS", default_value_t = 10)]
    pub stats_every_secs: u64,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    lake::paths::check_writer_id(&args.writer_id).map_err(anyhow::Error::msg)?;
    let compaction = args.compaction.config()?;
    let store =
        lake::store::open(&args.data).with_context(|| format!("opening lake at {}", args.data))?;
    let metrics = Arc::new(Metrics::default());
    let buffered = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();

    let hep_addr = SocketAddr::new(args.host, args.hep_port);
    let udp =
        bind_udp(hep_addr, args.udp_buffer).with_context(|| format!("binding UDP {hep_addr}"))?;
    let tcp = bind_tcp_beside(&udp).await?;
    let http = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.http_port))
        .await
        .with_context(|| format!("binding HTTP port {}", args.http_port))?;

    let engine = QueryEngine::new(
        store.clone(),
        QueryLimits {
            timeout: Duration::from_secs(args.query_timeout_secs),
            max_rows: args.query_max_rows,
            memory_bytes: args.query_memory_mb << 20,
            default_ahead: Duration::from_secs(args.time.max_ahead_secs),
            ..Default::default()
        },
    )?;
    let m = metrics.clone();
    let b = buffered.clone();
    let app = router(ApiState {
        engine: Arc::new(engine),
        max_response_bytes: None,
    })
    .route(
        "/metrics",
        get(move || async move { m.prometheus(b.load(Ordering::Relaxed)) }),
    );

    // Tests and scripts read this line to find the ports.
    println!(
        "hepop listening hep_udp={} hep_tcp={} http={} data={}",
        udp.local_addr()?,
        tcp.local_addr()?,
        http.local_addr()?,
        args.data
    );
    tracing::info!(udp = %udp.local_addr()?, tcp = %tcp.local_addr()?, http = %http.local_addr()?, data = %args.data, "hepop serving");

    // One rule for every receiver: HEPv1 gets the arrival time, a capture
    // time outside the window is replaced by it (and counted).
    let window = args.time.window();
    let m = metrics.clone();
    let stamp = move |_raw: &[u8], mut msg: HepMessage| {
        if msg.settle_time(chrono::Utc::now().timestamp_micros(), &window) {
            inc(&m.time_replaced);
        }
        Some(msg)
    };
    let (tx, rx) = mpsc::channel::<HepMessage>(args.queue);
    let mut listeners = JoinSet::new();
    listeners.spawn(run_udp(
        udp,
        tx.clone(),
        stamp.clone(),
        metrics.listen.clone(),
        stop.clone(),
    ));
    listeners.spawn(run_tcp(
        tcp,
        tx,
        stamp,
        metrics.listen.clone(),
        stop.clone(),
    ));

    let writer_cfg = WriterConfig {
        writer_id: args.writer_id.clone(),
        max_rows: args.flush_rows,
        max_age: Duration::from_secs_f64(args.flush_secs),
        ..Default::default()
    };
    let writer = tokio::spawn(run_writer(
        rx,
        store.clone(),
        writer_cfg,
        metrics.clone(),
        buffered.clone(),
    ));

    let background = CancellationToken::new();
    if args.compact_every_secs > 0 {
        tokio::spawn(run_compactor(
            store.clone(),
            compaction,
            Duration::from_secs(args.compact_every_secs),
            metrics.clone(),
            background.clone(),
        ));
    }
    if args.stats_every_secs > 0 {
        let (m, b, stop) = (metrics.clone(), buffered.clone(), background.clone());
        let every = Duration::from_secs(args.stats_every_secs);
        tokio::spawn(async move {
            let mut t = tokio::time::interval(every);
            t.tick().await;
            loop {
                tokio::select! { _ = t.tick() => {}, _ = stop.cancelled() => return }
                tracing::info!("{} buffered={}", m.summary(), b.load(Ordering::Relaxed));
            }
        });
    }

    let http_stop = background.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async move { http_stop.cancelled().await })
            .await
    });

    shutdown_signal().await;
    tracing::info!("shutting down: flushing buffered rows");
    stop.cancel();
    while listeners.join_next().await.is_some() {}
    // The listeners dropped their senders: the writer drains the queue and flushes all.
    writer.await?;
    background.cancel();
    let _ = http_task.await;
    tracing::info!("stopped: {}", metrics.summary());
    println!("hepop stopped {}", metrics.summary());
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Writes one file, retrying with backoff; rows count as dropped only when every attempt failed.
async fn write_with_retry(file: PendingFile, store: Arc<dyn ObjectStore>, metrics: Arc<Metrics>) {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=5 {
        match file.write(&store).await {
            Ok(()) => {
                add(&metrics.written, file.rows() as u64);
                inc(&metrics.files_written);
                return;
            }
            Err(e) => {
                inc(&metrics.write_errors);
                tracing::warn!(path = %file.path, attempt, error = %e, "writing Parquet failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    tracing::error!(path = %file.path, rows = file.rows(), "giving up on file");
    add(&metrics.listen.dropped, file.rows() as u64);
}

/// Files being encoded or uploaded at once; beyond it the writer waits (and the queue absorbs).
const MAX_INFLIGHT_WRITES: usize = 4;

async fn run_writer(
    mut rx: mpsc::Receiver<HepMessage>,
    store: Arc<dyn ObjectStore>,
    cfg: WriterConfig,
    metrics: Arc<Metrics>,
    buffered: Arc<AtomicU64>,
) {
    let mut buffer = WriteBuffer::new(cfg);
    let mut inflight = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut open = true;
    while open {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => {
                    buffer.append(&m);
                    // Take what else is queued without a select per message.
                    for _ in 0..4096 {
                        match rx.try_recv() {
                            Ok(m) => buffer.append(&m),
                            Err(_) => break,
                        }
                    }
                }
                None => open = false,
            },
            _ = tick.tick() => {}
        }
        for file in buffer.take_due(Instant::now(), !open) {
            while inflight.len() >= MAX_INFLIGHT_WRITES {
                inflight.join_next().await;
            }
            inflight.spawn(write_with_retry(file, store.clone(), metrics.clone()));
        }
        while inflight.try_join_next().is_some() {}
        buffered.store(buffer.buffered_rows() as u64, Ordering::Relaxed);
    }
    while inflight.join_next().await.is_some() {}
    buffered.store(0, Ordering::Relaxed);
}

/// A full sweep (every hour, for late data into old ones) this often; recent hours every run.
const FULL_SWEEP_EVERY: Duration = Duration::from_secs(3600);

async fn run_compactor(
    store: Arc<dyn ObjectStore>,
    cfg: CompactionConfig,
    every: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut t = tokio::time::interval(every);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_full: Option<Instant> = None;
    loop {
        tokio::select! { _ = t.tick() => {}, _ = stop.cancelled() => return }
        let sweep = if last_full.is_none_or(|l| l.elapsed() >= FULL_SWEEP_EVERY) {
            last_full = Some(Instant::now());
            Sweep::Full
        } else {
            Sweep::Recent
        };
        let r = lake::compact::run(
            &store,
            &cfg,
            chrono::Utc::now().timestamp_micros(),
            sweep,
            None,
        )
        .await;
        metrics.record_compaction(&r);
        if r.jobs > 0 || r.deleted > 0 || r.expired_hours > 0 || r.quarantined > 0 {
            tracing::info!(
                ?sweep,
                jobs = r.jobs,
                files_in = r.files_in,
                files_out = r.files_out,
                rows = r.rows,
                bytes_in = r.bytes_in,
                bytes_out = r.bytes_out,
                deleted = r.deleted,
                quarantined = r.quarantined,
                expired_hours = r.expired_hours,
                "compacted"
            );
        }
        for e in &r.errors {
            tracing::warn!(error = %e, "compaction: partition failed; the run went on");
        }
    }
}
