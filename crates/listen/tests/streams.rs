//! HEP stream connections under their bounds: TLS in, plain TCP refused on
//! the TLS port, the connection cap, silent and slow-loris peers, backoff on
//! failing accepts. Real sockets on 127.0.0.1, short limits, conditions
//! polled with a deadline (never a fixed sleep as synchronisation).
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hep::HepMessage;
use hep::sample::Call;
use listen::{CancellationToken, Counters, Incoming, StreamLimits, get, run_stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;

fn frames(run: u64, n: usize) -> Vec<Vec<u8>> {
    Call::new(run, 0)
        .all(1_764_000_000_000_000)
        .into_iter()
        .cycle()
        .take(n)
        .map(|m| hep::encode_v3(&m).unwrap())
        .collect()
}

struct Server {
    addr: SocketAddr,
    counters: Arc<Counters>,
    rx: listen::QueueReceiver<HepMessage>,
    stop: CancellationToken,
}

async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, limits: StreamLimits) -> Server {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let (tx, rx) = listen::queue(64 << 20);
    let stop = CancellationToken::new();
    tokio::spawn(run_stream(
        l,
        tls,
        tx,
        |_: &[u8], m: HepMessage| Some(m),
        counters.clone(),
        limits,
        stop.clone(),
    ));
    Server {
        addr,
        counters,
        rx,
        stop,
    }
}

/// Waits for `cond`, failing after 10 s.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn receive(rx: &mut listen::QueueReceiver<HepMessage>, n: usize) -> Vec<HepMessage> {
    let mut got = Vec::new();
    while got.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("messages arrive")
            .unwrap();
        got.push(m);
    }
    got
}

/// Reads until the server closes the connection (EOF or reset); fails after 10 s.
async fn closed_by_server<S: tokio::io::AsyncRead + Unpin>(s: &mut S) {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the server kept the connection open"),
        }
    }
}

fn certificate() -> (
    rustls::pki_types::CertificateDer<'static>,
    tempfile::TempDir,
) {
    let c =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cert.pem"), c.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), c.key_pair.serialize_pem()).unwrap();
    (c.cert.der().clone(), dir)
}

fn client(cert: rustls::pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(listen::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls_carries_hep_and_plain_tcp_is_refused_on_its_port() {
    let (cert, dir) = certificate();
    let acceptor =
        listen::tls::acceptor(&dir.path().join("cert.pem"), &dir.path().join("key.pem")).unwrap();
    let mut s = serve(Some(acceptor), StreamLimits::default()).await;

    let sent = frames(1, 50);
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = client(cert).connect(name, tcp).await.unwrap();
    for f in &sent {
        tls.write_all(f).await.unwrap();
    }
    tls.flush().await.unwrap();
    let got = receive(&mut s.rx, sent.len()).await;
    let want: Vec<HepMessage> = sent.iter().map(|f| hep::decode(f).unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(get(&s.counters.tls_connections), 1);

    // Plain HEP on the TLS port: the handshake fails, nothing is taken in.
    let mut plain = TcpStream::connect(s.addr).await.unwrap();
    plain.write_all(&frames(2, 5).concat()).await.unwrap();
    closed_by_server(&mut plain).await;
    until("handshake failure counted", || {
        get(&s.counters.tls_handshake_failures) == 1
    })
    .await;
    assert_eq!(get(&s.counters.decoded), 50);
    assert!(
        s.rx.try_recv().is_none(),
        "nothing from the plain connection"
    );
    s.stop.cancel();
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_and_counted() {
    let limits = StreamLimits {
        max_connections: 3,
        ..Default::default()
    };
    let mut s = serve(None, limits).await;
    let f = &frames(3, 1)[0];
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        c.write_all(f).await.unwrap();
        open.push(c);
    }
    receive(&mut s.rx, 3).await;
    let o = &s.counters.open_connections;
    until("3 connections open", || get(o) == 3).await;

    // Many more: each closed at once, counted, none served.
    for _ in 0..20 {
        let mut extra = TcpStream::connect(s.addr).await.unwrap();
        let _ = extra.write_all(f).await;
        closed_by_server(&mut extra).await;
    }
    assert_eq!(get(&s.counters.connections_refused), 20);
    assert_eq!(get(&s.counters.decoded), 3);

    // A slot freed is a slot for the next peer.
    drop(open.pop());
    until("one connection closed", || get(o) == 2).await;
    let mut next = TcpStream::connect(s.addr).await.unwrap();
    next.write_all(f).await.unwrap();
    receive(&mut s.rx, 1).await;
    assert_eq!(get(&s.counters.connections_refused), 20);
    s.stop.cancel();
}

#[tokio::test]
async fn a_silent_connection_is_closed_after_the_idle_timeout() {
    let limits = StreamLimits {
        idle_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let mut s = serve(None, limits).await;
    let mut silent = TcpStream::connect(s.addr).await.unwrap();
    // A busy peer beside it is not cut: it keeps sending whole frames.
    let mut busy = TcpStream::connect(s.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    let f = &frames(4, 1)[0];
    let mut sent = 0;
    while get(&s.counters.idle_closed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "silent peer never closed"
        );
        busy.write_all(f).await.unwrap();
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    closed_by_server(&mut silent).await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(get(&s.counters.idle_closed), 1);
    busy.write_all(f).await.unwrap();
    receive(&mut s.rx, sent + 1).await;
    s.stop.cancel();
}

#[tokio::test]
async fn a_slow_loris_sender_is_cut_off_by_the_frame_timeout() {
    let limits = StreamLimits {
        frame_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let mut s = serve(None, limits).await;
    let f = frames(5, 1).remove(0);
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    // One byte every 50 ms: never idle, never a whole frame in time.
    let mut cut = false;
    for b in &f {
        if slow.write_all(&[*b]).await.is_err() || get(&s.counters.slow_closed) == 1 {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        cut,
        "a {}-byte frame trickled for {:?} was never cut off",
        f.len(),
        started.elapsed()
    );
    closed_by_server(&mut slow).await;
    assert_eq!(get(&s.counters.slow_closed), 1);
    assert_eq!(get(&s.counters.idle_closed), 0);
    assert_eq!(get(&s.counters.decoded), 0);

    // Frames split across writes but completed in time are fine.
    let mut ok = TcpStream::connect(s.addr).await.unwrap();
    for _ in 0..5 {
        let (a, b) = f.split_at(f.len() / 2);
        ok.write_all(a).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        ok.write_all(b).await.unwrap();
    }
    receive(&mut s.rx, 5).await;
    assert_eq!(get(&s.counters.slow_closed), 1);
    s.stop.cancel();
}

/// Fails its first `failures` accepts like a process out of file descriptors, then waits forever.
struct FailingIncoming {
    failures: usize,
    calls: Arc<Mutex<Vec<tokio::time::Instant>>>,
}

impl Incoming for FailingIncoming {
    type Stream = TcpStream;
    async fn accept(&mut self) -> std::io::Result<(TcpStream, SocketAddr)> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            c.push(tokio::time::Instant::now());
            c.len()
        };
        if n <= self.failures {
            return Err(std::io::Error::from_raw_os_error(24)); // EMFILE
        }
        std::future::pending().await
    }
}

#[tokio::test(start_paused = true)]
async fn failing_accepts_back_off_instead_of_spinning() {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Counters::default());
    let (tx, _rx) = listen::queue::<Vec<u8>>(1);
    let stop = CancellationToken::new();
    let task = tokio::spawn(run_stream(
        FailingIncoming {
            failures: 8,
            calls: calls.clone(),
        },
        None,
        tx,
        |_: &[u8], _: HepMessage| Some(Vec::new()),
        counters.clone(),
        StreamLimits::default(),
        stop.clone(),
    ));
    let errors: &AtomicU64 = &counters.accept_errors;
    until("8 accept errors", || {
        get(errors) == 8 && calls.lock().unwrap().len() == 9
    })
    .await;
    let c = calls.lock().unwrap().clone();
    let gaps: Vec<u128> = c.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
    assert_eq!(gaps, [10, 20, 40, 80, 160, 320, 640, 1000]);
    stop.cancel();
    task.await.unwrap();
}
