//! Running the host's networking tools (`ip`, `bridge`, `iptables`): their
//! output on success, else an error naming the command and what it said.

use crate::error::NetError;

fn failed(program: &str, args: &[&str], message: String) -> NetError {
    NetError::Command {
        command: format!("{program} {}", args.join(" ")),
        message,
    }
}

fn answer(program: &str, args: &[&str], out: std::process::Output) -> Result<String, NetError> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(failed(program, args, said))
}

pub(crate) async fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| failed(program, args, e.to_string()))?;
    answer(program, args, out)
}

/// The same, blocking: for `BridgeNetwork::new`, which is not async.
pub(crate) fn run_now(program: &str, args: &[&str]) -> Result<String, NetError> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| failed(program, args, e.to_string()))?;
    answer(program, args, out)
}
