//! TCP forwarding: pick a backend (one more on connect failure), optionally
//! announce the client with a PROXY protocol v2 header, then copy both ways
//! with half-close passed through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::pool::{ActiveGuard, ServicePool};

/// Per-direction copy buffer; larger than tokio's 8 KiB default so bulk
/// transfers take fewer syscalls.
const COPY_BUF: usize = 32 * 1024;

const PP2_SIGNATURE: [u8; 12] = [
    0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
];

/// PROXY protocol v2 header (PROXY command, TCP stream) for a connection
/// from `src` to `dst`; mixed families are sent as IPv6.
pub(crate) fn proxy_v2_header(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&PP2_SIGNATURE);
    out.push(0x21);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&v6(d).octets());
        }
    }
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out
}

/// A connected backend stream, counted as active until the guard drops.
async fn connect(pool: &ServicePool, timeout: Duration) -> Option<(TcpStream, ActiveGuard)> {
    pool.arrived();
    let state = match pool.ready(timeout).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(service = %pool.name, "no serving instance: {e:?}");
            return None;
        }
    };
    let mut failed = None;
    for _ in 0..2 {
        let backend = pool.next_try(&state, failed.as_ref()).await?;
        let guard = backend.track();
        let start = Instant::now();
        match backend.connect(timeout).await {
            Ok(stream) => {
                backend.observe(start.elapsed());
                return Some((stream, guard));
            }
            Err(e) => {
                tracing::debug!(service = %pool.name, backend = %backend.addr, "connect failed: {e}");
                backend.penalize(timeout);
                failed = Some(backend);
            }
        }
    }
    None
}

pub(crate) async fn forward<S>(
    mut client: S,
    peer: SocketAddr,
    local: SocketAddr,
    pool: Arc<ServicePool>,
    proxy_protocol: bool,
    timeout: Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some((mut backend, _guard)) = connect(&pool, timeout).await else {
        tracing::debug!(service = %pool.name, %peer, "no backend reachable; closing");
        return;
    };
    if proxy_protocol
        && backend
            .write_all(&proxy_v2_header(peer, local))
            .await
            .is_err()
    {
        return;
    }
    if let Err(e) =
        tokio::io::copy_bidirectional_with_sizes(&mut client, &mut backend, COPY_BUF, COPY_BUF)
            .await
    {
        tracing::trace!(service = %pool.name, %peer, "tcp stream ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn v4_header_layout() {
        let h = proxy_v2_header(sa("10.1.2.3:4000"), sa("127.0.0.1:80"));
        assert_eq!(&h[..12], &PP2_SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0, 12]);
        assert_eq!(&h[16..20], &[10, 1, 2, 3]);
        assert_eq!(&h[20..24], &[127, 0, 0, 1]);
        assert_eq!(&h[24..28], &[0x0f, 0xa0, 0, 80]);
    }

    #[test]
    fn mixed_families_use_v6() {
        let h = proxy_v2_header(sa("10.1.2.3:4000"), sa("[::1]:80"));
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(
            &h[16..32],
            &std::net::Ipv4Addr::new(10, 1, 2, 3)
                .to_ipv6_mapped()
                .octets()
        );
    }
}
