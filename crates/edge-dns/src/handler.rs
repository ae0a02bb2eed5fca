//! Answers to one request, shared by the UDP loop and hickory's TCP server: zone answers
//! from the index, other names forwarded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::{option, slice, vec};

use hickory_proto::op::{Edns, Header, HeaderCounts, Message, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record};
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{
    MessageRequest, MessageResponse, MessageResponseBuilder, Queries,
};
use tokio::sync::Semaphore;

use crate::acl::ForwardAcl;
use crate::forward::Forwarder;
use crate::index::{Index, Lookup};

/// The largest UDP payload we announce and honour: the common safe size without fragmentation.
const MAX_UDP_PAYLOAD: u16 = 1232;
/// Forwarded queries in flight at once; past that, SERVFAIL rather than unbounded tasks.
const MAX_FORWARDS: usize = 1024;

/// State shared by every request: the current zone and the upstreams.
#[derive(Debug)]
pub(crate) struct Shared {
    index: RwLock<Arc<Index>>,
    /// Bumped after every `index` change, so readers that keep a copy notice without a lock.
    generation: AtomicU64,
    pub(crate) forwarder: Forwarder,
    pub(crate) forwards: Arc<Semaphore>,
    pub(crate) acl: ForwardAcl,
}

impl Shared {
    pub(crate) fn new(index: Index, forwarder: Forwarder, acl: ForwardAcl) -> Self {
        Self {
            acl,
            index: RwLock::new(Arc::new(index)),
            generation: AtomicU64::new(0),
            forwarder,
            forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
        }
    }

    /// The zone as of now; the lock is held only to clone the `Arc`.
    pub(crate) fn index(&self) -> Arc<Index> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace(&self, index: Index) {
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(index);
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// One concrete response type for every answer, so the paths can share it.
pub(crate) type Response<'q, 'a> = MessageResponse<
    'q,
    'a,
    vec::IntoIter<&'a Record>,
    vec::IntoIter<&'a Record>,
    option::IntoIter<&'a Record>,
    slice::Iter<'a, Record>,
>;

pub(crate) enum Plan<'q, 'a> {
    Respond(Response<'q, 'a>),
    Forward,
}

/// The EDNS record of a response: present only when the query had one.
pub(crate) fn response_edns(request: &MessageRequest) -> Option<Edns> {
    request.edns.as_ref().map(|q| {
        let mut e = Edns::new();
        e.set_max_payload(q.max_payload().clamp(512, MAX_UDP_PAYLOAD));
        e
    })
}

/// The largest UDP answer the client takes.
pub(crate) fn udp_limit(edns: Option<&Edns>) -> u16 {
    edns.map_or(512, Edns::max_payload)
}

fn metadata(request: &Metadata) -> Metadata {
    let mut m = Metadata::response_from_request(request);
    m.recursion_available = true;
    m
}

pub(crate) fn error<'q, 'a>(
    queries: &'q Queries,
    edns: Option<&'q Edns>,
    request: &Metadata,
    code: ResponseCode,
) -> Response<'q, 'a> {
    let mut m = metadata(request);
    m.response_code = code;
    MessageResponseBuilder::new(queries, edns).build(m, Vec::new(), Vec::new(), None, [].iter())
}

/// What to do with `request`: answer it from the zone, forward it (when
/// its client `may_forward`), or refuse it.
pub(crate) fn plan<'q, 'a>(
    request: &'q MessageRequest,
    edns: Option<&'q Edns>,
    index: &'a Index,
    src: std::net::IpAddr,
    may_forward: bool,
) -> Plan<'q, 'a> {
    let err = |code| Plan::Respond(error(&request.queries, edns, &request.metadata, code));
    let query = match request.queries.queries() {
        [q] if request.metadata.op_code == OpCode::Query => q,
        [_] => return err(ResponseCode::NotImp),
        _ => return err(ResponseCode::FormErr),
    };
    let lookup = index.lookup_from(query.name(), query.query_type(), src);
    let in_class = matches!(query.query_class(), DNSClass::IN | DNSClass::ANY);
    let mut m = metadata(&request.metadata);
    m.authoritative = true;
    let builder = MessageResponseBuilder::new(&request.queries, edns);
    match lookup {
        Lookup::Outside if may_forward => Plan::Forward,
        Lookup::Outside => err(ResponseCode::Refused),
        _ if !in_class => err(ResponseCode::Refused),
        Lookup::NxDomain => {
            m.response_code = ResponseCode::NXDomain;
            Plan::Respond(builder.build(m, Vec::new(), Vec::new(), Some(index.soa()), [].iter()))
        }
        Lookup::Found {
            answers,
            additionals,
        } => {
            let soa = answers.is_empty().then(|| index.soa());
            Plan::Respond(builder.build(m, answers, Vec::new(), soa, additionals.iter()))
        }
    }
}

/// The upstream's answer to `request` as our response, its rcode and records unchanged.
pub(crate) fn relay<'q, 'a>(
    request: &'q MessageRequest,
    edns: Option<&'q Edns>,
    upstream: &'a Message,
) -> Response<'q, 'a> {
    let mut m = metadata(&request.metadata);
    m.response_code = upstream.metadata.response_code;
    m.authentic_data = upstream.metadata.authentic_data;
    MessageResponseBuilder::new(&request.queries, edns).build(
        m,
        upstream.answers.iter().collect::<Vec<_>>(),
        upstream.authorities.iter().collect::<Vec<_>>(),
        None,
        upstream.additionals.iter(),
    )
}

fn failed(request: &Request, code: ResponseCode) -> ResponseInfo {
    let mut metadata = metadata(&request.metadata);
    metadata.response_code = code;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

/// The handler hickory's server calls (TCP).
pub(crate) struct Handler {
    pub(crate) shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let edns = response_edns(request);
        let index = self.shared.index();
        let may_forward = self.shared.acl.may_forward(request.src().ip());
        let src = request.src().ip();
        let sent = match plan(request, edns.as_ref(), &index, src, may_forward) {
            Plan::Respond(msg) => response.send_response(msg).await,
            Plan::Forward => {
                let upstream = match self.shared.forwarder.forward(request.as_slice()).await {
                    Ok(bytes) => Message::from_vec(&bytes).map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                match upstream {
                    Ok(up) => {
                        response
                            .send_response(relay(request, edns.as_ref(), &up))
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "forward dns query");
                        let msg = error(
                            &request.queries,
                            edns.as_ref(),
                            &request.metadata,
                            ResponseCode::ServFail,
                        );
                        response.send_response(msg).await
                    }
                }
            }
        };
        sent.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "send dns answer");
            failed(request, ResponseCode::ServFail)
        })
    }
}
