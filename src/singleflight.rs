//! singleflight: concurrent callers asking for the same key share one load.
//!
//! This is the piece that stops a thundering herd. When a thousand requests for a cold key
//! arrive at once, the first becomes the *leader* and starts the load; the other 999 find
//! the load in flight and wait for its result instead of starting their own.
//!
//! It mirrors groupcache's `singleflight` package (64 lines of Go) with two choices of its own:
//! - The load runs in its own task (`tokio::spawn`), not inside the leader's future. A
//!   client that hangs up drops its future; if the load lived there, everyone waiting on it
//!   would be cancelled with it.
//! - The result is shared through `futures`' `Shared`, not a `watch` channel or a hand-rolled
//!   waiter list: it already clones one output to every waiter, which is all we need.
//!
//! A failed load reaches every waiter and is not remembered: the next call loads again.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::{BoxFuture, FutureExt, Shared};

/// The result every waiter receives. `E` is cloned to each of them, so keep it cheap.
type Flight<V, E> = Shared<BoxFuture<'static, Result<V, E>>>;

/// The flights in progress, by key, each with its number.
type Flights<V, E> = HashMap<String, (u64, Flight<V, E>)>;

/// What one caller of [`Group::work`] got.
#[derive(Debug)]
pub struct Call<V, E> {
    /// The load's result, the same for every caller that shared it.
    pub result: Result<V, E>,
    /// Whether this caller started the load (the others joined it).
    pub leader: bool,
    /// The flight's number on this node, the same for its leader and everyone who joined
    /// it: how a trace tells which requests shared a load.
    pub flight: u64,
}

/// A set of loads in flight, one per key.
pub struct Group<V, E> {
    // std `Mutex`, not tokio's: it is held only to look up or insert a map entry, never
    // across an `.await`, so the cheaper blocking lock is the right one.
    flights: Arc<Mutex<Flights<V, E>>>,
    /// The last flight's number; shared by groups made with [`Group::sharing_numbers`].
    started: Arc<AtomicU64>,
}

impl<V, E> Default for Group<V, E> {
    fn default() -> Self {
        Group {
            flights: Arc::default(),
            started: Arc::default(),
        }
    }
}

/// What a load turned into when its task panicked: every waiter gets this error instead
/// of waiting forever.
pub trait FromPanic {
    fn from_panic(message: String) -> Self;
}

impl<V, E> Group<V, E> {
    /// A second set of flights whose numbers continue this one's, so that no two flights on
    /// a node have the same number in a trace.
    pub fn sharing_numbers(&self) -> Self {
        Group {
            flights: Arc::default(),
            started: Arc::clone(&self.started),
        }
    }
}

impl<V, E> Group<V, E>
where
    V: Clone + Send + Sync + 'static,
    E: Clone + FromPanic + Send + Sync + 'static,
{
    /// Runs `load` for `key` unless a load for `key` is already in flight, in which case
    /// it waits for that one. groupcache's `Do`.
    ///
    /// `load` is only called by the leader; followers never build their future.
    pub async fn work<F, Fut>(&self, key: &str, load: F) -> Call<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
    {
        let (id, flight, leader) = {
            // Taken over if poisoned: the map is consistent between statements, whatever panicked.
            let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
            match flights.get(key) {
                Some((id, flight)) => (*id, flight.clone(), false),
                None => {
                    let id = self.started.fetch_add(1, Ordering::Relaxed) + 1;
                    let flight = self.start(key.to_owned(), load());
                    flights.insert(key.to_owned(), (id, flight.clone()));
                    (id, flight, true)
                }
            }
        };
        Call {
            result: flight.await,
            leader,
            flight: id,
        }
    }

    /// Spawns the load and returns the shared handle to its result.
    fn start(
        &self,
        key: String,
        load: impl Future<Output = Result<V, E>> + Send + 'static,
    ) -> Flight<V, E> {
        let forget = Forget {
            flights: Arc::clone(&self.flights),
            key,
        };
        let task = tokio::spawn(async move {
            let result = load.await;
            // Forget the flight only once the result exists, so nobody can join a flight
            // that has already ended. A caller arriving after this finds no flight, starts
            // its own, and finds the value in the cache when it re-checks (see `group.rs`).
            drop(forget);
            result
        });
        async move {
            match task.await {
                Ok(result) => result,
                Err(join_error) => Err(E::from_panic(format!("the load failed: {join_error}"))),
            }
        }
        .boxed()
        .shared()
    }

    /// How many loads are in flight right now (for tests and stats).
    pub fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Removes a key's flight when dropped: when its load finishes, and also when the load
/// panics, so a panic does not leave a dead flight behind for every later caller to join.
struct Forget<V, E> {
    flights: Arc<Mutex<Flights<V, E>>>,
    key: String,
}

impl<V, E> Drop for Forget<V, E> {
    fn drop(&mut self) {
        // This lock waits until `work` has inserted the entry (it holds the lock while
        // spawning the load), so the entry removed is always this flight's own.
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        flights.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::sync::Notify;

    #[derive(Clone, Debug, PartialEq)]
    struct Failed(String);
    impl FromPanic for Failed {
        fn from_panic(message: String) -> Self {
            Failed(message)
        }
    }

    type TestGroup = Group<String, Failed>;

    /// Starts `n` callers of `work("k")` whose load waits for `gate`, counting loads in `loads`.
    fn spawn_callers(
        group: &Arc<TestGroup>,
        n: usize,
        gate: &Arc<Notify>,
        loads: &Arc<AtomicUsize>,
    ) -> Vec<tokio::task::JoinHandle<Call<String, Failed>>> {
        (0..n)
            .map(|_| {
                let (group, gate, loads) = (group.clone(), gate.clone(), loads.clone());
                tokio::spawn(async move {
                    group
                        .work("k", move || async move {
                            loads.fetch_add(1, Ordering::SeqCst);
                            gate.notified().await;
                            Ok("v".to_string())
                        })
                        .await
                })
            })
            .collect()
    }

    /// Yields until the group has a flight for "k", without sleeping.
    async fn until_in_flight(group: &TestGroup) {
        while group.in_flight() == 0 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_load() {
        let group = Arc::new(TestGroup::default());
        let (gate, loads) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
        let callers = spawn_callers(&group, 100, &gate, &loads);
        until_in_flight(&group).await;
        // Let every caller reach the flight before the load may finish.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        let mut leaders = 0;
        for caller in callers {
            let call = caller.await.unwrap();
            assert_eq!(call.result, Ok("v".to_string()));
            leaders += usize::from(call.leader);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1, "one load for 100 callers");
        assert_eq!(leaders, 1);
        assert_eq!(group.in_flight(), 0, "a finished flight is forgotten");
    }

    #[tokio::test]
    async fn a_cancelled_leader_does_not_strand_the_others() {
        let group = Arc::new(TestGroup::default());
        let (gate, loads) = (Arc::new(Notify::new()), Arc::new(AtomicUsize::new(0)));
        let mut callers = spawn_callers(&group, 1, &gate, &loads);
        until_in_flight(&group).await;
        let leader = callers.remove(0);
        let followers = spawn_callers(&group, 5, &gate, &loads);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        leader.abort(); // the leader's client hung up
        assert!(leader.await.unwrap_err().is_cancelled());
        gate.notify_one();
        for follower in followers {
            let call = follower.await.unwrap();
            assert_eq!(call.result, Ok("v".to_string()));
            assert!(!call.leader);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_error_reaches_every_waiter_and_the_next_call_loads_again() {
        let group = Arc::new(TestGroup::default());
        let gate = Arc::new(Notify::new());
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let (group, gate) = (group.clone(), gate.clone());
                tokio::spawn(async move {
                    group
                        .work("k", move || async move {
                            gate.notified().await;
                            Err::<String, _>(Failed("dbserver down".into()))
                        })
                        .await
                        .result
                })
            })
            .collect();
        until_in_flight(&group).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for waiter in waiters {
            assert_eq!(waiter.await.unwrap(), Err(Failed("dbserver down".into())));
        }
        let again = group.work("k", || async { Ok("fresh".to_string()) }).await;
        assert_eq!(again.result, Ok("fresh".to_string()));
        assert!(again.leader, "the failed flight was not remembered");
    }

    #[tokio::test]
    async fn a_panicking_load_becomes_an_error_for_everyone() {
        let group = TestGroup::default();
        let call = group.work("k", || async { panic!("boom") }).await;
        assert!(matches!(call.result, Err(Failed(m)) if m.contains("panic")));
        assert_eq!(group.in_flight(), 0, "a panicked load is forgotten too");
        let again = group.work("k", || async { Ok("v".to_string()) }).await;
        assert_eq!(again.result, Ok("v".to_string()));
    }
}
