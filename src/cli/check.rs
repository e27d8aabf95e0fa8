//! `--check`: a checker that holds a run to the three claims the lab makes, and says
//! *valid* or *INVALID*, with counterexamples, the way Jepsen-style checkers do.
//!
//! 1. **Every answer is the right value**: the bytes the dbserver holds for the key. (The
//!    runs checked here write their keys before the load and not during it, so "the value
//!    the dbserver holds" is the value they wrote.) A "no such key" for a key that exists
//!    is a wrong answer too. An error (a 502) is not: it is an honest "could not".
//! 2. **A key costs one database read**, give or take what the run did to the cluster. The
//!    bound is `keys × (1 + restarts)`, plus one read for each event that the design lets
//!    cost one more, all counted by the frontends during the run:
//!    - `failovers`: a load that went past the key's owner loads it elsewhere;
//!    - `peer_errors`: an owner that failed to answer may leave the asker to load it;
//!    - `local_load_errs`: a read the dbserver served but the frontend gave up on;
//!    - `main_cache.evictions`, `evictions_by_change`, `stale_loads_refused`: a value that
//!      left the cache, or was refused, is read again.
//!
//!    Without singleflight (`--no-singleflight`) or peers (`--no-peers`) the bound does not
//!    hold, and the checker says so: that is the herd those switches show.
//! 3. **No request outlives `--client-timeout`**: the client cuts it off, and counts it.
//!
//! What the bound leaves out: `--ttl` expiries (each reloads a key, uncounted, so a TTL
//! run can fail the read claim while correct), and the counts a killed node made before it
//! died (its restart's allowance of one read per key usually covers them). It is loose the
//! other way too: an owner that cannot be reached counts as a failover and a peer error, two
//! allowances for at most one read.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::short;
use crate::client::{Cached, ClientError};
use crate::stats::NodeStats;

/// Counterexamples kept per claim: enough to see the pattern, not a wall of text.
const KEEP: usize = 5;

/// Watches the answers of a run, one at a time.
#[derive(Debug)]
pub struct Checker {
    client_timeout: Duration,
    keys: HashSet<String>,
    wrong: u64,
    wrong_examples: Vec<String>,
    late: u64,
    late_examples: Vec<String>,
    slowest: Duration,
    right: u64,
    errors: u64,
}

/// The verdict: every claim, whether it held, and the answers that broke it.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub valid: bool,
    pub claims: Vec<Claim>,
    pub counterexamples: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Claim {
    pub claim: &'static str,
    pub holds: bool,
    pub detail: String,
}

/// What the cluster did during the run, from the counters before and after: the
/// database reads, and the events that may each cost one more.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Reads {
    /// `None` when the dbserver could not be asked after the run.
    pub db_reads: Option<u64>,
    pub restarts: u64,
    pub failovers: u64,
    pub peer_errors: u64,
    pub local_load_errs: u64,
    pub evictions: u64,
}

impl Reads {
    /// The counters' growth over a run. A node whose `gets` went down restarted: its
    /// counters began again at zero, so all of its "after" counts are new, and its cache
    /// began empty. (A node that served more since its restart than before the run does not
    /// show its restart this way; `cli chaos` adds the restarts it caused.)
    pub fn between(db_reads: Option<u64>, before: &[NodeStats], after: &[NodeStats]) -> Reads {
        let mut reads = Reads {
            db_reads,
            ..Reads::default()
        };
        for (b, a) in before.iter().zip(after) {
            let restarted = a.gets < b.gets;
            let grew = |before: u64, after: u64| {
                if restarted {
                    after
                } else {
                    after.saturating_sub(before)
                }
            };
            reads.restarts += u64::from(restarted);
            reads.failovers += grew(b.failovers, a.failovers);
            reads.peer_errors += grew(b.peer_errors, a.peer_errors);
            reads.local_load_errs += grew(b.local_load_errs, a.local_load_errs);
            reads.evictions += grew(b.main_cache.evictions, a.main_cache.evictions)
                + grew(b.evictions_by_change, a.evictions_by_change)
                + grew(b.stale_loads_refused, a.stale_loads_refused);
        }
        reads
    }

    /// The most database reads the design allows for `keys` keys.
    pub fn bound(&self, keys: u64) -> u64 {
        keys * (1 + self.restarts)
            + self.failovers
            + self.peer_errors
            + self.local_load_errs
            + self.evictions
    }
}

impl Checker {
    pub fn new(client_timeout: Duration) -> Checker {
        Checker {
            client_timeout,
            keys: HashSet::new(),
            wrong: 0,
            wrong_examples: Vec::new(),
            late: 0,
            late_examples: Vec::new(),
            slowest: Duration::ZERO,
            right: 0,
            errors: 0,
        }
    }

    /// One answer to a cget of `key`, whose right value is `expected`; it took `took`.
    pub fn answer(
        &mut self,
        key: &str,
        expected: &[u8],
        got: &Result<Option<Cached>, ClientError>,
        took: Duration,
    ) {
        if !self.keys.contains(key) {
            self.keys.insert(key.to_owned());
        }
        self.slowest = self.slowest.max(took);
        let wrong = match got {
            Ok(Some(cached)) if cached.value == expected => {
                self.right += 1;
                None
            }
            Ok(Some(cached)) => Some(format!(
                "{key} answered {:?} (by {}, from {}), but the dbserver holds {:?}",
                preview(&cached.value),
                short(&cached.node),
                cached.source,
                preview(expected)
            )),
            Ok(None) => Some(format!(
                "{key} answered \"no such key\", but the dbserver holds {:?}",
                preview(expected)
            )),
            Err(ClientError::Timeout { addr, .. }) => {
                self.errors += 1;
                self.late += 1;
                if self.late_examples.len() < KEEP {
                    self.late_examples.push(format!(
                        "{key} at {} got no answer within {}",
                        short(addr),
                        humantime::format_duration(self.client_timeout)
                    ));
                }
                None
            }
            Err(_) => {
                self.errors += 1;
                None
            }
        };
        if let Some(example) = wrong {
            self.wrong += 1;
            if self.wrong_examples.len() < KEEP {
                self.wrong_examples.push(example);
            }
        }
    }

    /// How many distinct keys the answers were for.
    pub fn keys_asked(&self) -> u64 {
        self.keys.len() as u64
    }

    /// The verdict, given the reads the cluster made during the run.
    pub fn verdict(self, reads: &Reads) -> Verdict {
        let keys = self.keys.len() as u64;
        let bound = reads.bound(keys);
        let mut counterexamples = Vec::new();
        let values = Claim {
            claim: "every answer was the right value",
            holds: self.wrong == 0,
            // Errors are not wrong values (a 502 is an honest "could not"), but a run that
            // was mostly errors should not read as a success: the count is in the detail.
            detail: format!(
                "{} right, {} wrong, {} errors",
                self.right, self.wrong, self.errors
            ),
        };
        counterexamples.extend(self.wrong_examples);
        let reads_claim = match reads.db_reads {
            None => Claim {
                claim: "the database was read no more than the design allows",
                holds: false,
                detail: "unknown: the dbserver did not answer after the run".to_owned(),
            },
            Some(db_reads) => Claim {
                claim: "the database was read no more than the design allows",
                holds: db_reads <= bound,
                detail: format!(
                    "{db_reads} reads {} {bound} = {keys} key{} × {} + {} failovers + {} peer \
                     errors + {} failed reads + {} evictions",
                    if db_reads <= bound { "≤" } else { ">" },
                    if keys == 1 { "" } else { "s" },
                    if reads.restarts == 0 {
                        "1".to_owned()
                    } else {
                        format!("(1 + {} restarts)", reads.restarts)
                    },
                    reads.failovers,
                    reads.peer_errors,
                    reads.local_load_errs,
                    reads.evictions
                ),
            },
        };
        if let (Some(db_reads), false) = (reads.db_reads, reads_claim.holds) {
            let names: Vec<&str> = self.keys.iter().take(KEEP).map(String::as_str).collect();
            counterexamples.push(format!(
                "{db_reads} database reads for {} ({}{}), where the bound is {bound}",
                if keys == 1 { "the key" } else { "the keys" },
                names.join(", "),
                if keys as usize > KEEP { ", …" } else { "" }
            ));
        }
        let deadline = Claim {
            claim: "no request outlived --client-timeout",
            holds: self.late == 0,
            detail: if self.late == 0 {
                format!(
                    "the slowest answer took {:.1} ms (limit {})",
                    self.slowest.as_secs_f64() * 1000.0,
                    humantime::format_duration(self.client_timeout)
                )
            } else {
                format!(
                    "{} requests got no answer within {}",
                    self.late,
                    humantime::format_duration(self.client_timeout)
                )
            },
        };
        counterexamples.extend(self.late_examples);
        let claims = vec![values, reads_claim, deadline];
        Verdict {
            valid: claims.iter().all(|c| c.holds),
            claims,
            counterexamples,
        }
    }
}

/// A value as a person can read it in one line: its first 40 characters.
fn preview(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut short: String = text.chars().take(40).collect();
    if text.chars().count() > 40 {
        short.push('…');
    }
    short
}

/// The verdict as a person reads it.
pub fn render(v: &Verdict) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "check: {}", if v.valid { "valid" } else { "INVALID" });
    for c in &v.claims {
        let mark = if c.holds { "✓ holds" } else { "✗ FAILS" };
        let _ = writeln!(out, "  {mark}  {}: {}", c.claim, c.detail);
    }
    for example in &v.counterexamples {
        let _ = writeln!(out, "  counterexample: {example}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(value: &str) -> Result<Option<Cached>, ClientError> {
        Ok(Some(Cached {
            value: value.to_owned().into(),
            node: "127.0.0.1:8002".to_owned(),
            owner: "127.0.0.1:8001".to_owned(),
            source: "peer".to_owned(),
            version: 1,
        }))
    }

    #[test]
    fn a_wrong_value_is_invalid_and_named() {
        let mut checker = Checker::new(Duration::from_secs(1));
        checker.answer("foo", b"bar", &cached("bar"), Duration::from_millis(3));
        checker.answer("foo", b"bar", &cached("baz"), Duration::from_millis(3));
        let verdict = checker.verdict(&Reads {
            db_reads: Some(1),
            ..Reads::default()
        });
        assert!(!verdict.valid);
        assert!(verdict.counterexamples[0].starts_with("foo answered \"baz\""));
    }

    #[test]
    fn reads_beyond_the_bound_are_invalid_but_failovers_allow_more() {
        let run = |reads: Reads| {
            let mut checker = Checker::new(Duration::from_secs(1));
            checker.answer("foo", b"bar", &cached("bar"), Duration::from_millis(3));
            checker.verdict(&reads).valid
        };
        let reads = |db_reads, failovers| Reads {
            db_reads: Some(db_reads),
            failovers,
            ..Reads::default()
        };
        assert!(run(reads(1, 0)));
        assert!(!run(reads(2, 0)));
        assert!(run(reads(2, 1)));
        assert!(
            !run(Reads::default()),
            "reads that could not be counted are no proof"
        );
    }

    #[test]
    fn a_node_that_restarted_counts_from_zero() {
        let before = NodeStats {
            gets: 100,
            failovers: 5,
            ..NodeStats::default()
        };
        let after = NodeStats {
            gets: 3,
            failovers: 1,
            ..NodeStats::default()
        };
        let reads = Reads::between(Some(4), &[before], &[after]);
        assert_eq!((reads.restarts, reads.failovers), (1, 1));
        assert_eq!(reads.bound(2), 2 * 2 + 1);
    }
}
