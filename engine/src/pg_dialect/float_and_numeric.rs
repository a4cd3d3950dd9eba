//! A `double precision` and a `numeric` that meet, typed as in PostgreSQL.
//!
//! PostgreSQL casts a `numeric` to `double precision` implicitly, never the
//! other way round: `float8_col > 0.5`, `CASE WHEN c THEN float8_col ELSE
//! 0.5 END`, `coalesce(float8_col, 0)`, `ARRAY[float8_col, 1.5]` and a
//! `UNION` of the two are `double precision`. DataFusion coerces both sides
//! to a `decimal(30, 15)` instead (arithmetic aside), which drops a float's
//! digits past the fifteenth decimal and fails on floats of 10¹⁵ and more.
//! [`FloatsOverNumerics`], an analyzer rule that runs before type coercion,
//! casts the decimal side to `double precision` wherever a float and a
//! decimal meet: comparisons and arithmetic, `BETWEEN`, `IN` lists, `CASE`
//! results, `coalesce`, `nullif`, `greatest`, `least`, arrays, join keys and
//! the columns of a `UNION`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, Result};
use datafusion::logical_expr::expr::{Case, InList, ScalarFunction};
use datafusion::logical_expr::{
    Between, BinaryExpr, Expr, ExprSchemable, Join, LogicalPlan, Projection, Union, cast,
};
use datafusion::optimizer::AnalyzerRule;

/// Functions whose arguments take one common type.
const COMMON_TYPE_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "make_array",
    "nvl",
    "ifnull",
];

/// The analyzer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct FloatsOverNumerics;

impl AnalyzerRule for FloatsOverNumerics {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        super::retype_up(plan, |p| match p {
            LogicalPlan::Union(u) => union(u),
            LogicalPlan::Join(j) => join(j),
            p => expressions(p),
        })
    }

    fn name(&self) -> &str {
        "pg_floats_over_numerics"
    }
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

/// Whether a float and a decimal are both among `types`.
fn mixed<'a>(types: impl IntoIterator<Item = &'a DataType> + Clone) -> bool {
    types.clone().into_iter().any(is_float) && types.into_iter().any(DataType::is_decimal)
}

/// `exprs` with their decimals cast to `double precision` if a float is
/// among them; `None` if they do not mix the two.
fn floats(exprs: &[Expr], schema: &DFSchema) -> Option<Vec<Expr>> {
    let types: Vec<DataType> = exprs
        .iter()
        .map(|e| e.get_type(schema))
        .collect::<Result<_>>()
        .ok()?;
    if !mixed(&types) {
        return None;
    }
    Some(
        exprs
            .iter()
            .zip(&types)
            .map(|(e, t)| {
                if t.is_decimal() {
                    cast(e.clone(), DataType::Float64)
                } else {
                    e.clone()
                }
            })
            .collect(),
    )
}

/// A plan node's expressions, each where a float and a decimal meet.
fn expressions(p: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    super::rewrite_expressions(p, meet)
}

/// One expression whose operands a float and a decimal may share.
fn meet(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let changed = match &e {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            floats(&[*left.clone(), *right.clone()], schema).map(|v| {
                let [l, r]: [Expr; 2] = v.try_into().expect("two operands");
                Expr::BinaryExpr(BinaryExpr::new(Box::new(l), *op, Box::new(r)))
            })
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => floats(&[*expr.clone(), *low.clone(), *high.clone()], schema).map(|v| {
            let [x, lo, hi]: [Expr; 3] = v.try_into().expect("three operands");
            Expr::Between(Between::new(
                Box::new(x),
                *negated,
                Box::new(lo),
                Box::new(hi),
            ))
        }),
        Expr::InList(InList {
            expr,
            list,
            negated,
        }) => {
            let all: Vec<Expr> = std::iter::once(*expr.clone())
                .chain(list.iter().cloned())
                .collect();
            floats(&all, schema).map(|mut v| {
                let x = v.remove(0);
                Expr::InList(InList::new(Box::new(x), v, *negated))
            })
        }
        Expr::Case(c) => case(c, schema),
        Expr::ScalarFunction(ScalarFunction { func, args })
            if COMMON_TYPE_FUNCTIONS.contains(&func.name()) =>
        {
            floats(args, schema).map(|args| {
                Expr::ScalarFunction(ScalarFunction {
                    func: Arc::clone(func),
                    args,
                })
            })
        }
        _ => None,
    };
    Ok(match changed {
        Some(e) => Transformed::yes(e),
        None => Transformed::no(e),
    })
}

/// A `CASE` whose results, or whose operand and tested values, mix a float
/// and a decimal.
fn case(c: &Case, schema: &DFSchema) -> Option<Expr> {
    let mut c = c.clone();
    let mut changed = false;
    let results: Vec<Expr> = c
        .when_then_expr
        .iter()
        .map(|(_, then)| *then.clone())
        .chain(c.else_expr.iter().map(|e| *e.clone()))
        .collect();
    if let Some(results) = floats(&results, schema) {
        let mut results = results.into_iter();
        for (_, then) in c.when_then_expr.iter_mut() {
            **then = results.next()?;
        }
        if let Some(e) = c.else_expr.as_mut() {
            **e = results.next()?;
        }
        changed = true;
    }
    if let Some(operand) = &c.expr {
        let tested: Vec<Expr> = std::iter::once(*operand.clone())
            .chain(c.when_then_expr.iter().map(|(when, _)| *when.clone()))
            .collect();
        if let Some(tested) = floats(&tested, schema) {
            let mut tested = tested.into_iter();
            c.expr = Some(Box::new(tested.next()?));
            for (when, _) in c.when_then_expr.iter_mut() {
                **when = tested.next()?;
            }
            changed = true;
        }
    }
    changed.then_some(Expr::Case(c))
}

/// Join keys of a float and a decimal column, compared as floats.
fn join(mut j: Join) -> Result<Transformed<LogicalPlan>> {
    let (left, right) = (j.left.schema().clone(), j.right.schema().clone());
    let mut changed = false;
    for (l, r) in j.on.iter_mut() {
        let (Ok(lt), Ok(rt)) = (l.get_type(&left), r.get_type(&right)) else {
            continue;
        };
        if mixed([&lt, &rt]) {
            if lt.is_decimal() {
                *l = cast(l.clone(), DataType::Float64);
            } else {
                *r = cast(r.clone(), DataType::Float64);
            }
            changed = true;
        }
    }
    let t = expressions(LogicalPlan::Join(j))?;
    Ok(if changed { Transformed::yes(t.data) } else { t })
}

/// A `UNION` whose inputs give one column as a float and as a decimal: the
/// decimal inputs' column as `double precision`.
fn union(u: Union) -> Result<Transformed<LogicalPlan>> {
    let width = u.schema.fields().len();
    let to_float: Vec<usize> = (0..width)
        .filter(|&i| {
            let types: Vec<&DataType> = u
                .inputs
                .iter()
                .filter_map(|p| p.schema().fields().get(i).map(|f| f.data_type()))
                .collect();
            mixed(types.iter().copied())
        })
        .collect();
    if to_float.is_empty() {
        return Ok(Transformed::no(LogicalPlan::Union(u)));
    }
    let inputs = u
        .inputs
        .into_iter()
        .map(|input| {
            let schema = input.schema();
            if !to_float
                .iter()
                .any(|&i| schema.field(i).data_type().is_decimal())
            {
                return Ok(input);
            }
            let exprs = schema
                .iter()
                .enumerate()
                .map(|(i, (qualifier, field))| {
                    let column = Expr::Column(Column::from((qualifier, field)));
                    if to_float.contains(&i) && field.data_type().is_decimal() {
                        cast(column, DataType::Float64)
                            .alias_qualified(qualifier.cloned(), field.name())
                    } else {
                        column
                    }
                })
                .collect();
            Ok(Arc::new(LogicalPlan::Projection(Projection::try_new(
                exprs, input,
            )?)))
        })
        .collect::<Result<Vec<_>>>()?;
    // The union's own columns: as its first input's, the floats' retyped.
    let fields = u
        .schema
        .iter()
        .enumerate()
        .map(|(i, (qualifier, field))| {
            let field = if to_float.contains(&i) {
                Arc::new(field.as_ref().clone().with_data_type(DataType::Float64))
            } else {
                Arc::clone(field)
            };
            (qualifier.cloned(), field)
        })
        .collect();
    let schema = Arc::new(DFSchema::new_with_metadata(
        fields,
        u.schema.metadata().clone(),
    )?);
    Ok(Transformed::yes(LogicalPlan::Union(Union {
        inputs,
        schema,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_floats_meeting_decimals_mix() {
        let f = DataType::Float64;
        let d = DataType::Decimal128(3, 1);
        assert!(mixed([&f, &d]));
        assert!(mixed([&DataType::Float32, &DataType::Int64, &d]));
        assert!(!mixed([&f, &DataType::Int64]));
        assert!(!mixed([&d, &DataType::Decimal128(10, 2)]));
    }
}
