//! Which files of Kinesis ingest attempts a reader sees, and which a
//! compactor may take: pure functions of object names.
//!
//! The ingest writes one file per partition for each attempt over records
//! `first..=last` of a shard, named with the attempt's start
//! ([`FileName::KinesisBatch`]). The event source mapping hands a shard's
//! records over in order, one batch at a time, each batch starting at the
//! shard's checkpoint; a batch that fails, or whose answer is lost, comes
//! again from the checkpoint: whole, bisected, or longer. Hence two rules:
//!
//! - **Superseded.** A file is hidden once an attempt of the same shard that
//!   started later covered any of its records: that attempt, or those after
//!   it, write every row of those records again. Retired names count too, so
//!   deleting a compacted file never brings an older attempt back.
//! - **Settled.** Once an attempt of the shard starts after `last`, the
//!   checkpoint has passed `last`: no attempt covers those records again, so
//!   which files hold them is final and they may be compacted. Until then a
//!   file stays out of compaction (its rows are still read).
//!
//! Both rest on one batch in flight per shard (the mapping's
//! ParallelizationFactor of 1, the template's) and on attempts of a shard
//! starting in the order of the ingest's clock (each starts after the
//! previous one ended). Files named per record ([`FileName::Kinesis`], the
//! first ingest) are superseded like an attempt started at 0 and are always
//! settled: a retry rewrote the same name.
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};

use crate::paths::FileName;

/// A Kinesis sequence number: decimal digits, up to 128 bits, compared as numbers.
#[derive(Debug, Clone, Copy)]
pub struct Seq<'a>(pub &'a str);

impl<'a> Seq<'a> {
    fn digits(&self) -> &'a str {
        let d = self.0.trim_start_matches('0');
        if d.is_empty() { "0" } else { d }
    }
}

impl Ord for Seq<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.digits(), other.digits());
        a.len().cmp(&b.len()).then_with(|| a.cmp(b))
    }
}

impl PartialEq for Seq<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Seq<'_> {}

impl PartialOrd for Seq<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The records of a shard one ingest file holds rows of, and when its attempt started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span<'a> {
    pub shard: &'a str,
    pub first: Seq<'a>,
    pub last: Seq<'a>,
    /// µs; 0 for a file named per record.
    pub started: i64,
    /// Named per record (the first ingest): always settled.
    pub per_record: bool,
}

impl<'a> Span<'a> {
    pub fn of(name: &'a FileName) -> Option<Self> {
        match name {
            FileName::KinesisBatch {
                shard,
                first,
                last,
                started,
            } => Some(Span {
                shard,
                first: Seq(first),
                last: Seq(last),
                started: *started,
                per_record: false,
            }),
            FileName::Kinesis { shard, sequence } => Some(Span {
                shard,
                first: Seq(sequence),
                last: Seq(sequence),
                started: 0,
                per_record: true,
            }),
            _ => None,
        }
    }

    fn overlaps(&self, other: &Span<'_>) -> bool {
        self.shard == other.shard && self.first <= other.last && other.first <= self.last
    }
}

/// Of `candidates` (data files present and not retired), the names a later
/// attempt superseded; `known` is every name of the partition that counts as
/// a later attempt: the candidates and the retired names.
pub fn superseded<'a>(
    candidates: impl IntoIterator<Item = &'a str>,
    known: impl IntoIterator<Item = &'a str>,
) -> HashSet<&'a str> {
    let parsed = |n: &'a str| FileName::parse(n).map(|f| (n, f));
    // Attempts by shard, newest first: a candidate only looks at those newer than itself.
    let mut by_shard: HashMap<String, Vec<(i64, FileName)>> = HashMap::new();
    for (_, f) in known.into_iter().filter_map(parsed) {
        if let Some(s) = Span::of(&f) {
            let (shard, started) = (s.shard.to_owned(), s.started);
            by_shard.entry(shard).or_default().push((started, f));
        }
    }
    for v in by_shard.values_mut() {
        v.sort_by_key(|(started, _)| std::cmp::Reverse(*started));
    }
    let mut out = HashSet::new();
    for (name, f) in candidates.into_iter().filter_map(parsed) {
        let Some(c) = Span::of(&f) else { continue };
        let newer = by_shard.get(c.shard).into_iter().flatten();
        let hidden = newer
            .take_while(|(started, _)| *started > c.started)
            .filter_map(|(_, n)| Span::of(n))
            .any(|n| n.overlaps(&c));
        if hidden {
            out.insert(name);
        }
    }
    out
}

/// How far each shard's checkpoint has provably moved: the greatest `first`
/// of any attempt seen. Built from every partition a compaction run lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier(HashMap<String, String>);

impl Frontier {
    /// Takes note of a data file's name (present or retired).
    pub fn observe(&mut self, name: &str) {
        let Some(f) = FileName::parse(name) else {
            return;
        };
        let Some(s) = Span::of(&f) else { return };
        if s.per_record {
            return; // its attempt's start is unknown
        }
        match self.0.get_mut(s.shard) {
            Some(max) if Seq(max) >= s.first => {}
            Some(max) => *max = s.first.0.to_owned(),
            None => {
                self.0.insert(s.shard.to_owned(), s.first.0.to_owned());
            }
        }
    }

    /// Whether no attempt will ever cover this file's records again: an
    /// attempt of its shard started after its last record (the checkpoint
    /// has passed it), or its own attempt started at or before
    /// `retries_end_micros`, beyond which the stream no longer holds the
    /// records to deliver them again.
    pub fn settled(&self, name: &FileName, retries_end_micros: i64) -> bool {
        match Span::of(name) {
            None => true,
            Some(s) if s.per_record => true,
            Some(s) if s.started <= retries_end_micros => true,
            Some(s) => self.0.get(s.shard).is_some_and(|max| Seq(max) > s.last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kb(first: u32, last: u32, started: i64) -> String {
        FileName::kinesis_batch(
            "shardId-000000000000",
            &first.to_string(),
            &last.to_string(),
            started,
        )
        .to_string()
    }

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert!(Seq("9") < Seq("10"));
        assert_eq!(Seq("010"), Seq("10"));
        assert_eq!(Seq("000"), Seq("0"));
        assert_eq!(Seq("0010").cmp(&Seq("10")), Ordering::Equal);
        let big = "49590338271490256608559692538361571095921575989136588898";
        assert!(Seq(big) > Seq("49590338271490256608559692538361571095921575989136588897"));
        assert!(Seq(big) > Seq("9"));
    }

    #[test]
    fn a_later_attempt_over_any_of_the_records_supersedes() {
        // Attempt 1 over 1..=10 failed; bisected: 1..=5 then 6..=10; 11..=12 unrelated.
        let (a, b1, b2, c) = (
            kb(1, 10, 100),
            kb(1, 5, 200),
            kb(6, 10, 300),
            kb(11, 12, 400),
        );
        let present = [a.as_str(), b1.as_str(), b2.as_str(), c.as_str()];
        let hidden = superseded(present, present);
        assert_eq!(hidden, HashSet::from([a.as_str()]));
        // Once b1 is compacted its name is retired, and still hides a.
        let hidden = superseded(
            [a.as_str(), b2.as_str()],
            [a.as_str(), b2.as_str(), b1.as_str()],
        );
        assert_eq!(hidden, HashSet::from([a.as_str()]));
        // An older attempt never hides a newer one; other shards never interfere.
        let other = FileName::kinesis_batch("shardId-000000000001", "1", "10", 999).to_string();
        assert!(superseded([b1.as_str(), other.as_str()], [a.as_str(), other.as_str()]).is_empty());
        // A file named per record loses to any attempt over it.
        let legacy = FileName::kinesis("shardId-000000000000", "3").to_string();
        assert_eq!(
            superseded([legacy.as_str()], [legacy.as_str(), b1.as_str()]),
            HashSet::from([legacy.as_str()])
        );
    }

    #[test]
    fn settled_once_an_attempt_starts_after_the_last_record() {
        let mut f = Frontier::default();
        let a = FileName::kinesis_batch("s", "1", "10", 100);
        f.observe(&a.to_string());
        assert!(!f.settled(&a, 0), "its own start is no evidence");
        f.observe(&FileName::kinesis_batch("s", "6", "12", 200).to_string());
        assert!(
            !f.settled(&a, 0),
            "an attempt from 6 may be bisected back over 6..=10"
        );
        f.observe(&FileName::kinesis_batch("t", "50", "60", 300).to_string());
        assert!(
            f.settled(&a, 100) && !f.settled(&a, 99),
            "settled once retries end at or after its attempt's start"
        );
        assert!(!f.settled(&a, 0), "another shard says nothing");
        f.observe(&FileName::kinesis_batch("s", "11", "11", 400).to_string());
        assert!(f.settled(&a, 0));
        assert!(
            f.settled(&FileName::kinesis("s", "99"), 0),
            "named per record"
        );
        assert!(f.settled(&FileName::compacted(&"0".repeat(32), 0), 0));
    }
}
