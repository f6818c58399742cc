//! Wiring: listeners → batcher → shipper, plus /metrics and shutdown.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::routing::get;
use hep::HepMessage;
use listen::tls::TlsAcceptor;
use listen::{
    AuthKeys, CancellationToken, Counters, KeyCheck, StreamLimits, bind_udp_and_tcp, run_stream,
    run_udp,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::batcher::{Batcher, BatcherConfig, Record, into_puts};
use crate::shipper::{RetryConfig, ShipMetrics, Shipper};
use crate::sink::RecordSink;
use crate::spool::Spool;

#[derive(Clone)]
pub struct RelayConfig {
    pub listen: SocketAddr,
    pub udp_buffer: usize,
    /// When not empty, only messages whose auth key (chunk 14) is listed
    /// pass, forwarded with the key's name in place of the secret.
    pub auth_keys: AuthKeys,
    /// HEP over TLS: where, and with which certificate.
    pub tls: Option<(SocketAddr, TlsAcceptor)>,
    pub stream_limits: StreamLimits,
    pub batcher: BatcherConfig,
    pub retry: RetryConfig,
    /// Memory for batches waiting on Kinesis; beyond it batches go to the spool.
    pub memory_bytes: usize,
    pub spool_dir: PathBuf,
    pub spool_max_bytes: u64,
    pub metrics: SocketAddr,
}

/// Packets waiting between the listeners and the batcher.
const PACKET_QUEUE: usize = 100_000;

pub async fn run(
    cfg: RelayConfig,
    sink: Arc<dyn RecordSink>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let counters = Arc::new(Counters::default());
    let ship_metrics = Arc::new(ShipMetrics::default());
    let spool = Arc::new(Mutex::new(
        Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)
            .with_context(|| format!("opening spool {}", cfg.spool_dir.display()))?,
    ));
    let shipper = Arc::new(Shipper {
        sink,
        spool: spool.clone(),
        retry: cfg.retry.clone(),
        metrics: ship_metrics.clone(),
    });

    let (udp, tcp) = bind_udp_and_tcp(cfg.listen, cfg.udp_buffer)
        .await
        .with_context(|| format!("binding HEP UDP and TCP {}", cfg.listen))?;
    let tls = match &cfg.tls {
        Some((addr, acceptor)) => Some((
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding HEP over TLS {addr}"))?,
            acceptor.clone(),
        )),
        None => None,
    };
    let metrics_listener = tokio::net::TcpListener::bind(cfg.metrics)
        .await
        .with_context(|| format!("binding {}", cfg.metrics))?;
    let tls_addr = match &tls {
        Some((l, _)) => l.local_addr()?.to_string(),
        None => "off".into(),
    };
    println!(
        "edge-relay listening hep_udp={} hep_tcp={} hep_tls={tls_addr} metrics={}",
        udp.local_addr()?,
        tcp.local_addr()?,
        metrics_listener.local_addr()?
    );

    let keys = Arc::new(cfg.auth_keys.clone());
    let accept = move |raw: &[u8], m: HepMessage| -> Option<Vec<u8>> {
        match keys.check(m.capture_pass.as_deref()) {
            KeyCheck::Refused => None,
            KeyCheck::Open => Some(raw.to_vec()),
            // The lake stores what it is sent: send the key's name, never the secret.
            KeyCheck::Allowed(name) => hep::replace_auth_key(raw, name),
        }
    };

    let (packet_tx, packet_rx) = mpsc::channel::<Vec<u8>>(PACKET_QUEUE);
    // Each queued batch is at most 5 MiB: the memory bound in batches.
    let (ship_tx, ship_rx) = mpsc::channel::<Vec<Record>>((cfg.memory_bytes / (5 << 20)).max(2));
    let listen_stop = CancellationToken::new();
    let mut listeners = JoinSet::new();
    listeners.spawn(run_udp(
        udp,
        packet_tx.clone(),
        accept.clone(),
        counters.clone(),
        listen_stop.clone(),
    ));
    if let Some((listener, acceptor)) = tls {
        listeners.spawn(run_stream(
            listener,
            Some(acceptor),
            packet_tx.clone(),
            accept.clone(),
            counters.clone(),
            cfg.stream_limits.clone(),
            listen_stop.clone(),
        ));
    }
    listeners.spawn(run_stream(
        tcp,
        None,
        packet_tx,
        accept,
        counters.clone(),
        cfg.stream_limits.clone(),
        listen_stop.clone(),
    ));

    let batcher = tokio::spawn(run_batcher(
        packet_rx,
        ship_tx,
        shipper.clone(),
        cfg.batcher.clone(),
    ));
    let shipping = tokio::spawn(shipper.clone().run(ship_rx));

    let (c, m, s) = (counters.clone(), ship_metrics.clone(), spool.clone());
    let app = axum::Router::new().route(
        "/metrics",
        get(move || async move {
            let mut rows = c.rows();
            rows.extend(m.rows());
            let (spool_bytes, corrupt) = s
                .lock()
                .map(|s| (s.used_bytes(), s.corrupt_files()))
                .unwrap_or_default();
            let mut gauges = c.gauges();
            gauges.push((
                "spool_bytes",
                "bytes waiting in the disk spool",
                spool_bytes,
            ));
            gauges.push((
                "spool_corrupt_files",
                "spool files that did not decode, set aside as .corrupt",
                corrupt,
            ));
            listen::prometheus("edge_relay", &rows, &gauges)
        }),
    );
    let http_stop = CancellationToken::new();
    let hs = http_stop.clone();
    let http = tokio::spawn(async move {
        axum::serve(metrics_listener, app)
            .with_graceful_shutdown(async move { hs.cancelled().await })
            .await
    });

    stop.cancelled().await;
    tracing::info!("shutting down: flushing batches");
    listen_stop.cancel();
    while listeners.join_next().await.is_some() {}
    batcher.await?;
    shipping.await?;
    http_stop.cancel();
    let _ = http.await;
    let rows: Vec<String> = counters
        .rows()
        .iter()
        .chain(ship_metrics.rows().iter())
        .map(|(n, _, v)| format!("{n}={v}"))
        .collect();
    println!("edge-relay stopped {}", rows.join(" "));
    Ok(())
}

async fn run_batcher(
    mut rx: mpsc::Receiver<Vec<u8>>,
    ship: mpsc::Sender<Vec<Record>>,
    shipper: Arc<Shipper>,
    cfg: BatcherConfig,
) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64;
    let mut tick = tokio::time::interval((cfg.linger / 4).max(Duration::from_millis(5)));
    let mut batcher = Batcher::new(cfg, seed);
    loop {
        let records = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => batcher.push(&p, Instant::now()),
                None => break,
            },
            _ = tick.tick() => batcher.poll(Instant::now()),
        };
        for put in into_puts(records) {
            // Kinesis is slower than the listeners: beyond the memory bound, spool.
            if let Err(
                mpsc::error::TrySendError::Full(put) | mpsc::error::TrySendError::Closed(put),
            ) = ship.try_send(put)
            {
                shipper.spool(&put);
            }
        }
    }
    for put in into_puts(batcher.flush()) {
        if let Err(e) = ship.send(put).await {
            shipper.spool(&e.0);
        }
    }
}
