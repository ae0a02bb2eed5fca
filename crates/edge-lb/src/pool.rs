//! A service's serving backends and how one is picked: round robin, least
//! connections, or power of two choices by EWMA latency. Backends keep their
//! counters and idle HTTP connections across catalog updates.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use edge_api::Activation;
use edge_spec::Balance;
use hyper::client::conn::http1::{Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::http::ReqBody;
use crate::workers;

/// The future that runs one backend connection's HTTP/1 state machine.
pub(crate) type BackendConn = Connection<TokioIo<TcpStream>, ReqBody>;

/// A keep-alive connection to a backend together with the future that drives
/// it. Whoever holds it polls it, so a proxied request is read, sent and
/// answered on the client connection's task with no hand-off to another.
/// It lives boxed: hyper's connection state is most of a kilobyte, and the
/// box is what moves between pool, request and response body.
pub(crate) struct Upstream {
    pub(crate) sender: SendRequest<ReqBody>,
    /// `None` once the connection has ended.
    pub(crate) conn: Option<BackendConn>,
}

/// Between tries to connect to a copy that has just started serving.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// Before connecting again to the only instance, after it refused or did
/// not answer: a copy that just started, or whose accept queue a burst of
/// released requests filled, is usually there moments later (HAProxy
/// retries the same server on a failed connect too).
const RETRY_ONLY_AFTER: Duration = Duration::from_millis(50);

/// Idle keep-alive connections kept per backend and worker; more are closed.
const MAX_IDLE: usize = 512;
/// Weight of the newest sample in the latency average.
const EWMA_ALPHA: f64 = 0.3;

pub(crate) struct Backend {
    pub(crate) addr: SocketAddr,
    pub(crate) alloc_id: String,
    /// An unpromoted canary of a deployment.
    pub(crate) canary: bool,
    active: AtomicUsize,
    /// Requests and connections sent to it, retries included.
    sent: AtomicU64,
    /// Microseconds as `f64` bits; 0 until measured, so new backends get tried.
    ewma_us: AtomicU64,
    /// One list per worker: a connection is registered with the IO driver
    /// of the worker that opened it and is only reused there.
    #[expect(
        clippy::vec_box,
        reason = "connections move in and out of the pool as boxes"
    )]
    idle: Box<[Mutex<Vec<Box<Upstream>>>]>,
}

impl Backend {
    fn new(b: ServingBackend, workers: usize) -> Self {
        Backend {
            addr: b.addr,
            alloc_id: b.alloc_id,
            canary: b.canary,
            active: AtomicUsize::new(0),
            sent: AtomicU64::new(0),
            ewma_us: AtomicU64::new(0f64.to_bits()),
            idle: (0..workers.max(1))
                .map(|_| Mutex::new(Vec::new()))
                .collect(),
        }
    }

    #[expect(
        clippy::vec_box,
        reason = "connections move in and out of the pool as boxes"
    )]
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Box<Upstream>>> {
        crate::lock(&self.idle[workers::index() % self.idle.len()])
    }

    /// Counts a connection or request as in flight until dropped.
    pub(crate) fn track(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(1, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    pub(crate) fn observe(&self, latency: Duration) {
        let sample = latency.as_secs_f64() * 1e6;
        let _ = self
            .ewma_us
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old == 0.0 {
                    sample
                } else {
                    old + EWMA_ALPHA * (sample - old)
                };
                Some(new.to_bits())
            });
    }

    /// A failed connect counts as the slowest possible answer, so power of
    /// two choices steers away from a backend that is down.
    pub(crate) fn penalize(&self, timeout: Duration) {
        self.observe(timeout);
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    fn cost(&self) -> f64 {
        f64::from_bits(self.ewma_us.load(Ordering::Relaxed)) * (self.active() + 1) as f64
    }

    pub(crate) async fn connect(&self, timeout: Duration) -> std::io::Result<TcpStream> {
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(self.addr)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {} timed out", self.addr),
                ));
            }
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// The most recently used live connection, so cold ones time out first.
    pub(crate) fn take_idle(&self) -> Option<Box<Upstream>> {
        let mut idle = self.idle();
        while let Some(up) = idle.pop() {
            if up.conn.is_some() && !up.sender.is_closed() {
                return Some(up);
            }
        }
        None
    }

    pub(crate) fn put_idle(&self, up: Box<Upstream>) {
        let mut idle = self.idle();
        if idle.len() < MAX_IDLE {
            idle.push(up);
        }
    }
}

pub(crate) struct ActiveGuard(Arc<Backend>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One serving instance as the catalog gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServingBackend {
    pub(crate) alloc_id: String,
    pub(crate) addr: SocketAddr,
    pub(crate) canary: bool,
}

/// What one catalog version says about a service.
pub(crate) struct PoolState {
    pub(crate) balance: Balance,
    pub(crate) backends: Vec<Arc<Backend>>,
    /// Percent of picks that go to canary backends while both kinds serve.
    pub(crate) canary_weight: Option<u32>,
}

/// Why a request found no copy to serve it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unavailable {
    /// The service has no serving copy and cannot be woken.
    NoInstance,
    /// The service is waking, and already holds as many requests as it may.
    QueueFull,
    /// The service did not start serving within its activation timeout.
    TimedOut,
}

/// What the load balancer saw of one service, for the autoscaler.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolLoad {
    /// Requests and connections in flight to its copies now.
    pub in_flight: usize,
    /// Requests and connections that arrived, since the pool was made.
    pub requests: u64,
    /// Requests held now because no copy serves.
    pub waiting: u32,
    /// Each serving copy's counts, by allocation id.
    pub instances: Vec<(String, InstanceCount)>,
}

/// What the load balancer sent to one copy of a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InstanceCount {
    /// Requests and connections in flight to it now.
    pub in_flight: usize,
    /// Requests and connections sent to it since it joined the pool,
    /// retries included.
    pub requests: u64,
}

pub(crate) struct ServicePool {
    pub(crate) name: String,
    workers: usize,
    state: RwLock<Arc<PoolState>>,
    next: AtomicUsize,
    rng: AtomicU64,
    /// Set while the service may be woken from zero.
    activation: Mutex<Option<Activation>>,
    requests: AtomicU64,
    waiting: AtomicU32,
    /// Rung when copies start serving, for the requests held.
    ready: tokio::sync::Notify,
    /// Rung when a request is held: the load report goes out at once.
    demand: Arc<tokio::sync::Notify>,
}

/// Counts a held request until dropped; the last one out rings the
/// demand bell again, so the report that says none is held goes out at once.
struct Held<'a>(&'a AtomicU32, &'a tokio::sync::Notify);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.0.fetch_sub(1, Ordering::Relaxed) == 1 {
            self.1.notify_one();
        }
    }
}

impl ServicePool {
    pub(crate) fn new(name: String, workers: usize, demand: Arc<tokio::sync::Notify>) -> Self {
        ServicePool {
            activation: Mutex::new(None),
            requests: AtomicU64::new(0),
            waiting: AtomicU32::new(0),
            ready: tokio::sync::Notify::new(),
            demand,
            name,
            workers,
            state: RwLock::new(Arc::new(PoolState {
                balance: Balance::RoundRobin,
                backends: Vec::new(),
                canary_weight: None,
            })),
            next: AtomicUsize::new(0),
            rng: AtomicU64::new(0x853c_49e6_748f_ea9b),
        }
    }

    pub(crate) fn state(&self) -> Arc<PoolState> {
        self.state.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the serving set; backends that stay keep their counters and
    /// pooled connections, removed ones live on only in connections in flight.
    pub(crate) fn update(
        &self,
        balance: Balance,
        instances: Vec<ServingBackend>,
        canary_weight: Option<u32>,
    ) {
        let old = self.state();
        let backends: Vec<Arc<Backend>> = instances
            .into_iter()
            .map(|b| {
                old.backends
                    .iter()
                    .find(|o| o.alloc_id == b.alloc_id && o.addr == b.addr && o.canary == b.canary)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Backend::new(b, self.workers)))
            })
            .collect();
        let serving = !backends.is_empty();
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(PoolState {
            balance,
            backends,
            canary_weight,
        });
        if serving {
            self.ready.notify_waiters();
        }
    }

    pub(crate) fn set_activation(&self, activation: Option<Activation>) {
        *crate::lock(&self.activation) = activation;
    }

    /// Counts a request or connection that arrived.
    pub(crate) fn arrived(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn load(&self) -> PoolLoad {
        let state = self.state();
        PoolLoad {
            in_flight: state.backends.iter().map(|b| b.active()).sum(),
            requests: self.requests.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            instances: state
                .backends
                .iter()
                .map(|b| {
                    let count = InstanceCount {
                        in_flight: b.active(),
                        requests: b.sent.load(Ordering::Relaxed),
                    };
                    (b.alloc_id.clone(), count)
                })
                .collect(),
        }
    }

    /// The serving copies; when there are none and the service may be
    /// woken from zero, holds the caller (at most `queue` at once, for
    /// at most the timeout) until a copy serves and accepts connections,
    /// as Knative's activator does.
    pub(crate) async fn ready(
        &self,
        connect_timeout: Duration,
    ) -> Result<Arc<PoolState>, Unavailable> {
        let state = self.state();
        if !state.backends.is_empty() {
            return Ok(state);
        }
        let Some(act) = *crate::lock(&self.activation) else {
            return Err(Unavailable::NoInstance);
        };
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= act.queue {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            return Err(Unavailable::QueueFull);
        }
        let _held = Held(&self.waiting, &self.demand);
        self.demand.notify_one();
        let deadline = tokio::time::Instant::now() + Duration::from_millis(act.timeout_ms);
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let state = self.state();
            if let Some(b) = state.backends.first().cloned() {
                // A copy counts as serving once running (and passing its
                // checks), which may be before it listens.
                let wait = connect_timeout
                    .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                if b.connect(wait).await.is_ok() {
                    return Ok(state);
                }
                if tokio::time::Instant::now() + PROBE_EVERY >= deadline {
                    return Err(Unavailable::TimedOut);
                }
                tokio::time::sleep(PROBE_EVERY).await;
                continue;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Unavailable::TimedOut);
            }
        }
    }

    /// splitmix64 over a shared counter: cheap, lock-free, good enough to
    /// spread choices.
    fn random(&self) -> u64 {
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The backend for the next try to connect: any, before a first
    /// failure; after `failed` could not be connected to, another one, or,
    /// when there is no other, `failed` itself once more after a short pause.
    pub(crate) async fn next_try(
        &self,
        state: &PoolState,
        failed: Option<&Arc<Backend>>,
    ) -> Option<Arc<Backend>> {
        let Some(failed) = failed else {
            return self.pick(state, None);
        };
        if let Some(b) = self.pick(state, Some(failed)) {
            return Some(b);
        }
        tokio::time::sleep(RETRY_ONLY_AFTER).await;
        Some(failed.clone())
    }

    /// A backend other than `exclude` (the one that just failed to connect),
    /// or `None` when there is no such backend.
    pub(crate) fn pick(
        &self,
        state: &PoolState,
        exclude: Option<&Arc<Backend>>,
    ) -> Option<Arc<Backend>> {
        let all = &state.backends;
        let n = all.len();
        if n == 0 {
            return None;
        }
        let open = |b: &Arc<Backend>| exclude.is_none_or(|x| !Arc::ptr_eq(x, b));
        // A weighted canary split draws the side first, then balances
        // within it; a side with nothing usable falls back to all.
        let side = state.canary_weight.and_then(|w| {
            let want = self.random() % 100 < u64::from(w);
            all.iter()
                .any(|b| open(b) && b.canary == want)
                .then_some(want)
        });
        let usable = |b: &Arc<Backend>| open(b) && side.is_none_or(|c| b.canary == c);
        match state.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| &all[(start + i) % n])
                    .find(|b| usable(b))
                    .cloned()
            }
            Balance::LeastConn => {
                // Starting at a rotating offset spreads ties instead of
                // piling them onto the first backend.
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n)
                    .map(|i| &all[(start + i) % n])
                    .filter(|b| usable(b))
                    .min_by_key(|b| b.active())
                    .cloned()
            }
            Balance::P2c => {
                let candidates: Vec<&Arc<Backend>> = all.iter().filter(|b| usable(b)).collect();
                match candidates.len() {
                    0 => None,
                    1 => Some(candidates[0].clone()),
                    m => {
                        let r = self.random();
                        let i = (r % m as u64) as usize;
                        let mut j = ((r >> 32) % (m as u64 - 1)) as usize;
                        if j >= i {
                            j += 1;
                        }
                        let (a, b) = (candidates[i], candidates[j]);
                        Some(if b.cost() < a.cost() { b } else { a }.clone())
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn backend(id: &str, port: u16, canary: bool) -> ServingBackend {
        ServingBackend {
            alloc_id: id.to_string(),
            addr: addr(port),
            canary,
        }
    }

    fn pool(balance: Balance, n: u16) -> ServicePool {
        let p = ServicePool::new("svc".into(), 1, Arc::default());
        p.update(
            balance,
            (0..n)
                .map(|i| backend(&format!("a{i}"), 1000 + i, false))
                .collect(),
            None,
        );
        p
    }

    #[test]
    fn a_canary_weight_splits_picks_between_canaries_and_the_rest() {
        for balance in [Balance::RoundRobin, Balance::LeastConn, Balance::P2c] {
            for weight in [0, 20, 50, 100] {
                let p = ServicePool::new("svc".into(), 1, Arc::default());
                p.update(
                    balance,
                    vec![
                        backend("old1", 1000, false),
                        backend("old2", 1001, false),
                        backend("old3", 1002, false),
                        backend("new", 1003, true),
                    ],
                    Some(weight),
                );
                let s = p.state();
                let n = 10_000;
                let canary = (0..n)
                    .filter(|_| p.pick(&s, None).is_some_and(|b| b.canary))
                    .count();
                let share = canary as f64 * 100.0 / n as f64;
                assert!(
                    (share - f64::from(weight)).abs() < 2.0,
                    "{balance:?} weight {weight}: {share:.1} %"
                );
            }
        }
        // Without a weight a canary is one instance among the others.
        let p = ServicePool::new("svc".into(), 1, Arc::default());
        p.update(
            Balance::RoundRobin,
            vec![backend("old", 1000, false), backend("new", 1001, true)],
            None,
        );
        let s = p.state();
        let canary = (0..100)
            .filter(|_| p.pick(&s, None).is_some_and(|b| b.canary))
            .count();
        assert_eq!(canary, 50);
        // The excluded side falls back to the other.
        let p = ServicePool::new("svc".into(), 1, Arc::default());
        p.update(
            Balance::RoundRobin,
            vec![backend("old", 1000, false), backend("new", 1001, true)],
            Some(100),
        );
        let s = p.state();
        let canary = s.backends[1].clone();
        assert_eq!(p.pick(&s, Some(&canary)).map(|b| b.addr.port()), Some(1000));
    }

    #[test]
    fn round_robin_cycles_and_skips_excluded() {
        let p = pool(Balance::RoundRobin, 3);
        let s = p.state();
        let ports: Vec<u16> = (0..6)
            .map(|_| p.pick(&s, None).map(|b| b.addr.port()).unwrap_or(0))
            .collect();
        assert_eq!(ports, [1000, 1001, 1002, 1000, 1001, 1002]);
        let first = s.backends[0].clone();
        for _ in 0..5 {
            let b = p.pick(&s, Some(&first)).map(|b| b.addr.port());
            assert_ne!(b, Some(1000));
        }
        let one = pool(Balance::RoundRobin, 1);
        let s1 = one.state();
        assert!(one.pick(&s1, Some(&s1.backends[0])).is_none());
    }

    #[test]
    fn least_conn_prefers_idle_backend() {
        let p = pool(Balance::LeastConn, 3);
        let s = p.state();
        let _g0 = s.backends[0].track();
        let _g1 = s.backends[1].track();
        let _g1b = s.backends[1].track();
        for _ in 0..4 {
            assert_eq!(p.pick(&s, None).map(|b| b.addr.port()), Some(1002));
        }
    }

    #[test]
    fn p2c_prefers_lower_latency() {
        let p = pool(Balance::P2c, 2);
        let s = p.state();
        s.backends[0].observe(Duration::from_millis(50));
        s.backends[1].observe(Duration::from_millis(1));
        for _ in 0..10 {
            assert_eq!(p.pick(&s, None).map(|b| b.addr.port()), Some(1001));
        }
    }

    #[test]
    fn update_keeps_surviving_backends() {
        let p = pool(Balance::RoundRobin, 2);
        let kept = p.state().backends[1].clone();
        let _g = kept.track();
        p.update(
            Balance::LeastConn,
            vec![backend("a1", 1001, false), backend("a9", 1009, false)],
            None,
        );
        let s = p.state();
        assert!(Arc::ptr_eq(&s.backends[0], &kept));
        assert_eq!(s.backends[0].active(), 1);
        assert_eq!(s.balance, Balance::LeastConn);
    }

    #[test]
    fn load_counts_each_copy_and_keeps_counts_across_updates() {
        let p = pool(Balance::RoundRobin, 2);
        let s = p.state();
        let g = s.backends[0].track();
        drop(s.backends[0].track());
        let _g1 = s.backends[1].track();
        p.arrived();
        let count = |in_flight, requests| InstanceCount {
            in_flight,
            requests,
        };
        let load = p.load();
        assert_eq!((load.in_flight, load.requests), (2, 1));
        assert_eq!(
            load.instances,
            [
                ("a0".to_string(), count(1, 2)),
                ("a1".to_string(), count(1, 1))
            ]
        );
        drop(g);
        p.update(Balance::RoundRobin, vec![backend("a0", 1000, false)], None);
        assert_eq!(p.load().instances, [("a0".to_string(), count(0, 2))]);
    }
}
