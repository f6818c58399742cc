//! Test helpers: an object store that records every request and can fail
//! the n-th write, and generators of realistic HEP messages.
#![allow(dead_code)]
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use hep::HepMessage;
use lake::writer::{WriteBuffer, WriterConfig};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put(String),
    Get(String),
    List(String),
    ListDelim(String),
    Delete(String),
}

#[derive(Debug)]
pub struct Shared {
    ops: Mutex<Vec<Op>>,
    writes: AtomicUsize,
    /// The write (put or delete) with this index fails, as a crash would.
    fail_write_at: AtomicUsize,
    /// Bytes GETs returned.
    bytes_read: AtomicU64,
    /// Run once before the first LIST of a prefix starting so.
    before_listing: Mutex<Option<(String, ListingHook)>>,
}

/// What happens in the store while another party lists it (writes to the inner store).
type StoreAction = dyn FnOnce(&dyn ObjectStore) + Send;
pub struct ListingHook(Box<StoreAction>);

impl fmt::Debug for ListingHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ListingHook")
    }
}

#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn ObjectStore>,
    shared: Arc<Shared>,
}

impl std::ops::Deref for Instrumented {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl Instrumented {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        let shared = Shared {
            ops: Mutex::new(vec![]),
            writes: AtomicUsize::new(0),
            fail_write_at: AtomicUsize::new(usize::MAX),
            bytes_read: AtomicU64::new(0),
            before_listing: Mutex::new(None),
        };
        Arc::new(Self {
            inner,
            shared: Arc::new(shared),
        })
    }
}

impl Shared {
    pub fn take_ops(&self) -> Vec<Op> {
        std::mem::take(&mut self.ops.lock().unwrap())
    }
    /// Counts writes from now; the n-th one (0-based) and all after it fail.
    pub fn fail_at(&self, n: usize) {
        self.writes.store(0, Ordering::SeqCst);
        self.fail_write_at.store(n, Ordering::SeqCst);
    }
    /// Bytes read since the last call.
    pub fn take_bytes_read(&self) -> u64 {
        self.bytes_read.swap(0, Ordering::SeqCst)
    }
    /// Runs `action` on the inner store once, just before the first LIST of
    /// a prefix starting with `prefix`: a writer landing while a run lists.
    pub fn before_listing(
        &self,
        prefix: &str,
        action: impl FnOnce(&dyn ObjectStore) + Send + 'static,
    ) {
        *self.before_listing.lock().unwrap() =
            Some((prefix.to_owned(), ListingHook(Box::new(action))));
    }
    pub fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }
    fn write_op(&self, op: Op) -> object_store::Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst);
        self.ops.lock().unwrap().push(op);
        if n >= self.fail_write_at.load(Ordering::SeqCst) {
            return Err(object_store::Error::Generic {
                store: "instrumented",
                source: "injected crash".into(),
            });
        }
        Ok(())
    }
}

impl Instrumented {
    fn listing(&self, prefix: Option<&Path>) {
        let prefix = prefix.map(|p| p.to_string()).unwrap_or_default();
        let hook = {
            let mut h = self.before_listing.lock().unwrap();
            match h.as_ref() {
                Some((p, _)) if prefix.starts_with(p.as_str()) => h.take(),
                _ => None,
            }
        };
        if let Some((_, ListingHook(action))) = hook {
            action(self.inner.as_ref());
        }
    }
}

impl fmt::Display for Instrumented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instrumented({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Instrumented {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.write_op(Op::Put(location.to_string()))?;
        self.inner.put_opts(location, payload, opts).await
    }
    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.write_op(Op::Put(location.to_string()))?;
        self.inner.put_multipart_opts(location, opts).await
    }
    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.ops.lock().unwrap().push(Op::Get(location.to_string()));
        let r = self.inner.get_opts(location, options).await?;
        self.bytes_read
            .fetch_add(r.range.end - r.range.start, Ordering::SeqCst);
        Ok(r)
    }
    /// The inner store's own ranged read (the local store reads each range;
    /// the trait's default would merge ranges less than 1 MiB apart).
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.ops.lock().unwrap().push(Op::Get(location.to_string()));
        let r = self.inner.get_ranges(location, ranges).await?;
        let n: usize = r.iter().map(|b| b.len()).sum();
        self.bytes_read.fetch_add(n as u64, Ordering::SeqCst);
        Ok(r)
    }
    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Route each delete through write_op so crashes can be injected.
        let (shared, inner) = (self.shared.clone(), self.inner.clone());
        locations
            .then(move |p| {
                let (shared, inner) = (shared.clone(), inner.clone());
                async move {
                    let p = p?;
                    shared.write_op(Op::Delete(p.to_string()))?;
                    let mut s = inner.delete_stream(futures::stream::once(async { Ok(p) }).boxed());
                    s.next().await.expect("one result")
                }
            })
            .boxed()
    }
    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.listing(prefix);
        self.ops
            .lock()
            .unwrap()
            .push(Op::List(prefix.map(|p| p.to_string()).unwrap_or_default()));
        self.inner.list(prefix)
    }
    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.listing(prefix);
        self.ops.lock().unwrap().push(Op::ListDelim(
            prefix.map(|p| p.to_string()).unwrap_or_default(),
        ));
        self.inner.list_with_delimiter(prefix).await
    }
    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.write_op(Op::Put(to.to_string()))?;
        self.inner.copy_opts(from, to, options).await
    }
}

/// A SIP message of call `call`, step `step` of INVITE/100/180/200/ACK/BYE/200.
pub fn sip(call: usize, step: usize, time_micros: i64) -> HepMessage {
    let (first, method) = match step % 7 {
        0 => (
            format!("INVITE sip:bob{call}@example.com SIP/2.0"),
            "INVITE",
        ),
        1 => ("SIP/2.0 100 Trying".into(), "INVITE"),
        2 => ("SIP/2.0 180 Ringing".into(), "INVITE"),
        3 => ("SIP/2.0 200 OK".into(), "INVITE"),
        4 => (format!("ACK sip:bob{call}@10.0.0.2 SIP/2.0"), "ACK"),
        5 => (format!("BYE sip:bob{call}@10.0.0.2 SIP/2.0"), "BYE"),
        _ => ("SIP/2.0 200 OK".into(), "BYE"),
    };
    let cseq = if step % 7 >= 5 { 2 } else { 1 };
    let to_tag = if step % 7 >= 2 {
        format!(";tag=to{call}")
    } else {
        String::new()
    };
    let payload = format!(
        "{first}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{call}x{step}\r\nFrom: <sip:alice{call}@example.com>;tag=from{call}\r\n\
To: <sip:bob{call}@example.com>{to_tag}\r\nCall-ID: call-{call}@10.0.0.1\r\nCSeq: {cseq} {method}\r\nUser-Agent: test-ua\r\nContent-Length: 0\r\n\r\n"
    );
    HepMessage {
        version: 3,
        ip_family: 2,
        protocol: 17,
        src_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))),
        dst_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
        src_port: 5060,
        dst_port: 5060,
        time_sec: (time_micros / 1_000_000) as u32,
        time_usec: (time_micros % 1_000_000) as u32,
        proto_type: 1,
        capture_id: 2001,
        capture_pass: Some("myHep".into()),
        payload: payload.into_bytes(),
        correlation_id: Some(format!("call-{call}@10.0.0.1")),
        vlan: None,
        node_name: Some("node-a".into()),
        keep_alive: None,
        original_time_micros: None,
    }
}

pub fn micros(iso: &str) -> i64 {
    lake::time_range::parse_iso(iso).expect("valid timestamp")
}

/// Writes `msgs` as `hepop serve` would, one file per partition.
pub async fn write(store: &Arc<dyn ObjectStore>, msgs: &[HepMessage]) {
    let mut buf = WriteBuffer::new(WriterConfig::default());
    for m in msgs {
        buf.append(m);
    }
    for f in buf.take_due(std::time::Instant::now(), true) {
        f.write(store).await.unwrap();
    }
}
