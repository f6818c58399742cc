//! Reads the `time` bounds out of a scan's pushed-down filters, so a query
//! lists and reads only the hour partitions it can match.
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::utils::split_conjunction;
use datafusion::logical_expr::{BinaryExpr, Cast, Expr, Operator, TryCast};

use crate::schema::TIME;

/// Inclusive bounds in µs since the epoch; None = unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeRange {
    pub lo: Option<i64>,
    pub hi: Option<i64>,
}

impl TimeRange {
    fn lower(&mut self, v: i64) {
        self.lo = Some(self.lo.map_or(v, |lo| lo.max(v)));
    }
    fn upper(&mut self, v: i64) {
        self.hi = Some(self.hi.map_or(v, |hi| hi.min(v)));
    }
}

/// What the filters say about `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeFilter {
    /// Some filter mentions `time` (then no default window applies).
    pub mentions_time: bool,
    /// Bounds implied by the AND-ed comparisons that could be read.
    pub range: TimeRange,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// `time`, or a function of it that floors it: never decreasing as `time`
/// grows, never above it, and at most the returned µs below it (0 for
/// `time` itself). So `f(time) op constant` holds on one interval of
/// instants, and bounds `time` to within that much.
fn time_floor(e: &Expr) -> Option<i64> {
    match e {
        Expr::Column(c) => (c.name == TIME).then_some(0),
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            let step = match field.data_type() {
                DataType::Timestamp(TimeUnit::Second, _) => 1_000_000,
                DataType::Timestamp(TimeUnit::Millisecond, _) => 1_000,
                DataType::Timestamp(_, _) => 0,
                DataType::Date32 | DataType::Date64 => MICROS_PER_DAY,
                _ => return None,
            };
            Some(time_floor(expr)?.checked_add(step)?)
        }
        Expr::ScalarFunction(f) if f.name() == "date_trunc" => match f.args.as_slice() {
            [Expr::Literal(unit, _), t] => {
                let unit = match unit {
                    ScalarValue::Utf8(Some(u))
                    | ScalarValue::LargeUtf8(Some(u))
                    | ScalarValue::Utf8View(Some(u)) => u.to_ascii_lowercase(),
                    _ => return None,
                };
                let step = match unit.as_str() {
                    "microsecond" | "microseconds" => 0,
                    "millisecond" | "milliseconds" => 1_000,
                    "second" => 1_000_000,
                    "minute" => 60_000_000,
                    "hour" => 3_600_000_000,
                    "day" => MICROS_PER_DAY,
                    "week" => 7 * MICROS_PER_DAY,
                    "month" => 31 * MICROS_PER_DAY,
                    "quarter" => 92 * MICROS_PER_DAY,
                    "year" => 366 * MICROS_PER_DAY,
                    _ => return None,
                };
                Some(time_floor(t)?.checked_add(step)?)
            }
            _ => None,
        },
        _ => None,
    }
}

fn is_time(e: &Expr) -> bool {
    time_floor(e).is_some()
}

/// A literal's value as µs since the epoch (timestamps or ISO strings, UTC).
/// Nanosecond literals are floored: callers only use this value for bounds
/// that stay correct when rounded down, except strict `<`, see `from_filters`.
fn literal_micros(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => scalar_micros(v),
        Expr::Cast(c) => literal_micros(&c.expr),
        Expr::TryCast(c) => literal_micros(&c.expr),
        _ => None,
    }
}

fn scalar_micros(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampSecond(Some(s), _) => s.checked_mul(1_000_000),
        ScalarValue::TimestampMillisecond(Some(ms), _) => ms.checked_mul(1_000),
        ScalarValue::TimestampMicrosecond(Some(us), _) => Some(*us),
        ScalarValue::TimestampNanosecond(Some(ns), _) => Some(ns.div_euclid(1_000)),
        ScalarValue::Date32(Some(d)) => i64::from(*d).checked_mul(MICROS_PER_DAY),
        ScalarValue::Date64(Some(ms)) => ms.checked_mul(1_000),
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => parse_iso(s),
        _ => None,
    }
}

/// Parses '2025-02-08T19:00:00[.fff][Z|±hh:mm]', the same with a space, or a bare date. No offset means UTC.
pub fn parse_iso(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(|d| {
        d.and_hms_opt(0, 0, 0)
            .expect("midnight")
            .and_utc()
            .timestamp_micros()
    })
}

fn is_nanos(e: &Expr) -> bool {
    let Expr::BinaryExpr(BinaryExpr { left, right, .. }) = e else {
        return false;
    };
    [left, right].iter().any(|x| {
        matches!(
            x.as_ref(),
            Expr::Literal(ScalarValue::TimestampNanosecond(..), _)
        )
    })
}

fn mentions_time(e: &Expr) -> bool {
    e.column_refs().iter().any(|c| c.name == TIME)
}

/// Whether `e` compares `time` with a constant (`<`, `<=`, `>`, `>=`, `=`,
/// BETWEEN): the instants where it holds form one interval, so it holds for
/// a whole hour when it holds at the hour's first and last microsecond.
pub fn is_time_bound(e: &Expr) -> bool {
    match e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq | Operator::Eq
            ) && ((is_time(left) && literal_micros(right).is_some())
                || (is_time(right) && literal_micros(left).is_some()))
        }
        Expr::Between(b) => {
            !b.negated
                && is_time(&b.expr)
                && literal_micros(&b.low).is_some()
                && literal_micros(&b.high).is_some()
        }
        _ => false,
    }
}

/// Reads the time bounds from the filters DataFusion pushes into a scan.
pub fn from_filters(filters: &[Expr]) -> TimeFilter {
    let mut range = TimeRange::default();
    let mut mentions = false;
    for f in filters {
        mentions |= mentions_time(f);
        for e in split_conjunction(f) {
            match e {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    let (op, floor, v) = match (time_floor(left), time_floor(right)) {
                        (Some(w), _) => (*op, w, literal_micros(right)),
                        // literal OP time  ==  time (swapped OP) literal
                        (None, Some(w)) => (op.swap().unwrap_or(*op), w, literal_micros(left)),
                        (None, None) => continue,
                    };
                    let Some(v) = v else { continue };
                    // f(time) >= v gives time >= v (f never exceeds time);
                    // f(time) <= v gives time < v + floor.
                    let below = |v: i64| v.saturating_add((floor - 1).max(0));
                    match op {
                        Operator::Gt | Operator::GtEq => range.lower(v),
                        // `time < v` on a µs column is `time <= v - 1`; for a
                        // floored ns literal `v` itself may still match.
                        Operator::Lt if !is_nanos(e) && floor == 0 => range.upper(v - 1),
                        Operator::Lt | Operator::LtEq => range.upper(below(v)),
                        Operator::Eq => {
                            range.lower(v);
                            range.upper(below(v));
                        }
                        _ => {}
                    }
                }
                Expr::Between(b) if !b.negated => {
                    let Some(floor) = time_floor(&b.expr) else {
                        continue;
                    };
                    if let (Some(lo), Some(hi)) = (literal_micros(&b.low), literal_micros(&b.high))
                    {
                        range.lower(lo);
                        range.upper(hi.saturating_add((floor - 1).max(0)));
                    }
                }
                _ => {}
            }
        }
    }
    TimeFilter {
        mentions_time: mentions,
        range,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    fn ts(s: &str) -> Expr {
        lit(ScalarValue::TimestampMicrosecond(
            parse_iso(s),
            Some("UTC".into()),
        ))
    }

    #[test]
    fn iso_forms() {
        let t = parse_iso("2025-02-08T19:00:00").unwrap();
        assert_eq!(parse_iso("2025-02-08 19:00:00"), Some(t));
        assert_eq!(parse_iso("2025-02-08T19:00:00Z"), Some(t));
        assert_eq!(parse_iso("2025-02-08T20:00:00+01:00"), Some(t));
        assert_eq!(parse_iso("2025-02-08T19:00:00.5").unwrap(), t + 500_000);
        assert_eq!(parse_iso("2025-02-08").unwrap() + 19 * 3_600_000_000, t);
        assert_eq!(parse_iso("yesterday"), None);
    }

    #[test]
    fn comparisons_between_and_swapped() {
        let lo = parse_iso("2025-02-08T19:00:00");
        let hi = parse_iso("2025-02-08T20:00:00");
        let f = from_filters(&[col("time")
            .gt_eq(ts("2025-02-08T19:00:00"))
            .and(col("time").lt(lit("2025-02-08T20:00:00")))]);
        assert_eq!(
            f.range,
            TimeRange {
                lo,
                hi: hi.map(|h| h - 1)
            }
        );
        let f = from_filters(&[
            ts("2025-02-08T20:00:00").gt_eq(col("time")),
            col("time").gt(ts("2025-02-08T19:00:00")),
        ]);
        assert_eq!(f.range, TimeRange { lo, hi });
        let f = from_filters(&[
            col("time").between(ts("2025-02-08T19:00:00"), ts("2025-02-08T20:00:00"))
        ]);
        assert_eq!(f.range, TimeRange { lo, hi });
    }

    #[test]
    fn time_bounds_are_comparisons_with_a_constant() {
        let t = || col("time");
        assert!(is_time_bound(&t().lt(ts("2025-02-08T19:00:00"))));
        assert!(is_time_bound(&ts("2025-02-08T19:00:00").lt_eq(t())));
        assert!(is_time_bound(
            &t().between(ts("2025-02-08T19:00:00"), ts("2025-02-08T20:00:00"))
        ));
        assert!(!is_time_bound(&t().not_between(
            ts("2025-02-08T19:00:00"),
            ts("2025-02-08T20:00:00")
        )));
        assert!(!is_time_bound(&t().not_eq(ts("2025-02-08T19:00:00"))));
        assert!(!is_time_bound(&t().gt(col("original_time"))));
        assert!(!is_time_bound(
            &t().gt(ts("2025-02-08T19:00:00"))
                .or(col("src_port").eq(lit(5060)))
        ));
    }

    #[test]
    fn or_and_unrelated_filters_do_not_bound() {
        let f = from_filters(&[col("time")
            .gt(ts("2025-02-08T19:00:00"))
            .or(col("src_port").eq(lit(5060)))]);
        assert!(f.mentions_time);
        assert_eq!(f.range, TimeRange::default());
        let f = from_filters(&[col("src_port").eq(lit(5060))]);
        assert!(!f.mentions_time);
    }
}
