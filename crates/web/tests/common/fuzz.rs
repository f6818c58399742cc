//! What the SQL property tests share: a lake of 2000 SIP messages behind the
//! API, a way to ask it, and the process's peak memory.
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lake::engine::{QueryEngine, QueryLimits};
use object_store::ObjectStore;
use tower::ServiceExt;
use web::{ApiState, ResponseLimit, router};

use super::support;

/// Starts the process's peak memory again from what it holds now (Linux
/// `clear_refs` 5), so one case's peak is its own and not an earlier case's.
#[allow(dead_code)] // each test binary compiles this file; not all call it
pub fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak RSS (Linux 4.0+)");
}

pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

pub async fn ask(app: &axum::Router, sql: &str) -> (StatusCode, String) {
    let body = serde_json::json!({ "query": sql }).to_string();
    let req = Request::post("/query")
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The API over a fresh lake, with its runtime and its engine.
pub struct Lake {
    pub rt: tokio::runtime::Runtime,
    pub engine: Arc<QueryEngine>,
    pub app: axum::Router,
    _dir: tempfile::TempDir,
}

impl Lake {
    /// 2000 SIP messages of the last minute, a query pool of `pool` bytes and
    /// a 16 MiB response limit; one query run to warm it up.
    pub fn new(timeout: Duration, pool: usize) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = lake::store::open(dir.path().to_str().unwrap()).unwrap();
        let now = chrono::Utc::now().timestamp_micros();
        let msgs: Vec<_> = (0..2000)
            .map(|i| support::sip(i / 7, i % 7, now - 60_000_000 + i as i64))
            .collect();
        rt.block_on(support::write(&store, &msgs));
        let limits = QueryLimits {
            timeout,
            memory_bytes: pool,
            ..Default::default()
        };
        let engine = Arc::new(QueryEngine::new(store, limits).unwrap());
        let app = router(ApiState {
            engine: engine.clone(),
            response_limit: ResponseLimit::Body(16 << 20),
        });
        let lake = Self {
            rt,
            engine,
            app,
            _dir: dir,
        };
        let (status, body) = lake.ask("SELECT count(*) AS n FROM hep_1");
        assert_eq!((status, body.as_str()), (StatusCode::OK, r#"[{"n":2000}]"#));
        lake
    }

    pub fn ask(&self, sql: &str) -> (StatusCode, String) {
        self.rt.block_on(ask(&self.app, sql))
    }

    /// Waits until no query holds a slot; false if one still does after
    /// `within`. A timed-out query stops at its next yield, and planning or a
    /// function's call on one batch has none, so it can run on briefly after
    /// its answer: each case should meet an idle engine (429 has its own test).
    pub fn wait_idle(&self, within: Duration) -> bool {
        let winding = std::time::Instant::now();
        while self.engine.running() > 0 {
            if winding.elapsed() > within {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}
