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
use lake::engine::QueryEngine;
use lake::writer::{PendingFile, WriteBuffer, WriterConfig};
use listen::CancellationToken;
use object_store::ObjectStore;
use tokio::task::JoinSet;
use web::{ApiState, ResponseLimit, protect, router};

use listen::args::HepListenArgs;
use listen::{KeyCheck, QueueReceiver, add, bind_udp_and_tcp, inc, run_stream, run_udp};

use lake::settings::{CaptureSettings, CompactionSettings, QuerySettings};

use crate::args::{HttpArgs, LakeArgs};
use crate::metrics::Metrics;

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on for HEP (UDP, TCP, TLS).
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,
    /// HEP port, UDP and TCP (0 picks a free one).
    #[arg(long = "hep-port", env = "PORT", default_value_t = 9060)]
    pub hep_port: u16,
    /// HTTP port for /query, /api/v3/query_sql and /metrics.
    #[arg(long, env = "HTTP_PORT", default_value_t = 9070)]
    pub http_port: u16,
    /// Arrow Flight SQL port (Grafana, ADBC), on the HTTP address with the
    /// API's tokens and limits; off unless given (0 picks a free one).
    #[arg(long = "flight-port", env = "HEPOP_FLIGHT_PORT")]
    pub flight_port: Option<u16>,
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Name in every file this process writes; unique per writer sharing a lake.
    #[arg(long, env = "WRITER_ID", default_value = "hepop")]
    pub writer_id: String,
    /// Rows wait at most this long before they are written (queryable).
    #[arg(long, env = "HEPOP_FLUSH_SECS", default_value_t = 10.0)]
    pub flush_secs: f64,
    /// ...or until a table's hour buffer has this many rows.
    #[arg(long, env = "HEPOP_FLUSH_ROWS", default_value_t = 200_000)]
    pub flush_rows: usize,
    /// A file that fails to write is retried until it is written; the pause between attempts grows to this, seconds.
    #[arg(long, env = "HEPOP_WRITE_RETRY_MAX_SECS", default_value_t = 30.0)]
    pub write_retry_max_secs: f64,
    /// On shutdown with the lake unwritable, retries go on this long before the rows are counted lost, seconds.
    #[arg(
        long,
        env = "HEPOP_WRITE_RETRY_AFTER_STOP_SECS",
        default_value_t = 30.0
    )]
    pub write_retry_after_stop_secs: f64,
    /// Memory for messages queued between the listeners and the writer, MiB:
    /// beyond it UDP drops (counted) and TCP senders wait.
    #[arg(long, env = "HEPOP_QUEUE_MB", default_value_t = 512)]
    pub queue_mb: usize,
    /// Kernel receive buffer for the UDP socket, bytes.
    #[arg(long, env = "HEPOP_UDP_BUFFER", default_value_t = 64 << 20)]
    pub udp_buffer: usize,
    /// Seconds between compaction runs (0 turns compaction and retention off).
    #[arg(long, env = "HEPOP_COMPACT_EVERY_SECS", default_value_t = 60)]
    pub compact_every_secs: u64,
    #[command(flatten)]
    pub compaction: CompactionSettings,
    #[command(flatten)]
    pub capture: CaptureSettings,
    #[command(flatten)]
    pub hep: HepListenArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub query: QuerySettings,
    /// Seconds between counter log lines (0: never).
    #[arg(long, env = "HEPOP_STATS_EVERY_SECS", default_value_t = 10)]
    pub stats_every_secs: u64,
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    lake::paths::check_writer_id(&args.writer_id).map_err(anyhow::Error::msg)?;
    let compaction = args.compaction.config()?;
    let metrics = Arc::new(Metrics::default());
    let buffered = Arc::new(AtomicU64::new(0));
    let stop = CancellationToken::new();

    // Every setting is checked before anything listens: a bad one stops the start with a message.
    let flush_after = positive_secs(args.flush_secs, "--flush-secs")?;
    anyhow::ensure!(args.queue_mb > 0, "--queue-mb must be at least 1");
    anyhow::ensure!(
        args.udp_buffer >= 1 << 16,
        "--udp-buffer must be at least 65536 bytes (one HEP packet)"
    );
    anyhow::ensure!(args.flush_rows > 0, "--flush-rows must be at least 1");
    let aleg_headers = args.capture.aleg_headers()?;
    let tokens = args.http.tokens()?;
    let allowed_hosts = args.http.allowed_hosts()?;
    let http_ip = args.http.bind(args.host, !tokens.is_empty())?;
    let http_tls = args.http.tls()?;
    let auth_keys = args.hep.auth_keys()?;
    let hep_tls = args.hep.tls()?;
    let stream_limits = args.hep.limits()?;
    let retry = WriteRetry {
        max_pause: positive_secs(args.write_retry_max_secs, "--write-retry-max-secs")?,
        after_stop: Duration::try_from_secs_f64(args.write_retry_after_stop_secs)
            .ok()
            .context("--write-retry-after-stop-secs must be a number of seconds, 0 or more")?,
    };
    let query_limits = args
        .query
        .limits(Duration::from_secs(args.capture.max_ahead_secs))?;
    // The lake last: a bad flag is refused before any I/O.
    let store = lake::store::open(&args.lake.data)
        .with_context(|| format!("opening lake at {}", args.lake.data))?;
    lake::store::check_writable(&store)
        .await
        .with_context(|| format!("the lake at {} is not writable", args.lake.data))?;

    let hep_addr = SocketAddr::new(args.host, args.hep_port);
    let (udp, tcp) = bind_udp_and_tcp(hep_addr, args.udp_buffer)
        .await
        .with_context(|| format!("binding HEP UDP and TCP {hep_addr}"))?;
    let tls_listener = match hep_tls {
        Some(_) => {
            let addr = SocketAddr::new(args.host, args.hep.tls_port);
            Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding HEP over TLS {addr}"))?,
            )
        }
        None => None,
    };
    let http_addr = SocketAddr::new(http_ip, args.http_port);
    let http = tokio::net::TcpListener::bind(http_addr)
        .await
        .with_context(|| format!("binding HTTP {http_addr}"))?;

    let engine = Arc::new(QueryEngine::new(store.clone(), query_limits)?);
    let flight = match args.flight_port {
        Some(port) => {
            let addr = SocketAddr::new(http_ip, port);
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding Flight SQL {addr}"))?;
            let service = flight_sql::FlightSql::new(
                engine.clone(),
                tokens.clone(),
                args.query.max_response_bytes(),
            );
            Some((l, service))
        }
        None => None,
    };
    // Writer and compactor tell the engine's listing cache what they change.
    let store = engine.watched(store);
    let (tx, rx) = listen::queue::<HepMessage>(args.queue_mb.saturating_mul(1 << 20));
    let m = metrics.clone();
    let b = buffered.clone();
    let q = tx.gauge();
    let e = engine.clone();
    let app = router(ApiState {
        engine,
        response_limit: ResponseLimit::Body(args.query.max_response_bytes()),
    })
    .route(
        "/metrics",
        get(move || async move {
            m.prometheus(b.load(Ordering::Relaxed), q.get() as u64, &e.cache_stats())
        }),
    );
    // /metrics follows the API's rule: behind the same tokens.
    let app = protect(app, &tokens);
    // With no token, a browser page under a rebinding name must not reach it.
    let app = if tokens.is_empty() {
        web::only_allowed_hosts(app, &allowed_hosts)
    } else {
        app
    };
    let app = web::with_security_headers(app);

    // Before the line below: a script may stop the server as soon as it reads it.
    let signalled = shutdown_signal();
    // Tests and scripts read this line to find the ports.
    let hep_tls_addr = match &tls_listener {
        Some(l) => l.local_addr()?.to_string(),
        None => "off".into(),
    };
    let flight_addr = match &flight {
        Some((l, _)) => l.local_addr()?.to_string(),
        None => "off".into(),
    };
    println!(
        "hepop listening hep_udp={} hep_tcp={} hep_tls={hep_tls_addr} http={} http_tls={} data={} flight={flight_addr}",
        udp.local_addr()?,
        tcp.local_addr()?,
        http.local_addr()?,
        if http_tls.is_some() { "on" } else { "off" },
        args.lake.data
    );
    tracing::info!(udp = %udp.local_addr()?, tcp = %tcp.local_addr()?, hep_tls = %hep_tls_addr, http = %http.local_addr()?, data = %args.lake.data, "hepop serving");
    if tokens.is_empty() {
        if args.http.insecure_public_http && !http_ip.is_loopback() {
            tracing::warn!(http = %http_addr, "INSECURE: the HTTP API is public with no token (--insecure-public-http): anyone reaching it reads every stored call");
        } else {
            tracing::warn!(http = %http_addr, "no API token configured: the HTTP API listens on this host only; set --api-token or --api-token-file to serve it on the network");
        }
    } else {
        tracing::info!(tokens = tokens.len(), "HTTP API requires a bearer token");
    }
    if auth_keys.is_empty() {
        tracing::info!("no HEP auth keys configured: every HEP packet is accepted");
    } else {
        tracing::info!(keys = ?auth_keys, "HEP auth keys required; rows store the key's name");
    }

    // One rule for every receiver: HEPv1 gets the arrival time, a capture
    // time outside the window is replaced by it (and counted).
    let window = args.capture.window();
    let m = metrics.clone();
    let stamp = move |_raw: &[u8], mut msg: HepMessage| {
        // A refused key is counted as `rejected`; an accepted one is stored by name.
        match auth_keys.check(msg.capture_pass.as_deref()) {
            KeyCheck::Refused => return None,
            KeyCheck::Allowed(name) => msg.capture_pass = Some(name.to_owned()),
            KeyCheck::Open => {}
        }
        if msg.settle_time(chrono::Utc::now().timestamp_micros(), &window) {
            inc(&m.time_replaced);
        }
        Some(msg)
    };
    let mut listeners = JoinSet::new();
    listeners.spawn(run_udp(
        udp,
        tx.clone(),
        stamp.clone(),
        metrics.listen.clone(),
        stop.clone(),
    ));
    if let (Some(l), Some(acceptor)) = (tls_listener, hep_tls) {
        listeners.spawn(run_stream(
            l,
            Some(acceptor),
            tx.clone(),
            stamp.clone(),
            metrics.listen.clone(),
            stream_limits.clone(),
            stop.clone(),
        ));
    }
    listeners.spawn(run_stream(
        tcp,
        None,
        tx,
        stamp,
        metrics.listen.clone(),
        stream_limits,
        stop.clone(),
    ));

    let writer_cfg = WriterConfig {
        writer_id: args.writer_id.clone(),
        max_rows: args.flush_rows,
        max_age: flush_after,
        aleg_headers,
        ..Default::default()
    };
    let writer = tokio::spawn(run_writer(
        rx,
        store.clone(),
        writer_cfg,
        metrics.clone(),
        buffered.clone(),
        retry,
        stop.clone(),
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
    let limits = crate::http_server::HttpLimits {
        max_connections: args.http.http_max_connections as usize,
        header_timeout: Duration::from_secs(args.http.http_header_timeout_secs),
        // Room for a calls request's several statements, each bounded by the query timeout.
        request_timeout: Duration::from_secs(2 * args.query.query_timeout_secs + 10),
        stall_timeout: Duration::from_secs(args.http.http_stall_timeout_secs),
    };
    let http_counters = metrics.http.clone();
    let http_task = tokio::spawn(async move {
        use crate::http_server::serve;
        match http_tls {
            Some(config) => {
                let l = crate::https::TlsListener::new(http, config)?;
                serve(l, app, limits, http_counters, http_stop).await
            }
            None => serve(http, app, limits, http_counters, http_stop).await,
        }
        std::io::Result::Ok(())
    });

    let flight_task = flight.map(|(listener, service)| {
        let stop = background.clone();
        tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let served = tonic::transport::Server::builder()
                .add_service(service.service())
                .serve_with_incoming_shutdown(incoming, stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "Flight SQL server stopped");
            }
        })
    });

    signalled.await;
    tracing::info!("shutting down: flushing buffered rows");
    stop.cancel();
    while listeners.join_next().await.is_some() {}
    // The listeners dropped their senders: the writer drains the queue and flushes all.
    writer.await?;
    background.cancel();
    let _ = http_task.await;
    if let Some(t) = flight_task {
        let _ = t.await;
    }
    tracing::info!("stopped: {}", metrics.summary());
    println!("hepop stopped {}", metrics.summary());
    Ok(())
}

/// Registers SIGINT and SIGTERM at once (one sent before would end the
/// process unlogged); the future ends at the first.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).expect("SIGINT handler"),
            signal(SignalKind::terminate()).expect("SIGTERM handler"),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! { _ = signals.0.recv() => {}, _ = signals.1.recv() => {} }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A seconds flag that must be a finite number above 0 (NaN, negative and 0 stop the start).
fn positive_secs(v: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a number of seconds above 0"))
}

/// How a file that fails to write is retried.
#[derive(Debug, Clone, Copy)]
struct WriteRetry {
    /// Longest pause between attempts (the pause doubles from 200 ms up to it).
    max_pause: Duration,
    /// After shutdown begins, attempts go on this long before the rows are counted lost.
    after_stop: Duration,
}

/// Writes one file, retrying with backoff for as long as the server runs: a
/// full disk or an S3 outage delays rows, never drops them. Meanwhile the
/// writer's slots fill, the queue behind them fills, UDP drops are counted and
/// TCP senders wait. Only when shutdown outlasts `after_stop` are rows lost, and counted.
async fn write_with_retry(
    file: PendingFile,
    store: Arc<dyn ObjectStore>,
    metrics: Arc<Metrics>,
    retry: WriteRetry,
    stop: CancellationToken,
) {
    let mut pause = Duration::from_millis(200);
    let mut give_up_at: Option<Instant> = None;
    for attempt in 1u64.. {
        match file.write(&store).await {
            Ok(()) => {
                add(&metrics.written, file.rows() as u64);
                inc(&metrics.files_written);
                if attempt > 1 {
                    tracing::info!(path = %file.path, attempt, "written after retrying");
                }
                return;
            }
            Err(e) => {
                inc(&metrics.write_errors);
                if attempt.is_power_of_two() {
                    tracing::warn!(path = %file.path, attempt, error = %e, "writing Parquet failed; retrying");
                }
            }
        }
        if stop.is_cancelled() {
            let at = *give_up_at.get_or_insert_with(|| Instant::now() + retry.after_stop);
            if Instant::now() >= at {
                break;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            // Shutdown: one prompt attempt more, then the final deadline applies.
            _ = stop.cancelled(), if give_up_at.is_none() => {}
        }
        pause = (pause * 2).min(retry.max_pause);
    }
    tracing::error!(path = %file.path, rows = file.rows(), "shutting down with the lake unwritable: rows lost");
    add(&metrics.listen.dropped, file.rows() as u64);
}

/// Files being encoded or uploaded at once; beyond it the writer waits (and the queue absorbs).
const MAX_INFLIGHT_WRITES: usize = 4;

async fn run_writer(
    mut rx: QueueReceiver<HepMessage>,
    store: Arc<dyn ObjectStore>,
    cfg: WriterConfig,
    metrics: Arc<Metrics>,
    buffered: Arc<AtomicU64>,
    retry: WriteRetry,
    stop: CancellationToken,
) {
    let mut buffer = WriteBuffer::new(cfg);
    let mut inflight = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut open = true;
    while open {
        tokio::select! {
            m = rx.recv() => match m {
                Some(m) => {
                    // One lock for what is queued, taken without a select per message.
                    let mut capture = metrics.capture.lock().unwrap_or_else(|p| p.into_inner());
                    let mut take = |m: HepMessage| {
                        buffer.append_seen(&m, |sip| capture.observe_parsed(&m, sip));
                    };
                    take(m);
                    for _ in 0..4096 {
                        match rx.try_recv() {
                            Some(m) => take(m),
                            None => break,
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
            inflight.spawn(write_with_retry(
                file,
                store.clone(),
                metrics.clone(),
                retry,
                stop.clone(),
            ));
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
        if r.jobs > 0
            || r.deleted > 0
            || r.expired_hours > 0
            || r.quarantined > 0
            || r.delta_commits > 0
            || r.call_hours_built > 0
        {
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
                delta_commits = r.delta_commits,
                delta_files_added = r.delta_files_added,
                delta_files_removed = r.delta_files_removed,
                delta_lag_secs = r.delta_lag_secs,
                call_hours_built = r.call_hours_built,
                call_records = r.call_records,
                "compacted"
            );
        }
        for e in &r.errors {
            tracing::warn!(error = %e, "compaction: partition failed; the run went on");
        }
    }
}
