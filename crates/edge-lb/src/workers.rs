//! Data-plane threads: each runs a current-thread runtime that accepts and
//! serves connections of its own, so a proxied request never changes thread
//! and never queues behind the agent's control-plane work.

use std::cell::Cell;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::error::LbError;

/// How many task polls a worker makes before it looks for new IO events.
/// Every proxied HTTP request takes two polls (request in, response back),
/// so with tokio's default of 61 a worker serving more than ~30 busy
/// connections checks for IO in the middle of a round and newly ready
/// connections overtake older ones; measured on `benches/lb.sh` at 64
/// connections, that widened p90 latency from ~0.97 ms to ~1.26 ms.
const EVENT_INTERVAL: u32 = 256;

/// How long a stopping worker lets connections in flight finish.
const DRAIN: Duration = Duration::from_secs(30);

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Which worker the calling thread is (0 outside the workers); keys state
/// that is tied to a worker's IO driver, such as idle backend connections.
pub(crate) fn index() -> usize {
    INDEX.with(Cell::get)
}

pub(crate) struct Workers {
    handles: Vec<Handle>,
    stop: watch::Sender<bool>,
}

impl Workers {
    pub(crate) fn start(n: usize) -> Result<Self, LbError> {
        let (stop, stop_rx) = watch::channel(false);
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        for i in 0..n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .event_interval(EVENT_INTERVAL)
                .build()
                .map_err(|source| LbError::Workers { source })?;
            handles.push(rt.handle().clone());
            let mut stop_rx = stop_rx.clone();
            std::thread::Builder::new()
                .name(format!("edge-lb-{i}"))
                .spawn(move || {
                    INDEX.with(|c| c.set(i));
                    rt.block_on(async {
                        let _ = stop_rx.wait_for(|s| *s).await;
                        drain().await;
                    });
                })
                .map_err(|source| LbError::Workers { source })?;
        }
        Ok(Workers { handles, stop })
    }

    pub(crate) fn handles(&self) -> &[Handle] {
        &self.handles
    }

    pub(crate) fn len(&self) -> usize {
        self.handles.len()
    }
}

/// Waits for the worker's other tasks (connections in flight, listeners
/// still closing) to end, up to `DRAIN`.
async fn drain() {
    let deadline = Instant::now() + DRAIN;
    let metrics = Handle::current().metrics();
    while metrics.num_alive_tasks() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Drop for Workers {
    /// Workers stop once their connections have drained; nothing waits for
    /// them, as a closed listener already answers nobody new.
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
