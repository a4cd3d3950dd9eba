//! Parsing: SQL text into statements (PostgreSQL dialect), and the
//! commands Tsunagu adds (`CREATE COHORT`, `CREATE RESULT`, project
//! commands); the text the audit log records for each.

use super::*;

impl Session {
    /// Splits SQL text into statements (PostgreSQL dialect). A cohort
    /// command (`CREATE COHORT`, `DROP COHORT`) is the whole text.
    /// Text that does not parse is audited here, as it was sent.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>> {
        let parsed: Result<Vec<Statement>> = (|| {
            if let Some(c) = cohort_command(sql)? {
                return Ok(vec![c]);
            }
            if let Some(c) = result_command(sql)? {
                return Ok(vec![c]);
            }
            if let Some(command) = crate::projects::admin::parse(sql)? {
                return Ok(vec![Statement::Project {
                    command,
                    text: sql.trim().to_owned(),
                }]);
            }
            check_chains(sql)?;
            Ok(
                DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {})?
                    .into_iter()
                    .map(Statement::Sql)
                    .collect(),
            )
        })();
        if let Err(e) = &parsed {
            self.log(sql.trim(), Decision::Error, Some(e.audit_class()), None, 0)?;
        }
        parsed
    }
}

/// The longest chain of set operations, joins or binary operators a text
/// may hold. The parser reads such chains in a loop but builds them as
/// trees as deep as the chain, which planning then walks recursively; a
/// chain of thousands would exhaust a thread's stack and end the process.
/// (Nesting by parentheses and subqueries is bounded by the parser itself.)
pub const MAX_CHAIN: usize = 1000;

/// The most tables (or subqueries) one statement may join, by `JOIN` or
/// by commas in `FROM`. Planning time grows faster than the square of
/// the number of joins (a second at 250 in a release build, minutes at
/// 1000), so a longer chain would hold a core for that long.
pub const MAX_JOINS: usize = 250;

/// Refuses text whose chains exceed [`MAX_CHAIN`], or that joins more
/// than [`MAX_JOINS`] relations (SQLSTATE 54001, as PostgreSQL's
/// "statement is too complex"), counted on its tokens before anything is
/// built from them.
fn check_chains(sql: &str) -> Result<()> {
    use datafusion::sql::sqlparser::keywords::Keyword;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        // The parser reports the error, with its position.
        return Ok(());
    };
    let (mut relations, mut operators, mut joins) = (0usize, 0usize, 0usize);
    let (mut most_relations, mut most_operators, mut most_joins) = (0usize, 0usize, 0usize);
    // Per parenthesis depth: whether the text there is in a FROM clause,
    // where a comma joins one more relation.
    let mut in_from = vec![false];
    for token in &tokens {
        match token {
            Token::Word(w) => match w.keyword {
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT | Keyword::JOIN => {
                    relations += 1;
                    most_relations = most_relations.max(relations);
                    if w.keyword == Keyword::JOIN {
                        joins += 1;
                    } else {
                        set_last(&mut in_from, false);
                    }
                }
                Keyword::FROM => {
                    set_last(&mut in_from, true);
                    operators = 0;
                }
                Keyword::GROUP
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::FETCH
                | Keyword::WINDOW
                | Keyword::QUALIFY
                | Keyword::RETURNING => set_last(&mut in_from, false),
                Keyword::AND | Keyword::OR | Keyword::IS | Keyword::LIKE | Keyword::ILIKE => {
                    operators += 1;
                }
                Keyword::SELECT | Keyword::WHERE => {
                    set_last(&mut in_from, false);
                    operators = 0;
                }
                Keyword::WHEN
                | Keyword::THEN
                | Keyword::ELSE
                | Keyword::END
                | Keyword::ON
                | Keyword::HAVING => operators = 0,
                _ => {}
            },
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Caret
            | Token::Ampersand
            | Token::Pipe => operators += 1,
            Token::Comma => {
                operators = 0;
                if in_from.last() == Some(&true) {
                    joins += 1;
                }
            }
            Token::LParen => {
                operators = 0;
                in_from.push(false);
            }
            Token::RParen => {
                operators = 0;
                if in_from.len() > 1 {
                    in_from.pop();
                }
            }
            Token::SemiColon => {
                (relations, operators, joins) = (0, 0, 0);
                in_from = vec![false];
            }
            _ => {}
        }
        most_operators = most_operators.max(operators);
        most_joins = most_joins.max(joins);
    }
    let (what, n, most) = if most_relations > MAX_CHAIN {
        (
            "set operations and joins in a row",
            most_relations,
            MAX_CHAIN,
        )
    } else if most_operators > MAX_CHAIN {
        ("operators in one expression", most_operators, MAX_CHAIN)
    } else if most_joins > MAX_JOINS {
        ("joins in one statement", most_joins, MAX_JOINS)
    } else {
        return Ok(());
    };
    Err(EngineError::Refused {
        code: "54001",
        rule: "statement size",
        message: format!(
            "statement is too complex: {n} {what}, at most {most}; \
             split it into steps (WITH, or saved results) [rule: statement size]"
        ),
    })
}

fn set_last(flags: &mut [bool], value: bool) {
    if let Some(last) = flags.last_mut() {
        *last = value;
    }
}

/// The statement as the audit log records it.
pub fn statement_text(statement: &Statement) -> String {
    match statement {
        Statement::Sql(s) => s.to_string(),
        Statement::CreateCohort { name, query } => {
            let query = DFParser::parse_sql_with_dialect(query, &PostgreSqlDialect {})
                .ok()
                .and_then(|mut v| v.pop_back())
                .map(|q| q.to_string())
                .unwrap_or_else(|| query.split_whitespace().collect::<Vec<_>>().join(" "));
            format!("CREATE COHORT {name} AS {query}")
        }
        Statement::Project { text, .. } => text.clone(),
        Statement::CreateResult { name, query } => format!("CREATE RESULT {name} AS {query}"),
        Statement::ReleaseResult { name, purpose } => {
            if purpose.is_empty() {
                format!("RELEASE RESULT {name}")
            } else {
                format!(
                    "RELEASE RESULT {name} WITH PURPOSE '{}'",
                    purpose.replace('\'', "''")
                )
            }
        }
        Statement::DropCohort { name, if_exists } => {
            format!(
                "DROP COHORT {}{name}",
                if *if_exists { "IF EXISTS " } else { "" }
            )
        }
    }
}

/// Recognizes `CREATE COHORT name AS query` and `DROP COHORT [IF EXISTS] name`.
pub(super) fn cohort_command(sql: &str) -> Result<Option<Statement>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let mut words = text.split_whitespace();
    let (Some(verb), Some(noun)) = (words.next(), words.next()) else {
        return Ok(None);
    };
    if !noun.eq_ignore_ascii_case("cohort") {
        return Ok(None);
    }
    let rest = |n: usize| -> &str {
        let mut t = text;
        for _ in 0..n {
            t = t.trim_start();
            t = &t[t.find(char::is_whitespace).unwrap_or(t.len())..];
        }
        t.trim()
    };
    if verb.eq_ignore_ascii_case("create") {
        let tail = rest(2);
        let name_end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let name = tail[..name_end].trim_matches('"').to_ascii_lowercase();
        let after = tail[name_end..].trim_start();
        if after.len() < 2
            || !after[..2].eq_ignore_ascii_case("as")
            || after[2..]
                .chars()
                .next()
                .is_some_and(|c| !c.is_whitespace() && c != '(')
        {
            return Err(EngineError::Unsupported(
                "expected CREATE COHORT name AS <query returning person_id>".into(),
            ));
        }
        return Ok(Some(Statement::CreateCohort {
            name,
            query: after[2..].trim().to_owned(),
        }));
    }
    if verb.eq_ignore_ascii_case("drop") {
        let tail = rest(2);
        let (if_exists, name) = match tail.to_ascii_lowercase().strip_prefix("if exists") {
            Some(n) => (true, n.trim().to_owned()),
            None => (false, tail.to_ascii_lowercase()),
        };
        if name.is_empty() || name.contains(char::is_whitespace) {
            return Err(EngineError::Unsupported(
                "expected DROP COHORT [IF EXISTS] name".into(),
            ));
        }
        return Ok(Some(Statement::DropCohort {
            name: name.trim_matches('"').to_owned(),
            if_exists,
        }));
    }
    Ok(None)
}

/// Recognizes `CREATE RESULT name AS query` and
/// `RELEASE RESULT name [WITH PURPOSE 'text']`.
pub(super) fn result_command(sql: &str) -> Result<Option<Statement>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 2 || !words[1].eq_ignore_ascii_case("result") {
        return Ok(None);
    }
    let verb = words[0].to_ascii_lowercase();
    if verb != "create" && verb != "release" {
        return Ok(None);
    }
    let after_noun = {
        let t = text[words[0].len()..].trim_start();
        t[words[1].len()..].trim_start()
    };
    let name_end = after_noun
        .find(char::is_whitespace)
        .unwrap_or(after_noun.len());
    let name = after_noun[..name_end]
        .trim_matches('"')
        .to_ascii_lowercase();
    let rest = after_noun[name_end..].trim();
    if verb == "create" {
        let ok = rest.len() >= 2
            && rest[..2].eq_ignore_ascii_case("as")
            && rest[2..]
                .chars()
                .next()
                .is_some_and(|c| c.is_whitespace() || c == '(');
        if !ok || name.is_empty() {
            return Err(EngineError::Unsupported(
                "expected CREATE RESULT name AS <query>".into(),
            ));
        }
        return Ok(Some(Statement::CreateResult {
            name,
            query: rest[2..].trim().to_owned(),
        }));
    }
    let purpose = if rest.is_empty() {
        String::new()
    } else {
        let lower = rest.to_ascii_lowercase();
        let quoted = lower
            .strip_prefix("with")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix("purpose"))
            .map(|_| rest[rest.to_ascii_lowercase().find("purpose").unwrap_or(0) + 7..].trim());
        match quoted {
            Some(q) if q.len() >= 2 && q.starts_with('\'') && q.ends_with('\'') => {
                q[1..q.len() - 1].replace("''", "'")
            }
            _ => {
                return Err(EngineError::Unsupported(
                    "expected RELEASE RESULT name [WITH PURPOSE 'text']".into(),
                ));
            }
        }
    };
    if name.is_empty() {
        return Err(EngineError::Unsupported(
            "expected RELEASE RESULT name [WITH PURPOSE 'text']".into(),
        ));
    }
    Ok(Some(Statement::ReleaseResult { name, purpose }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(tables: usize, separator: &str) -> String {
        let from: Vec<String> = (0..tables).map(|i| format!("t t{i}")).collect();
        format!("SELECT count(*) FROM {}", from.join(separator))
    }

    #[test]
    fn joins_by_keyword_or_comma_are_counted_against_the_limit() {
        for separator in [", ", " JOIN ", " CROSS JOIN ", ", LATERAL "] {
            assert!(
                check_chains(&joined(MAX_JOINS + 1, separator)).is_ok(),
                "{separator}"
            );
            let err = check_chains(&joined(MAX_JOINS + 2, separator)).unwrap_err();
            assert!(err.to_string().contains("joins in one statement"), "{err}");
        }
        // Each statement of a text is counted on its own.
        let two = format!("{}; {}", joined(200, ", "), joined(200, ", "));
        assert!(check_chains(&two).is_ok());
    }

    #[test]
    fn commas_outside_from_do_not_count_as_joins() {
        let columns: Vec<String> = (0..2000).map(|i| format!("c{i}")).collect();
        let columns = columns.join(", ");
        let sql = format!(
            "WITH a AS (SELECT 1 AS c FROM t), b AS (SELECT 2 AS c FROM t) \
             SELECT {columns}, coalesce({columns}), substring(x FROM 1 FOR 2) \
             FROM t WHERE x IN ({columns}) GROUP BY {columns} ORDER BY {columns}"
        );
        check_chains(&sql).unwrap();
        // A FROM inside parentheses ends with them.
        let sql = format!("SELECT extract(year FROM d), {columns} FROM t");
        check_chains(&sql).unwrap();
    }
}
