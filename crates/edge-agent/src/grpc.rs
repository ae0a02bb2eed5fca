//! gRPC health checks: one `grpc.health.v1.Health/Check` call over HTTP/2,
//! its two one-field messages encoded by hand. A generated client would
//! bring tonic and prost into the agent for a call whose request is a
//! string and whose answer is one enum.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::Arc;

const PATH: &str = "/grpc.health.v1.Health/Check";
/// Answers past this are not a health check's.
const MAX_ANSWER: usize = 64 * 1024;

/// Asks `address:port` whether `service` is serving: `Ok` when SERVING.
pub async fn check(address: &str, port: u16, service: &str, tls: bool) -> Result<(), String> {
    let target = format!("{address}:{port}");
    let fail = |e: &dyn std::fmt::Display| format!("grpc {target}: {e}");
    let tcp = tokio::net::TcpStream::connect(&target)
        .await
        .map_err(|e| fail(&e))?;
    let _ = tcp.set_nodelay(true);
    let answer = if tls {
        let name = ServerName::try_from(address.to_string()).map_err(|e| fail(&e))?;
        let conn = tokio_rustls::TlsConnector::from(tls_config().map_err(|e| fail(&e))?)
            .connect(name, tcp)
            .await
            .map_err(|e| fail(&e))?;
        call(TokioIo::new(conn), &target, service).await
    } else {
        call(TokioIo::new(tcp), &target, service).await
    };
    match answer.map_err(|e| fail(&e))? {
        1 => Ok(()),
        status => Err(format!(
            "grpc {target}: service {service:?} is {}",
            status_name(status)
        )),
    }
}

/// The call on a connection: the answer's status.
async fn call<I>(io: I, authority: &str, service: &str) -> Result<u64, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .map_err(|e| e.to_string())?;
    let conn = crate::AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let req = hyper::Request::post(format!("http://{authority}{PATH}"))
        .header(hyper::header::CONTENT_TYPE, "application/grpc")
        .header(hyper::header::TE, "trailers")
        .body(Full::new(request(service)))
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    if resp.status() != hyper::StatusCode::OK {
        return Err(format!("HTTP status {}", resp.status()));
    }
    // A trailers-only answer carries its status in the headers.
    grpc_status(resp.headers())?;
    let mut body = resp.into_body();
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        match frame.into_data() {
            Ok(d) => {
                if data.len() + d.len() > MAX_ANSWER {
                    return Err(format!("answer longer than {MAX_ANSWER} bytes"));
                }
                data.put(d);
            }
            Err(f) => trailers = f.into_trailers().ok(),
        }
    }
    drop(conn);
    match &trailers {
        Some(t) => grpc_status(t)?,
        None => return Err("answer without a grpc-status".to_string()),
    }
    answer(data.freeze())
}

/// `Err` with the server's message when `grpc-status` says the call failed.
fn grpc_status(headers: &hyper::HeaderMap) -> Result<(), String> {
    match headers
        .get("grpc-status")
        .map(|v| v.to_str().unwrap_or("?"))
    {
        None | Some("0") => Ok(()),
        Some(code) => {
            let msg = headers
                .get("grpc-message")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            // 12 is UNIMPLEMENTED: the server has no health service.
            let what = if code == "12" {
                " (the server does not implement grpc.health.v1)"
            } else {
                ""
            };
            Err(format!("grpc-status {code}{what}: {msg}"))
        }
    }
}

/// A `HealthCheckRequest { service }` in its length-prefixed frame.
fn request(service: &str) -> Bytes {
    let mut msg = BytesMut::new();
    if !service.is_empty() {
        msg.put_u8(0x0a);
        put_varint(&mut msg, service.len() as u64);
        msg.put_slice(service.as_bytes());
    }
    let mut out = BytesMut::with_capacity(5 + msg.len());
    out.put_u8(0);
    out.put_u32(msg.len() as u32);
    out.put(msg);
    out.freeze()
}

/// The `status` of a framed `HealthCheckResponse` (0, UNKNOWN, when absent).
fn answer(mut b: Bytes) -> Result<u64, String> {
    if b.len() < 5 {
        return Err("answer shorter than a gRPC frame".to_string());
    }
    if b.get_u8() != 0 {
        return Err("answer is compressed, which was not asked for".to_string());
    }
    let len = b.get_u32() as usize;
    if b.len() < len {
        return Err("answer frame cut short".to_string());
    }
    let mut m = b.split_to(len);
    let mut status = 0;
    while m.has_remaining() {
        let key = varint(&mut m)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut m)?,
            (_, 0) => {
                varint(&mut m)?;
            }
            (_, 2) => {
                let n = varint(&mut m)? as usize;
                if m.remaining() < n {
                    return Err("answer message cut short".to_string());
                }
                m.advance(n);
            }
            (_, 1) if m.remaining() >= 8 => m.advance(8),
            (_, 5) if m.remaining() >= 4 => m.advance(4),
            _ => return Err("answer is not a HealthCheckResponse".to_string()),
        }
    }
    Ok(status)
}

fn put_varint(b: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

fn varint(b: &mut Bytes) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        if !b.has_remaining() {
            break;
        }
        let byte = b.get_u8();
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("answer holds a broken varint".to_string())
}

fn status_name(s: u64) -> &'static str {
    match s {
        0 => "UNKNOWN",
        1 => "SERVING",
        2 => "NOT_SERVING",
        3 => "SERVICE_UNKNOWN",
        _ => "in an unknown state",
    }
}

/// TLS that checks the server's signature but not its certificate: the
/// instance is reached by an address the scheduler chose, which its
/// certificate seldom names, and the check reads only a status.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = edge_api::tls::provider();
    let verifier = Arc::new(AnyCert(provider.clone()));
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_encode_and_decode() {
        assert_eq!(&request("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request("svc")[..],
            &[0, 0, 0, 0, 5, 0x0a, 3, b's', b'v', b'c']
        );
        assert_eq!(answer(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 1])), Ok(1));
        assert_eq!(answer(Bytes::from_static(&[0, 0, 0, 0, 0])), Ok(0));
        assert!(answer(Bytes::from_static(&[0, 0, 0, 0, 9, 0x08])).is_err());
        assert!(answer(Bytes::from_static(&[0, 0, 0, 0, 2, 0x08, 0xff])).is_err());
        assert!(answer(Bytes::from_static(&[1, 0, 0, 0, 0])).is_err());
    }

    /// A TLS connection tonic serves on (its own TLS support is a
    /// feature edge does not build).
    struct Tls(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

    impl tonic::transport::server::Connected for Tls {
        type ConnectInfo = ();
        fn connect_info(&self) {}
    }

    impl tokio::io::AsyncRead for Tls {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Tls {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    /// Over TLS with a self-signed certificate for another name: the
    /// check reads the status all the same.
    #[tokio::test]
    async fn a_tls_health_server_is_asked() {
        let ck = rcgen::generate_simple_self_signed(vec!["db.example".to_string()]).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
        let mut cfg = rustls::ServerConfig::builder_with_provider(edge_api::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("svc", tonic_health::ServingStatus::Serving)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let incoming = futures_util::stream::unfold((l, acceptor), |(l, acceptor)| async move {
            let (tcp, _) = l.accept().await.ok()?;
            let tls = acceptor.accept(tcp).await.map(Tls);
            Some((tls, (l, acceptor)))
        });
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming),
        );
        check("127.0.0.1", port, "svc", true).await.unwrap();
        let err = check("127.0.0.1", port, "svc", false).await.unwrap_err();
        assert!(err.starts_with("grpc 127.0.0.1:"), "{err}");
        server.abort();
    }

    proptest::proptest! {
        /// Whatever a server answers is read without panicking.
        #[test]
        fn any_answer_is_read_or_refused(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = answer(Bytes::from(bytes));
        }
    }

    /// Against tonic's own health service, as a real server answers.
    #[tokio::test]
    async fn a_tonic_health_server_is_asked() {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status("svc", tonic_health::ServingStatus::Serving)
            .await;
        reporter
            .set_service_status("down", tonic_health::ServingStatus::NotServing)
            .await;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(l)),
        );
        check("127.0.0.1", port, "svc", false).await.unwrap();
        check("127.0.0.1", port, "", false).await.unwrap();
        let err = check("127.0.0.1", port, "down", false).await.unwrap_err();
        assert!(err.contains("NOT_SERVING"), "{err}");
        let err = check("127.0.0.1", port, "nope", false).await.unwrap_err();
        assert!(err.contains("grpc-status 5"), "{err}");
        server.abort();
        let err = check("127.0.0.1", port, "svc", false).await.unwrap_err();
        assert!(
            err.starts_with(&format!("grpc 127.0.0.1:{port}: ")),
            "{err}"
        );
    }
}
