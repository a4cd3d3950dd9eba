//! Failed logins: each one is answered late, later with every failure in a
//! row for the same user name or client address, and a user name with too
//! many failures in a row is locked for a while.
//!
//! Names are counted whether or not the user exists, so that a locked or
//! slow answer does not tell an unknown name from a known one; the SCRAM
//! exchange of an unknown name runs against a random verifier for the same
//! reason (`config::Users`).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::LoginSettings;

/// Names and addresses remembered at most; the oldest are forgotten first.
const REMEMBERED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
struct Counts {
    users: HashMap<String, Failures>,
    addresses: HashMap<IpAddr, Failures>,
}

/// What a failed login leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// How long to wait before answering.
    pub delay: Duration,
    /// The failure locked the user.
    pub locked: bool,
}

/// Consecutive failures per user name and per client address.
#[derive(Debug)]
pub struct LoginGuard {
    settings: LoginSettings,
    counts: Mutex<Counts>,
}

impl LoginGuard {
    /// A guard with the given settings.
    pub fn new(settings: LoginSettings) -> LoginGuard {
        LoginGuard {
            settings,
            counts: Mutex::default(),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn window(&self) -> Duration {
        // Capped, so that adding it to the current time cannot overflow.
        Duration::from_secs(self.settings.lockout_seconds.min(10 * 365 * 86400))
    }

    /// True while `user` is locked.
    pub fn locked(&self, user: &str) -> bool {
        let now = Instant::now();
        self.counts()
            .users
            .get(user)
            .and_then(|f| f.locked_until)
            .is_some_and(|until| until > now)
    }

    /// The delay after `failures` failures in a row: the base, doubled per
    /// further failure, up to the maximum.
    fn delay(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        let doubled = self
            .settings
            .base_delay_ms
            .saturating_mul(1u64 << (failures - 1).min(20));
        Duration::from_millis(doubled.min(self.settings.max_delay_ms))
    }

    /// The delay before refusing a login that did not get as far as a password.
    pub fn refusal_delay(&self, user: &str, address: IpAddr) -> Duration {
        let now = Instant::now();
        let counts = self.counts();
        let current = |f: Option<&Failures>| {
            f.filter(|f| now.duration_since(f.last) < self.window())
                .map_or(0, |f| f.count)
        };
        self.delay(current(counts.users.get(user)).max(current(counts.addresses.get(&address))))
    }

    /// Records a failed login of `user` from `address`.
    pub fn failed(&self, user: &str, address: IpAddr) -> Failure {
        let now = Instant::now();
        let window = self.window();
        let mut counts = self.counts();
        let by_user = bump(&mut counts.users, user.to_owned(), now, window);
        let by_address = bump(&mut counts.addresses, address, now, window);
        let mut locked = false;
        if self.settings.max_failures > 0
            && by_user >= self.settings.max_failures
            && let Some(f) = counts.users.get_mut(user)
            && f.locked_until.is_none_or(|until| until <= now)
        {
            f.locked_until = Some(now + window);
            locked = true;
        }
        Failure {
            delay: self.delay(by_user.max(by_address)),
            locked,
        }
    }

    /// Records a successful login: the failures of the user and the address are forgotten.
    pub fn succeeded(&self, user: &str, address: IpAddr) {
        let mut counts = self.counts();
        counts.users.remove(user);
        counts.addresses.remove(&address);
    }
}

/// Counts one more failure for `key` (failures older than `window` are
/// forgotten) and returns the count.
fn bump<K: Hash + Eq + Clone>(
    map: &mut HashMap<K, Failures>,
    key: K,
    now: Instant,
    window: Duration,
) -> u32 {
    if map.len() >= REMEMBERED && !map.contains_key(&key) {
        map.retain(|_, f| {
            now.duration_since(f.last) < window || f.locked_until.is_some_and(|u| u > now)
        });
        if map.len() >= REMEMBERED
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, f)| f.last)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
    }
    let f = map.entry(key).or_insert(Failures {
        count: 0,
        last: now,
        locked_until: None,
    });
    let locked = f.locked_until.is_some_and(|u| u > now);
    if !locked && now.duration_since(f.last) >= window {
        f.count = 0;
    }
    f.count = f.count.saturating_add(1);
    f.last = now;
    f.count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_slow_down_then_lock_and_success_forgets_them() {
        let guard = LoginGuard::new(LoginSettings {
            max_failures: 3,
            lockout_seconds: 60,
            base_delay_ms: 100,
            max_delay_ms: 300,
        });
        let ip: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [10, 0, 0, 1].into();
        let delays: Vec<_> = (0..4)
            .map(|_| guard.failed("ana", ip))
            .map(|f| (f.delay.as_millis(), f.locked))
            .collect();
        assert_eq!(
            delays,
            [(100, false), (200, false), (300, true), (300, false)]
        );
        assert!(guard.locked("ana"));
        assert!(!guard.locked("bob"));
        // Another name from the same address is slowed down too, not locked.
        assert_eq!(guard.failed("bob", ip).delay.as_millis(), 300);
        assert!(!guard.locked("bob"));
        guard.succeeded("bob", other);
        assert_eq!(guard.refusal_delay("carl", other), Duration::ZERO);
    }
}
