//! The event stream's recent history: a bounded ring in memory, filled
//! after each group commit (so it holds only durable changes), as Nomad's
//! event buffer. Events were once rows of their own, each carrying the
//! object a second time: half of every commit's bytes, for a history no
//! reader needs across a restart.

use crate::{Event, StoreError};
use std::collections::VecDeque;
use std::sync::Arc;

/// One committed change; its payload is the JSON its table row holds,
/// shared with nothing else once the row is written.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub index: u64,
    pub topic: &'static str,
    pub kind: &'static str,
    pub key: String,
    pub payload: Option<Arc<str>>,
    pub time: i64,
}

/// The newest events, oldest first, at most `cap` of them.
#[derive(Debug)]
pub(crate) struct Ring {
    events: VecDeque<Stored>,
    cap: usize,
}

impl Ring {
    pub fn new(cap: usize) -> Ring {
        Ring {
            events: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Appends a group's events; indexes only grow, so the ring stays in
    /// index order.
    pub fn extend(&mut self, events: impl IntoIterator<Item = Stored>) {
        for e in events {
            if self.events.len() == self.cap {
                self.events.pop_front();
            }
            self.events.push_back(e);
        }
    }

    /// Events with index > `after`, oldest first, at most `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Vec<Stored> {
        let start = self.events.partition_point(|e| e.index <= after);
        self.events.range(start..).take(limit).cloned().collect()
    }

    /// Drops events older than `cut` (Unix ms), then all but the newest
    /// `keep`; returns how many went.
    pub fn gc(&mut self, cut: i64, keep: usize) -> usize {
        let before = self.events.len();
        let old = self.events.partition_point(|e| e.time < cut);
        self.events.drain(..old);
        let over = self.events.len().saturating_sub(keep);
        self.events.drain(..over);
        before - self.events.len()
    }
}

impl Stored {
    /// The event as the stream sends it, its payload parsed.
    pub fn decode(self) -> Result<Event, StoreError> {
        let payload = match &self.payload {
            Some(p) => serde_json::from_str(p).map_err(|e| StoreError::Decode {
                kind: "event",
                key: format!("{}/{}", self.index, self.key),
                source: Arc::new(e),
            })?,
            None => serde_json::Value::Null,
        };
        Ok(Event {
            index: self.index,
            topic: self.topic.to_string(),
            kind: self.kind.to_string(),
            key: self.key,
            payload,
            time: self.time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, time: i64) -> Stored {
        Stored {
            index,
            topic: "job",
            kind: "upserted",
            key: format!("j{index}"),
            payload: Some(Arc::from("{}")),
            time,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_in_index_order() {
        let mut r = Ring::new(3);
        r.extend([ev(1, 10), ev(2, 20), ev(2, 20), ev(4, 40)]);
        let idx = |v: Vec<Stored>| v.into_iter().map(|e| e.index).collect::<Vec<_>>();
        assert_eq!(idx(r.after(0, 10)), [2, 2, 4]);
        assert_eq!(idx(r.after(2, 10)), [4]);
        assert_eq!(idx(r.after(0, 1)), [2]);
        assert!(r.after(4, 10).is_empty());
        assert_eq!(r.gc(25, 10), 2, "older than the cut");
        assert_eq!(r.gc(0, 0), 1, "past keep");
        assert!(r.after(0, 10).is_empty());
    }

    #[test]
    fn a_stored_event_decodes_its_payload() {
        let e = ev(7, 1).decode().unwrap();
        assert_eq!(
            (e.index, e.topic.as_str(), e.key.as_str()),
            (7, "job", "j7")
        );
        assert_eq!(e.payload, serde_json::json!({}));
        let bad = Stored {
            payload: Some(Arc::from("{")),
            ..ev(8, 1)
        };
        let err = bad.decode().unwrap_err().to_string();
        assert!(err.contains("8/j8"), "{err}");
    }
}
