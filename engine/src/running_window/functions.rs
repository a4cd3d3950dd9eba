//! The window functions a running window computes, and their evaluation
//! over a chunk of sorted rows with state carried from the chunk before.

use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int64Array, UInt64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{WindowFrame, WindowFrameBound, WindowFrameUnits};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::window::{PlainAggregateWindowExpr, StandardWindowExpr, WindowExpr};
use datafusion::physical_plan::windows::WindowUDFExpr;

/// What a function computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Sum,
    /// `rows`: every row counts (`count(*)`), else only non-null values.
    Count {
        rows: bool,
    },
    Min,
    Max,
    RowNumber,
    Rank,
    DenseRank,
}

/// Where an aggregate's frame ends; it always starts at the partition's
/// first row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameEnd {
    /// `ROWS ... k PRECEDING` (0: `CURRENT ROW`).
    Rows(usize),
    /// `RANGE`/`GROUPS ... CURRENT ROW`: the current row's last peer.
    Peers,
}

/// One supported window function of a window node.
#[derive(Debug, Clone)]
pub(super) struct Function {
    pub kind: Kind,
    pub arg: Option<Arc<dyn PhysicalExpr>>,
    pub end: FrameEnd,
    /// The type of the function's output column.
    pub out: DataType,
}

impl Function {
    /// The running form of a window expression, or `None` when it is not
    /// one this operator computes (DataFusion's operator keeps it).
    pub fn of(expr: &Arc<dyn WindowExpr>, input: &Schema) -> Result<Option<Function>> {
        let out = expr.field()?.data_type().clone();
        let any = expr.as_any();
        if let Some(agg) = any.downcast_ref::<PlainAggregateWindowExpr>() {
            let fun = agg.get_aggregate_expr();
            let args = fun.expressions();
            if fun.is_distinct()
                || fun.ignore_nulls()
                || !fun.order_bys().is_empty()
                || args.len() != 1
                || has_filter(agg)
            {
                return Ok(None);
            }
            let Some(end) = frame_end(expr.get_window_frame(), !expr.order_by().is_empty()) else {
                return Ok(None);
            };
            let arg = Arc::clone(&args[0]);
            let arg_type = arg.data_type(input)?;
            let kind = match fun.fun().name() {
                "sum" if is_signed_int(&arg_type) && out == DataType::Int64 => Kind::Sum,
                "min" if is_ordered_int(&arg_type) && out == arg_type => Kind::Min,
                "max" if is_ordered_int(&arg_type) && out == arg_type => Kind::Max,
                "count" if out == DataType::Int64 => {
                    let rows = arg
                        .downcast_ref::<Literal>()
                        .is_some_and(|l| !l.value().is_null());
                    Kind::Count { rows }
                }
                _ => return Ok(None),
            };
            return Ok(Some(Function {
                kind,
                arg: Some(arg),
                end,
                out,
            }));
        }
        if let Some(std) = any.downcast_ref::<StandardWindowExpr>() {
            let Some(udf) = std
                .get_standard_func_expr()
                .as_any()
                .downcast_ref::<WindowUDFExpr>()
            else {
                return Ok(None);
            };
            let kind = match udf.fun().name() {
                "row_number" => Kind::RowNumber,
                "rank" => Kind::Rank,
                "dense_rank" => Kind::DenseRank,
                _ => return Ok(None),
            };
            if out != DataType::UInt64 || !udf.args().is_empty() {
                return Ok(None);
            }
            return Ok(Some(Function {
                kind,
                arg: None,
                end: FrameEnd::Rows(0),
                out,
            }));
        }
        Ok(None)
    }

    /// True when a row's value depends on the rows after it (its peers).
    pub fn needs_peers(&self) -> bool {
        self.end == FrameEnd::Peers
            && matches!(
                self.kind,
                Kind::Sum | Kind::Count { .. } | Kind::Min | Kind::Max
            )
    }

    /// The state this function carries between chunks, empty.
    pub fn start(&self) -> Carried {
        Carried::default()
    }
}

/// True when the aggregate may have a `FILTER (WHERE ...)` clause.
/// DataFusion exposes the filter only through a trait it does not export,
/// so it is read from the expression's debug form; any doubt (a literal
/// spelling the same text) counts as a filter.
fn has_filter(agg: &PlainAggregateWindowExpr) -> bool {
    let debug = format!("{agg:?}");
    debug.contains("filter: Some(") || !debug.contains("filter: None")
}

/// The frame's end, when the frame starts at the partition's first row and
/// ends at or before the current row (or at its last peer).
fn frame_end(frame: &WindowFrame, ordered: bool) -> Option<FrameEnd> {
    if !matches!(&frame.start_bound, WindowFrameBound::Preceding(v) if v.is_null()) {
        return None;
    }
    match (frame.units, &frame.end_bound) {
        (WindowFrameUnits::Rows, WindowFrameBound::CurrentRow) => Some(FrameEnd::Rows(0)),
        (WindowFrameUnits::Rows, WindowFrameBound::Preceding(ScalarValue::UInt64(Some(k)))) => {
            usize::try_from(*k)
                .ok()
                .filter(|k| *k <= 1024)
                .map(FrameEnd::Rows)
        }
        (WindowFrameUnits::Range | WindowFrameUnits::Groups, WindowFrameBound::CurrentRow)
            if ordered =>
        {
            Some(FrameEnd::Peers)
        }
        _ => None,
    }
}

fn is_signed_int(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64
    )
}

/// Types whose order is the order of their values read as `i64`.
fn is_ordered_int(t: &DataType) -> bool {
    is_signed_int(t)
        || matches!(
            t,
            DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
        )
}

/// An aggregate's value over a frame: `n` values (or rows) seen, `v` their
/// sum, minimum or maximum when `n > 0`.
#[derive(Debug, Clone, Copy, Default)]
struct Acc {
    v: i64,
    n: i64,
}

impl Acc {
    #[inline]
    fn add(&mut self, kind: Kind, x: Option<i64>) {
        match (kind, x) {
            (Kind::Count { rows: true }, _) => self.n += 1,
            (Kind::Count { rows: false }, x) => self.n += i64::from(x.is_some()),
            (_, None) => {}
            (kind, Some(x)) => {
                self.v = if self.n == 0 {
                    x
                } else {
                    match kind {
                        Kind::Sum => self.v.wrapping_add(x),
                        Kind::Min => self.v.min(x),
                        Kind::Max => self.v.max(x),
                        _ => self.v,
                    }
                };
                self.n += 1;
            }
        }
    }

    #[inline]
    fn value(&self, kind: Kind) -> Option<i64> {
        match kind {
            Kind::Count { .. } => Some(self.n),
            _ => (self.n > 0).then_some(self.v),
        }
    }
}

/// What one function carries from a chunk to the next, within the partition
/// the chunk ended in.
#[derive(Debug, Clone, Default)]
pub(super) struct Carried {
    acc: Acc,
    /// The aggregate after each of the last k rows (for `k PRECEDING`).
    history: VecDeque<Acc>,
    /// Rows of the partition so far.
    rows: u64,
    rank: u64,
    dense: u64,
}

/// Where partitions and peer groups start in a chunk.
pub(super) struct Starts {
    pub partition: Vec<bool>,
    pub peers: Vec<bool>,
}

impl Function {
    /// The function's column over a chunk, updating the carried state.
    pub fn evaluate(
        &self,
        batch: &datafusion::arrow::array::RecordBatch,
        starts: &Starts,
        carried: &mut Carried,
    ) -> Result<ArrayRef> {
        let n = batch.num_rows();
        match self.kind {
            Kind::RowNumber | Kind::Rank | Kind::DenseRank => {
                let mut out = Vec::with_capacity(n);
                for i in 0..n {
                    if starts.partition[i] {
                        carried.rows = 0;
                        carried.dense = 0;
                    }
                    carried.rows += 1;
                    if starts.peers[i] {
                        carried.rank = carried.rows;
                        carried.dense += 1;
                    }
                    out.push(match self.kind {
                        Kind::RowNumber => carried.rows,
                        Kind::Rank => carried.rank,
                        _ => carried.dense,
                    });
                }
                Ok(Arc::new(UInt64Array::from(out)))
            }
            kind => {
                let values = match &self.arg {
                    Some(arg) => arg.evaluate(batch)?.into_array(n)?,
                    None => return datafusion::common::internal_err!("aggregate without argument"),
                };
                let values = match kind {
                    Kind::Count { .. } => values,
                    _ => cast(&values, &DataType::Int64)?,
                };
                let out = match kind {
                    Kind::Count { .. } => {
                        // Logical nulls: a NULL literal's array has no null buffer.
                        let nulls = values.logical_nulls();
                        let get =
                            |i: usize| nulls.as_ref().is_none_or(|b| b.is_valid(i)).then_some(0);
                        self.aggregate(n, get, starts, carried)
                    }
                    _ => {
                        let ints = values.as_primitive::<Int64Type>();
                        let raw = ints.values();
                        let get = |i: usize| (!ints.is_null(i)).then(|| raw[i]);
                        self.aggregate(n, get, starts, carried)
                    }
                };
                let out: ArrayRef = Arc::new(out);
                Ok(if self.out == DataType::Int64 {
                    out
                } else {
                    cast(&out, &self.out)?
                })
            }
        }
    }

    fn aggregate(
        &self,
        n: usize,
        get: impl Fn(usize) -> Option<i64>,
        starts: &Starts,
        carried: &mut Carried,
    ) -> Int64Array {
        let kind = self.kind;
        let mut out: Vec<Option<i64>> = Vec::with_capacity(n);
        match self.end {
            FrameEnd::Rows(0) => {
                for i in 0..n {
                    if starts.partition[i] {
                        carried.acc = Acc::default();
                    }
                    carried.acc.add(kind, get(i));
                    out.push(carried.acc.value(kind));
                }
            }
            FrameEnd::Rows(k) => {
                for i in 0..n {
                    if starts.partition[i] {
                        carried.acc = Acc::default();
                        carried.history.clear();
                    }
                    // The frame ends k rows back: the aggregate as it was then.
                    let frame = if carried.history.len() >= k {
                        carried.history[carried.history.len() - k]
                    } else {
                        Acc::default()
                    };
                    out.push(frame.value(kind));
                    carried.acc.add(kind, get(i));
                    carried.history.push_back(carried.acc);
                    if carried.history.len() > k {
                        carried.history.pop_front();
                    }
                }
            }
            FrameEnd::Peers => {
                let mut i = 0;
                while i < n {
                    if starts.partition[i] {
                        carried.acc = Acc::default();
                    }
                    let mut end = i + 1;
                    while end < n && !starts.peers[end] {
                        end += 1;
                    }
                    for j in i..end {
                        carried.acc.add(kind, get(j));
                    }
                    let v = carried.acc.value(kind);
                    out.extend(std::iter::repeat_n(v, end - i));
                    i = end;
                }
            }
        }
        Int64Array::from(out)
    }
}
