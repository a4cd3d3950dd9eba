//! PostgreSQL's names and result types for built-in functions DataFusion
//! has under other names or types: `sign` (`signum`), `ceiling` (`ceil`),
//! and `date_part`, which returns `double precision` in PostgreSQL (an
//! integer in DataFusion, so `date_part('year', d) / 10` would divide
//! integers). `EXTRACT` returns a numeric (see `operators`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// The built-ins under PostgreSQL's names and types.
pub fn functions() -> Vec<ScalarUDF> {
    use datafusion::functions::{datetime, math};
    vec![
        math::signum().as_ref().clone().with_aliases(["sign"]),
        math::ceil().as_ref().clone().with_aliases(["ceiling"]),
        ScalarUDF::new_from_impl(DatePart {
            inner: datetime::date_part(),
        }),
    ]
}

/// `date_part(field, source)` returning `double precision`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DatePart {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for DatePart {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let inner = self.inner.return_field_from_args(args)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Float64,
            inner.is_nullable(),
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalars: Vec<_> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Scalar(s) => Some(s),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        let return_field = self.inner.return_field_from_args(ReturnFieldArgs {
            arg_fields: &args.arg_fields,
            scalar_arguments: &scalars,
        })?;
        drop(scalars);
        let value = self.inner.invoke_with_args(ScalarFunctionArgs {
            return_field,
            ..args
        })?;
        value.cast_to(&DataType::Float64, None)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}
