//! A closed-loop HTTP load generator for `benches/model.sh`: N threads, each
//! with one keep-alive connection, POST the same body for a fixed time and
//! record every latency. The same client measures every server.
//!
//! usage: oip_load HOST:PORT PATH BODY_FILE CONCURRENCY SECONDS [JSON_LENGTH]
//! With JSON_LENGTH the body is a binary-extension request: a JSON header of
//! that many bytes, then the tensors' bytes (`Inference-Header-Content-Length`).
//! Prints one JSON line: concurrency, requests, errors, rps, p50_ms, p99_ms.

#[path = "load/report.rs"]
mod report;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    request: Vec<u8>,
}

impl Conn {
    fn open(addr: &str, request: &[u8]) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
            request: request.to_vec(),
        })
    }

    /// One request and its whole response; true when the status was 200.
    fn call(&mut self) -> std::io::Result<bool> {
        self.writer.write_all(&self.request)?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let ok = line.split(' ').nth(1) == Some("200");
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("transfer-encoding")
            {
                chunked = v.trim().eq_ignore_ascii_case("chunked");
            }
        }
        if !chunked {
            let mut body = vec![0u8; length];
            self.reader.read_exact(&mut body)?;
            return Ok(ok);
        }
        // Uvicorn (KServe) sends binary answers chunked.
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?;
            let mut chunk = vec![0u8; size + 2];
            self.reader.read_exact(&mut chunk)?;
            if size == 0 {
                return Ok(ok);
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !(6..=7).contains(&args.len()) {
        eprintln!("usage: oip_load HOST:PORT PATH BODY_FILE CONCURRENCY SECONDS [JSON_LENGTH]");
        std::process::exit(2);
    }
    let (addr, path) = (args[1].clone(), &args[2]);
    let body = std::fs::read(&args[3]).unwrap_or_else(|e| {
        eprintln!("reading {}: {e}", args[3]);
        std::process::exit(2)
    });
    let conc: usize = args[4].parse().unwrap_or(1);
    let secs: f64 = args[5].parse().unwrap_or(5.0);
    let binary = match args.get(6) {
        Some(n) => format!(
            "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: {n}\r\n"
        ),
        None => "Content-Type: application/json\r\n".to_string(),
    };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{binary}Content-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);

    let mut warm = Conn::open(&addr, &request).unwrap_or_else(|e| {
        eprintln!("connecting to {addr}: {e}");
        std::process::exit(1)
    });
    for _ in 0..200 {
        if !matches!(warm.call(), Ok(true)) {
            eprintln!("warm-up request to {addr}{path} failed");
            std::process::exit(1);
        }
    }
    drop(warm);

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conc)
        .map(|_| {
            let (addr, request) = (addr.clone(), request.clone());
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut errors = 0u64;
                let Ok(mut c) = Conn::open(&addr, &request) else {
                    return (lat, 1);
                };
                while Instant::now() < deadline {
                    let t = Instant::now();
                    match c.call() {
                        Ok(true) => lat.push(t.elapsed()),
                        Ok(false) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            match Conn::open(&addr, &request) {
                                Ok(n) => c = n,
                                Err(_) => break,
                            }
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in threads {
        if let Ok((lat, e)) = t.join() {
            all.extend(lat);
            errors += e;
        }
    }
    report::print(conc, all, errors, start.elapsed().as_secs_f64());
}
