//! The names PostgreSQL gives output columns without an alias: `count` for
//! `count(*)`, `case` for a `CASE`, the column for `x::text`, the type for
//! `DATE '2020-01-01'`, `?column?` for other expressions (PostgreSQL's
//! `FigureColname`). DataFusion names them by their text (`count(*)`), which
//! clients and BI tools show as column headers.

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    DataType, Expr, Ident, ObjectName, Select, SelectItem, SetExpr, SetQuantifier, Statement,
};

/// The name PostgreSQL shows for an expression it cannot name otherwise.
const UNNAMED: &str = "?column?";

/// An identifier as DataFusion resolves it: unquoted ones in lower case.
pub(crate) fn ident(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_ascii_lowercase()
    }
}

fn last(name: &ObjectName) -> Option<String> {
    name.0.last().and_then(|p| p.as_ident()).map(ident)
}

/// PostgreSQL's name of a type in a cast, for the common types.
fn type_name(t: &DataType) -> Option<&'static str> {
    let text = t.to_string().to_ascii_uppercase();
    let base = text.split('(').next().unwrap_or("").trim();
    Some(match base {
        "INT" | "INTEGER" | "INT4" => "int4",
        "BIGINT" | "INT8" => "int8",
        "SMALLINT" | "INT2" => "int2",
        "TEXT" => "text",
        "VARCHAR" | "CHARACTER VARYING" => "varchar",
        "CHAR" | "CHARACTER" => "bpchar",
        "DATE" => "date",
        "TIMESTAMP" => "timestamp",
        "TIMESTAMPTZ" | "TIMESTAMP WITH TIME ZONE" => "timestamptz",
        "DOUBLE PRECISION" | "DOUBLE" | "FLOAT8" | "FLOAT" => "float8",
        "REAL" | "FLOAT4" => "float4",
        "NUMERIC" | "DECIMAL" => "numeric",
        "BOOLEAN" | "BOOL" => "bool",
        "INTERVAL" => "interval",
        _ => return None,
    })
}

/// PostgreSQL's name for an expression, when it has one.
fn figure(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident),
        Expr::Function(f) => last(&f.name),
        Expr::Cast {
            expr, data_type, ..
        } => figure(expr).or_else(|| type_name(data_type).map(str::to_owned)),
        Expr::Nested(e) => figure(e),
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        Expr::Extract { .. } => Some("extract".into()),
        Expr::Substring { .. } => Some("substring".into()),
        Expr::Trim { .. } => Some("btrim".into()),
        Expr::Position { .. } => Some("position".into()),
        Expr::Ceil { .. } => Some("ceil".into()),
        Expr::Floor { .. } => Some("floor".into()),
        Expr::Interval(_) => Some("interval".into()),
        Expr::TypedString(t) => type_name(&t.data_type).map(str::to_owned),
        Expr::Subquery(q) => match q.body.as_ref() {
            SetExpr::Select(s) => match s.projection.first() {
                Some(SelectItem::UnnamedExpr(e)) => figure(e),
                Some(SelectItem::ExprWithAlias { alias, .. }) => Some(ident(alias)),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Where an output column is: counted from the first column, or from the
/// last (`FromEnd(1)` is the last), for select lists with a `*` before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    FromStart(usize),
    FromEnd(usize),
}

impl Position {
    /// The column's index among `count` columns.
    pub fn index(self, count: usize) -> Option<usize> {
        match self {
            Position::FromStart(i) => (i < count).then_some(i),
            Position::FromEnd(k) => count.checked_sub(k),
        }
    }
}

/// The select list that names a query's columns: its own, or for a set
/// operation (`UNION`, `INTERSECT`, `EXCEPT`) its leftmost one's.
fn naming_select(body: &SetExpr) -> Option<&Select> {
    match body {
        SetExpr::Select(s) => Some(s),
        // `UNION BY NAME` adds the right branch's other columns at the end.
        SetExpr::SetOperation {
            set_quantifier:
                SetQuantifier::ByName | SetQuantifier::AllByName | SetQuantifier::DistinctByName,
            ..
        } => None,
        SetExpr::SetOperation { left, .. } => naming_select(left),
        SetExpr::Query(q) => naming_select(&q.body),
        _ => None,
    }
}

/// PostgreSQL's names of the unaliased expressions of a statement's select
/// list (plain column references keep their name). Expressions after a `*`
/// are placed from the end; those between two `*` are left as they are.
pub fn postgres_names(statement: &DFStatement) -> Vec<(Position, String)> {
    let DFStatement::Statement(statement) = statement else {
        return Vec::new();
    };
    let Statement::Query(query) = statement.as_ref() else {
        return Vec::new();
    };
    let Some(select) = naming_select(&query.body) else {
        return Vec::new();
    };
    let items = &select.projection;
    let wildcard = |i: &SelectItem| {
        !matches!(
            i,
            SelectItem::UnnamedExpr(_) | SelectItem::ExprWithAlias { .. }
        )
    };
    let name = |item: &SelectItem| match item {
        SelectItem::UnnamedExpr(Expr::Identifier(_) | Expr::CompoundIdentifier(_)) => None,
        SelectItem::UnnamedExpr(e) => Some(figure(e).unwrap_or_else(|| UNNAMED.into())),
        _ => None,
    };
    let first = items.iter().position(wildcard).unwrap_or(items.len());
    let mut names: Vec<(Position, String)> = items[..first]
        .iter()
        .enumerate()
        .filter_map(|(i, item)| Some((Position::FromStart(i), name(item)?)))
        .collect();
    if let Some(last) = items.iter().rposition(wildcard) {
        let after = items.len() - last - 1;
        names.extend(
            items[last + 1..]
                .iter()
                .enumerate()
                .filter_map(|(i, item)| Some((Position::FromEnd(after - i), name(item)?))),
        );
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str) -> Vec<(usize, String)> {
        let s = datafusion::sql::parser::DFParser::parse_sql(sql)
            .unwrap()
            .pop_front()
            .unwrap();
        postgres_names(&s)
            .into_iter()
            .map(|(p, n)| match p {
                Position::FromStart(i) => (i, n),
                Position::FromEnd(k) => (1000 - k, n),
            })
            .collect()
    }

    /// Each expected name is what PostgreSQL 15.18 showed for the same select
    /// list (psql, a table t with the columns named).
    #[test]
    fn unaliased_expressions_take_postgresql_names() {
        let got = names(
            "SELECT count(*), SUM(x), x::text, CAST(y AS INT), CASE WHEN x > 1 THEN 1 END, 1 + 2, \
             DATE '2020-01-01', '1'::int, EXISTS (SELECT 1), (SELECT max(z) FROM t), \
             EXTRACT(YEAR FROM d), coalesce(a, b), x, t.y, 3 AS n FROM t",
        );
        let want: Vec<(usize, String)> = [
            (0, "count"),
            (1, "sum"),
            (2, "x"),
            (3, "y"),
            (4, "case"),
            (5, "?column?"),
            (6, "date"),
            (7, "int4"),
            (8, "exists"),
            (9, "max"),
            (10, "extract"),
            (11, "coalesce"),
        ]
        .iter()
        .map(|(i, n)| (*i, n.to_string()))
        .collect();
        assert_eq!(got, want);
        let got = names(
            "SELECT trim(y), substring(y from 1 for 1), position('3' in y), ceil(1.5), floor(1.5), \
             INTERVAL '1 day', ARRAY[1,2], (x), count(DISTINCT x), row_number() OVER (), \
             CAST(1 AS BIGINT), 1::float8, 'abc', NULL, (x + 1)::numeric FROM t",
        );
        let want = [
            "btrim",
            "substring",
            "position",
            "ceil",
            "floor",
            "interval",
            "array",
            "x",
            "count",
            "row_number",
            "int8",
            "float8",
            "?column?",
            "?column?",
            "numeric",
        ];
        assert_eq!(
            got.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>(),
            want
        );
        // After a `*`, from the end; a set operation is named by its first
        // branch (PostgreSQL 15.18: `count | x | y | z | ?column? | y | x | y
        // | z | sum | z`, and `count | ?column?`).
        assert_eq!(
            names("SELECT count(*), *, x + 1, y, t.*, sum(x), z FROM t"),
            [(0, "count".to_string()), (998, "sum".to_string())]
        );
        assert_eq!(
            names("SELECT count(*), 1 FROM t UNION ALL (SELECT 2 AS two, max(x) FROM t)"),
            [(0, "count".to_string()), (1, "?column?".to_string())]
        );
    }
}
