//! The release of an aggregate across persons (docs/PRIVACY.md).
//!
//! An aggregate across persons runs in two steps: first per person (each
//! person's contribution to every released number), then across persons.
//! A released row needs at least k persons plus a sticky noisy margin; a
//! released number needs as many contributing persons, an *effective* number
//! of contributors `(Σ|c|)² / Σc²` of at least k (so a sum resting on a few
//! persons, a count spelled as a sum, or a dominated total is withheld), and
//! gets noise proportional to the largest single contribution. Noise is
//! sticky: seeded by a secret key and the set of contributing persons, so
//! repeating a query, or rewriting it with the same persons, changes nothing.
//! Counts and integer sums are rounded to the base after the noise.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Float64Builder, Int64Array,
};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};

use datafusion::common::{Column, Result, ScalarValue, exec_err};
use datafusion::functions_aggregate::bit_and_or_xor::bit_xor_udaf;
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, WindowFunction};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, ColumnarValue, Expr, ExprSchemable, Filter, LogicalPlan, Projection,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, Window,
    WindowFunctionDefinition, cast, lit, when,
};
use sha2::{Digest, Sha256};

use super::Policy;
use super::contributions::{Contributions, HEAD, PER_MOMENT};
use super::unique::is_unique_on;
use crate::pg_dialect::numeric_aggregates::{NUMERIC_AVG, postgres_type};
use crate::pg_dialect::numeric_variance::Moment;

/// Counters of what a statement's releases withheld (for the audit log).
#[derive(Debug, Default)]
pub struct ReleaseStats {
    /// Output rows removed because too few persons backed them.
    pub suppressed_rows: AtomicU64,
    /// Cells withheld: the cells of removed rows and the numbers set to NULL.
    pub suppressed_cells: AtomicU64,
}

impl ReleaseStats {
    /// Cells withheld so far.
    pub fn cells(&self) -> u64 {
        self.suppressed_cells.load(Ordering::Relaxed)
    }
}

/// The release parameters of one statement: the policy's numbers, the
/// secret noise key, the statement's counters.
#[derive(Debug)]
pub(super) struct Params {
    k: u64,
    base: u64,
    noise: f64,
    threshold_noise: f64,
    /// Rounded again to this after `base` (a viewer's); 0 for none.
    coarser: u64,
    key: [u8; 32],
    stats: Arc<ReleaseStats>,
}

impl Params {
    pub(super) fn new(policy: &Policy, stats: Arc<ReleaseStats>) -> Self {
        Params {
            k: policy.k,
            base: policy.rounding,
            noise: policy.noise,
            threshold_noise: policy.threshold_noise,
            coarser: policy.coarser_rounding,
            key: policy.noise_key(),
            stats,
        }
    }

    /// A standard normal draw fixed by the key, a label and the seeds.
    fn normal(&self, label: &str, seeds: &[i64]) -> f64 {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(label.as_bytes());
        for s in seeds {
            h.update(s.to_le_bytes());
        }
        let d = h.finalize();
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&d[i * 8..i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        // Two uniforms in (0, 1], Box-Muller.
        let u1 = ((word(0) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (word(1) >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// The persons a set needs to be released: k, plus a sticky margin of
    /// `round(|z| · threshold_noise)` for that set.
    fn threshold(&self, seed: i64) -> u64 {
        let z = self.normal("threshold", &[seed]);
        self.k + (z.abs() * self.threshold_noise).round() as u64
    }

    /// A noisy total: `total + noise · max|c| · z`. z is fixed by the set, the
    /// statistic and the signs of the total and of the largest contribution
    /// (`hi`, `lo`: the largest and smallest contribution), never by the
    /// scale: rescaling a value rescales its answer exactly, so it gives no
    /// new draw, and a shift that flips the largest contribution's sign
    /// gives an independent one rather than the same noise with its sign turned.
    fn noisy(&self, label: &str, j: usize, seed: i64, total: f64, hi: f64, lo: f64) -> f64 {
        let max = hi.abs().max(lo.abs());
        if max <= 0.0 || self.noise <= 0.0 {
            return total;
        }
        let top_positive = hi.abs() >= lo.abs();
        let signs = (total >= 0.0) as i64 * 2 + top_positive as i64;
        total + self.noise * max * self.normal(label, &[seed, j as i64, signs])
    }

    fn round(&self, v: f64) -> f64 {
        let to = |v: f64, b: u64| {
            let b = b.max(1) as f64;
            (v / b).round() * b
        };
        let v = to(v, self.base);
        if self.coarser > self.base {
            to(v, self.coarser)
        } else {
            v
        }
    }
}

/// Whether `(Σ|c|)² / Σc² ≥ k`, computed as `(Σ|c| / √Σc²)²` so that large
/// contributions do not overflow; false for any non-finite input.
fn effective_contributors_at_least(l1: f64, l2: f64, k: u64) -> bool {
    if !(l1.is_finite() && l2.is_finite() && l2 > 0.0) {
        return false;
    }
    let r = l1 / l2.sqrt();
    r * r >= k as f64
}

/// The half of the store's key the keyed person hash uses: what the
/// workers of a cluster are given to compute it where the rows are. The
/// noise is drawn with the whole key, so they cannot draw it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PersonHashKey([u8; 16]);

impl std::fmt::Debug for PersonHashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersonHashKey(..)")
    }
}

impl PersonHashKey {
    /// The person hash's half of `key`.
    pub fn of(key: &[u8; 32]) -> PersonHashKey {
        let mut half = [0; 16];
        half.copy_from_slice(&key[..16]);
        PersonHashKey(half)
    }

    /// The key as 32 hexadecimal digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A key given as 32 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<PersonHashKey> {
        let bytes = hex::decode(text.trim()).ok()?;
        Some(PersonHashKey(bytes.try_into().ok()?))
    }
}

/// `a.person_id`'s keyed hash: XORed over a set it identifies the set, and
/// only the engine (and a cluster's workers, given `key`) can compute it.
pub(super) fn person_hash(key: &PersonHashKey, p: i64) -> i64 {
    let k0 = u64::from_le_bytes(key.0[0..8].try_into().unwrap_or_default());
    let k1 = u64::from_le_bytes(key.0[8..16].try_into().unwrap_or_default());
    let mix = |mut z: u64| {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    mix(mix(p as u64 ^ k0) ^ k1) as i64
}

/// What a released number is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stat {
    /// `count(DISTINCT person_id)`: one per person.
    Persons,
    /// `count(*)`, `count(x)`, `count(DISTINCT key)`: a count per person.
    Count,
    Sum,
    Avg,
    VarSamp,
    VarPop,
    StddevSamp,
    StddevPop,
    CovarSamp,
    CovarPop,
    Corr,
}

impl Stat {
    fn label(self) -> &'static str {
        match self {
            Stat::Persons => "persons",
            Stat::Count => "count",
            Stat::Sum => "sum",
            Stat::Avg => "avg",
            Stat::VarSamp => "var_samp",
            Stat::VarPop => "var_pop",
            Stat::StddevSamp => "stddev_samp",
            Stat::StddevPop => "stddev_pop",
            Stat::CovarSamp => "covar_samp",
            Stat::CovarPop => "covar_pop",
            Stat::Corr => "corr",
        }
    }

    /// The label that seeds the noise: a count of persons and a count of
    /// rows of one row per person are the same statistic of the same set.
    fn noise_label(self) -> &'static str {
        match self {
            Stat::Persons | Stat::Count => "count",
            other => other.label(),
        }
    }

    fn from_label(s: &str) -> Option<Stat> {
        [
            Stat::Persons,
            Stat::Count,
            Stat::Sum,
            Stat::Avg,
            Stat::VarSamp,
            Stat::VarPop,
            Stat::StddevSamp,
            Stat::StddevPop,
            Stat::CovarSamp,
            Stat::CovarPop,
            Stat::Corr,
        ]
        .into_iter()
        .find(|k| k.label() == s)
    }

    /// For a variance, standard deviation, covariance or correlation,
    /// released from moments about the means: the moments holding the sums
    /// of the values (x, and y) and the one holding their count.
    fn centred(self) -> Option<(&'static [usize], usize)> {
        match self {
            Stat::VarSamp | Stat::VarPop | Stat::StddevSamp | Stat::StddevPop => Some((&[0], 2)),
            Stat::CovarSamp | Stat::CovarPop | Stat::Corr => Some((&[0, 1], 5)),
            _ => None,
        }
    }

    /// The moment whose per-person values measure dominance.
    fn primary(self) -> usize {
        match self {
            Stat::Persons | Stat::Count | Stat::Sum | Stat::Avg => 0,
            Stat::VarSamp | Stat::VarPop | Stat::StddevSamp | Stat::StddevPop => 1,
            Stat::CovarSamp | Stat::CovarPop | Stat::Corr => 2,
        }
    }

    /// The value from the (noisy) moments.
    fn value(self, m: &[f64]) -> Option<f64> {
        let pos = |v: f64| (v > 0.5).then_some(v);
        match self {
            Stat::Persons | Stat::Count | Stat::Sum => Some(m[0]),
            Stat::Avg => Some(m[0] / pos(m[1])?),
            Stat::VarSamp | Stat::VarPop | Stat::StddevSamp | Stat::StddevPop => {
                let (s1, s2, c) = (m[0], m[1], pos(m[2])?);
                let ss = (s2 - s1 * s1 / c).max(0.0);
                let var = match self {
                    Stat::VarSamp | Stat::StddevSamp => ss / pos(c - 1.0)?,
                    _ => ss / c,
                };
                Some(match self {
                    Stat::StddevSamp | Stat::StddevPop => var.sqrt(),
                    _ => var,
                })
            }
            Stat::CovarSamp | Stat::CovarPop | Stat::Corr => {
                let (sx, sy, sxy, sxx, syy, c) = (m[0], m[1], m[2], m[3], m[4], pos(m[5])?);
                let cxy = sxy - sx * sy / c;
                match self {
                    Stat::CovarSamp => Some(cxy / pos(c - 1.0)?),
                    Stat::CovarPop => Some(cxy / c),
                    _ => {
                        let vx = sxx - sx * sx / c;
                        let vy = syy - sy * sy / c;
                        if vx <= 0.0 || vy <= 0.0 {
                            return None;
                        }
                        Some((cxy / (vx * vy).sqrt()).clamp(-1.0, 1.0))
                    }
                }
            }
        }
    }
}

/// `tsunagu_keep(persons, seed, cells)`: whether a group is backed by enough persons.
#[derive(Debug)]
struct Keep {
    params: Arc<Params>,
    signature: Signature,
}

/// `tsunagu_release(stat, integer, contributions)`: a released number, or
/// NULL; `contributions` is what `tsunagu_contributions` gathered.
#[derive(Debug)]
struct Release {
    params: Arc<Params>,
    signature: Signature,
}

/// `tsunagu_release_set(bitmap)`: the released size of a person set.
#[derive(Debug)]
struct ReleaseSet {
    params: Arc<Params>,
    signature: Signature,
}

/// `tsunagu_person_hash(person_id)`: the keyed person hash.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct PersonHash {
    key: PersonHashKey,
    signature: Signature,
}

impl PersonHash {
    pub(super) fn new(key: PersonHashKey) -> PersonHash {
        PersonHash {
            key,
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

macro_rules! identity_eq {
    ($($t:ty),*) => {$(
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                Arc::ptr_eq(&self.params, &other.params)
            }
        }
        impl Eq for $t {}
        impl Hash for $t {
            fn hash<H: Hasher>(&self, state: &mut H) {
                (Arc::as_ptr(&self.params) as usize).hash(state);
            }
        }
    )*};
}
identity_eq!(Keep, Release, ReleaseSet);

fn int64(a: &ArrayRef) -> Result<&Int64Array> {
    match a.data_type() {
        DataType::Int64 => Ok(a.as_primitive::<Int64Type>()),
        other => exec_err!("release: expected Int64, got {other}"),
    }
}

impl ScalarUDFImpl for Keep {
    fn name(&self) -> &str {
        "tsunagu_keep"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let persons = int64(&arrays[0])?;
        let seeds = int64(&arrays[1])?;
        let cells = int64(&arrays[2])?;
        let p = &self.params;
        let mut dropped = (0u64, 0u64);
        let keep: BooleanArray = (0..persons.len())
            .map(|i| {
                let seed = if seeds.is_valid(i) { seeds.value(i) } else { 0 };
                let ok = persons.is_valid(i) && persons.value(i) as u64 >= p.threshold(seed);
                if !ok {
                    dropped.0 += 1;
                    dropped.1 += cells.value(i).max(0) as u64;
                }
                Some(ok)
            })
            .collect();
        p.stats
            .suppressed_rows
            .fetch_add(dropped.0, Ordering::Relaxed);
        p.stats
            .suppressed_cells
            .fetch_add(dropped.1, Ordering::Relaxed);
        Ok(ColumnarValue::Array(Arc::new(keep)))
    }
}

impl ScalarUDFImpl for Release {
    fn name(&self) -> &str {
        "tsunagu_release"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let (stat, integer) = match (&args.args[0], &args.args[1]) {
            (
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(s))),
                ColumnarValue::Scalar(ScalarValue::Boolean(Some(b))),
            ) => match Stat::from_label(s) {
                Some(k) => (k, *b),
                None => return exec_err!("release: unknown statistic"),
            },
            _ => return exec_err!("release: statistic must be a constant"),
        };
        let rows = args.number_rows;
        let Some(stats) = args.args.get(2) else {
            return exec_err!("release: missing contributions");
        };
        let stats = stats.to_array(rows)?;
        let Some(stats) = stats.as_struct_opt() else {
            return exec_err!("release: contributions must be a struct");
        };
        let column = |i: usize| match stats.columns().get(i) {
            Some(c) => Ok(c),
            None => exec_err!("release: contributions lack field {i}"),
        };
        let n = int64(column(0)?)?;
        let seeds = int64(column(1)?)?;
        let float = |i: usize| -> Result<&Float64Array> {
            match column(i)?.as_primitive_opt::<Float64Type>() {
                Some(a) => Ok(a),
                None => exec_err!("release: expected Float64 contributions"),
            }
        };
        let (l1, l2) = (float(2)?, float(3)?);
        let moments = (stats.num_columns() - HEAD) / PER_MOMENT;
        let moments: Vec<(&Float64Array, &Float64Array, &Float64Array, &Int64Array)> = (0..moments)
            .map(|j| {
                let at = HEAD + PER_MOMENT * j;
                Ok((
                    float(at)?,
                    float(at + 1)?,
                    float(at + 2)?,
                    int64(column(at + 3)?)?,
                ))
            })
            .collect::<Result<_>>()?;
        let p = &self.params;
        let mut out = Float64Builder::with_capacity(rows);
        let mut withheld = 0u64;
        for i in 0..rows {
            let seed = if seeds.is_valid(i) { seeds.value(i) } else { 0 };
            let count = if n.is_valid(i) {
                n.value(i).max(0) as u64
            } else {
                0
            };
            let released = (|| {
                if count < p.threshold(seed) {
                    return None;
                }
                if stat != Stat::Persons {
                    // Effective number of contributors: withheld when the
                    // number rests on fewer than k persons' worth of it.
                    // Fails closed: contributions too large for the
                    // arithmetic (infinite or NaN sums) are withheld.
                    if !effective_contributors_at_least(l1.value(i), l2.value(i), p.k) {
                        return None;
                    }
                }
                let mut m = Vec::with_capacity(moments.len());
                if stat == Stat::Persons {
                    m.push(p.noisy(stat.noise_label(), 0, seed, count as f64, 1.0, 1.0));
                } else {
                    for (j, (total, hi, lo, seen)) in moments.iter().enumerate() {
                        if seen.value(i) <= 0 {
                            return None;
                        }
                        m.push(p.noisy(
                            stat.noise_label(),
                            j,
                            seed,
                            total.value(i),
                            hi.value(i),
                            lo.value(i),
                        ));
                    }
                }
                let v = stat.value(&m)?;
                if !v.is_finite() {
                    return None;
                }
                let v = if integer { p.round(v) } else { v };
                // A count never shows fewer than k persons or rows.
                if matches!(stat, Stat::Persons | Stat::Count) && v < p.k as f64 {
                    return None;
                }
                Some(v)
            })();
            if released.is_none() && count > 0 {
                withheld += 1;
            }
            out.append_option(released);
        }
        p.stats
            .suppressed_cells
            .fetch_add(withheld, Ordering::Relaxed);
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

impl ScalarUDFImpl for ReleaseSet {
    fn name(&self) -> &str {
        "tsunagu_release_set"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let p = &self.params;
        let mut out = Vec::with_capacity(arrays[0].len());
        let mut withheld = 0;
        let bitmaps = datafusion::arrow::compute::cast(&arrays[0], &DataType::Binary)?;
        for b in bitmaps.as_binary::<i32>().iter() {
            let Some(bytes) = b else {
                out.push(None);
                continue;
            };
            let set = tsunagu_udfs::bitmaps::from_bytes("rb_cardinality", bytes)?;
            let n = set.len();
            let key = PersonHashKey::of(&p.key);
            let seed = set
                .iter()
                .fold(0i64, |acc, id| acc ^ person_hash(&key, id as i64));
            if n < p.threshold(seed) {
                withheld += 1;
                out.push(None);
                continue;
            }
            let v = p.noisy(Stat::Persons.noise_label(), 0, seed, n as f64, 1.0, 1.0);
            let v = p.round(v);
            if v < p.k as f64 {
                withheld += 1;
                out.push(None);
                continue;
            }
            out.push(Some(v as i64));
        }
        p.stats
            .suppressed_cells
            .fetch_add(withheld, Ordering::Relaxed);
        Ok(ColumnarValue::Array(Arc::new(Int64Array::from(out))))
    }
}

impl ScalarUDFImpl for PersonHash {
    fn name(&self) -> &str {
        "tsunagu_person_hash"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let ids = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int64)?;
        let out: Int64Array = ids
            .as_primitive::<Int64Type>()
            .unary(|p| person_hash(&self.key, p));
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// The masking functions of one statement, sharing its parameters and counters.
#[derive(Debug, Clone)]
pub(super) struct Masks {
    keep: Arc<ScalarUDF>,
    release: Arc<ScalarUDF>,
    release_set: Arc<ScalarUDF>,
    person_hash: Arc<ScalarUDF>,
    contributions: Arc<AggregateUDF>,
}

impl Masks {
    pub(super) fn new(params: Params) -> Self {
        let params = Arc::new(params);
        let any = || Signature::variadic_any(Volatility::Immutable);
        Masks {
            keep: Arc::new(ScalarUDF::new_from_impl(Keep {
                params: params.clone(),
                signature: any(),
            })),
            release: Arc::new(ScalarUDF::new_from_impl(Release {
                params: params.clone(),
                signature: any(),
            })),
            release_set: Arc::new(ScalarUDF::new_from_impl(ReleaseSet {
                params: params.clone(),
                signature: any(),
            })),
            person_hash: Arc::new(ScalarUDF::new_from_impl(PersonHash::new(
                PersonHashKey::of(&params.key),
            ))),
            contributions: Arc::new(AggregateUDF::new_from_impl(Contributions::new())),
        }
    }

    /// The released size of a person set (a bitmap): `rb_cardinality` for analysts.
    pub(super) fn release_set(&self, bitmap: Expr) -> Expr {
        self.release_set.call(vec![bitmap])
    }
}

/// Whether an aggregate's value is a person set (bitmap) rather than a number.
pub(super) fn is_bitmap_aggregate(name: &str) -> bool {
    matches!(name, "rb_build_agg" | "rb_or_agg" | "rb_and_agg")
}

/// Aggregates whose value may be released: counts, sums and moments.
pub(super) fn is_releasable(name: &str) -> bool {
    matches!(
        name,
        "count"
            | "approx_distinct"
            | "sum"
            | "avg"
            | NUMERIC_AVG
            | "stddev"
            | "stddev_pop"
            | "var"
            | "var_pop"
            | "corr"
            | "covar_samp"
            | "covar_pop"
    ) || is_bitmap_aggregate(name)
        || Moment::float_name_of(name).is_some()
}

/// How an aggregate across persons is computed and released.
enum Plan {
    /// A number: its statistic, per-person moments, and the moment that says
    /// whether a person contributes.
    Number {
        stat: Stat,
        integer: bool,
        moments: Vec<Expr>,
        /// Every person of the group contributes (a count of rows or of
        /// persons with no FILTER): the group's persons and seed serve.
        always: bool,
        /// The contributors: persons whose moment `contributes.0` is non-zero
        /// (`.1`: any non-NULL non-zero value, else a positive count).
        contributes: (usize, bool),
    },
    /// A person set: rebuilt from per-person partials.
    Bitmap {
        func: Arc<AggregateUDF>,
        partial: Expr,
        merge_args: bool,
    },
}

fn agg(func: Arc<AggregateUDF>, args: Vec<Expr>, distinct: bool, filter: Option<Expr>) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        func,
        args,
        distinct,
        filter.map(Box::new),
        vec![],
        None,
    ))
}

fn and(a: Option<Expr>, b: Expr) -> Option<Expr> {
    Some(match a {
        Some(a) => a.and(b),
        None => b,
    })
}

fn f64(e: Expr) -> Expr {
    cast(e, DataType::Float64)
}

/// Whether an expression is an identifier column of the person.
pub(super) type IsId<'a> = &'a dyn Fn(&Expr) -> IdKind;

/// What an aggregate argument is, as identifiers go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum IdKind {
    /// The person column.
    Person,
    /// Another value that belongs to one person only (a key, a record id).
    Key,
    /// Anything else.
    Value,
}

/// The per-person moments of one aggregate across persons.
fn plan_of(
    f: &AggregateFunction,
    output: &DataType,
    is_id: IsId,
) -> std::result::Result<Plan, String> {
    let name = match f.func.name().to_ascii_lowercase() {
        n if n == NUMERIC_AVG => "avg".to_string(),
        n => Moment::float_name_of(&n).map_or(n, str::to_string),
    };
    let args = &f.params.args;
    let filter = f.params.filter.as_deref().cloned();
    let arg = args.first().cloned();
    if is_bitmap_aggregate(&name) {
        let partial = if name == "rb_build_agg" {
            agg(count_udaf(), vec![lit(1i64)], false, filter.clone())
        } else {
            agg(f.func.clone(), args.clone(), false, filter.clone())
        };
        return Ok(Plan::Bitmap {
            func: f.func.clone(),
            partial,
            merge_args: name != "rb_build_agg",
        });
    }
    let count = |e: Expr, filter: Option<Expr>| agg(count_udaf(), vec![e], false, filter);
    let sum = |e: Expr, filter: Option<Expr>| agg(sum_udaf(), vec![e], false, filter);
    if f.params.distinct {
        let Some(x) = arg.filter(|_| name == "count" && args.len() == 1) else {
            return Err(format!(
                "{name}(DISTINCT ...) across persons is not released; count distinct persons, or count within each person first"
            ));
        };
        return match is_id(&x) {
            IdKind::Person => Ok(Plan::Number {
                stat: Stat::Persons,
                integer: true,
                always: filter.is_none(),
                moments: vec![count(x, filter)],
                contributes: (0, false),
            }),
            IdKind::Key => Ok(Plan::Number {
                stat: Stat::Count,
                integer: true,
                moments: vec![agg(count_udaf(), vec![x], true, filter)],
                contributes: (0, false),
                always: false,
            }),
            IdKind::Value => Err(
                "count(DISTINCT value) across persons is not released: one person can add many distinct values; \
                 count the persons who have each value instead (count(DISTINCT person_id) ... GROUP BY value)"
                    .into(),
            ),
        };
    }
    if name == "approx_distinct" {
        return match arg {
            Some(x) if is_id(&x) == IdKind::Person => Ok(Plan::Number {
                stat: Stat::Persons,
                integer: true,
                always: filter.is_none(),
                moments: vec![count(x, filter)],
                contributes: (0, false),
            }),
            _ => Err("approx_distinct across persons is released for person_id only; count the persons who have each value instead".into()),
        };
    }
    let one = |e: Option<Expr>| e.unwrap_or_else(|| lit(1i64));
    let plan = match name.as_str() {
        "count" => Plan::Number {
            stat: Stat::Count,
            integer: true,
            always: filter.is_none() && arg.as_ref().is_none_or(|a| matches!(a, Expr::Literal(..))),
            moments: vec![count(one(arg), filter)],
            contributes: (0, false),
        },
        "sum" => {
            let x = one(arg);
            Plan::Number {
                stat: Stat::Sum,
                integer: output.is_integer() || matches!(output, DataType::Decimal128(_, 0)),
                moments: vec![sum(x, filter)],
                contributes: (0, true),
                always: false,
            }
        }
        "avg" => {
            let x = one(arg);
            Plan::Number {
                stat: Stat::Avg,
                integer: false,
                moments: vec![sum(f64(x.clone()), filter.clone()), count(x, filter)],
                contributes: (1, false),
                always: false,
            }
        }
        "var" | "var_pop" | "stddev" | "stddev_pop" => {
            let x = f64(one(arg));
            Plan::Number {
                stat: match name.as_str() {
                    "var" => Stat::VarSamp,
                    "var_pop" => Stat::VarPop,
                    "stddev" => Stat::StddevSamp,
                    _ => Stat::StddevPop,
                },
                integer: false,
                moments: vec![
                    sum(x.clone(), filter.clone()),
                    sum(x.clone() * x.clone(), filter.clone()),
                    count(x, filter),
                ],
                contributes: (2, false),
                always: false,
            }
        }
        "corr" | "covar_samp" | "covar_pop" if args.len() == 2 => {
            let (x, y) = (f64(args[0].clone()), f64(args[1].clone()));
            let both = and(filter, x.clone().is_not_null().and(y.clone().is_not_null()));
            Plan::Number {
                stat: match name.as_str() {
                    "corr" => Stat::Corr,
                    "covar_samp" => Stat::CovarSamp,
                    _ => Stat::CovarPop,
                },
                integer: false,
                moments: vec![
                    sum(x.clone(), both.clone()),
                    sum(y.clone(), both.clone()),
                    sum(x.clone() * y.clone(), both.clone()),
                    sum(x.clone() * x, both.clone()),
                    sum(y.clone() * y, both.clone()),
                    count(lit(1i64), both),
                ],
                contributes: (5, false),
                always: false,
            }
        }
        _ => {
            return Err(format!(
                "{name}() across persons is not released to analysts"
            ));
        }
    };
    Ok(plan)
}

fn strip_alias(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip_alias(&a.expr),
        e => e,
    }
}

/// Rewrites an aggregate across persons into its release: per person, then
/// across persons with the release statistics, a filter on each group's
/// persons (grouped aggregates only) and a projection releasing each number.
/// `Err(message)` names an aggregate that cannot be released.
pub(super) fn release(
    aggregate: &Aggregate,
    person: Expr,
    masks: &Masks,
    is_id: IsId,
) -> std::result::Result<Result<LogicalPlan>, String> {
    let mut plans = Vec::new();
    for e in &aggregate.aggr_expr {
        let Expr::AggregateFunction(f) = strip_alias(e) else {
            return Err(format!("{e} is not an aggregate function"));
        };
        let field = e
            .to_field(aggregate.input.schema())
            .map(|(_, f)| f.data_type().clone())
            .unwrap_or(DataType::Float64);
        plans.push(plan_of(f, &field, is_id)?);
    }
    if once_per_person(aggregate, &person)
        && let Some(Ok(plan)) = build_from_rows(aggregate, &person, masks, &plans)
    {
        return Ok(Ok(plan));
    }
    Ok(build(aggregate, person, masks, plans))
}

/// Whether the aggregate's input holds at most one row per group and person:
/// then each row is its person's contribution and the per-person step is
/// the identity.
fn once_per_person(aggregate: &Aggregate, person: &Expr) -> bool {
    let schema = aggregate.input.schema();
    let mut columns: Vec<usize> = aggregate
        .group_expr
        .iter()
        .chain(std::iter::once(person))
        .filter_map(|e| match strip_alias(e) {
            Expr::Column(c) => schema.index_of_column(c).ok(),
            _ => None,
        })
        .collect();
    columns.sort_unstable();
    is_unique_on(&aggregate.input, &columns)
}

/// The value an aggregate moment takes over a single row (`None`: a moment
/// that has no per-row form).
fn per_row(moment: &Expr) -> Option<Expr> {
    let Expr::AggregateFunction(f) = moment else {
        return None;
    };
    let [x] = f.params.args.as_slice() else {
        return None;
    };
    let filter = f.params.filter.as_deref().cloned();
    match f.func.name() {
        "count" => {
            let present = match x {
                Expr::Literal(v, _) if !v.is_null() => None,
                x => Some(x.clone().is_not_null()),
            };
            let cond = match (filter, present) {
                (None, None) => return Some(lit(1i64)),
                (Some(f), None) | (None, Some(f)) => f,
                (Some(f), Some(p)) => f.and(p),
            };
            Some(when(cond, lit(1i64)).otherwise(lit(0i64)).ok()?)
        }
        "sum" if !f.params.distinct => match filter {
            None => Some(x.clone()),
            Some(cond) => when(cond, x.clone()).end().ok(),
        },
        _ => None,
    }
}

/// The release of an aggregate whose input holds at most one row per group
/// and person: the per-person step becomes a projection of each row's
/// moments. `None` when a moment has no per-row form (person sets).
fn build_from_rows(
    aggregate: &Aggregate,
    person: &Expr,
    masks: &Masks,
    plans: &[Plan],
) -> Option<Result<LogicalPlan>> {
    let mut exprs: Vec<Expr> = aggregate.group_expr.clone();
    exprs.push(person.clone().alias(PERSON));
    for (i, plan) in plans.iter().enumerate() {
        let Plan::Number { moments, .. } = plan else {
            return None;
        };
        for (j, m) in moments.iter().enumerate() {
            exprs.push(per_row(m)?.alias(moment_name(i, j)));
        }
    }
    let step1 = Projection::try_new(exprs, aggregate.input.clone()).map(LogicalPlan::Projection);
    Some(step1.and_then(|step1| finish(aggregate, step1, masks, plans)))
}

/// The name of moment `j` of aggregate `i` in the per-person step.
fn moment_name(i: usize, j: usize) -> String {
    format!("__tsunagu_m{i}_{j}")
}

/// The person column of the per-person step.
const PERSON: &str = "__tsunagu_p";

fn build(
    aggregate: &Aggregate,
    person: Expr,
    masks: &Masks,
    plans: Vec<Plan>,
) -> Result<LogicalPlan> {
    // Step 1: per person.
    let mut group1 = aggregate.group_expr.clone();
    group1.push(person.alias(PERSON));
    let mut aggs1 = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let moments: Vec<Expr> = match plan {
            Plan::Number { moments, .. } => moments.clone(),
            Plan::Bitmap { partial, .. } => vec![partial.clone()],
        };
        for (j, m) in moments.into_iter().enumerate() {
            aggs1.push(m.alias(moment_name(i, j)));
        }
    }
    let step1 = LogicalPlan::Aggregate(Aggregate::try_new(aggregate.input.clone(), group1, aggs1)?);
    finish(aggregate, step1, masks, &plans)
}

/// The per-person rows with, for each variance, standard deviation,
/// covariance or correlation, the group's exact means of its values
/// (`__tsunagu_mean{i}_{k}`), over a window of the group.
///
/// Their moments are released about those means: the noise of a released
/// total is scaled by the largest person's contribution, and a person's
/// `Σx²` (`1966²` for a year of birth) dwarfs the spread it measures, so
/// `Σx² - (Σx)²/n` from noisy raw moments is mostly noise. About the mean, a
/// person contributes `Σ(x - mean)²`, which is what one person changes of
/// the spread.
fn centred_moments(
    step1: LogicalPlan,
    n_groups: usize,
    plans: &[Plan],
    names: &[Vec<String>],
) -> Result<LogicalPlan> {
    let centred: Vec<(usize, &[usize], usize)> = plans
        .iter()
        .enumerate()
        .filter_map(|(i, plan)| match plan {
            Plan::Number { stat, .. } => stat.centred().map(|(sums, n)| (i, sums, n)),
            Plan::Bitmap { .. } => None,
        })
        .collect();
    if centred.is_empty() {
        return Ok(step1);
    }
    let schema = step1.schema().clone();
    let groups: Vec<Expr> = (0..n_groups)
        .map(|g| Expr::Column(Column::from(schema.qualified_field(g))))
        .collect();
    let col = |n: &str| Expr::Column(Column::from_name(n));
    let over = |x: Expr| {
        let mut w =
            WindowFunction::new(WindowFunctionDefinition::AggregateUDF(sum_udaf()), vec![x]);
        w.params.partition_by = groups.clone();
        Expr::from(w)
    };
    let mut window = Vec::new();
    let mut means: Vec<Expr> = schema
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    for (i, sums, n) in centred {
        let count = format!("__tsunagu_n{i}");
        window.push(over(f64(col(&names[i][n]))).alias(&count));
        for (k, &j) in sums.iter().enumerate() {
            let sum = format!("__tsunagu_sum{i}_{k}");
            window.push(over(f64(col(&names[i][j]))).alias(&sum));
            let mean =
                when(col(&count).gt(lit(0.0)), col(&sum) / col(&count)).otherwise(lit(0.0))?;
            means.push(mean.alias(format!("__tsunagu_mean{i}_{k}")));
        }
    }
    let window = LogicalPlan::Window(Window::try_new(window, Arc::new(step1))?);
    Ok(LogicalPlan::Projection(Projection::try_new(
        means,
        Arc::new(window),
    )?))
}

/// Aggregate `i`'s per-person moments `m` about the group's means: for a
/// spread Σ(x - a), Σ(x - a)², n; for a covariance or correlation
/// Σ(x - a), Σ(y - b), Σ(x - a)(y - b), Σ(x - a)², Σ(y - b)², n.
fn about_the_means(stat: Stat, i: usize, m: &[String]) -> Vec<Expr> {
    let col = |n: &str| f64(Expr::Column(Column::from_name(n)));
    let mean = |k: usize| Expr::Column(Column::from_name(format!("__tsunagu_mean{i}_{k}")));
    // Σ(u - a)(v - b) from Σu, Σv, Σuv and n.
    let product = |su: Expr, a: Expr, sv: Expr, b: Expr, suv: Expr, n: Expr| {
        suv - a.clone() * sv - b.clone() * su + a * b * n
    };
    if stat.centred().is_some_and(|(sums, _)| sums.len() == 1) {
        let (s1, s2, n) = (col(&m[0]), col(&m[1]), col(&m[2]));
        let a = mean(0);
        return vec![
            s1.clone() - a.clone() * n.clone(),
            product(s1.clone(), a.clone(), s1, a, s2, n.clone()),
            n,
        ];
    }
    let (sx, sy, sxy, sxx, syy, n) = (
        col(&m[0]),
        col(&m[1]),
        col(&m[2]),
        col(&m[3]),
        col(&m[4]),
        col(&m[5]),
    );
    let (a, b) = (mean(0), mean(1));
    vec![
        sx.clone() - a.clone() * n.clone(),
        sy.clone() - b.clone() * n.clone(),
        product(sx.clone(), a.clone(), sy.clone(), b.clone(), sxy, n.clone()),
        product(sx.clone(), a.clone(), sx, a, sxx, n.clone()),
        product(sy.clone(), b.clone(), sy, b, syy, n.clone()),
        n,
    ]
}

/// Steps 2 and 3 over the per-person rows of `step1` (the groups, the
/// person, then each aggregate's moments): across persons, then released.
fn finish(
    aggregate: &Aggregate,
    step1: LogicalPlan,
    masks: &Masks,
    plans: &[Plan],
) -> Result<LogicalPlan> {
    const P: &str = PERSON;
    let names: Vec<Vec<String>> = plans
        .iter()
        .enumerate()
        .map(|(i, plan)| {
            let n = match plan {
                Plan::Number { moments, .. } => moments.len(),
                Plan::Bitmap { .. } => 1,
            };
            (0..n).map(|j| moment_name(i, j)).collect()
        })
        .collect();
    let n_groups = aggregate.group_expr.len();
    let step1 = centred_moments(step1, n_groups, plans, &names)?;
    let schema1 = step1.schema().clone();
    let group2: Vec<Expr> = (0..n_groups)
        .map(|i| Expr::Column(Column::from(schema1.qualified_field(i))))
        .collect();
    let p = Expr::Column(Column::from_name(P));
    let col = |n: &str| Expr::Column(Column::from_name(n));
    // Between the steps, once per person: the person's hash, whether they
    // contribute to each number, and each moment as a float.
    let mut prep: Vec<Expr> = schema1
        .iter()
        .map(|(q, f)| Expr::Column(Column::new(q.cloned(), f.name())))
        .collect();
    prep.push(masks.person_hash.call(vec![p]).alias("__tsunagu_h"));
    for (i, plan) in plans.iter().enumerate() {
        let m = &names[i];
        if let Plan::Number {
            stat,
            contributes,
            always,
            ..
        } = plan
        {
            if !*always {
                let c = col(&m[contributes.0]);
                let cond = if contributes.1 {
                    c.clone().is_not_null().and(c.not_eq(lit(0)))
                } else {
                    c.gt(lit(0i64))
                };
                prep.push(cond.alias(format!("__tsunagu_c{i}")));
            }
            if stat.centred().is_some() {
                for (j, e) in about_the_means(*stat, i, m).into_iter().enumerate() {
                    prep.push(e.alias(format!("__tsunagu_f{i}_{j}")));
                }
            } else if *stat != Stat::Persons {
                for (j, mj) in m.iter().enumerate() {
                    prep.push(f64(col(mj)).alias(format!("__tsunagu_f{i}_{j}")));
                }
            }
        }
    }
    let step1 = LogicalPlan::Projection(Projection::try_new(prep, Arc::new(step1))?);
    let hash = col("__tsunagu_h");
    // Step 2: across persons.
    let mut aggs2 = vec![
        agg(count_udaf(), vec![lit(1i64)], false, None).alias("__tsunagu_persons"),
        agg(bit_xor_udaf(), vec![hash.clone()], false, None).alias("__tsunagu_seed"),
    ];
    let mut released: Vec<Expr> = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let m = &names[i];
        match plan {
            Plan::Bitmap {
                func, merge_args, ..
            } => {
                let arg = col(&m[0]);
                let e = if *merge_args {
                    agg(func.clone(), vec![arg], false, None)
                } else {
                    agg(
                        func.clone(),
                        vec![Expr::Column(Column::from_name(P))],
                        false,
                        Some(arg.gt(lit(0i64))),
                    )
                };
                let name = format!("__tsunagu_r{i}");
                aggs2.push(e.alias(&name));
                released.push(col(&name));
            }
            Plan::Number {
                stat,
                integer,
                always,
                ..
            } => {
                let contributes = if *always {
                    lit(true)
                } else {
                    col(&format!("__tsunagu_c{i}"))
                };
                let mut args = vec![contributes, hash.clone(), lit(stat.primary() as i64)];
                if *stat != Stat::Persons {
                    args.extend((0..m.len()).map(|j| col(&format!("__tsunagu_f{i}_{j}"))));
                }
                let name = format!("__tsunagu_r{i}");
                aggs2.push(agg(masks.contributions.clone(), args, false, None).alias(&name));
                let args = vec![lit(stat.label()), lit(*integer), col(&name)];
                released.push(masks.release.call(args));
            }
        }
    }
    let mut plan = LogicalPlan::Aggregate(Aggregate::try_new(Arc::new(step1), group2, aggs2)?);
    if n_groups > 0 {
        let cells = aggregate.schema.fields().len() as i64;
        let keep = masks.keep.call(vec![
            col("__tsunagu_persons"),
            col("__tsunagu_seed"),
            lit(cells),
        ]);
        plan = LogicalPlan::Filter(Filter::try_new(keep, Arc::new(plan))?);
    }
    let schema2 = plan.schema().clone();
    let mut exprs = Vec::new();
    for (i, (qualifier, field)) in aggregate.schema.iter().enumerate() {
        if i < n_groups {
            exprs.push(
                Expr::Column(Column::from(schema2.qualified_field(i)))
                    .alias_qualified(qualifier.cloned(), field.name()),
            );
            continue;
        }
        let value = released[i - n_groups].clone();
        let value = if matches!(plans[i - n_groups], Plan::Bitmap { .. }) {
            value
        } else {
            // PostgreSQL's type where it differs (a numeric sum or average).
            let to = postgres_type(&aggregate.aggr_expr[i - n_groups], &aggregate.input)
                .unwrap_or_else(|| field.data_type().clone());
            cast(value, to)
        };
        exprs.push(value.alias_qualified(qualifier.cloned(), field.name()));
    }
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(plan),
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(noise: f64) -> Params {
        let policy = Policy {
            noise,
            secret: Some(super::super::NoiseKey([3; 32])),
            ..Default::default()
        };
        Params::new(&policy, Arc::default())
    }

    #[test]
    fn moments_give_the_textbook_statistics() {
        // x = 1, 2, 3, 4: mean 2.5, sample variance 5/3, population variance 1.25.
        let (s1, s2, c) = (10.0, 30.0, 4.0);
        assert_eq!(Stat::Avg.value(&[s1, c]), Some(2.5));
        let v = Stat::VarSamp.value(&[s1, s2, c]).unwrap();
        assert!((v - 5.0 / 3.0).abs() < 1e-12);
        assert_eq!(Stat::VarPop.value(&[s1, s2, c]), Some(1.25));
        // y = 2x: correlation 1, covariance 2 * var.
        let m = [10.0, 20.0, 60.0, 30.0, 120.0, 4.0];
        assert!((Stat::Corr.value(&m).unwrap() - 1.0).abs() < 1e-12);
        assert!((Stat::CovarSamp.value(&m).unwrap() - 10.0 / 3.0).abs() < 1e-12);
        // No count, no average.
        assert_eq!(Stat::Avg.value(&[1.0, 0.0]), None);
    }

    #[test]
    fn noise_is_sticky_and_scales_with_the_largest_contribution() {
        let p = params(1.0);
        let a = p.noisy("sum", 0, 42, 1000.0, 3.0, 0.5);
        assert_eq!(a, p.noisy("sum", 0, 42, 1000.0, 3.0, 0.5));
        assert_ne!(a, p.noisy("sum", 0, 43, 1000.0, 3.0, 0.5));
        assert_ne!(a, 1000.0);
        // Rescaling rescales the answer exactly: no new draw to average.
        for c in [2.0, 7.5, 1e6, 1e-3] {
            let b = p.noisy("sum", 0, 42, 1000.0 * c, 3.0 * c, 0.5 * c);
            assert!((b / c - a).abs() < 1e-9 * a.abs(), "{c}: {b} vs {a}");
        }
        // A largest contribution of the other sign draws independent noise.
        let flipped = p.noisy("sum", 0, 42, 1000.0, 0.5, -3.0);
        assert_ne!(flipped - 1000.0, a - 1000.0);
        assert_ne!(flipped - 1000.0, -(a - 1000.0));
        // Over many sets the noise has the contribution's scale.
        let draws: Vec<f64> = (0..2000)
            .map(|s| p.noisy("sum", 0, s, 0.0, 3.0, 1.0))
            .collect();
        let sd = (draws.iter().map(|d| d * d).sum::<f64>() / draws.len() as f64).sqrt();
        assert!((2.7..3.3).contains(&sd), "{sd}");
        assert_eq!(params(0.0).noisy("sum", 0, 42, 1000.0, 3.0, 1.0), 1000.0);
    }

    #[test]
    fn dominance_fails_closed_on_huge_contributions() {
        // 100 equal persons: 100 effective contributors.
        assert!(effective_contributors_at_least(100.0, 100.0, 10));
        // One person at 1e155 among 20,000 at 1e152: Σc² overflows; withheld.
        let (big, small) = (1e155f64, 1e152f64);
        let (l1, l2) = (big + 2e4 * small, big * big + 2e4 * small * small);
        assert!(l2.is_infinite());
        assert!(!effective_contributors_at_least(l1, l2, 10));
        // Large but finite, and balanced: still measured correctly.
        let (l1, l2) = (100.0 * 1e150, 100.0 * 1e300);
        assert!(effective_contributors_at_least(l1, l2, 10));
        assert!(!effective_contributors_at_least(f64::NAN, 1.0, 10));
        assert!(!effective_contributors_at_least(1.0, 0.0, 10));
    }

    #[test]
    fn thresholds_never_go_below_k() {
        let p = params(1.0);
        let t: Vec<u64> = (0..1000).map(|s| p.threshold(s)).collect();
        assert!(t.iter().all(|&t| t >= 10));
        assert!(t.contains(&10) && t.iter().any(|&t| t > 10));
        assert!(t.iter().all(|&t| t <= 15));
    }

    #[test]
    fn person_hashes_depend_on_the_key() {
        let key = |b: u8| PersonHashKey::of(&[b; 32]);
        assert_eq!(person_hash(&key(1), 5), person_hash(&key(1), 5));
        assert_ne!(person_hash(&key(1), 5), person_hash(&key(2), 5));
        assert_ne!(person_hash(&key(1), 5), person_hash(&key(1), 6));
        // Only the first half of the store's key enters the hash.
        let mut other = [1; 32];
        other[16..].fill(9);
        assert_eq!(
            person_hash(&PersonHashKey::of(&other), 5),
            person_hash(&key(1), 5)
        );
        let hex = key(1).to_hex();
        assert_eq!(
            (hex.len(), PersonHashKey::from_hex(&hex)),
            (32, Some(key(1)))
        );
        assert_eq!(PersonHashKey::from_hex("01"), None);
        assert_eq!(format!("{:?}", key(1)), "PersonHashKey(..)");
    }
}
