//! `edge alloc exec` on the wire: the query that starts a session and the
//! frames its two byte streams carry (CLI ↔ server ↔ agent). Every frame
//! is a kind byte, a big-endian `u32` payload length and the payload; the
//! server relays the bytes without reading them.

use serde::{Deserialize, Serialize};

/// The `Upgrade` protocol name of the agent tunnel.
pub const TUNNEL_PROTOCOL: &str = "edge-tunnel";
/// The `Upgrade` protocol name of an exec session.
pub const EXEC_PROTOCOL: &str = "edge-exec";
/// Largest payload a frame may carry; a bigger one is a broken stream.
pub const MAX_PAYLOAD: usize = 1 << 20;
const HEADER: usize = 5;

/// What starts a session: `GET /v1/client/allocation/{id}/exec?...` (user)
/// and `POST` of the same path on the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecQuery {
    /// The task to run in; may be left out when the allocation has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// The command and its arguments, as a JSON array of strings.
    pub command: String,
    #[serde(default)]
    pub tty: bool,
    /// Whether the client sends stdin; without it the command's stdin is
    /// closed (or, with a tty, left open and silent).
    #[serde(default)]
    pub stdin: bool,
    /// The terminal's size at start, with `tty`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cols: Option<u16>,
}

impl ExecQuery {
    /// The command as a list, refusing an empty one.
    pub fn argv(&self) -> Result<Vec<String>, String> {
        let argv: Vec<String> = serde_json::from_str(&self.command)
            .map_err(|e| format!("command must be a JSON array of strings: {e}"))?;
        match argv.first() {
            Some(first) if !first.is_empty() => Ok(argv),
            _ => Err("command must name a program to run".to_string()),
        }
    }
}

/// One message of an exec session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Client → command.
    Stdin(Vec<u8>),
    /// The client's stdin ended; the command's stdin is closed.
    StdinClose,
    /// The client's terminal changed size.
    Resize {
        rows: u16,
        cols: u16,
    },
    /// Command → client.
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The command ended with this exit code (128+N for signal N); last
    /// frame of a session.
    Exit(i32),
    /// Why the command could not run or the session broke, for people.
    Error(String),
}

const STDIN: u8 = 1;
const STDOUT: u8 = 2;
const STDERR: u8 = 3;
const RESIZE: u8 = 4;
const EXIT: u8 = 5;
const ERROR: u8 = 6;
const STDIN_CLOSE: u8 = 7;

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Stdin(b) => (STDIN, b.as_slice().into()),
            Frame::StdinClose => (STDIN_CLOSE, (&[][..]).into()),
            Frame::Resize { rows, cols } => {
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                (RESIZE, p.into())
            }
            Frame::Stdout(b) => (STDOUT, b.as_slice().into()),
            Frame::Stderr(b) => (STDERR, b.as_slice().into()),
            Frame::Exit(code) => (EXIT, code.to_be_bytes().to_vec().into()),
            Frame::Error(m) => (ERROR, m.as_bytes().into()),
        };
        let mut out = Vec::with_capacity(HEADER + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }
}

/// A frame stream that cannot be read further.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("exec frame of unknown kind {0}")]
    Kind(u8),
    #[error("exec frame of {0} bytes is over the {MAX_PAYLOAD} byte limit")]
    TooLarge(usize),
    #[error("exec frame of kind {kind} has a {len} byte payload, not {want}")]
    Length { kind: u8, len: usize, want: usize },
}

/// Reads frames from bytes as they arrive, in any cut.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let Some(header) = self.buf.get(..HEADER) else {
            return Ok(None);
        };
        let kind = header[0];
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        let exact = |want: usize| {
            if len == want {
                Ok(())
            } else {
                Err(FrameError::Length { kind, len, want })
            }
        };
        match kind {
            STDIN | STDOUT | STDERR | ERROR => {}
            RESIZE | EXIT => exact(4)?,
            STDIN_CLOSE => exact(0)?,
            k => return Err(FrameError::Kind(k)),
        }
        if self.buf.len() < HEADER + len {
            return Ok(None);
        }
        let payload: Vec<u8> = self.buf.drain(..HEADER + len).skip(HEADER).collect();
        let four = |p: &[u8]| [p[0], p[1], p[2], p[3]];
        Ok(Some(match kind {
            STDIN => Frame::Stdin(payload),
            STDOUT => Frame::Stdout(payload),
            STDERR => Frame::Stderr(payload),
            ERROR => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
            RESIZE => {
                let b = four(&payload);
                Frame::Resize {
                    rows: u16::from_be_bytes([b[0], b[1]]),
                    cols: u16::from_be_bytes([b[2], b[3]]),
                }
            }
            EXIT => Frame::Exit(i32::from_be_bytes(four(&payload))),
            _ => Frame::StdinClose,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame() -> impl Strategy<Value = Frame> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..300);
        prop_oneof![
            bytes.clone().prop_map(Frame::Stdin),
            bytes.clone().prop_map(Frame::Stdout),
            bytes.prop_map(Frame::Stderr),
            Just(Frame::StdinClose),
            (any::<u16>(), any::<u16>()).prop_map(|(rows, cols)| Frame::Resize { rows, cols }),
            any::<i32>().prop_map(Frame::Exit),
            ".{0,40}".prop_map(Frame::Error),
        ]
    }

    proptest! {
        #[test]
        fn frames_survive_any_cut(frames in proptest::collection::vec(frame(), 0..20), cuts in proptest::collection::vec(1usize..64, 1..50)) {
            let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
            let mut d = Decoder::default();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.iter().cycle() {
                if at >= wire.len() {
                    break;
                }
                let end = (at + c).min(wire.len());
                d.push(&wire[at..end]);
                at = end;
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = Decoder::default();
            d.push(&bytes);
            while let Ok(Some(_)) = d.next_frame() {}
        }
    }

    #[test]
    fn broken_frames_are_named() {
        let mut d = Decoder::default();
        d.push(&[9, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(FrameError::Kind(9)));
        let mut d = Decoder::default();
        d.push(&[EXIT, 0, 0, 0, 2, 0, 0]);
        assert!(matches!(d.next_frame(), Err(FrameError::Length { .. })));
        let mut d = Decoder::default();
        d.push(&[STDOUT, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(d.next_frame(), Err(FrameError::TooLarge(_))));
    }

    #[test]
    fn argv_refuses_empty_and_non_arrays() {
        let q = |c: &str| ExecQuery {
            task: None,
            command: c.to_string(),
            tty: false,
            stdin: false,
            rows: None,
            cols: None,
        };
        assert_eq!(q(r#"["echo","hi"]"#).argv().unwrap(), vec!["echo", "hi"]);
        assert!(q("[]").argv().is_err());
        assert!(q(r#"[""]"#).argv().is_err());
        assert!(q("echo").argv().is_err());
    }
}
