//! Guarding: the privacy layer's call, with the policy in effect for the
//! session (a project's, else the store's, with the session's functions).

use super::*;

impl Session {
    /// The policy with this session's function classes.
    pub(super) fn analyst_policy(&self) -> Policy {
        let mut policy = self.policy().for_role(self.role());
        policy.functions.extend(
            self.functions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(k, v)| (k.clone(), *v)),
        );
        policy
    }
}

/// Runs the privacy rewrite; a defect in it refuses the statement instead
/// of taking the process down.
pub(super) fn guard<T>(f: impl FnOnce() -> std::result::Result<T, privacy::Refusal>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Ok(r?),
        Err(_) => Err(EngineError::Refused {
            code: "XX000",
            rule: "internal",
            message: "the privacy layer could not check this statement, so it is refused [rule: internal]".into(),
        }),
    }
}
