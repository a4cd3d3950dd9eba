//! `current_user`, `session_user`, `user` and `current_role` in SQL: the
//! authenticated user and the role in effect.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::session::Identity;

#[derive(Debug)]
struct Who {
    name: &'static str,
    role: bool,
    identity: Arc<Mutex<Identity>>,
    signature: Signature,
}

impl PartialEq for Who {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.identity, &other.identity)
    }
}
impl Eq for Who {}
impl Hash for Who {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for Who {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }
    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let id = self.identity.lock().unwrap_or_else(|p| p.into_inner());
        let value = if self.role {
            id.role.to_string()
        } else {
            id.user.clone()
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value))))
    }
}

/// Registers the identity functions of one session.
pub(crate) fn register(ctx: &SessionContext, identity: Arc<Mutex<Identity>>) {
    for (name, role) in [
        ("current_user", false),
        ("session_user", false),
        ("user", false),
        ("current_role", true),
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Who {
            name,
            role,
            identity: identity.clone(),
            signature: Signature::nullary(Volatility::Stable),
        }));
    }
}
