//! Wiring: listeners → batcher → shipper, plus /metrics and shutdown.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
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
use tokio::task::JoinSet;

use crate::batcher::{Batcher, BatcherConfig, into_puts};
use crate::queue::{ShipSender, ship_queue};
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

/// Packet bytes waiting between the listeners and the batcher (which keeps up
/// with the listeners; Kinesis' slowness is the ship queue's to absorb).
const PACKET_QUEUE_BYTES: usize = 64 << 20;

/// Where a bound relay listens.
#[derive(Debug, Clone, Copy)]
pub struct RelayAddrs {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub metrics: SocketAddr,
}

/// A relay whose sockets and spool are open: binding is separate from
/// running so a caller asking for port 0 learns the ports before traffic.
pub struct BoundRelay {
    cfg: RelayConfig,
    spool: Spool,
    udp: tokio::net::UdpSocket,
    tcp: tokio::net::TcpListener,
    tls: Option<(tokio::net::TcpListener, TlsAcceptor)>,
    metrics: tokio::net::TcpListener,
}

impl BoundRelay {
    pub async fn bind(cfg: RelayConfig) -> anyhow::Result<Self> {
        let spool = Spool::open(&cfg.spool_dir, cfg.spool_max_bytes)
            .with_context(|| format!("opening spool {}", cfg.spool_dir.display()))?;
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
        let metrics = tokio::net::TcpListener::bind(cfg.metrics)
            .await
            .with_context(|| format!("binding {}", cfg.metrics))?;
        Ok(Self {
            cfg,
            spool,
            udp,
            tcp,
            tls,
            metrics,
        })
    }

    pub fn addrs(&self) -> std::io::Result<RelayAddrs> {
        Ok(RelayAddrs {
            udp: self.udp.local_addr()?,
            tcp: self.tcp.local_addr()?,
            tls: match &self.tls {
                Some((l, _)) => Some(l.local_addr()?),
                None => None,
            },
            metrics: self.metrics.local_addr()?,
        })
    }
}

pub async fn run(
    cfg: RelayConfig,
    sink: Arc<dyn RecordSink>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    run_bound(BoundRelay::bind(cfg).await?, sink, stop).await
}

pub async fn run_bound(
    bound: BoundRelay,
    sink: Arc<dyn RecordSink>,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let addrs = bound.addrs()?;
    let BoundRelay {
        cfg,
        spool,
        udp,
        tcp,
        tls,
        metrics: metrics_listener,
    } = bound;
    let counters = Arc::new(Counters::default());
    let ship_metrics = Arc::new(ShipMetrics::default());
    let spool = Arc::new(Mutex::new(spool));
    let shipper = Arc::new(Shipper {
        sink,
        spool: spool.clone(),
        retry: cfg.retry.clone(),
        metrics: ship_metrics.clone(),
    });
    let tls_addr = addrs.tls.map_or("off".into(), |a| a.to_string());
    println!(
        "edge-relay listening hep_udp={} hep_tcp={} hep_tls={tls_addr} metrics={}",
        addrs.udp, addrs.tcp, addrs.metrics
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

    let (packet_tx, packet_rx) = listen::queue::<Vec<u8>>(PACKET_QUEUE_BYTES);
    let (ship_tx, ship_rx) = ship_queue(cfg.memory_bytes);
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

    let queued = ship_tx.gauge();
    let progress = Arc::new(BatcherProgress::default());
    let batcher = tokio::spawn(run_batcher(
        packet_rx,
        ship_tx,
        progress.clone(),
        shipper.clone(),
        cfg.batcher.clone(),
    ));
    let shipping = tokio::spawn(shipper.clone().run(ship_rx));

    let (c, m, s, q, o) = (
        counters.clone(),
        ship_metrics.clone(),
        spool.clone(),
        queued,
        progress,
    );
    let app = axum::Router::new().route(
        "/metrics",
        get(move || async move {
            let mut rows = c.rows();
            rows.push((
                "batched_messages",
                "messages taken into a record (then queued, sent or spooled)",
                o.taken.load(Ordering::Acquire),
            ));
            rows.extend(m.rows());
            let (spool_bytes, corrupt) = s
                .lock()
                .map(|s| (s.used_bytes(), s.corrupt_files()))
                .unwrap_or_default();
            let mut gauges = c.gauges();
            gauges.push((
                "open_record_messages",
                "messages in the record being filled",
                o.open.load(Ordering::Acquire),
            ));
            gauges.push((
                "queued_bytes",
                "record bytes in memory waiting for Kinesis",
                q.get() as u64,
            ));
            gauges.push((
                "spool_bytes",
                "bytes waiting in the disk spool",
                spool_bytes,
            ));
            gauges.push((
                "shipping_blocked",
                "1 while Kinesis refuses records for good (stream missing, access denied): batches go to the spool",
                m.blocked.load(Ordering::Acquire),
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

/// Where the batcher is, for /metrics. Each packet is counted taken only
/// after its record state is published (open, or queued, or spooled), so a
/// reader that sees `taken` reach N and then `open` 0 and the ship queue empty
/// knows all N messages were sent or spooled: `decoded` alone counts packets
/// still waiting in the packet queue.
#[derive(Default)]
struct BatcherProgress {
    taken: AtomicU64,
    open: AtomicU64,
}

async fn run_batcher(
    mut rx: listen::QueueReceiver<Vec<u8>>,
    ship: ShipSender,
    progress: Arc<BatcherProgress>,
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
        let (records, taken) = tokio::select! {
            p = rx.recv() => match p {
                Some(p) => (batcher.push(&p, Instant::now()), 1),
                None => break,
            },
            _ = tick.tick() => (batcher.poll(Instant::now()), 0),
        };
        for put in into_puts(records) {
            // Kinesis is slower than the listeners: beyond the memory bound, spool.
            if let Err(put) = ship.try_send(put) {
                shipper.spool(&put);
            }
        }
        // After the puts are queued: a reader never sees closed records nowhere.
        progress
            .open
            .store(batcher.buffered() as u64, Ordering::Release);
        progress.taken.fetch_add(taken, Ordering::Release);
    }
    for put in into_puts(batcher.flush()) {
        if let Err(put) = ship.send(put).await {
            shipper.spool(&put);
        }
    }
}
