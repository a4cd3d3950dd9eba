//! Limits per role: open connections and running statements per user.
//!
//! A user over a limit is refused with a clear message (SQLSTATE 53300 for
//! connections, 53400 for statements) while everyone else goes on. A
//! connection counts as one running statement from the start of a statement
//! until its last row is sent, however many statements one simple query
//! holds. Statement timeouts and memory per query are applied by the
//! handler and the engine session.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pgwire::error::PgWireError;
use tsunagu_engine::Role;

use crate::config::{Limits, LimitsSection};
use crate::encode;

#[derive(Debug, Default, Clone, Copy)]
struct Use {
    connections: usize,
    statements: usize,
}

/// What every user holds, against the limits of their role.
#[derive(Debug)]
pub struct Limiter {
    analyst: Limits,
    steward: Limits,
    viewer: Limits,
    by_user: Mutex<HashMap<String, Use>>,
}

impl Limiter {
    /// The limits of a configuration (its `[limits.*]` over the defaults).
    pub fn new(section: &LimitsSection) -> Result<Arc<Limiter>, String> {
        Ok(Arc::new(Limiter {
            analyst: section.for_role(Role::Analyst)?,
            steward: section.for_role(Role::Steward)?,
            viewer: section.for_role(Role::Viewer)?,
            by_user: Mutex::default(),
        }))
    }

    /// The limits of a role.
    pub fn limits(&self, role: Role) -> Limits {
        match role {
            Role::Analyst => self.analyst,
            Role::Steward => self.steward,
            Role::Viewer => self.viewer,
        }
    }

    fn with_use<T>(&self, user: &str, f: impl FnOnce(&mut Use) -> T) -> T {
        let mut map = self.by_user.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry(user.to_owned()).or_default();
        let out = f(entry);
        if entry.connections == 0 && entry.statements == 0 {
            map.remove(user);
        }
        out
    }

    /// Counts one more of what `count` picks for `user`, unless `max` are held.
    fn take(&self, user: &str, max: usize, count: fn(&mut Use) -> &mut usize) -> bool {
        self.with_use(user, |u| {
            let n = count(u);
            if *n >= max {
                return false;
            }
            *n += 1;
            true
        })
    }

    /// Takes a connection of `user`; the slot gives it back when dropped.
    pub fn connect(
        self: &Arc<Self>,
        user: &str,
        role: Role,
    ) -> Result<ConnectionSlot, PgWireError> {
        let max = self.limits(role).max_connections;
        if !self.take(user, max, |u| &mut u.connections) {
            return Err(encode::user_error(
                "53300",
                format!(
                    "too many connections for user \"{user}\": at most {max} for the {role} role; \
                     close another connection first"
                ),
            ));
        }
        Ok(ConnectionSlot {
            limiter: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Takes a running statement of `user`; the slot gives it back when dropped.
    pub fn start_statement(
        self: &Arc<Self>,
        user: &str,
        role: Role,
    ) -> Result<StatementSlot, PgWireError> {
        let max = self.limits(role).max_statements;
        if !self.take(user, max, |u| &mut u.statements) {
            return Err(encode::user_error(
                "53400",
                format!(
                    "too many statements running for user \"{user}\": at most {max} at once \
                     for the {role} role; wait for one to finish"
                ),
            ));
        }
        Ok(StatementSlot {
            limiter: self.clone(),
            user: user.to_owned(),
        })
    }
}

/// One open connection of a user.
#[derive(Debug)]
pub struct ConnectionSlot {
    limiter: Arc<Limiter>,
    user: String,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limiter.with_use(&self.user, |u| {
            u.connections = u.connections.saturating_sub(1)
        });
    }
}

/// One running statement of a user.
#[derive(Debug)]
pub struct StatementSlot {
    limiter: Arc<Limiter>,
    user: String,
}

impl Drop for StatementSlot {
    fn drop(&mut self) {
        self.limiter.with_use(&self.user, |u| {
            u.statements = u.statements.saturating_sub(1)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RoleLimits;

    #[test]
    fn slots_are_counted_per_user_and_given_back() {
        let section = LimitsSection {
            analyst: RoleLimits {
                max_connections_per_user: Some(1),
                max_concurrent_statements_per_user: Some(1),
                ..Default::default()
            },
            ..Default::default()
        };
        let limiter = Limiter::new(&section).unwrap();
        let a = limiter.connect("ana", Role::Analyst).unwrap();
        assert!(limiter.connect("ana", Role::Analyst).is_err());
        let _b = limiter.connect("bob", Role::Analyst).unwrap();
        drop(a);
        let _a = limiter.connect("ana", Role::Analyst).unwrap();
        let s = limiter.start_statement("ana", Role::Analyst).unwrap();
        assert!(limiter.start_statement("ana", Role::Analyst).is_err());
        drop(s);
        assert!(limiter.start_statement("ana", Role::Analyst).is_ok());
    }
}
