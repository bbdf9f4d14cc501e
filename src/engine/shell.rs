//! An interactive SSH session into a deployment's guest for the dashboard's `s`: proxdeck
//! connects first (which checks the host key against the pin, or pins it on first contact),
//! then writes that key into a known_hosts file of its own, so the `ssh` the UI runs trusts only
//! the pinned key. Owns that file (`known_hosts/<id>` in the data dir); runs nothing itself.

use super::{Engine, guest};
use crate::domain::{DeploymentId, Status};
use crate::protocol::ShellCommand;
use tokio::sync::mpsc;

/// An `ssh` command into the deployment's guest that trusts only the host key pinned in
/// the store: proxdeck connects first (which checks the key against the pin, or pins it
/// on first contact), then writes that key into a known_hosts file of its own.
pub async fn prepare(engine: &Engine, id: &DeploymentId) -> Result<ShellCommand, String> {
    let key = id.clone();
    let d = engine
        .db
        .call(move |s| s.get(&key))
        .await
        .map_err(|e| e.to_string())?;
    if d.status == Status::Deleted {
        return Err(format!(
            "{} ({}) is deleted: there is no guest",
            d.name, d.id
        ));
    }
    let ip = d.ip.clone().ok_or_else(|| {
        format!(
            "{} ({}) has no address yet: it never got that far",
            d.name, d.id
        )
    })?;
    let g = guest::resolve(engine, &d, &ip)
        .await
        .map_err(|e| e.to_string())?;
    let (notes, _ignored) = mpsc::unbounded_channel();
    let session = guest::connect(engine, &g, notes)
        .await
        .map_err(|e| e.to_string())?;
    let alias = format!("proxdeck-{}", d.id.0);
    let line = tokio::task::spawn_blocking(move || {
        let (bytes, _) = session
            .host_key()
            .ok_or_else(|| "the guest sent no host key".to_string())?;
        let key = ssh_key::PublicKey::from_bytes(bytes).map_err(|e| e.to_string())?;
        key.to_openssh().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let dir = engine.paths.root.join("known_hosts");
    let file = dir.join(&d.id.0);
    write_private(&dir, &file, &format!("{alias} {line}\n"))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let t = &g.target;
    let args = vec![
        "-i".to_string(),
        g.keys.private.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", file.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("HostKeyAlias={alias}"),
        "-o".into(),
        "CheckHostIP=no".into(),
        "-o".into(),
        "UpdateHostKeys=no".into(),
        "-p".into(),
        t.port.to_string(),
        "-l".into(),
        t.user.clone(),
        "-t".into(),
        "--".into(),
        t.host.clone(),
    ];
    engine.audit(
        "shell",
        &d.id,
        serde_json::json!({"name": d.name, "target": t.label()}),
    );
    Ok(ShellCommand {
        id: d.id.clone(),
        name: d.name.clone(),
        target: format!("{}@{}", t.user, t.label()),
        program: "ssh".into(),
        args,
    })
}

/// Writes `text` to `file` (mode 0600) in `dir` (mode 0700).
fn write_private(dir: &std::path::Path, file: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(file)?;
    f.write_all(text.as_bytes())
}
