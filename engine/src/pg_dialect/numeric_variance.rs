//! `variance`, `var_pop`, `stddev` and `stddev_pop` of integers and
//! numerics as PostgreSQL computes them: a `numeric`.
//!
//! PostgreSQL sums the values and their squares exactly, divides
//! `N·Σx² − (Σx)²` by `N·(N − 1)` (`N·N` for the population) at
//! `select_div_scale`'s scale, and takes the square root at that same
//! scale, rounding each (`numeric_stddev_internal` in numeric.c).
//! DataFusion answers a `double precision`. The aggregates here keep the
//! exact sums (the squares in 256 bits) and give that quotient, written
//! with twenty digits after the point as the `numeric` average is; a
//! value beyond 18 digits before the point is NULL. Decimals of more than
//! ten digits after the point keep DataFusion's aggregates.

use std::sync::{Arc, LazyLock};

use datafusion::arrow::array::{ArrayRef, AsArray, Decimal128Array, Decimal256Array};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Decimal256Type, Field, FieldRef, Int64Type, i256,
};
use datafusion::common::{Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};

use super::numeric_aggregates::{AVG_TYPE, division_scale_of, rounded_quotient};

/// The scale of the result as written (that of the `numeric` average).
const SCALE: u32 = 20;

/// The largest input scale: the squares' scale is twice it.
const MAX_INPUT_SCALE: i8 = 10;

/// Which of the four moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Moment {
    VarSamp,
    VarPop,
    StddevSamp,
    StddevPop,
}

impl Moment {
    /// The moment DataFusion's aggregate `name` computes.
    pub fn of(name: &str) -> Option<Moment> {
        match name {
            "var" => Some(Moment::VarSamp),
            "var_pop" => Some(Moment::VarPop),
            "stddev" => Some(Moment::StddevSamp),
            "stddev_pop" => Some(Moment::StddevPop),
            _ => None,
        }
    }

    /// The name of this moment's `numeric` aggregate.
    pub fn numeric_name(self) -> &'static str {
        match self {
            Moment::VarSamp => "tsunagu_numeric_var_samp",
            Moment::VarPop => "tsunagu_numeric_var_pop",
            Moment::StddevSamp => "tsunagu_numeric_stddev_samp",
            Moment::StddevPop => "tsunagu_numeric_stddev_pop",
        }
    }

    /// DataFusion's name of the moment a `numeric` aggregate computes.
    pub fn float_name_of(numeric_name: &str) -> Option<&'static str> {
        [
            (Moment::VarSamp, "var"),
            (Moment::VarPop, "var_pop"),
            (Moment::StddevSamp, "stddev"),
            (Moment::StddevPop, "stddev_pop"),
        ]
        .into_iter()
        .find(|(m, _)| m.numeric_name() == numeric_name)
        .map(|(_, name)| name)
    }

    fn sample(self) -> bool {
        matches!(self, Moment::VarSamp | Moment::StddevSamp)
    }

    fn root(self) -> bool {
        matches!(self, Moment::StddevSamp | Moment::StddevPop)
    }
}

/// Whether the moment of a `t` is computed as a `numeric` here.
pub fn takes(t: &DataType) -> bool {
    match t {
        DataType::Decimal128(_, s) => (0..=MAX_INPUT_SCALE).contains(s),
        t => t.is_integer(),
    }
}

/// The `numeric` aggregate computing `moment`.
pub fn numeric_moment(moment: Moment) -> Arc<AggregateUDF> {
    static ALL: LazyLock<[Arc<AggregateUDF>; 4]> = LazyLock::new(|| {
        [
            Moment::VarSamp,
            Moment::VarPop,
            Moment::StddevSamp,
            Moment::StddevPop,
        ]
        .map(|moment| {
            Arc::new(AggregateUDF::new_from_impl(NumericMoment {
                moment,
                signature: Signature::user_defined(Volatility::Immutable),
            }))
        })
    });
    let i = match moment {
        Moment::VarSamp => 0,
        Moment::VarPop => 1,
        Moment::StddevSamp => 2,
        Moment::StddevPop => 3,
    };
    Arc::clone(&ALL[i])
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct NumericMoment {
    moment: Moment,
    signature: Signature,
}

fn input_scale(t: &DataType) -> u32 {
    match t {
        DataType::Decimal128(_, s) => (*s).max(0) as u32,
        _ => 0,
    }
}

impl AggregateUDFImpl for NumericMoment {
    fn name(&self) -> &str {
        self.moment.numeric_name()
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        match args {
            [t] if t.is_integer() || t.is_null() => Ok(vec![DataType::Int64]),
            [t @ DataType::Decimal128(..)] if takes(t) => {
                Ok(vec![DataType::Decimal128(38, input_scale(t) as i8)])
            }
            _ => plan_err!("{} takes one integer or decimal", self.name()),
        }
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(AVG_TYPE)
    }
    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let scale = args
            .expr_fields
            .first()
            .map_or(0, |f| input_scale(f.data_type()));
        Ok(Box::new(Moments {
            moment: self.moment,
            scale,
            ..Moments::default()
        }))
    }
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let scale = args
            .input_fields
            .first()
            .map_or(0, |f| input_scale(f.data_type())) as i8;
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "count"),
                DataType::Int64,
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "sum"),
                DataType::Decimal128(38, scale),
                false,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "sum_of_squares"),
                DataType::Decimal256(76, 2 * scale),
                false,
            )),
        ])
    }
}

/// The count, sum and sum of squares of the values (integers at `scale`).
#[derive(Debug)]
struct Moments {
    moment: Moment,
    scale: u32,
    count: i64,
    sum: i128,
    squares: i256,
}

impl Default for Moments {
    fn default() -> Self {
        Moments {
            moment: Moment::VarSamp,
            scale: 0,
            count: 0,
            sum: 0,
            squares: i256::ZERO,
        }
    }
}

impl Moments {
    /// Adds (`sign` 1) or removes (`sign` -1) each non-NULL value.
    fn add(&mut self, values: &[ArrayRef], sign: i64) -> Result<()> {
        let Some(x) = values.first() else {
            return exec_err!("{}: expected one argument", self.moment.numeric_name());
        };
        let mut add = |v: i128| {
            let sq = i256::from_i128(v).wrapping_mul(i256::from_i128(v));
            if sign > 0 {
                self.sum += v;
                self.squares = self.squares.wrapping_add(sq);
            } else {
                self.sum -= v;
                self.squares = self.squares.wrapping_sub(sq);
            }
            self.count += sign;
        };
        if let Some(x) = x.as_primitive_opt::<Int64Type>() {
            x.iter().flatten().for_each(|v| add(v as i128));
        } else if let Some(x) = x.as_primitive_opt::<Decimal128Type>() {
            x.iter().flatten().for_each(&mut add);
        } else {
            return exec_err!(
                "{}: expected integer or decimal values",
                self.moment.numeric_name()
            );
        }
        Ok(())
    }

    /// The moment as a decimal of scale [`SCALE`]; `None` when undefined
    /// (no values; one, for the sample's) or out of range.
    fn value(&self) -> Option<i128> {
        let n = self.count;
        if n == 0 || (self.moment.sample() && n == 1) {
            return None;
        }
        // N·Σx² − (Σx)², at twice the input's scale.
        let num = i256::from_i128(n as i128)
            .checked_mul(self.squares)?
            .checked_sub(i256::from_i128(self.sum).checked_mul(i256::from_i128(self.sum))?)?;
        if num <= i256::ZERO {
            // Round-off aside, the values are all equal.
            return Some(0);
        }
        let num = num.to_i128()?;
        let den = if self.moment.sample() {
            (n as i128).checked_mul(n as i128 - 1)?
        } else {
            (n as i128).checked_mul(n as i128)?
        };
        let scale = 2 * self.scale;
        let digits = division_scale_of((num, scale), (den, 0)).min(SCALE);
        // The quotient at `digits` after the point, rounded.
        let (num, den) = (num.unsigned_abs(), den.unsigned_abs());
        let q = match digits.checked_sub(scale) {
            Some(more) => rounded_quotient(num, den, more)?,
            None => rounded_quotient(num, den.checked_mul(10u128.pow(scale - digits))?, 0)?,
        };
        let q = if self.moment.root() {
            rounded_sqrt(q, digits)?
        } else {
            q
        };
        let q = q.checked_mul(10u128.pow(SCALE - digits))?;
        i128::try_from(q).ok().filter(|q| *q < 10i128.pow(38))
    }
}

/// The square root of `v / 10^digits`, rounded at `digits` after the point,
/// as an integer of that scale.
fn rounded_sqrt(v: u128, digits: u32) -> Option<u128> {
    // √(v·10^digits), rounded to the nearest integer.
    let n = i256::from_i128(i128::try_from(v).ok()?)
        .checked_mul(i256::from_i128(10i128.pow(digits)))?;
    let r = isqrt(n);
    // r + 1 when (r + ½)² < n, i.e. 4n > (2r + 1)².
    let twice = r.checked_mul(i256::from_i128(2))?.checked_add(i256::ONE)?;
    let r = if n.checked_mul(i256::from_i128(4))? > twice.checked_mul(twice)? {
        r.checked_add(i256::ONE)?
    } else {
        r
    };
    r.to_i128().and_then(|r| u128::try_from(r).ok())
}

/// The integer square root of `n` ≥ 0, by Newton's method from above.
fn isqrt(n: i256) -> i256 {
    if n < i256::from_i128(2) {
        return n;
    }
    let bits = 256 - n.leading_zeros();
    let mut x = i256::from_i128(2).wrapping_pow(bits.div_ceil(2));
    loop {
        let y = x
            .wrapping_add(n.wrapping_div(x))
            .wrapping_div(i256::from_i128(2));
        if y >= x {
            return x;
        }
        x = y;
    }
}

impl Accumulator for Moments {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, 1)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.add(values, -1)
    }

    fn supports_retract_batch(&self) -> bool {
        true
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::Decimal128(self.value(), 38, SCALE as i8))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            ScalarValue::Int64(Some(self.count)),
            ScalarValue::Decimal128(Some(self.sum), 38, self.scale as i8),
            ScalarValue::Decimal256(Some(self.squares), 76, 2 * self.scale as i8),
        ])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(count), Some(sum), Some(squares)) = (
            states
                .first()
                .and_then(|a| a.as_primitive_opt::<Int64Type>()),
            states
                .get(1)
                .and_then(|a| a.as_primitive_opt::<Decimal128Type>()),
            states
                .get(2)
                .and_then(|a| a.as_primitive_opt::<Decimal256Type>()),
        ) else {
            return exec_err!("{}: unexpected state", self.moment.numeric_name());
        };
        merge(self, count.values(), sum, squares);
        Ok(())
    }
}

fn merge(m: &mut Moments, count: &[i64], sum: &Decimal128Array, squares: &Decimal256Array) {
    for (i, &c) in count.iter().enumerate() {
        m.count += c;
        m.sum += sum.value(i);
        m.squares = m.squares.wrapping_add(squares.value(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moment(moment: Moment, scale: u32, values: &[i128]) -> String {
        let mut m = Moments {
            moment,
            scale,
            ..Moments::default()
        };
        let x = Decimal128Array::from(values.to_vec())
            .with_precision_and_scale(38, scale as i8)
            .unwrap();
        m.update_batch(&[Arc::new(x)]).unwrap();
        match m.value() {
            None => "NULL".into(),
            Some(v) => {
                let s = format!("{:021}", v);
                let (i, f) = s.split_at(s.len() - SCALE as usize);
                let f = f.trim_end_matches('0');
                if f.is_empty() {
                    i.to_string()
                } else {
                    format!("{i}.{f}")
                }
            }
        }
    }

    /// PostgreSQL 15.18's answers (trailing zeros aside) to
    /// `SELECT stddev(x), variance(x), stddev_pop(x), var_pop(x)` of
    /// (1), (2), (4); of (1.5), (2.25), (4.125); of (1), (1), (1); of (7);
    /// and `stddev`, `variance` of 1 to 1,000,000.
    #[test]
    fn moments_as_postgresql_computes_them() {
        use Moment::*;
        assert_eq!(moment(StddevSamp, 0, &[1, 2, 4]), "1.5275252316519467");
        assert_eq!(moment(VarSamp, 0, &[1, 2, 4]), "2.3333333333333333");
        assert_eq!(moment(StddevPop, 0, &[1, 2, 4]), "1.2472191289246471");
        assert_eq!(moment(VarPop, 0, &[1, 2, 4]), "1.5555555555555556");
        let d = [1500, 2250, 4125];
        assert_eq!(moment(StddevSamp, 3, &d), "1.352081728298996");
        assert_eq!(moment(VarSamp, 3, &d), "1.828125");
        assert_eq!(moment(VarPop, 3, &d), "1.21875");
        assert_eq!(moment(StddevPop, 3, &d), "1.1039701082909809");
        assert_eq!(moment(StddevSamp, 0, &[1, 1, 1]), "0");
        assert_eq!(moment(VarSamp, 0, &[1, 1, 1]), "0");
        assert_eq!(moment(StddevSamp, 0, &[7]), "NULL");
        assert_eq!(moment(VarPop, 0, &[7]), "0");
        assert_eq!(moment(StddevSamp, 0, &[]), "NULL");
        let million: Vec<i128> = (1..=1_000_000).collect();
        assert_eq!(moment(StddevSamp, 0, &million), "288675.27893234");
        assert_eq!(moment(VarSamp, 0, &million), "83333416666.66666667");
    }

    #[test]
    fn integer_square_roots() {
        for n in [
            0i128,
            1,
            2,
            3,
            4,
            15,
            16,
            17,
            10i128.pow(30),
            10i128.pow(37) + 12345,
        ] {
            let r = isqrt(i256::from_i128(n)).to_i128().unwrap();
            assert!(r * r <= n && (r + 1) * (r + 1) > n, "{n}");
        }
        let big = i256::from_i128(10i128.pow(38)).wrapping_mul(i256::from_i128(10i128.pow(20)));
        let r = isqrt(big);
        assert_eq!(r, i256::from_i128(10i128.pow(29)));
    }
}
