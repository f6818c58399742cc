//! Limits on the SQL text itself, checked before parsing. A chain of
//! left-associative operators (`1 + 1 + … + 1`) parses without touching the
//! parser's recursion limit but builds a tree as deep as the chain is long,
//! and planning and display then recurse once per level: twelve thousand
//! levels overflowed a 16 MiB stack. Counting operator tokens bounds the
//! depth without recursing.
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// Longest SQL text accepted (a 50 000-item IN list fits).
pub const MAX_SQL_BYTES: usize = 1 << 20;
/// Most binary operators in one statement (`OR` chains included).
pub const MAX_OPERATORS: usize = 2_000;

/// Ok, or the message for a 400.
pub fn check(sql: &str) -> Result<(), String> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(format!(
            "query text is {} bytes, over the {MAX_SQL_BYTES}-byte limit",
            sql.len()
        ));
    }
    // Text the tokenizer refuses is left for the parser to explain.
    let Ok(tokens) = Tokenizer::new(&GenericDialect {}, sql).tokenize() else {
        return Ok(());
    };
    let operators = tokens.iter().filter(|t| is_operator(t)).count();
    if operators > MAX_OPERATORS {
        return Err(format!(
            "query has {operators} operators, over the limit of {MAX_OPERATORS}; use IN (...) lists instead of long OR chains"
        ));
    }
    Ok(())
}

fn is_operator(t: &Token) -> bool {
    match t {
        Token::Word(w) => matches!(
            w.keyword,
            Keyword::AND | Keyword::OR | Keyword::LIKE | Keyword::ILIKE | Keyword::IS
        ),
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::DoubleEq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Spaceship
        | Token::Caret
        | Token::Ampersand
        | Token::Pipe
        | Token::ShiftLeft
        | Token::ShiftRight
        | Token::Tilde
        | Token::DoubleColon => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_operator_chains_and_huge_texts_are_refused() {
        assert!(check("SELECT a + 1 FROM t WHERE x = 1 AND y LIKE '%a%' OR z IS NULL").is_ok());
        let chain = format!("SELECT 1{}", " + 1".repeat(MAX_OPERATORS));
        assert!(check(&chain).is_ok());
        let longer = format!("SELECT 1{}", " + 1".repeat(MAX_OPERATORS + 1));
        assert!(check(&longer).unwrap_err().contains("operators"));
        let ors: Vec<String> = (0..3000).map(|i| format!("call_id = 'c{i}'")).collect();
        assert!(check(&format!("SELECT * FROM t WHERE {}", ors.join(" OR "))).is_err());
        let list: Vec<String> = (0..50_000).map(|i| format!("'c{i}'")).collect();
        assert!(
            check(&format!(
                "SELECT * FROM t WHERE call_id IN ({})",
                list.join(",")
            ))
            .is_ok()
        );
        assert!(
            check(&"x".repeat(MAX_SQL_BYTES + 1))
                .unwrap_err()
                .contains("bytes")
        );
        // Operators inside string literals are text, not operators.
        assert!(check(&format!("SELECT '{}'", "+".repeat(10_000))).is_ok());
        assert!(check("SELECT 'unterminated").is_ok());
    }
}
