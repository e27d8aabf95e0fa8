//! Faults on demand: rules that make this node's calls to its peers and to the dbserver
//! misbehave, the way a bad network would, so that the lab can be broken on purpose.
//!
//! A rule is set on the node whose *calls* it hurts, because that is where a real network
//! hurts: a partition of 8001 "from 8002" is a rule on 8002 that its calls to 8001 fail.
//! So a partition is one-way unless the other side gets the mirror rule (`cli fault
//! partition --both`), and 8001 can still ask 8002 while 8002 cannot ask 8001.
//!
//! | fault       | what a call meets                                | counted in    |
//! |-------------|--------------------------------------------------|---------------|
//! | `partition` | fails at once, as through a firewall that rejects | `partitioned` |
//! | `drop`      | that share of calls fail at once, as if reset    | `dropped`     |
//! | `delay`     | waits first (plus up to the jitter), inside its deadline | `delayed` |
//! | `stall`     | no answer until its deadline, or until healed    | `stalled`     |
//! | `db-delay`  | a dbserver read waits first, inside its deadline | `db_delayed`  |
//!
//! The rules are consulted only on the way to a peer or the dbserver, never on a cache hit,
//! so an unbroken node pays nothing for them. `POST /faults` sets them (see `frontend.rs`);
//! `gclab cli fault` is the way a person does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a rule does to the calls it matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Fault {
    Partition,
    Delay { ms: u64, jitter_ms: u64 },
    Drop { percent: f64 },
    Stall,
    DbDelay { ms: u64 },
}

/// One rule, as `POST /faults` takes it and `GET /faults` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    /// The node the person named (`cli fault stall 8001` → `127.0.0.1:8001`); `heal 8001`
    /// removes every rule about it, on every node.
    pub about: String,
    /// The peer whose calls it hurts; `None` for `db-delay`, which hurts dbserver reads.
    #[serde(default)]
    pub to: Option<String>,
    #[serde(flatten)]
    pub fault: Fault,
}

impl Rule {
    /// Whether the rule makes sense: a peer rule names its peer, numbers are in range.
    pub fn check(&self) -> Result<(), String> {
        match (&self.fault, &self.to) {
            (Fault::DbDelay { .. }, Some(_)) => {
                Err("a db-delay rule hurts dbserver reads and names no peer".to_owned())
            }
            (Fault::DbDelay { .. }, None) => Ok(()),
            (_, None) => Err("a peer rule must name the peer it hurts (\"to\")".to_owned()),
            (Fault::Drop { percent }, _) if !(0.0..=100.0).contains(percent) => {
                Err(format!("drop {percent}% is not a share between 0 and 100"))
            }
            (Fault::Delay { ms, jitter_ms }, _) if *ms > MAX_MS || *jitter_ms > MAX_MS => {
                Err("a delay of over an hour is no delay but an outage; use stall".to_owned())
            }
            _ => Ok(()),
        }
        .and_then(|()| match self.fault {
            Fault::DbDelay { ms } if ms > MAX_MS => {
                Err("a db-delay of over an hour is no delay but an outage".to_owned())
            }
            _ => Ok(()),
        })
    }
}

/// The longest delay a rule may set: an hour, in milliseconds.
pub const MAX_MS: u64 = 3_600_000;

impl std::fmt::Display for Rule {
    /// `stall 127.0.0.1:8001`, `delay 127.0.0.1:8003 50ms ±10ms`, `db-delay 2s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let to = self.to.as_deref().unwrap_or("dbserver");
        match &self.fault {
            Fault::Partition => write!(f, "partition: calls to {to} fail"),
            Fault::Stall => write!(f, "stall: calls to {to} get no answer"),
            Fault::Drop { percent } => write!(f, "drop: {percent}% of calls to {to} fail"),
            Fault::Delay { ms, jitter_ms: 0 } => write!(f, "delay: calls to {to} wait {ms} ms"),
            Fault::Delay { ms, jitter_ms } => {
                write!(f, "delay: calls to {to} wait {ms} ms ±{jitter_ms} ms")
            }
            Fault::DbDelay { ms } => write!(f, "db-delay: dbserver reads wait {ms} ms"),
        }
    }
}

/// What a call meets, after every rule for its destination has had its say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// It fails at once; the reason names the rule.
    Fail(&'static str),
    /// It waits this long first, inside its deadline.
    Wait(Duration),
    /// It never gets an answer: it fails when its deadline passes.
    Stall,
}

/// How often each kind of fault has hurt a call, and how many rules are set: a part of
/// `GET /stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultStats {
    /// Rules set on this node now.
    pub rules: u64,
    pub partitioned: u64,
    pub dropped: u64,
    pub delayed: u64,
    pub stalled: u64,
    pub db_delayed: u64,
}

impl FaultStats {
    /// No rule set now, and no call ever hurt.
    pub fn is_quiet(&self) -> bool {
        *self == FaultStats::default()
    }
}

/// The rules set on one node, and the counts of calls they hurt.
#[derive(Debug)]
pub struct Faults {
    // std's `RwLock`, not tokio's: it is held to copy a decision out, never across an
    // `.await`; and read by every peer call, written only when a person sets a rule.
    rules: RwLock<Vec<Rule>>,
    /// Counts heals, so that a stalled call can end when its rule is healed: a network that
    /// heals delivers what it held back, as TCP's retransmission would.
    healed: tokio::sync::watch::Sender<u64>,
    partitioned: AtomicU64,
    dropped: AtomicU64,
    delayed: AtomicU64,
    stalled: AtomicU64,
    db_delayed: AtomicU64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rules: RwLock::default(),
            healed: tokio::sync::watch::Sender::new(0),
            partitioned: AtomicU64::default(),
            dropped: AtomicU64::default(),
            delayed: AtomicU64::default(),
            stalled: AtomicU64::default(),
            db_delayed: AtomicU64::default(),
        }
    }
}

impl Faults {
    /// Adds a rule, after checking it.
    pub fn set(&self, rule: Rule) -> Result<(), String> {
        rule.check()?;
        tracing::warn!(kind = "fault", "fault set: {rule}");
        self.write().push(rule);
        Ok(())
    }

    /// Removes the rules about `node` (all of them for `None`); returns them.
    pub fn heal(&self, node: Option<&str>) -> Vec<Rule> {
        let mut rules = self.write();
        let (healed, kept) = rules
            .drain(..)
            .partition(|r: &Rule| node.is_none_or(|n| r.about == n));
        *rules = kept;
        for rule in &healed {
            tracing::info!(kind = "fault", "fault healed: {rule}");
        }
        if !healed.is_empty() {
            self.healed.send_modify(|n| *n += 1);
        }
        healed
    }

    /// The rules set now.
    pub fn list(&self) -> Vec<Rule> {
        self.read().clone()
    }

    /// What a call to `peer` meets now. Counted as it is decided, so the counters say how
    /// many calls each kind of fault hurt.
    pub fn on_peer_call(&self, peer: &str) -> Option<Effect> {
        let rules = self.read();
        let mut wait = Duration::ZERO;
        for rule in rules.iter().filter(|r| r.to.as_deref() == Some(peer)) {
            match rule.fault {
                Fault::Partition => {
                    Self::count(&self.partitioned);
                    return Some(Effect::Fail("cut off by a partition (cli fault)"));
                }
                Fault::Stall => {
                    Self::count(&self.stalled);
                    return Some(Effect::Stall);
                }
                Fault::Drop { percent } if fastrand::f64() * 100.0 < percent => {
                    Self::count(&self.dropped);
                    return Some(Effect::Fail("dropped by a fault rule (cli fault drop)"));
                }
                Fault::Delay { ms, jitter_ms } => {
                    Self::count(&self.delayed);
                    wait += Duration::from_millis(ms + fastrand::u64(0..=jitter_ms));
                }
                Fault::Drop { .. } | Fault::DbDelay { .. } => {}
            }
        }
        (!wait.is_zero()).then_some(Effect::Wait(wait))
    }

    /// Completes at the next heal: a stalled call waits on it, beside its deadline.
    pub async fn next_heal(&self) {
        let mut healed = self.healed.subscribe();
        let _ = healed.changed().await;
    }

    /// How long a dbserver read waits first, if a rule says so.
    pub fn on_db_read(&self) -> Option<Duration> {
        let wait: u64 = self
            .read()
            .iter()
            .map(|r| match r.fault {
                Fault::DbDelay { ms } => ms,
                _ => 0,
            })
            .sum();
        (wait > 0).then(|| {
            Self::count(&self.db_delayed);
            Duration::from_millis(wait)
        })
    }

    pub fn stats(&self) -> FaultStats {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        FaultStats {
            rules: self.read().len() as u64,
            partitioned: read(&self.partitioned),
            dropped: read(&self.dropped),
            delayed: read(&self.delayed),
            stalled: read(&self.stalled),
            db_delayed: read(&self.db_delayed),
        }
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Rule>> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Rule>> {
        self.rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(about: &str, to: Option<&str>, fault: Fault) -> Rule {
        Rule {
            about: about.to_owned(),
            to: to.map(str::to_owned),
            fault,
        }
    }

    #[test]
    fn a_partition_hurts_calls_to_its_peer_only() {
        let faults = Faults::default();
        faults.set(rule("a", Some("a"), Fault::Partition)).unwrap();
        assert!(matches!(faults.on_peer_call("a"), Some(Effect::Fail(_))));
        assert_eq!(faults.on_peer_call("b"), None);
        assert_eq!(faults.stats().partitioned, 1);
    }

    #[test]
    fn delays_add_up_and_heal_removes_only_the_rules_about_a_node() {
        let faults = Faults::default();
        let delay = |ms| Fault::Delay { ms, jitter_ms: 0 };
        faults.set(rule("a", Some("a"), delay(50))).unwrap();
        faults.set(rule("b", Some("a"), delay(20))).unwrap();
        assert_eq!(
            faults.on_peer_call("a"),
            Some(Effect::Wait(Duration::from_millis(70)))
        );
        assert_eq!(faults.heal(Some("a")).len(), 1);
        assert_eq!(
            faults.on_peer_call("a"),
            Some(Effect::Wait(Duration::from_millis(20)))
        );
        assert_eq!(faults.heal(None).len(), 1);
        assert_eq!(faults.stats().rules, 0);
    }

    #[test]
    fn rules_out_of_range_are_refused_with_the_reason() {
        let faults = Faults::default();
        let error = faults
            .set(rule("a", Some("a"), Fault::Drop { percent: 150.0 }))
            .unwrap_err();
        assert!(error.contains("between 0 and 100"), "{error}");
        let error = faults.set(rule("a", None, Fault::Stall)).unwrap_err();
        assert!(error.contains("must name the peer"), "{error}");
        assert_eq!(faults.stats().rules, 0);
    }

    #[test]
    fn a_db_delay_is_counted_per_read() {
        let faults = Faults::default();
        assert_eq!(faults.on_db_read(), None);
        faults
            .set(rule("a", None, Fault::DbDelay { ms: 2000 }))
            .unwrap();
        assert_eq!(faults.on_db_read(), Some(Duration::from_secs(2)));
        assert_eq!(faults.stats().db_delayed, 1);
    }
}
