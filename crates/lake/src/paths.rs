//! Every object key the lake uses, in one place.
//!
//! ```text
//! hep_<type>/date=YYYY-MM-DD/hour=HH/<writer>-<micros>-<seq>.parquet   ingest files
//! hep_<type>/date=YYYY-MM-DD/hour=HH/c-<id>-<n>.parquet               compaction outputs
//! hep_<type>/date=YYYY-MM-DD/hour=HH/_compactions/<id>.json           compaction commits
//! _quarantine/...                                                     undecodable input (Lambda)
//! ```
//! Names starting with `_` are hidden to Hive-style readers (Athena, Spark).
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use object_store::path::Path;

use crate::schema::{parse_table_name, table_name};

pub const MICROS_PER_HOUR: i64 = 3_600_000_000;
pub const COMPACTIONS_DIR: &str = "_compactions";
pub const COMPACTED_PREFIX: &str = "c-";

/// One hour partition of one table: the unit of listing and compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub hep_type: u8,
    /// Hours since the Unix epoch (UTC).
    pub hour: i64,
}

impl Partition {
    pub fn for_micros(hep_type: u8, micros: i64) -> Self {
        Self { hep_type, hour: micros.div_euclid(MICROS_PER_HOUR) }
    }

    pub fn start_micros(&self) -> i64 {
        self.hour * MICROS_PER_HOUR
    }

    fn start(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.start_micros()).unwrap_or_default()
    }

    pub fn date_dir(&self) -> String {
        format!("date={}", self.start().format("%Y-%m-%d"))
    }

    pub fn hour_dir(&self) -> String {
        format!("hour={:02}", self.start().hour())
    }

    pub fn prefix(&self) -> Path {
        Path::from(format!("{}/{}/{}", table_name(self.hep_type), self.date_dir(), self.hour_dir()))
    }

    pub fn file(&self, name: &str) -> Path {
        self.prefix().join(name)
    }

    pub fn compactions_prefix(&self) -> Path {
        self.prefix().join(COMPACTIONS_DIR)
    }

    pub fn compaction_marker(&self, id: &str) -> Path {
        self.compactions_prefix().join(format!("{id}.json"))
    }

    /// Parses `hep_<t>/date=…/hour=…[/…]`.
    pub fn parse(path: &Path) -> Option<Self> {
        let mut parts = path.parts();
        let hep_type = parse_table_name(parts.next()?.as_ref())?;
        let date = parts.next()?.as_ref().strip_prefix("date=")?.to_owned();
        let hour: i64 = parts.next()?.as_ref().strip_prefix("hour=")?.parse().ok()?;
        let day = NaiveDate::parse_from_str(&date, "%Y-%m-%d").ok()?;
        if !(0..24).contains(&hour) {
            return None;
        }
        let days = day.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days();
        Some(Self { hep_type, hour: days * 24 + hour })
    }
}

/// Day (since epoch) of a `date=YYYY-MM-DD` directory name.
pub fn parse_date_dir(name: &str) -> Option<i64> {
    let day = NaiveDate::parse_from_str(name.strip_prefix("date=")?, "%Y-%m-%d").ok()?;
    Some(day.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days())
}

/// `hour=HH` → HH.
pub fn parse_hour_dir(name: &str) -> Option<i64> {
    name.strip_prefix("hour=")?.parse().ok().filter(|h| (0..24).contains(h))
}

pub fn table_prefix(hep_type: u8) -> Path {
    Path::from(table_name(hep_type))
}

pub fn is_data_file(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('_') && !name.starts_with('.')
}

/// Id of the compaction that wrote `name`, if it is a compaction output (`c-<id>-<n>.parquet`).
pub fn compaction_id_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(COMPACTED_PREFIX)?.strip_suffix(".parquet")?;
    rest.rsplit_once('-').map(|(id, _)| id)
}

pub fn quarantine(name: &str) -> Path {
    Path::from(format!("_quarantine/{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_layout() {
        // 2025-01-26T18:44:07.120Z
        let p = Partition::for_micros(1, 1_737_917_047_120_000);
        assert_eq!(p.prefix().as_ref(), "hep_1/date=2025-01-26/hour=18");
        assert_eq!(Partition::parse(&p.file("x.parquet")), Some(p));
        assert_eq!(p.compaction_marker("abc").as_ref(), "hep_1/date=2025-01-26/hour=18/_compactions/abc.json");
        assert_eq!(Partition::parse(&Path::from("hep_1/date=2025-01-26/hour=24/x")), None);
        assert_eq!(Partition::parse(&Path::from("other/date=2025-01-26/hour=01/x")), None);
    }

    #[test]
    fn compaction_names() {
        assert_eq!(compaction_id_of("c-0192abcd-3.parquet"), Some("0192abcd"));
        assert_eq!(compaction_id_of("w1-123-4.parquet"), None);
        assert!(is_data_file("w1-1-2.parquet"));
        assert!(!is_data_file("_compactions/x.json"));
    }
}
