//! Lookups a bloom filter answers (`call_id = '…'`, `from_user IN (…)`),
//! decided per row group while the scan is planned, from the cached footer
//! and bloom filters. Files are ordered by minute (`schema::SortKey`), so a
//! lookup column's statistics span nearly all its values in every file and
//! rule none out; the bloom filters do, and a file none of whose row groups
//! can hold the value is then not opened at all (opening one costs a lookup
//! more than checking its filters).
use bytes::Bytes;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

use crate::schema::bloom_columns;

/// A condition that a row matches only if `column` equals one of `values`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Lookup {
    pub column: &'static str,
    pub values: Vec<String>,
}

/// The lookups among the conjuncts DataFusion pushes into a scan of
/// `hep_<hep_type>`: equality with a string constant, or a non-negated IN
/// list of them, on a column with bloom filters.
pub(crate) fn lookups(filters: &[Expr], hep_type: u8) -> Vec<Lookup> {
    let mut out = Vec::new();
    for f in filters {
        collect(f, bloom_columns(hep_type), &mut out);
    }
    out
}

fn collect(e: &Expr, columns: &[&'static str], out: &mut Vec<Lookup>) {
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => {
            collect(left, columns, out);
            collect(right, columns, out);
        }
        e => out.extend(lookup(e, columns)),
    }
}

/// `e` as one lookup: an equality, an IN list, or an OR of them on one
/// column (DataFusion writes a short IN list as such an OR).
fn lookup(e: &Expr, columns: &[&'static str]) -> Option<Lookup> {
    let bloom_column = |e: &Expr| match e {
        Expr::Column(c) => columns.iter().copied().find(|n| *n == c.name),
        _ => None,
    };
    let text = |e: &Expr| match e {
        Expr::Literal(v, _) => string(v),
        _ => None,
    };
    match e {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let (column, value) = match (bloom_column(left), bloom_column(right)) {
                (Some(c), _) => (c, text(right)?),
                (_, Some(c)) => (c, text(left)?),
                _ => return None,
            };
            Some(Lookup {
                column,
                values: vec![value],
            })
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            let (mut l, r) = (lookup(left, columns)?, lookup(right, columns)?);
            (l.column == r.column).then(|| {
                l.values.extend(r.values);
                l
            })
        }
        Expr::InList(l) if !l.negated => Some(Lookup {
            column: bloom_column(&l.expr)?,
            values: l.list.iter().map(text).collect::<Option<_>>()?,
        }),
        _ => None,
    }
}

/// A non-null string constant, whichever string type it has.
fn string(v: &ScalarValue) -> Option<String> {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Where `column` is among `md`'s leaf columns (the schema is flat).
pub(crate) fn leaf(md: &ParquetMetaData, column: &str) -> Option<usize> {
    md.file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == column)
}

/// Whether row group `g`'s min/max of leaf `c` admit one of `values`.
/// Without statistics: yes. (Truncated statistics still bound: a shortened
/// minimum is a prefix, a shortened maximum is rounded up.)
pub(crate) fn statistics_admit(
    md: &ParquetMetaData,
    g: usize,
    c: usize,
    values: &[String],
) -> bool {
    let Some(Statistics::ByteArray(s)) = md.row_group(g).column(c).statistics() else {
        return true;
    };
    values.iter().any(|v| {
        let v = v.as_bytes();
        s.min_bytes_opt().is_none_or(|min| min <= v) && s.max_bytes_opt().is_none_or(|max| v <= max)
    })
}

/// Whether a bloom filter (its header and bitset, as stored) admits one of
/// `values`. A filter that does not parse admits everything.
pub(crate) fn bloom_admits(filter: &Bytes, values: &[String]) -> bool {
    match Sbbf::from_bytes(filter) {
        Ok(f) => values.iter().any(|v| f.check(v.as_str())),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn equalities_and_in_lists_on_bloom_columns_are_lookups() {
        let f = [
            col("call_id").eq(lit("a@b")),
            lit("+4930").eq(col("from_user")),
            col("to_user").in_list(vec![lit("1"), lit("2")], false),
            col("call_id")
                .eq(lit("c"))
                .or(col("call_id").in_list(vec![lit("d"), lit("e")], false)),
            col("ruri_user")
                .eq(lit("x"))
                .and(col("aleg_id").eq(lit(ScalarValue::Utf8View(Some("y".into()))))),
        ];
        let got = lookups(&f, 1);
        let want = [
            ("call_id", vec!["a@b"]),
            ("from_user", vec!["+4930"]),
            ("to_user", vec!["1", "2"]),
            ("call_id", vec!["c", "d", "e"]),
            ("ruri_user", vec!["x"]),
            ("aleg_id", vec!["y"]),
        ];
        assert_eq!(got.len(), want.len());
        for (g, (c, v)) in got.iter().zip(want) {
            assert_eq!(
                (g.column, g.values.iter().map(String::as_str).collect()),
                (c, v)
            );
        }
    }

    #[test]
    fn other_conditions_are_not_lookups() {
        let f = [
            col("call_id").not_eq(lit("a")),
            col("call_id").eq(lit("a")).or(col("to_user").eq(lit("b"))),
            col("call_id")
                .eq(lit("a"))
                .or(col("src_port").eq(lit(5060))),
            col("call_id").in_list(vec![lit("1")], true),
            col("call_id").in_list(vec![lit("1"), col("to_user")], false),
            col("call_id").eq(col("aleg_id")),
            col("method").eq(lit("INVITE")), // no bloom filter
            col("call_id").like(lit("a%")),
            col("call_id").eq(lit(ScalarValue::Utf8(None))),
        ];
        assert_eq!(lookups(&f, 1), vec![]);
        // hep_5 has bloom filters on correlation_id only.
        assert_eq!(lookups(&[col("call_id").eq(lit("a"))], 5), vec![]);
        assert_eq!(lookups(&[col("correlation_id").eq(lit("a"))], 5).len(), 1);
    }

    #[test]
    fn a_bloom_filter_admits_what_was_inserted() {
        let mut f = Sbbf::new_with_ndv_fpp(100, 0.01).unwrap();
        f.insert("call-1@host");
        let mut bytes = Vec::new();
        f.write(&mut bytes).unwrap();
        let bytes = Bytes::from(bytes);
        assert!(bloom_admits(&bytes, &["call-1@host".into()]));
        assert!(bloom_admits(&bytes, &["x".into(), "call-1@host".into()]));
        // 0.01 false positives: 20 absent values are not all admitted.
        let absent: Vec<String> = (0..20).map(|i| format!("other-{i}")).collect();
        assert!(
            absent
                .iter()
                .filter(|v| bloom_admits(&bytes, &[(*v).clone()]))
                .count()
                < 5
        );
        assert!(bloom_admits(
            &Bytes::from_static(b"not a filter"),
            &["x".into()]
        ));
    }
}
