//! The join token agents present: made once, kept in the data dir.

use crate::ServerError;
use std::path::Path;

pub fn load_or_create(data_dir: &Path) -> Result<String, ServerError> {
    let path = data_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ServerError::Io {
                action: "read token",
                path: path.display().to_string(),
                source: e,
            });
        }
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    write_private(&path, &token).map_err(|e| ServerError::Io {
        action: "write token",
        path: path.display().to_string(),
        source: e,
    })?;
    Ok(token)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}
