//! The `edge` binary: parses the command line and hands off to the server,
//! the agent, or an API client command. No logic lives here beyond wiring.

mod cli;
mod cmd;
mod output;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = match cli::Cli::try_parse_from(cli::nomad_flags(std::env::args_os())) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and usage are output for people and pipes too.
            default_sigpipe();
            e.exit()
        }
    };
    // The executor is the exec driver's supervisor process: it must not start
    // a tokio runtime or logging of its own before forking the task.
    // The same holds for the containerd log copier, one per container: no
    // runtime keeps it small.
    match &cli.command {
        cli::Command::Executor { args } => {
            let code = edge_driver_exec::executor_main(args);
            return std::process::ExitCode::from(code.clamp(0, 255) as u8);
        }
        cli::Command::ContainerdLogger { args } => {
            let code = edge_driver_containerd::logger_main(args);
            return std::process::ExitCode::from(code.clamp(0, 255) as u8);
        }
        _ => {}
    }
    if !cli.command.is_daemon() {
        default_sigpipe();
    }
    // Daemons get a worker per core (tokio's default; `TOKIO_WORKER_THREADS`
    // overrides it); a CLI command is one request and its answer.
    let mut builder = if cli.command.is_daemon() {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            if format!("{e:#}").contains("UnknownIssuer") {
                eprintln!(
                    "hint: trust the server's CA with --ca-cert or EDGE_CACERT (the server's data dir has the cluster CA as ca.pem)"
                );
            }
            std::process::ExitCode::from(1)
        }
    }
}

/// A CLI command whose reader has gone (`edge job status -o json | head`)
/// ends quietly, killed by SIGPIPE like any Unix filter, instead of panicking
/// in `println!` on EPIPE. Rust ignores SIGPIPE by default; the daemons keep
/// that, since a peer closing a socket must be an error they handle, never
/// their death.
fn default_sigpipe() {
    // SAFETY: runs on the main thread before the runtime or any other thread
    // starts, and only sets this process's disposition of one signal.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
