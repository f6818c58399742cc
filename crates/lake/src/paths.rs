//! Every object key the lake uses, built and parsed here and nowhere else.
//!
//! ```text
//! hep_<type>/date=YYYY-MM-DD/hour=HH/<writer>-<micros>-<seq>.parquet   cut by `hepop serve`
//! hep_<type>/date=YYYY-MM-DD/hour=HH/kb-<shard>-<first>-<last>-<µs>.parquet  rows of one ingest attempt
//! hep_<type>/date=YYYY-MM-DD/hour=HH/k-<shard>-<sequence>.parquet      rows of one Kinesis record (before batches)
//! hep_<type>/date=YYYY-MM-DD/hour=HH/c-<id>-<n>.parquet                compaction output n of job <id>
//! hep_<type>/date=YYYY-MM-DD/hour=HH/_compactions/<seq>.json           compaction log (20 digits)
//! hep_<type>/date=YYYY-MM-DD/hour=HH/_compactions/<id>.json            compaction marker, before the log
//! _bundles/t=<a>.<b>[.<c>…]/date=YYYY-MM-DD/hour=HH/kb-….parquet       a small ingest attempt's rows of
//!                                                                       several tables: a row group per type
//! _quarantine/kinesis/<shard>/<sequence>.bin|.err                      undecodable Kinesis records
//! _quarantine/lake/<original key>[.err]                                unreadable Parquet files, moved aside
//! _probe/write                                                         written and deleted at start: is the lake writable?
//! ```
//! Names starting with `_` are hidden to Hive-style readers (Athena, Spark).
//! The exactly-once rules rest on these names: a compaction output is told
//! from an ingest file by its name alone, and an ingest file's name is its
//! identity (a retried write reuses it).
use std::fmt;

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use object_store::path::Path;

use crate::schema::{CALLS_TABLE, parse_table_name, table_name};

pub const MICROS_PER_HOUR: i64 = 3_600_000_000;
pub const COMPACTIONS_DIR: &str = "_compactions";
pub const QUARANTINE_DIR: &str = "_quarantine";
pub const BUNDLES_DIR: &str = "_bundles";

/// Written and deleted when a server starts, to find an unwritable lake then.
pub fn write_probe() -> Path {
    Path::from("_probe/write")
}
const PARQUET: &str = ".parquet";

/// One hour partition of one table: the unit of listing and compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub hep_type: u8,
    /// Hours since the Unix epoch (UTC).
    pub hour: i64,
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.prefix())
    }
}

impl Partition {
    pub fn for_micros(hep_type: u8, micros: i64) -> Self {
        Self {
            hep_type,
            hour: micros.div_euclid(MICROS_PER_HOUR),
        }
    }

    pub fn start_micros(&self) -> i64 {
        self.hour * MICROS_PER_HOUR
    }

    pub fn end_micros(&self) -> i64 {
        (self.hour + 1) * MICROS_PER_HOUR
    }

    pub fn prefix(&self) -> Path {
        Root::Table(self.hep_type).hour_prefix(self.hour)
    }

    /// Key of a data file of this partition.
    pub fn file(&self, name: &FileName) -> Path {
        self.prefix().join(name.to_string())
    }

    pub fn compactions_prefix(&self) -> Path {
        self.prefix().join(COMPACTIONS_DIR)
    }

    pub fn marker(&self, name: &MarkerName) -> Path {
        self.compactions_prefix().join(name.to_string())
    }

    /// Parses `hep_<t>/date=…/hour=…[/…]`.
    pub fn parse(path: &Path) -> Option<Self> {
        let mut parts = path.parts();
        let hep_type = parse_table_name(parts.next()?.as_ref())?;
        let day = parse_date_dir(parts.next()?.as_ref())?;
        let hour = parse_hour_dir(parts.next()?.as_ref())?;
        Some(Self {
            hep_type,
            hour: day * 24 + hour,
        })
    }
}

fn hour_start(hour: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(hour * MICROS_PER_HOUR).unwrap_or_default()
}

/// `date=YYYY-MM-DD` of an hour since the epoch.
pub fn date_dir(hour: i64) -> String {
    format!("date={}", hour_start(hour).format("%Y-%m-%d"))
}

/// `hour=HH` of an hour since the epoch.
pub fn hour_dir(hour: i64) -> String {
    format!("hour={:02}", hour_start(hour).hour())
}

/// A tree of `date=…/hour=…` directories: a table, or the bundles of one type set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Root {
    Table(u8),
    Bundles(TypeSet),
    /// The call records (`lake::calls`), by the hour their calls began.
    Calls,
}

impl Root {
    pub fn prefix(&self) -> Path {
        match self {
            Self::Table(t) => Path::from(table_name(*t)),
            Self::Bundles(types) => Path::from(format!("{BUNDLES_DIR}/{}", types.dir_name())),
            Self::Calls => Path::from(CALLS_TABLE),
        }
    }

    /// `<root>/date=…/`: every hour of one day (since the epoch).
    pub fn date_prefix(&self, day: i64) -> Path {
        self.prefix().join(date_dir(day * 24))
    }

    pub fn hour_prefix(&self, hour: i64) -> Path {
        self.prefix().join(date_dir(hour)).join(hour_dir(hour))
    }

    /// The hour (since the epoch) of a key under this root, if it has one.
    pub fn hour_of(&self, path: &Path) -> Option<i64> {
        let mut parts = path.prefix_match(&self.prefix())?;
        let day = parse_date_dir(parts.next()?.as_ref())?;
        let hour = parse_hour_dir(parts.next()?.as_ref())?;
        Some(day * 24 + hour)
    }
}

/// The HEP types of one bundle, two or more: its row groups, one per type in
/// ascending order, so which row group holds a type is known from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TypeSet([u64; 4]);

impl TypeSet {
    pub fn of(types: impl IntoIterator<Item = u8>) -> Self {
        let mut s = Self::default();
        for t in types {
            s.0[t as usize / 64] |= 1 << (t % 64);
        }
        s
    }

    pub fn contains(&self, t: u8) -> bool {
        self.0[t as usize / 64] & (1 << (t % 64)) != 0
    }

    pub fn types(&self) -> impl Iterator<Item = u8> + '_ {
        (0..=255u8).filter(|t| self.contains(*t))
    }

    pub fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The row group of `t` in a bundle of these types.
    pub fn row_group(&self, t: u8) -> Option<usize> {
        self.contains(t)
            .then(|| self.types().take_while(|x| *x < t).count())
    }

    /// `t=1.5.100`.
    pub fn dir_name(&self) -> String {
        let types: Vec<String> = self.types().map(|t| t.to_string()).collect();
        format!("t={}", types.join("."))
    }

    /// Parses [`Self::dir_name`]: two or more types, ascending, written as it writes them.
    pub fn parse_dir(name: &str) -> Option<Self> {
        let list = name.strip_prefix("t=")?;
        let types = list
            .split('.')
            .map(|t| t.parse::<u8>().ok())
            .collect::<Option<Vec<u8>>>()?;
        let set = Self::of(types);
        (set.len() >= 2 && set.dir_name() == name).then_some(set)
    }
}

/// One hour of the bundles of one type set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BundleHour {
    pub types: TypeSet,
    pub hour: i64,
}

impl BundleHour {
    pub fn prefix(&self) -> Path {
        Root::Bundles(self.types).hour_prefix(self.hour)
    }

    pub fn file(&self, name: &FileName) -> Path {
        self.prefix().join(name.to_string())
    }

    /// Parses `_bundles/t=…/date=…/hour=…[/…]`.
    pub fn parse(path: &Path) -> Option<Self> {
        let mut parts = path.parts();
        if parts.next()?.as_ref() != BUNDLES_DIR {
            return None;
        }
        let types = TypeSet::parse_dir(parts.next()?.as_ref())?;
        let day = parse_date_dir(parts.next()?.as_ref())?;
        let hour = parse_hour_dir(parts.next()?.as_ref())?;
        Some(Self {
            types,
            hour: day * 24 + hour,
        })
    }
}

/// For a data file of `hep_type`'s table stored in a bundle: the row group
/// holding that table's rows, and how many row groups the bundle has.
pub fn bundle_row_group(path: &Path, hep_type: u8) -> Option<(usize, usize)> {
    let b = BundleHour::parse(path)?;
    Some((b.types.row_group(hep_type)?, b.types.len()))
}

/// Day (since epoch) of a `date=YYYY-MM-DD` directory name.
pub fn parse_date_dir(name: &str) -> Option<i64> {
    let day = NaiveDate::parse_from_str(name.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    Some(
        day.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days(),
    )
}

/// `hour=HH` → HH.
pub fn parse_hour_dir(name: &str) -> Option<i64> {
    let h = name.strip_prefix("hour=")?;
    if h.len() != 2 {
        return None;
    }
    h.parse().ok().filter(|h| (0..24).contains(h))
}

/// `hep_<t>/date=…/`: every hour of one day (since the epoch) of a table.
pub fn date_prefix(hep_type: u8, day: i64) -> Path {
    Root::Table(hep_type).date_prefix(day)
}

/// A file of call records: every record of one hour, built from SIP rows
/// whose listing hashes to `fingerprint` (`lake::calls`). The same sources
/// give the same name and the same rows, so two builders of one hour write
/// the same object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordsFile {
    pub hour: i64,
    pub fingerprint: u64,
}

impl RecordsFile {
    pub fn name(&self) -> String {
        format!("r-{:016x}{PARQUET}", self.fingerprint)
    }

    pub fn path(&self) -> Path {
        Root::Calls.hour_prefix(self.hour).join(self.name())
    }

    /// Parses `calls/date=…/hour=…/r-<16 hex digits>.parquet`.
    pub fn parse(path: &Path) -> Option<Self> {
        let hour = Root::Calls.hour_of(path)?;
        let name = path.filename()?;
        let hex = name.strip_prefix("r-")?.strip_suffix(PARQUET)?;
        let fingerprint = u64::from_str_radix(hex, 16)
            .ok()
            .filter(|_| hex.len() == 16)?;
        let parsed = Self { hour, fingerprint };
        (parsed.path() == *path).then_some(parsed)
    }
}

/// The name of a data file inside its partition directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileName {
    /// Cut by a `hepop serve` writer: unique per writer, never rewritten.
    Server {
        writer: String,
        micros: i64,
        seq: u64,
    },
    /// The rows of one Kinesis record: a retried record rewrites the same name.
    /// Written before ingest wrote one file per batch; still read.
    Kinesis { shard: String, sequence: String },
    /// The rows, in this partition, of one ingest attempt over records
    /// `first..=last` of `shard`, started at `started` (µs, the ingest's clock).
    /// A later attempt over any of those records supersedes it (see [`crate::spans`]).
    KinesisBatch {
        shard: String,
        first: String,
        last: String,
        started: i64,
    },
    /// Output `n` of compaction job `id` (32 hex digits).
    Compacted { id: String, n: u32 },
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server {
                writer,
                micros,
                seq,
            } => write!(f, "{writer}-{micros}-{seq}{PARQUET}"),
            Self::Kinesis { shard, sequence } => write!(f, "k-{shard}-{sequence}{PARQUET}"),
            Self::KinesisBatch {
                shard,
                first,
                last,
                started,
            } => write!(f, "kb-{shard}-{first}-{last}-{started}{PARQUET}"),
            Self::Compacted { id, n } => write!(f, "c-{id}-{n}{PARQUET}"),
        }
    }
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_job_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Why a writer id cannot be used in file names, if it cannot.
pub fn check_writer_id(writer: &str) -> Result<(), String> {
    let ok_chars = !writer.is_empty()
        && writer
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if !ok_chars {
        return Err(format!(
            "writer id {writer:?}: use letters, digits, '_' and '.' only"
        ));
    }
    if writer == "c" || writer == "k" || writer == "kb" {
        return Err(format!(
            "writer id {writer:?} is reserved (compaction outputs, Kinesis files)"
        ));
    }
    Ok(())
}

/// A new compaction job id: its start (µs, the compactor's clock) then 64
/// random bits, 32 hex digits. The start in the name lets any compactor tell
/// how old a job's outputs are without trusting the store's clock.
pub fn new_job_id(started_micros: i64, random: u64) -> String {
    format!("{:016x}{random:016x}", started_micros.max(0))
}

/// When job `id` started; None for ids of the first protocol (random UUIDs), whose start is unknown.
pub fn job_started_micros(id: &str) -> Option<i64> {
    let t = i64::from_str_radix(id.get(..16)?, 16).ok()?;
    // A UUID's first digits read as a date after 2100 or as negative.
    (t > 0 && t < 4_102_444_800_000_000).then_some(t)
}

impl FileName {
    pub fn compacted(id: &str, n: u32) -> Self {
        Self::Compacted {
            id: id.to_owned(),
            n,
        }
    }

    pub fn kinesis(shard: &str, sequence: &str) -> Self {
        Self::Kinesis {
            shard: shard.to_owned(),
            sequence: sequence.to_owned(),
        }
    }

    pub fn kinesis_batch(shard: &str, first: &str, last: &str, started: i64) -> Self {
        Self::KinesisBatch {
            shard: shard.to_owned(),
            first: first.to_owned(),
            last: last.to_owned(),
            started,
        }
    }

    /// Parses a file name; None for anything that is not a data file of the lake.
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(PARQUET)?;
        if let Some(rest) = stem.strip_prefix("kb-") {
            let mut parts = rest.rsplitn(4, '-');
            let (started, last, first, shard) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            if !shard.is_empty() && is_digits(first) && is_digits(last) && is_digits(started) {
                return Some(Self::kinesis_batch(
                    shard,
                    first,
                    last,
                    started.parse().ok()?,
                ));
            }
        }
        if let Some(rest) = stem.strip_prefix("c-") {
            let (id, n) = rest.rsplit_once('-')?;
            if is_job_id(id) && is_digits(n) {
                return Some(Self::Compacted {
                    id: id.to_owned(),
                    n: n.parse().ok()?,
                });
            }
        }
        if let Some(rest) = stem.strip_prefix("k-") {
            let (shard, sequence) = rest.rsplit_once('-')?;
            if !shard.is_empty() && is_digits(sequence) {
                return Some(Self::kinesis(shard, sequence));
            }
        }
        let mut parts = stem.rsplitn(3, '-');
        let (seq, micros, writer) = (parts.next()?, parts.next()?, parts.next()?);
        check_writer_id(writer).ok()?;
        if !is_digits(seq) || !is_digits(micros) {
            return None;
        }
        Some(Self::Server {
            writer: writer.to_owned(),
            micros: micros.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The compaction job that wrote this file, if it is an output.
    pub fn job_id(&self) -> Option<&str> {
        match self {
            Self::Compacted { id, .. } => Some(id),
            _ => None,
        }
    }
}

/// A file under `_compactions/`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MarkerName {
    /// Entry `seq` of the partition's compaction log (zero-padded: names sort by number).
    Log(u64),
    /// A commit marker of the first, log-less protocol (a job id).
    Legacy(String),
}

impl fmt::Display for MarkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Log(seq) => write!(f, "{seq:020}.json"),
            Self::Legacy(id) => write!(f, "{id}.json"),
        }
    }
}

impl MarkerName {
    pub fn parse(name: &str) -> Option<Self> {
        let stem = name.strip_suffix(".json")?;
        if stem.len() == 20 && is_digits(stem) {
            return stem.parse().ok().map(Self::Log);
        }
        is_job_id(stem).then(|| Self::Legacy(stem.to_owned()))
    }
}

/// Where unusable input is kept, out of every table's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quarantined {
    /// A Kinesis record nothing could be decoded from: its bytes (`.bin`) and why (`.err`).
    KinesisRecord {
        shard: String,
        sequence: String,
        reason: bool,
    },
    /// A lake file that cannot be read, moved aside whole (or why, with `reason`).
    LakeFile { original: Path, reason: bool },
}

impl Quarantined {
    pub fn path(&self) -> Path {
        match self {
            Self::KinesisRecord {
                shard,
                sequence,
                reason,
            } => {
                let ext = if *reason { "err" } else { "bin" };
                Path::from(format!("{QUARANTINE_DIR}/kinesis/{shard}/{sequence}.{ext}"))
            }
            Self::LakeFile { original, reason } => {
                let p = Path::from(format!("{QUARANTINE_DIR}/lake/{original}"));
                if *reason {
                    Path::from(format!("{p}.err"))
                } else {
                    p
                }
            }
        }
    }

    pub fn parse(path: &Path) -> Option<Self> {
        let rest = path
            .as_ref()
            .strip_prefix(QUARANTINE_DIR)?
            .strip_prefix('/')?;
        if let Some(k) = rest.strip_prefix("kinesis/") {
            let (shard, file) = k.split_once('/')?;
            let (sequence, ext) = file.rsplit_once('.')?;
            let reason = match ext {
                "err" => true,
                "bin" => false,
                _ => return None,
            };
            return Some(Self::KinesisRecord {
                shard: shard.to_owned(),
                sequence: sequence.to_owned(),
                reason,
            });
        }
        let original = rest.strip_prefix("lake/")?;
        let (original, reason) = match original.strip_suffix(".err") {
            Some(o) => (o, true),
            None => (original, false),
        };
        Some(Self::LakeFile {
            original: Path::from(original),
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_layout() {
        // 2025-01-26T18:44:07.120Z
        let p = Partition::for_micros(1, 1_737_917_047_120_000);
        assert_eq!(p.prefix().as_ref(), "hep_1/date=2025-01-26/hour=18");
        let f = FileName::kinesis("shardId-000000000001", "4959");
        assert_eq!(
            p.file(&f).as_ref(),
            "hep_1/date=2025-01-26/hour=18/k-shardId-000000000001-4959.parquet"
        );
        assert_eq!(Partition::parse(&p.file(&f)), Some(p));
        assert_eq!(
            p.marker(&MarkerName::Log(7)).as_ref(),
            "hep_1/date=2025-01-26/hour=18/_compactions/00000000000000000007.json"
        );
        assert_eq!(
            Partition::parse(&Path::from("hep_1/date=2025-01-26/hour=24/x")),
            None
        );
        assert_eq!(
            Partition::parse(&Path::from("hep_1/date=2025-01-26/hour=7/x")),
            None
        );
        assert_eq!(
            Partition::parse(&Path::from("other/date=2025-01-26/hour=01/x")),
            None
        );
        assert_eq!(
            Partition::parse(&Path::from("hep_1/date=1969-12-31/hour=23")),
            Some(Partition {
                hep_type: 1,
                hour: -1
            })
        );
    }

    #[test]
    fn names_are_told_apart() {
        let id = "0192abcd0192abcd0192abcd0192abcd";
        assert_eq!(
            FileName::parse(&format!("c-{id}-3.parquet")),
            Some(FileName::compacted(id, 3))
        );
        assert_eq!(
            FileName::parse("hepop-1737917047120000-4.parquet")
                .and_then(|f| f.job_id().map(str::to_owned)),
            None
        );
        // A short id is no compaction output (it would be a writer named "c", which is refused).
        assert_eq!(FileName::parse("c-123-4.parquet"), None);
        assert!(
            check_writer_id("c").is_err()
                && check_writer_id("a-b").is_err()
                && check_writer_id("").is_err()
        );
        assert_eq!(FileName::parse("_compactions/x.json"), None);
        assert_eq!(FileName::parse("hepop-1-2.parquet.tmp"), None);
        assert_eq!(
            MarkerName::parse(&format!("{id}.json")),
            Some(MarkerName::Legacy(id.into()))
        );
        assert_eq!(MarkerName::parse("7.json"), None);
        let id = new_job_id(1_764_374_400_000_000, 42);
        assert_eq!(
            FileName::parse(&FileName::compacted(&id, 0).to_string())
                .unwrap()
                .job_id(),
            Some(id.as_str())
        );
        assert_eq!(job_started_micros(&id), Some(1_764_374_400_000_000));
        assert_eq!(
            job_started_micros("f3a1c2e4b5d6478a9b0c1d2e3f405162"),
            None,
            "a v4 UUID"
        );
    }

    #[test]
    fn bundle_layout() {
        let set = TypeSet::of([100, 1, 5]);
        let b = BundleHour {
            types: set,
            hour: Partition::for_micros(1, 1_737_917_047_120_000).hour,
        };
        assert_eq!(
            b.file(&FileName::kinesis_batch("s", "1", "2", 3)).as_ref(),
            "_bundles/t=1.5.100/date=2025-01-26/hour=18/kb-s-1-2-3.parquet"
        );
        assert_eq!(set.row_group(5), Some(1));
        assert_eq!(set.row_group(2), None);
        // One type is no bundle; names are canonical.
        for bad in [
            "t=1", "t=5.1", "t=1.1.5", "t=01.5", "t=1.5.", "t=1.256", "1.5",
        ] {
            assert_eq!(TypeSet::parse_dir(bad), None, "{bad}");
        }
        assert_eq!(TypeSet::parse_dir("t=1.5.100"), Some(set));
    }

    fn file_name() -> impl Strategy<Value = FileName> {
        prop_oneof![
            ("[A-Za-z0-9_.]{1,12}", 0i64..i64::MAX, any::<u64>())
                .prop_filter("reserved", |(w, _, _)| check_writer_id(w).is_ok())
                .prop_map(|(writer, micros, seq)| FileName::Server {
                    writer,
                    micros,
                    seq
                }),
            ("shardId-[0-9]{12}|[A-Za-z0-9-]{1,20}", "[0-9]{1,56}")
                .prop_map(|(s, q)| FileName::kinesis(&s, &q)),
            (
                "shardId-[0-9]{12}|[A-Za-z0-9-]{1,20}",
                "[0-9]{1,56}",
                "[0-9]{1,56}",
                0i64..i64::MAX
            )
                .prop_map(|(s, f, l, t)| FileName::kinesis_batch(&s, &f, &l, t)),
            ("[0-9a-f]{32}", any::<u32>()).prop_map(|(id, n)| FileName::compacted(&id, n)),
        ]
    }

    proptest! {
        #[test]
        fn file_names_round_trip(name in file_name(), hep_type in any::<u8>(), hour in -1000i64..2_000_000) {
            let p = Partition { hep_type, hour };
            let key = p.file(&name);
            prop_assert_eq!(Partition::parse(&key), Some(p));
            prop_assert_eq!(FileName::parse(key.filename().unwrap()), Some(name));
        }

        #[test]
        fn bundle_keys_round_trip(types in proptest::collection::btree_set(any::<u8>(), 2..6), name in file_name(), hour in -1000i64..2_000_000) {
            let set = TypeSet::of(types.iter().copied());
            let b = BundleHour { types: set, hour };
            let key = b.file(&name);
            prop_assert_eq!(BundleHour::parse(&key), Some(b));
            prop_assert_eq!(Partition::parse(&key), None, "no table's key");
            prop_assert_eq!(FileName::parse(key.filename().unwrap()), Some(name));
            prop_assert_eq!(Root::Bundles(set).hour_of(&key), Some(hour));
            for (i, t) in types.iter().enumerate() {
                prop_assert_eq!(bundle_row_group(&key, *t), Some((i, types.len())));
            }
        }

        #[test]
        fn records_files_round_trip(hour in 0i64..2_000_000, fingerprint in any::<u64>(), name in file_name()) {
            let r = RecordsFile { hour, fingerprint };
            prop_assert_eq!(RecordsFile::parse(&r.path()), Some(r));
            prop_assert_eq!(Partition::parse(&r.path()), None, "no HEP table's key");
            // A data file's name under calls/ is no records file.
            let other = Root::Calls.hour_prefix(hour).join(name.to_string());
            prop_assert_eq!(RecordsFile::parse(&other), None);
        }

        #[test]
        fn marker_names_round_trip(seq in any::<u64>(), id in "[0-9a-f]{32}", hour in 0i64..2_000_000) {
            let p = Partition { hep_type: 1, hour };
            for m in [MarkerName::Log(seq), MarkerName::Legacy(id.clone())] {
                let key = p.marker(&m);
                prop_assert_eq!(key.prefix_match(&p.compactions_prefix()).map(|mut r| r.next().unwrap().as_ref().to_owned()), Some(m.to_string()));
                prop_assert_eq!(MarkerName::parse(key.filename().unwrap()), Some(m));
            }
        }

        #[test]
        fn quarantine_keys_round_trip(shard in "[A-Za-z0-9-]{1,20}", seq in "[0-9]{1,40}", reason in any::<bool>(), name in file_name(), hour in 0i64..2_000_000) {
            let q = Quarantined::KinesisRecord { shard, sequence: seq, reason };
            prop_assert_eq!(Quarantined::parse(&q.path()), Some(q));
            let q = Quarantined::LakeFile { original: Partition { hep_type: 5, hour }.file(&name), reason };
            prop_assert_eq!(Quarantined::parse(&q.path()), Some(q));
        }
    }
}
