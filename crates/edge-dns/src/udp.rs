//! The UDP side: receive loops that answer zone names inline, without a task or a
//! channel per query, and hand only forwarded names to tasks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::{Header, Message, MessageType, ResponseCode};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::Queries;
use tokio::net::UdpSocket;

use crate::handler::{Plan, Response, Shared, error, plan, response_edns, udp_limit};
use crate::index::Index;

/// Room for any UDP datagram.
const RECV_BUF: usize = 65535;
/// Cached answers per loop; the cache starts over when full, so junk names cannot grow it.
const CACHE_MAX: usize = 4096;
const ID_LEN: usize = 2;

/// One receive loop. A zone answer is a pure function of the query's bytes past its id
/// and of the zone, so each loop caches encoded answers for the zone it holds.
struct Loop {
    sock: Arc<UdpSocket>,
    shared: Arc<Shared>,
    index: Arc<Index>,
    generation: u64,
    cache: HashMap<Box<[u8]>, Box<[u8]>>,
}

pub(crate) async fn serve(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let mut lp = Loop {
        generation: shared.generation(),
        index: shared.index(),
        sock,
        shared,
        cache: HashMap::new(),
    };
    let mut buf = vec![0u8; RECV_BUF];
    let mut out = Vec::with_capacity(1232);
    loop {
        let (n, src) = match lp.sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here; they concern one peer only.
                tracing::debug!(error = %e, "dns udp receive");
                continue;
            }
        };
        if src.port() == 0 || src.ip().is_unspecified() {
            continue;
        }
        out.clear();
        if lp.answer(&buf[..n], src, &mut out)
            && let Err(e) = lp.sock.send_to(&out, src).await
        {
            tracing::debug!(error = %e, %src, "dns udp send");
        }
    }
}

impl Loop {
    /// Writes the answer to `raw` into `out` and returns true, or returns false when
    /// there is nothing to send now (dropped, or forwarded by a task of its own).
    fn answer(&mut self, raw: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        let generation = self.shared.generation();
        if generation != self.generation {
            self.index = self.shared.index();
            self.generation = generation;
            self.cache.clear();
        }
        // A caller on a named network may get answers of its own: not
        // from the cache, nor into it.
        let shared_answers = self.index.network_of(src.ip()).is_none();
        if shared_answers
            && raw.len() > ID_LEN
            && let Some(cached) = self.cache.get(&raw[ID_LEN..])
        {
            out.extend_from_slice(&raw[..ID_LEN]);
            out.extend_from_slice(cached);
            return true;
        }
        if !self.handle(raw, src, out) {
            return false;
        }
        // A client the forwarder refuses gets answers others must not
        // see from the cache.
        if shared_answers && out.len() > ID_LEN && self.shared.acl.may_forward(src.ip()) {
            if self.cache.len() >= CACHE_MAX {
                self.cache.clear();
            }
            self.cache
                .insert(raw[ID_LEN..].into(), out[ID_LEN..].into());
        }
        true
    }

    fn handle(&self, raw: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> bool {
        // Without a readable header there is no id to answer to; answers are never answered.
        let Ok(header) = Header::read(&mut BinDecoder::new(raw)) else {
            return false;
        };
        if header.metadata.message_type == MessageType::Response {
            return false;
        }
        let request = match Request::from_bytes(raw.to_vec(), src, Protocol::Udp) {
            Ok(r) => r,
            Err(_) => {
                // No question could be read: answer with none.
                let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return false;
                };
                return encode(
                    error(&queries, None, &header.metadata, ResponseCode::FormErr),
                    out,
                );
            }
        };
        let edns = response_edns(&request);
        let may_forward = self.shared.acl.may_forward(src.ip());
        match plan(&request, edns.as_ref(), &self.index, src.ip(), may_forward) {
            Plan::Respond(msg) => encode(msg, out),
            Plan::Forward => {
                forward(request, self.sock.clone(), self.shared.clone());
                false
            }
        }
    }
}

fn encode(msg: Response<'_, '_>, out: &mut Vec<u8>) -> bool {
    let mut enc = BinEncoder::new(out);
    // Records past the client's limit are left out and the TC bit set, so it retries over TCP.
    enc.set_max_size(udp_limit(msg.edns()));
    match msg.destructive_emit(&mut enc) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "encode dns answer");
            false
        }
    }
}

fn forward(request: Request, sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let edns = response_edns(&request);
    let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
        let mut out = Vec::new();
        let msg = error(
            &request.queries,
            edns.as_ref(),
            &request.metadata,
            ResponseCode::ServFail,
        );
        if encode(msg, &mut out) {
            // Best effort: a full socket buffer means the client retries anyway.
            let _ = sock.try_send_to(&out, request.src());
        }
        return;
    };
    tokio::spawn(async move {
        let answer = match shared.forwarder.forward(request.as_slice()).await {
            Ok(bytes) => fit(bytes, udp_limit(edns.as_ref())),
            Err(e) => {
                tracing::debug!(error = %e, "forward dns query");
                None
            }
        };
        let answer = answer.or_else(|| {
            let mut out = Vec::new();
            let msg = error(
                &request.queries,
                edns.as_ref(),
                &request.metadata,
                ResponseCode::ServFail,
            );
            encode(msg, &mut out).then_some(out)
        });
        if let Some(bytes) = answer
            && let Err(e) = sock.send_to(&bytes, request.src()).await
        {
            tracing::debug!(error = %e, "dns udp send");
        }
        drop(permit);
    });
}

/// The upstream answer as is when it fits the client's UDP limit; otherwise its header
/// and question with TC set (an answer fetched over TCP can be larger than the client takes).
fn fit(bytes: Vec<u8>, limit: u16) -> Option<Vec<u8>> {
    if bytes.len() <= usize::from(limit) {
        return Some(bytes);
    }
    let msg = Message::from_vec(&bytes).ok()?;
    let mut out = Vec::new();
    msg.truncate().emit(&mut BinEncoder::new(&mut out)).ok()?;
    Some(out)
}
