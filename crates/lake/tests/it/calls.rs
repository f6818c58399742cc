//! Call records: one row per call, exactly once, whatever the order
//! messages arrive in, their duplicates, recompaction and crashes.
use crate::compaction::{instrumented, no_retention};
use crate::support::{Instrumented, micros, sip, write as write_server};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use hep::HepMessage;
use lake::calls::{CallsTable, last_settled_hour};
use lake::compact::{CompactionConfig, Sweep, run};
use lake::paths::MICROS_PER_HOUR;
use object_store::ObjectStore;
use proptest::prelude::*;

const S: i64 = 1_000_000;
const MS: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Answered,
    Busy,
    NotAnswered,
}

/// A call whose every delay is known.
#[derive(Debug, Clone)]
struct CallSpec {
    /// Seconds after the model's first hour.
    start_s: i64,
    outcome: Outcome,
    pdd_ms: i64,
    setup_ms: i64,
    talk_s: i64,
    callee_hangs_up: bool,
    /// A B2BUA's B leg, naming the A leg by X-CID.
    b_leg: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Invite,
    Trying,
    Ringing,
    Answer,
    Failure(i32),
    Other,
    Bye {
        by_callee: bool,
    },
    /// An RTCP report (HEP type 5) sent by one side of the leg.
    Rtcp {
        by_callee: bool,
        lost: i64,
        jitter: i64,
    },
}

/// One generated message: which call and leg, what it is, and the packet.
#[derive(Debug, Clone)]
struct Gen {
    call: usize,
    b: bool,
    role: Role,
    time: i64,
}

fn call_id(call: usize, b: bool) -> String {
    if b {
        format!("leg-b-{call}@sbc")
    } else {
        format!("leg-a-{call}@pbx")
    }
}

fn packet(g: &Gen) -> HepMessage {
    let (call, id) = (g.call, call_id(g.call, g.b));
    if let Role::Rtcp {
        by_callee,
        lost,
        jitter,
    } = g.role
    {
        // heplify's JSON, correlated by Call-ID, sent from the side's
        // address (the INVITE went from 10.0.0.1 to 10.0.0.2).
        let mut m = sip(call, 0, g.time);
        m.proto_type = 5;
        m.payload = format!(
            r#"{{"type":201,"ssrc":1,"report_blocks":[{{"source_ssrc":2,"packets_lost":{lost},"ia_jitter":{jitter}}}]}}"#
        )
        .into_bytes();
        m.correlation_id = Some(id);
        if by_callee {
            (m.src_ip, m.dst_ip) = (m.dst_ip, m.src_ip);
        }
        (m.capture_pass, m.node_name) = (None, None);
        return m;
    }
    let (first, cseq) = match g.role {
        Role::Invite => (
            format!("INVITE sip:bob{call}@example.com SIP/2.0"),
            "1 INVITE",
        ),
        Role::Trying => ("SIP/2.0 100 Trying".into(), "1 INVITE"),
        Role::Ringing => ("SIP/2.0 180 Ringing".into(), "1 INVITE"),
        Role::Answer => ("SIP/2.0 200 OK".into(), "1 INVITE"),
        Role::Failure(s) => (format!("SIP/2.0 {s} Failed"), "1 INVITE"),
        Role::Other => (format!("ACK sip:bob{call}@10.0.0.2 SIP/2.0"), "1 ACK"),
        Role::Bye { .. } => (format!("BYE sip:x{call}@10.0.0.2 SIP/2.0"), "2 BYE"),
        Role::Rtcp { .. } => unreachable!("RTCP is not SIP"),
    };
    // From and To as the sender writes them: the callee's BYE swaps them.
    let (from, to) = match g.role {
        Role::Bye { by_callee: true } => (
            format!("<sip:bob{call}@example.com>;tag=t{call}"),
            format!("<sip:alice{call}@example.com>;tag=f{call}"),
        ),
        Role::Invite => (
            format!("<sip:alice{call}@example.com>;tag=f{call}"),
            format!("<sip:bob{call}@example.com>"),
        ),
        _ => (
            format!("<sip:alice{call}@example.com>;tag=f{call}"),
            format!("<sip:bob{call}@example.com>;tag=t{call}"),
        ),
    };
    let xcid = if g.b && g.role == Role::Invite {
        format!("X-CID: {}\r\n", call_id(call, false))
    } else {
        String::new()
    };
    let reason = match reason_of(g.role) {
        Some(r) => format!("Reason: {r}\r\n"),
        None => String::new(),
    };
    let payload = format!(
        "{first}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{call}\r\nFrom: {from}\r\nTo: {to}\r\n\
         Call-ID: {id}\r\nCSeq: {cseq}\r\n{xcid}{reason}User-Agent: model-ua\r\nContent-Length: 0\r\n\r\n"
    );
    // The packet of the lake tests' generator, with this message's SIP.
    let mut m = sip(call, 0, g.time);
    m.payload = payload.into_bytes();
    (m.capture_pass, m.correlation_id, m.node_name) = (None, None, None);
    m
}

/// The Reason header a message carries: a failure's cause, and who hung up.
fn reason_of(role: Role) -> Option<String> {
    match role {
        Role::Failure(s) => Some(format!("Q.850;cause={}", s - 469)),
        Role::Bye { by_callee } => Some(format!("Q.850;cause=16;text=\"by callee: {by_callee}\"")),
        _ => None,
    }
}

/// Every message of call `call` of `spec`, the model's first hour at `base`.
fn messages(call: usize, spec: &CallSpec, base: i64) -> Vec<Gen> {
    let t0 = base + spec.start_s * S;
    let (ring, final_at) = (t0 + spec.pdd_ms * MS, t0 + spec.setup_ms * MS);
    let mut out = Vec::new();
    for b in [false, true] {
        if b && !spec.b_leg {
            continue;
        }
        // The B leg's messages trail the A leg's by a few milliseconds.
        let lag = if b { 5 * MS } else { 0 };
        let mut push = |role, time: i64| {
            out.push(Gen {
                call,
                b,
                role,
                time: time + lag,
            })
        };
        push(Role::Invite, t0);
        push(Role::Trying, t0 + 10 * MS);
        push(Role::Ringing, ring);
        match spec.outcome {
            Outcome::Answered => {
                push(Role::Answer, final_at);
                push(Role::Other, final_at + 20 * MS);
                let by_callee = spec.callee_hangs_up;
                push(Role::Bye { by_callee }, final_at + spec.talk_s * S);
                // Each side reports every 5 minutes of talk, the loss growing.
                for k in 1..=spec.talk_s / 300 {
                    for by_callee in [false, true] {
                        let rtcp = Role::Rtcp {
                            by_callee,
                            lost: k * (1 + by_callee as i64) + spec.pdd_ms % 7,
                            jitter: (spec.setup_ms + k * 31) % 97,
                        };
                        push(rtcp, final_at + k * 300 * S);
                    }
                }
            }
            Outcome::Busy => push(Role::Failure(486), final_at),
            Outcome::NotAnswered => push(Role::Failure(487), final_at),
        }
    }
    out
}

/// A record, as compared: what the table holds and what the model expects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    call_id: String,
    start: i64,
    end: i64,
    b_legs: Option<String>,
    ringing: Option<i64>,
    answer: Option<i64>,
    bye: Option<i64>,
    final_status: Option<i32>,
    reason: Option<String>,
    ended_by: Option<String>,
    messages: i64,
    hours: String,
    rtcp_reports: i64,
    /// Lost and worst jitter, caller to callee and back.
    quality: [Option<i64>; 4],
}

/// The records the delivered messages make, worked out from what each
/// message is (not from its columns): a leg is a call's when its INVITE
/// (with the X-CID) was delivered; a call exists when one of its INVITEs was.
fn reference(delivered: &[Gen]) -> BTreeMap<String, Rec> {
    let mut by_call: BTreeMap<usize, Vec<&Gen>> = BTreeMap::new();
    for g in delivered {
        by_call.entry(g.call).or_default().push(g);
    }
    let mut out = BTreeMap::new();
    for (call, msgs) in by_call {
        let invited = |b: bool| msgs.iter().any(|g| g.b == b && g.role == Role::Invite);
        // The B leg joins the call by its INVITE's X-CID; the A leg is the call's own.
        let main = match (invited(false), invited(true)) {
            (true, _) => false,
            (false, true) => true,
            (false, false) => continue,
        };
        let legs: Vec<bool> = [false, true]
            .into_iter()
            .filter(|&b| !b || invited(true))
            .collect();
        let counted: Vec<&&Gen> = msgs
            .iter()
            .filter(|g| legs.contains(&g.b) && !matches!(g.role, Role::Rtcp { .. }))
            .collect();
        let reports: Vec<(bool, i64, i64)> = msgs
            .iter()
            .filter(|g| legs.contains(&g.b))
            .filter_map(|g| match g.role {
                Role::Rtcp {
                    by_callee,
                    lost,
                    jitter,
                } => Some((by_callee, lost, jitter)),
                _ => None,
            })
            .collect();
        let worst = |by_callee: bool, pick: fn(&(bool, i64, i64)) -> i64| {
            reports.iter().filter(|r| r.0 == by_callee).map(pick).max()
        };
        let mut hours: Vec<i64> = counted
            .iter()
            .map(|g| g.time.div_euclid(MICROS_PER_HOUR))
            .collect();
        hours.dedup();
        hours.sort_unstable();
        hours.dedup();
        let hours = hours
            .iter()
            .map(|h| {
                chrono::DateTime::from_timestamp_micros(h * MICROS_PER_HOUR)
                    .unwrap()
                    .format("%Y-%m-%dT%H")
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join(" ");
        let first = |pred: &dyn Fn(&Role) -> bool| {
            counted
                .iter()
                .filter(|g| g.b == main && pred(&g.role))
                .map(|g| g.time)
                .min()
        };
        let answer = first(&|r| *r == Role::Answer);
        let failure = counted
            .iter()
            .filter(|g| g.b == main)
            .filter_map(|g| match g.role {
                Role::Failure(s) => Some((g.time, s)),
                _ => None,
            })
            .max()
            .map(|(_, s)| s);
        let bye = counted
            .iter()
            .filter(|g| g.b == main)
            .filter_map(|g| match g.role {
                Role::Bye { by_callee } => Some((g.time, by_callee)),
                _ => None,
            })
            .min();
        let reason = match (answer, bye) {
            (Some(_), Some((_, by_callee))) => reason_of(Role::Bye { by_callee }),
            (Some(_), None) => None,
            (None, _) => failure.and_then(|s| reason_of(Role::Failure(s))),
        };
        let rec = Rec {
            call_id: call_id(call, false),
            start: counted
                .iter()
                .filter(|g| g.role == Role::Invite)
                .map(|g| g.time)
                .min()
                .unwrap(),
            end: counted.iter().map(|g| g.time).max().unwrap(),
            b_legs: legs.contains(&true).then(|| call_id(call, true)),
            ringing: first(&|r| *r == Role::Ringing),
            answer,
            bye: bye.map(|(t, _)| t),
            final_status: answer.map(|_| 200).or(failure),
            reason,
            ended_by: bye.map(|(_, callee)| if callee { "callee" } else { "caller" }.to_owned()),
            messages: counted.len() as i64,
            hours,
            rtcp_reports: reports.len() as i64,
            quality: [
                worst(true, |r| r.1),
                worst(true, |r| r.2),
                worst(false, |r| r.1),
                worst(false, |r| r.2),
            ],
        };
        out.insert(rec.call_id.clone(), rec);
    }
    out
}

fn texts(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let c = arrow::compute::cast(
        b.column_by_name(name).unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let c = c.as_string::<i32>();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i).to_owned()))
        .collect()
}

fn times(b: &RecordBatch, name: &str) -> Vec<Option<i64>> {
    let c = b.column_by_name(name).unwrap();
    let c = c.as_primitive::<TimestampMicrosecondType>();
    (0..c.len())
        .map(|i| c.is_valid(i).then(|| c.value(i)))
        .collect()
}

fn recs(batches: &[RecordBatch]) -> Vec<Rec> {
    let mut out = Vec::new();
    for b in batches {
        let (ids, legs, ended, reason, hours) = (
            texts(b, "call_id"),
            texts(b, "b_legs"),
            texts(b, "ended_by"),
            texts(b, "reason"),
            texts(b, "hours"),
        );
        let ints = |name: &str| {
            let c = b.column_by_name(name).unwrap().as_primitive::<Int64Type>();
            (0..c.len())
                .map(|i| c.is_valid(i).then(|| c.value(i)))
                .collect::<Vec<_>>()
        };
        let reports = ints("rtcp_reports");
        let quality = [
            "caller_to_callee_lost",
            "caller_to_callee_jitter_max",
            "callee_to_caller_lost",
            "callee_to_caller_jitter_max",
        ]
        .map(ints);
        let (start, end) = (times(b, "start_time"), times(b, "end_time"));
        let (ring, answer, bye) = (
            times(b, "ringing_time"),
            times(b, "answer_time"),
            times(b, "bye_time"),
        );
        let status = b
            .column_by_name("final_status")
            .unwrap()
            .as_primitive::<Int32Type>()
            .clone();
        let messages = b
            .column_by_name("messages")
            .unwrap()
            .as_primitive::<Int64Type>()
            .clone();
        for i in 0..b.num_rows() {
            out.push(Rec {
                call_id: ids[i].clone().unwrap(),
                start: start[i].unwrap(),
                end: end[i].unwrap(),
                b_legs: legs[i].clone(),
                ringing: ring[i],
                answer: answer[i],
                bye: bye[i],
                final_status: status.is_valid(i).then(|| status.value(i)),
                reason: reason[i].clone(),
                ended_by: ended[i].clone(),
                messages: messages.value(i),
                hours: hours[i].clone().unwrap(),
                rtcp_reports: reports[i].unwrap(),
                quality: quality.each_ref().map(|q| q[i]),
            });
        }
    }
    out
}

/// Every record the `calls` Delta table holds, as delta-rs lists its files;
/// and the number of files it holds per hour.
async fn table_records(store: &Arc<dyn ObjectStore>) -> (Vec<Rec>, BTreeMap<i64, usize>) {
    let Some(t) = CallsTable::load(store).await.unwrap() else {
        return (vec![], BTreeMap::new());
    };
    let mut out = Vec::new();
    let mut per_hour = BTreeMap::new();
    for (hour, files) in t.held().unwrap() {
        per_hour.insert(hour, files.len());
        for (f, _) in files {
            out.extend(recs(
                &lake::parquet_io::read_all(store, &f.path()).await.unwrap(),
            ));
        }
    }
    out.sort();
    (out, per_hour)
}

fn config() -> CompactionConfig {
    CompactionConfig {
        grace: Duration::ZERO,
        ..no_retention()
    }
}

fn call_spec() -> impl Strategy<Value = CallSpec> {
    (
        0i64..3 * 3600,
        prop_oneof![
            3 => Just(Outcome::Answered),
            1 => Just(Outcome::Busy),
            1 => Just(Outcome::NotAnswered)
        ],
        50i64..3_000,
        3_000i64..30_000,
        0i64..80 * 60,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(start_s, outcome, pdd_ms, setup_ms, talk_s, callee_hangs_up, b_leg)| CallSpec {
                start_s,
                outcome,
                pdd_ms,
                setup_ms,
                talk_s,
                callee_hangs_up,
                b_leg,
            },
        )
}

#[derive(Debug, Clone)]
enum Step {
    /// The next `n` messages of the shuffled stream as one server file,
    /// one of them twice when `dup` (two agents captured it).
    Deliver { n: usize, dup: bool },
    /// A compaction run, crashed at its `crash`-th store write if given.
    Run { full: bool, crash: Option<usize> },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..60, proptest::bool::weighted(0.2)).prop_map(|(n, dup)| Step::Deliver { n, dup }),
        2 => (any::<bool>(), proptest::option::weighted(0.3, 0usize..40))
            .prop_map(|(full, crash)| Step::Run { full, crash }),
    ]
}

/// Runs compaction as of `now`; a crash stops it at a store write.
async fn compaction(
    inst: &Instrumented,
    store: &Arc<dyn ObjectStore>,
    now: i64,
    full: bool,
    crash: Option<usize>,
) {
    if let Some(n) = crash {
        inst.fail_at(n);
    }
    let sweep = if full { Sweep::Full } else { Sweep::Recent };
    let r = run(store, &config(), now, sweep, None).await;
    inst.fail_at(usize::MAX);
    if crash.is_none() {
        assert!(r.errors.is_empty(), "{r:?}");
    }
}

async fn check_model(
    specs: Vec<CallSpec>,
    order: Vec<u32>,
    steps: Vec<Step>,
) -> Result<(), TestCaseError> {
    let (inst, store) = instrumented();
    let base = micros("2025-10-01T10:00:00");
    // Every hour a call can reach is closed.
    let now = base + 8 * MICROS_PER_HOUR;
    prop_assert!(last_settled_hour(&config().calls(), now) >= base / MICROS_PER_HOUR + 3);
    let all: Vec<Gen> = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| messages(i, s, base))
        .collect();
    // The stream in an arbitrary order: late messages of any call.
    let mut keyed: Vec<(u32, usize)> = (0..all.len())
        .map(|i| (order[i % order.len()], i))
        .collect();
    keyed.sort_unstable();
    let stream: Vec<Gen> = keyed.into_iter().map(|(_, i)| all[i].clone()).collect();
    let mut delivered: Vec<Gen> = Vec::new();
    let mut next = 0;
    let deliver = |from: usize, n: usize, dup: bool, delivered: &mut Vec<Gen>| {
        let mut part: Vec<Gen> = stream[from..(from + n).min(stream.len())].to_vec();
        if dup && let Some(g) = part.first().cloned() {
            part.push(g);
        }
        delivered.extend(part.iter().cloned());
        part
    };
    for s in steps {
        match s {
            Step::Deliver { n, dup } => {
                if next >= stream.len() {
                    continue;
                }
                let part = deliver(next, n, dup, &mut delivered);
                next += n;
                write_server(&store, &part.iter().map(packet).collect::<Vec<_>>()).await;
            }
            Step::Run { full, crash } => {
                compaction(&inst, &store, now, full, crash).await;
                let (records, per_hour) = table_records(&store).await;
                // Exactly once at every step: one file per hour, one row per call.
                prop_assert!(per_hour.values().all(|n| *n == 1), "{per_hour:?}");
                let mut ids: Vec<&String> = records.iter().map(|r| &r.call_id).collect();
                ids.dedup();
                prop_assert_eq!(ids.len(), records.len(), "a call recorded twice");
                if full && crash.is_none() {
                    let expected: Vec<Rec> = reference(&delivered).into_values().collect();
                    prop_assert_eq!(records, expected);
                }
            }
        }
    }
    // Everything delivered at last, recompacted: the records are the calls.
    if next < stream.len() {
        let part = deliver(next, stream.len() - next, false, &mut delivered);
        write_server(&store, &part.iter().map(packet).collect::<Vec<_>>()).await;
    }
    compaction(&inst, &store, now, true, None).await;
    compaction(&inst, &store, now + 60 * S, true, None).await;
    let (records, _) = table_records(&store).await;
    let expected: Vec<Rec> = reference(&delivered).into_values().collect();
    prop_assert_eq!(&records, &expected);
    // ...with the delays and outcome each call was made with.
    let by_id: HashMap<&str, &Rec> = records.iter().map(|r| (r.call_id.as_str(), r)).collect();
    for (i, spec) in specs.iter().enumerate() {
        let r = by_id[call_id(i, false).as_str()];
        let t0 = base + spec.start_s * S;
        prop_assert_eq!(r.start, t0);
        prop_assert_eq!(r.ringing, Some(t0 + spec.pdd_ms * MS));
        match spec.outcome {
            Outcome::Answered => {
                prop_assert_eq!(r.answer, Some(t0 + spec.setup_ms * MS));
                prop_assert_eq!(r.bye, Some(t0 + spec.setup_ms * MS + spec.talk_s * S));
                prop_assert_eq!(r.final_status, Some(200));
            }
            Outcome::Busy => prop_assert_eq!(r.final_status, Some(486)),
            Outcome::NotAnswered => prop_assert_eq!(r.final_status, Some(487)),
        }
        prop_assert_eq!(r.b_legs.is_some(), spec.b_leg);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Calls split across hours, delivered in any order in files of any
    /// size, some messages twice, compaction runs (recent and full) between
    /// deliveries, some crashed at a store write: after every run the table
    /// holds one file per hour and each call at most once; after every full
    /// run that did not crash, exactly the records a reference works out
    /// from the messages delivered so far.
    #[test]
    fn call_records_are_exactly_the_calls_delivered(
        specs in proptest::collection::vec(call_spec(), 1..12),
        order in proptest::collection::vec(any::<u32>(), 1..64),
        steps in proptest::collection::vec(step(), 1..14),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(check_model(specs, order, steps))?;
    }
}

/// Calls whose delays are known, through the query engine and through the
/// outside Delta readers: one row per call, the delays as made, a search by
/// caller reading one hour's records, and a call spanning two hours once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_calls_read_through_the_engine_and_outside_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = lake::store::open(dir.path().to_str().unwrap()).unwrap();
    let base = micros("2025-10-01T10:00:00");
    let specs = [
        // Answered after 4 s, ringing after 1.5 s, 60 s of talk; across 11:00.
        CallSpec {
            start_s: 3600 - 30,
            outcome: Outcome::Answered,
            pdd_ms: 1_500,
            setup_ms: 4_000,
            talk_s: 60,
            callee_hangs_up: true,
            b_leg: true,
        },
        CallSpec {
            start_s: 7200 + 5,
            outcome: Outcome::Busy,
            pdd_ms: 300,
            setup_ms: 3_000,
            talk_s: 0,
            callee_hangs_up: false,
            b_leg: false,
        },
    ];
    let msgs: Vec<HepMessage> = specs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| messages(i, s, base))
        .map(|g| packet(&g))
        .collect();
    write_server(&store, &msgs).await;
    let now = base + 8 * MICROS_PER_HOUR;
    let r = run(&store, &config(), now, Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!((r.call_hours_built, r.call_records), (3, 2), "{r:?}");
    let engine = lake::engine::QueryEngine::new(store.clone(), Default::default()).unwrap();
    let q = engine
        .query(
            "SELECT call_id, b_legs, legs, pdd_ms, setup_ms, duration_ms, final_status, ended_by, \
             caller, callee, messages FROM calls ORDER BY start_time",
        )
        .await
        .unwrap();
    let rows: Vec<String> = arrow::util::pretty::pretty_format_batches(&q.batches)
        .unwrap()
        .to_string()
        .lines()
        .map(str::to_owned)
        .collect();
    let expected = [
        "| call_id     | b_legs      | legs | pdd_ms | setup_ms | duration_ms | final_status | ended_by | caller | callee | messages |",
        "| leg-a-0@pbx | leg-b-0@sbc | 2    | 1500   | 4000     | 60000       | 200          | callee   | alice0 | bob0   | 12       |",
        "| leg-a-1@pbx |             | 1    | 300    |          |             | 486          |          | alice1 | bob1   | 4        |",
    ];
    assert_eq!(rows[1], expected[0], "{}", rows.join("\n"));
    assert_eq!(&rows[3..5], &expected[1..], "{}", rows.join("\n"));
    // A search by caller over every hour.
    let q = engine
        .query("SELECT call_id FROM calls WHERE caller = 'alice1'")
        .await
        .unwrap();
    assert_eq!(q.num_rows(), 1);
    // A window on start_time bounds the hours read: 10:00-11:00 holds call 0 only.
    let q = engine
        .query(
            "SELECT call_id FROM calls WHERE start_time >= '2025-10-01T10:00:00Z' \
             AND start_time < '2025-10-01T11:00:00Z'",
        )
        .await
        .unwrap();
    assert_eq!(q.num_rows(), 1);
    let got = crate::readers::read_delta(dir.path().to_str().unwrap(), "calls", None);
    assert_eq!(got["deltalake"], 2, "{got}");
    assert_eq!(got["duckdb"], 2, "{got}");
    assert_eq!(got["duckdb_distinct"], 2, "{got}");
    assert_eq!(got["polars"], 2, "{got}");
    // Built again from recompacted sources: still each call once.
    write_server(&store, &[packet(&messages(0, &specs[0], base)[0])]).await;
    let r = run(&store, &config(), now + 60 * S, Sweep::Full, None).await;
    assert!(r.errors.is_empty(), "{r:?}");
    // Hour 10, and hour 11, which reads hour 10 for the calls begun there.
    assert_eq!(
        r.call_hours_built, 2,
        "only the hours whose sources changed: {r:?}"
    );
    let got = crate::readers::read_delta(dir.path().to_str().unwrap(), "calls", None);
    assert_eq!(
        (got["deltalake"].clone(), got["duckdb_distinct"].clone()),
        (2.into(), 2.into()),
        "{got}"
    );
}

/// An hour whose SIP rows are more than a build may hold in memory is not
/// built (nor any hour reading it): counted, the others built; with room
/// enough, a later run builds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_more_than_a_build_may_hold_is_skipped_and_counted() {
    let (_, store) = instrumented();
    // Recent hours: Delta keeps an hour's transaction (built once) three days.
    let base = (chrono::Utc::now().timestamp_micros() / MICROS_PER_HOUR - 12) * MICROS_PER_HOUR;
    let spec = CallSpec {
        start_s: 600,
        outcome: Outcome::Answered,
        pdd_ms: 100,
        setup_ms: 3_000,
        talk_s: 30,
        callee_hangs_up: false,
        b_leg: false,
    };
    let msgs: Vec<HepMessage> = messages(0, &spec, base).iter().map(packet).collect();
    write_server(&store, &msgs).await;
    let now = base + 8 * MICROS_PER_HOUR;
    let hour = base / MICROS_PER_HOUR;
    let build = |max_source_bytes: u64| {
        let store = store.clone();
        async move {
            let cfg = lake::calls::CallsConfig {
                max_source_bytes,
                ..config().calls()
            };
            let settling = lake::calls::Builds::Settling { from_hour: hour };
            // Nothing listed yet: the build lists what it reads.
            let sources = lake::calls::SourceListings::new([], [], [1, 5], false);
            lake::calls::build(&store, &[], &cfg, sources, settling, || now).await
        }
    };
    // The call's hour and the hour after (whose build reads it): too large.
    let r = build(1).await;
    assert!(r.errors.is_empty(), "{r:?}");
    assert_eq!((r.hours_too_large, r.records), (2, 0), "{r:?}");
    assert!(r.hours_built > 0, "the hours that do not read it: {r:?}");
    let (records, _) = table_records(&store).await;
    assert!(records.is_empty(), "{records:?}");
    let r = build(config().calls().max_source_bytes).await;
    assert_eq!(
        (r.hours_built, r.hours_too_large, r.records),
        (2, 0, 1),
        "{r:?}"
    );
    assert_eq!(table_records(&store).await.0.len(), 1);
}
