//! The agent's tunnel: one outbound connection to the server, over the same
//! (mutual) TLS as every other call, through which the server reaches the
//! agent even when it cannot connect to it (NAT, a one-way firewall). The
//! agent asks `GET /v1/node/{id}/tunnel` with `Upgrade: edge-tunnel`; after
//! 101 the server is an HTTP/2 client on that stream and the agent an
//! HTTP/2 server of its own routes (`http.rs`). Both ends ping, so a dead
//! peer is noticed within a keepalive timeout; the agent then dials again
//! with backoff.

use axum::Router;
use axum::body::Body;
use edge_api::Client;
use edge_api::exec::TUNNEL_PROTOCOL;
use hyper::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;

/// How often an idle tunnel is pinged, and how long a ping may go
/// unanswered before the tunnel counts as dead.
pub const KEEPALIVE: Duration = Duration::from_secs(10);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A tunnel that stayed up this long was healthy: after it drops, the next
/// dial starts from the shortest delay again.
const STABLE: Duration = Duration::from_secs(30);

/// Exponential delays between dials, from `base` doubling up to `max`.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        Backoff {
            base,
            max,
            next: base,
        }
    }

    /// The delay before the next dial, plus up to a quarter of it at
    /// random, so agents cut off together do not all dial at once.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let quarter = (d / 4).as_millis() as u64;
        let jitter = if quarter == 0 {
            0
        } else {
            (uuid::Uuid::new_v4().as_u128() % u128::from(quarter)) as u64
        };
        d + Duration::from_millis(jitter)
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.base;
    }
}

/// Keeps a tunnel open for ever: `session` dials and serves one tunnel,
/// answering how long it was up, or why it could not dial.
pub(crate) async fn keep_open<F, Fut>(mut session: F, mut backoff: Backoff)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Duration, String>>,
{
    loop {
        match session().await {
            Ok(up) => {
                if up >= STABLE {
                    backoff.reset();
                }
                tracing::info!(up_ms = up.as_millis() as u64, "tunnel to the server closed");
            }
            Err(e) => tracing::debug!(error = %e, "cannot open the tunnel to the server"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Dials one tunnel and serves `app` over it until it closes.
pub(crate) async fn session(client: &Client, node: &str, app: Router) -> Result<Duration, String> {
    let no_query: &[(&str, &str)] = &[];
    let up = client
        .upgrade(
            &format!("/v1/node/{node}/tunnel"),
            TUNNEL_PROTOCOL,
            no_query,
        )
        .await
        .map_err(|e| e.to_string())?;
    let opened = Instant::now();
    tracing::info!("tunnel to the server open");
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        app.clone().oneshot(req.map(Body::new))
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(KEEPALIVE))
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .serve_connection(TokioIo::new(up), svc);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "tunnel ended");
    }
    Ok(opened.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test(start_paused = true)]
    async fn dials_again_with_growing_delays_and_starts_over_after_a_stable_tunnel() {
        let t0 = Instant::now();
        let dials: Arc<Mutex<Vec<Duration>>> = Arc::default();
        let log = dials.clone();
        let run = tokio::spawn(keep_open(
            move || {
                let log = log.clone();
                async move {
                    let n = {
                        let mut l = log.lock().unwrap();
                        l.push(t0.elapsed());
                        l.len()
                    };
                    if n == 4 {
                        // The fourth dial holds a tunnel for a minute.
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        Ok(Duration::from_secs(60))
                    } else {
                        Err("refused".to_string())
                    }
                }
            },
            Backoff::new(Duration::from_secs(1), Duration::from_secs(4)),
        ));
        tokio::time::sleep(Duration::from_secs(200)).await;
        run.abort();
        let d = dials.lock().unwrap().clone();
        let gaps: Vec<Duration> = d.windows(2).map(|w| w[1] - w[0]).collect();
        // 1 s, 2 s, 4 s, then a minute up and 1 s, then 2 s, 4 s, 4 s; each
        // delay plus up to a quarter of it.
        let want_ms = [
            (1000, 1250),
            (2000, 2500),
            (4000, 5000),
            (61000, 61250),
            (2000, 2500),
            (4000, 5000),
            (4000, 5000),
        ];
        assert!(gaps.len() >= want_ms.len(), "{gaps:?}");
        for (i, (gap, (lo, hi))) in gaps.iter().zip(want_ms).enumerate() {
            let ms = gap.as_millis();
            assert!(ms >= lo && ms <= hi, "gap {i} was {gap:?}: {gaps:?}");
        }
    }
}
