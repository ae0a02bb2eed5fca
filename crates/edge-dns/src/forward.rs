//! Forwarding of names outside the zone: the client's query bytes go to an upstream
//! resolver unchanged and its answer comes back unchanged, rcode included.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{Instant, timeout};

use crate::DnsError;

/// How long one upstream gets before the next one is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
const HEADER_LEN: usize = 12;

#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    upstreams: Vec<SocketAddr>,
}

impl Forwarder {
    /// `configured` empty means the host's resolvers from /etc/resolv.conf, less
    /// `own` (forwarding to ourselves would loop).
    pub(crate) fn new(configured: Vec<SocketAddr>, own: &[SocketAddr]) -> Self {
        let upstreams = if configured.is_empty() {
            system_upstreams(own)
        } else {
            configured
        };
        if upstreams.is_empty() {
            tracing::warn!("no upstream resolver: names outside the zone get SERVFAIL");
        }
        Self { upstreams }
    }

    pub(crate) fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// Sends `query` to each upstream in turn until one answers; a truncated UDP
    /// answer is asked again over TCP.
    pub(crate) async fn forward(&self, query: &[u8]) -> Result<Vec<u8>, DnsError> {
        let mut last = DnsError::NoUpstream;
        for &upstream in &self.upstreams {
            let answer = match udp_exchange(upstream, query).await {
                Ok(a) if truncated(&a) => tcp_exchange(upstream, query).await,
                other => other,
            };
            match answer {
                Ok(a) => return Ok(a),
                Err(e) => {
                    tracing::debug!(error = %e, "upstream failed, trying the next");
                    last = e;
                }
            }
        }
        Err(last)
    }
}

fn system_upstreams(own: &[SocketAddr]) -> Vec<SocketAddr> {
    let conf = match hickory_resolver::system_conf::read_system_conf() {
        Ok((conf, _)) => conf,
        Err(e) => {
            tracing::warn!(error = %e, "read /etc/resolv.conf");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for ns in conf.name_servers() {
        for conn in &ns.connections {
            let addr = SocketAddr::new(ns.ip, conn.port);
            if !is_own(addr, own) && !out.contains(&addr) {
                out.push(addr);
            }
        }
    }
    out
}

/// Whether `addr` reaches one of our own sockets (a wildcard listener owns every local address).
fn is_own(addr: SocketAddr, own: &[SocketAddr]) -> bool {
    own.iter().any(|o| {
        o.port() == addr.port()
            && (o.ip() == addr.ip()
                || (o.ip().is_unspecified()
                    && (addr.ip().is_loopback() || addr.ip().is_unspecified())))
    })
}

fn truncated(msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && msg[2] & 0x02 != 0
}

/// A response to `query`: same id, QR bit set.
fn answers(query: &[u8], msg: &[u8]) -> bool {
    msg.len() >= HEADER_LEN && query.len() >= 2 && msg[..2] == query[..2] && msg[2] & 0x80 != 0
}

fn unspecified_for(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

fn upstream_err(upstream: SocketAddr, reason: impl ToString) -> DnsError {
    DnsError::Upstream {
        upstream,
        reason: reason.to_string(),
    }
}

async fn udp_exchange(upstream: SocketAddr, query: &[u8]) -> Result<Vec<u8>, DnsError> {
    // A fresh socket per query gives a random source port, which with the id makes
    // spoofed answers hard to land.
    let sock = UdpSocket::bind(unspecified_for(upstream))
        .await
        .map_err(|e| upstream_err(upstream, e))?;
    sock.connect(upstream)
        .await
        .map_err(|e| upstream_err(upstream, e))?;
    sock.send(query)
        .await
        .map_err(|e| upstream_err(upstream, e))?;
    let deadline = Instant::now() + UPSTREAM_TIMEOUT;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| upstream_err(upstream, "udp timeout"))?
            .map_err(|e| upstream_err(upstream, e))?;
        if answers(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, query: &[u8]) -> Result<Vec<u8>, DnsError> {
    let len = u16::try_from(query.len()).map_err(|_| upstream_err(upstream, "query too long"))?;
    let exchange = async {
        let mut stream = TcpStream::connect(upstream).await?;
        let mut framed = Vec::with_capacity(query.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(query);
        stream.write_all(&framed).await?;
        let n = stream.read_u16().await?;
        let mut buf = vec![0u8; usize::from(n)];
        stream.read_exact(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    let buf = timeout(UPSTREAM_TIMEOUT, exchange)
        .await
        .map_err(|_| upstream_err(upstream, "tcp timeout"))?
        .map_err(|e| upstream_err(upstream, e))?;
    if !answers(query, &buf) {
        return Err(upstream_err(
            upstream,
            "tcp answer does not match the query",
        ));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_listener_is_not_an_upstream() {
        let own: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert!(is_own("127.0.0.1:53".parse().unwrap(), &[own]));
        assert!(!is_own("10.0.0.1:53".parse().unwrap(), &[own]));
        assert!(!is_own("127.0.0.1:5353".parse().unwrap(), &[own]));
        let own: SocketAddr = "127.0.0.53:53".parse().unwrap();
        assert!(is_own("127.0.0.53:53".parse().unwrap(), &[own]));
        assert!(!is_own("127.0.0.1:53".parse().unwrap(), &[own]));
    }

    #[test]
    fn short_or_foreign_messages_are_not_answers() {
        let q = [0x12, 0x34, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        let mut a = q;
        a[2] |= 0x80;
        assert!(answers(&q, &a));
        assert!(!answers(&q, &q));
        assert!(!answers(&q, &a[..5]));
        a[0] = 0;
        assert!(!answers(&q, &a));
    }
}
