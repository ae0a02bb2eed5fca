//! `edge alloc ...`: list, inspect, read logs of and exec into allocations.

use crate::cli::{AllocCommand, Global, Output};
use crate::output::{emit, short, time};
use edge_api::QueryOptions;
use futures_util::StreamExt;
use std::io::Write;

pub async fn run(g: &Global, c: AllocCommand) -> anyhow::Result<u8> {
    let api = super::client(g)?;
    match c {
        AllocCommand::Ls { job, node } => {
            let (mut allocs, _) = api.allocs(QueryOptions::default()).await?;
            allocs.retain(|a| job.as_ref().is_none_or(|j| &a.job_id == j));
            allocs.retain(|a| {
                node.as_ref()
                    .is_none_or(|n| a.node_id.starts_with(n.as_str()) || &a.node_name == n)
            });
            emit(g.output, &allocs, || super::job::alloc_table(&allocs))?;
            Ok(0)
        }
        AllocCommand::Status { id } => {
            let a = api.alloc(&id).await?;
            if g.output == Output::Json {
                println!("{}", serde_json::to_string_pretty(&a)?);
                return Ok(0);
            }
            println!("ID                  = {}", a.id);
            println!("Name                = {}", a.name);
            println!(
                "Node                = {} ({})",
                a.node_name,
                short(&a.node_id)
            );
            println!(
                "Job                 = {} (version {})",
                a.job_id, a.job_version
            );
            println!("Desired Status      = {}", a.desired_status.as_str());
            if !a.desired_description.is_empty() {
                println!("Desired Description = {}", a.desired_description);
            }
            println!("Client Status       = {}", a.client_status.as_str());
            println!("Client Description  = {}", a.client_description);
            println!("Created             = {}", time(a.create_time));
            println!("Modified            = {}", time(a.modify_time));
            if let Some(p) = &a.previous_alloc {
                println!("Replaces            = {}", short(p));
            }
            if let Some(n) = &a.next_alloc {
                println!("Replaced By         = {}", short(n));
            }
            if !a.resources.ports.is_empty() {
                let ports: Vec<String> = a
                    .resources
                    .ports
                    .iter()
                    .map(|p| match p.to {
                        to if to != p.value => format!("{}={}->{to}", p.label, p.value),
                        _ => format!("{}={}", p.label, p.value),
                    })
                    .collect();
                println!("Ports               = {}", ports.join(", "));
            }
            if let Some(ip) = a.address {
                println!("Address             = {ip} (bridge)");
            }
            for (name, ip) in &a.networks {
                println!("Network {name:<11} = {ip}");
            }
            for (name, st) in &a.task_states {
                println!(
                    "\nTask {name:?} is {}{} (restarts: {}{})",
                    st.state.as_str(),
                    if st.failed { ", failed" } else { "" },
                    st.restarts,
                    st.pid.map(|p| format!(", pid {p}")).unwrap_or_default()
                );
                let mut t = crate::output::table(&["Time", "Type", "Description"]);
                for ev in st.events.iter().rev() {
                    t.add_row(vec![time(ev.time), ev.kind.clone(), ev.message.clone()]);
                }
                println!("{t}");
            }
            Ok(0)
        }
        AllocCommand::Logs {
            id,
            task,
            follow,
            stderr,
            tail,
        } => {
            let mut q: Vec<(&str, String)> = vec![
                ("type", if stderr { "stderr" } else { "stdout" }.to_string()),
                ("follow", follow.to_string()),
            ];
            if let Some(t) = task {
                q.push(("task", t));
            }
            if let Some(t) = tail {
                q.push(("tail", t.to_string()));
            }
            let resp = api
                .stream(&format!("/v1/client/allocation/{id}/logs"), &q)
                .await?;
            let mut body = resp.bytes_stream();
            let mut out = std::io::stdout();
            while let Some(chunk) = body.next().await {
                let chunk = chunk?;
                out.write_all(&chunk)?;
                out.flush()?;
            }
            Ok(0)
        }
        AllocCommand::Exec {
            interactive,
            tty,
            id,
            task,
            command,
        } => exec(&api, &id, task, interactive, tty, command).await,
    }
}

/// Runs a command in a task: frames out (stdin, resize), frames in
/// (stdout, stderr, exit), over one upgraded connection to the server.
async fn exec(
    api: &edge_api::Client,
    id: &str,
    task: Option<String>,
    interactive: bool,
    tty: bool,
    command: Vec<String>,
) -> anyhow::Result<u8> {
    use edge_api::exec::{Decoder, EXEC_PROTOCOL, ExecQuery, Frame};
    use std::io::IsTerminal;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let size = if tty { terminal_size() } else { None };
    let q = ExecQuery {
        task,
        command: serde_json::to_string(&command)?,
        tty,
        stdin: interactive,
        rows: size.map(|s| s.0),
        cols: size.map(|s| s.1),
    };
    let up = api
        .upgrade(
            &format!("/v1/client/allocation/{id}/exec"),
            EXEC_PROTOCOL,
            &q,
        )
        .await?;
    let (mut rd, mut wr) = tokio::io::split(up);
    let raw = if tty && interactive && std::io::stdin().is_terminal() {
        Some(RawMode::enter()?)
    } else {
        None
    };
    let (ftx, mut frx) = tokio::sync::mpsc::channel::<Frame>(16);
    // The write half stays open until the command exits: the server takes
    // its end as the user leaving and kills the command.
    tokio::spawn(async move {
        while let Some(f) = frx.recv().await {
            if wr.write_all(&f.encode()).await.is_err() || wr.flush().await.is_err() {
                return;
            }
        }
        std::future::pending::<()>().await;
    });
    if interactive {
        let ftx = ftx.clone();
        // A thread of its own, not the runtime's blocking pool: a read
        // blocked on the terminal must not hold up the exit.
        std::thread::Builder::new()
            .name("exec-stdin".to_string())
            .spawn(move || {
                use std::io::Read;
                let mut stdin = std::io::stdin().lock();
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match stdin.read(&mut buf) {
                        Ok(0) | Err(_) => {
                            let _ = ftx.blocking_send(Frame::StdinClose);
                            return;
                        }
                        Ok(n) => {
                            if ftx.blocking_send(Frame::Stdin(buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    }
                }
            })?;
    }
    if tty {
        let ftx = ftx.clone();
        let mut winch =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
        tokio::spawn(async move {
            while winch.recv().await.is_some() {
                if let Some((rows, cols)) = terminal_size()
                    && ftx.send(Frame::Resize { rows, cols }).await.is_err()
                {
                    return;
                }
            }
        });
    }
    let mut dec = Decoder::default();
    let mut buf = vec![0u8; 32 * 1024];
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    loop {
        let n = rd.read(&mut buf).await?;
        if n == 0 {
            drop(raw);
            anyhow::bail!("the server closed the session before the command exited");
        }
        dec.push(&buf[..n]);
        while let Some(f) = dec.next_frame()? {
            match f {
                Frame::Stdout(b) => {
                    out.write_all(&b).await?;
                    out.flush().await?;
                }
                Frame::Stderr(b) => {
                    err.write_all(&b).await?;
                    err.flush().await?;
                }
                Frame::Error(m) => {
                    let nl = if raw.is_some() { "\r\n" } else { "\n" };
                    err.write_all(format!("error: {m}{nl}").as_bytes()).await?;
                    err.flush().await?;
                }
                Frame::Exit(code) => {
                    drop(raw);
                    return Ok(u8::try_from(code).unwrap_or(1));
                }
                Frame::Stdin(_) | Frame::StdinClose | Frame::Resize { .. } => {}
            }
        }
    }
}

/// `(rows, cols)` of the terminal on stdout (or stdin), if there is one.
fn terminal_size() -> Option<(u16, u16)> {
    [libc::STDOUT_FILENO, libc::STDIN_FILENO]
        .into_iter()
        .find_map(|fd| {
            let mut ws = libc::winsize {
                ws_row: 0,
                ws_col: 0,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCGWINSZ writes one winsize into the struct, which
            // outlives the call; a non-terminal fd just fails.
            let rc = unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) };
            (rc == 0 && ws.ws_row > 0 && ws.ws_col > 0).then_some((ws.ws_row, ws.ws_col))
        })
}

/// The local terminal in raw mode (keys go to the remote tty as typed),
/// restored when dropped.
struct RawMode(nix::sys::termios::Termios);

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw)?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        use nix::sys::termios::{SetArg, tcsetattr};
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}
