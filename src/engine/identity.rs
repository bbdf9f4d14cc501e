//! Which deployment a guest belongs to, by what the guest itself carries: every guest
//! proxdeck creates is marked with its deployment's id and this data dir's installation id,
//! as Proxmox tags (`proxdeck-id-<id>`, `proxdeck-of-<installation>`) and as lines of its
//! description (`proxdeck-id: <id>`, `proxdeck-installation: <installation>`). The marks
//! travel through `terraform.tfvars.json` like every other value.
//!
//! With the marks, a run finds its own guest even when the terraform state does not hold it (a
//! killed `terraform apply` creates the guest, then dies before saving its state), so the guest
//! is adopted or removed instead of duplicated; and `sync` and `resources` tell an orphan (a
//! guest carrying the id of no live deployment of this installation) from everything else.
//! Guests of another installation (another data dir, e.g. a colleague's proxdeck) are never
//! orphans here: they are not ours to remove.
//!
//! Owns the marks (writing and reading), the installation id (`installation` in the data dir),
//! the classification of the cluster's guests against the store ([`orphans`]), and removing a
//! guest through the Proxmox API ([`remove_guest`], [`remove_orphan`]). It must never remove a
//! guest that carries no mark of this installation.

use super::proxmox::api::{GuestKind, PowerAction, Resource};
use super::proxmox::{Client, ProxmoxError};
use super::{DataPaths, Engine};
use crate::domain::{Deployment, DeploymentId, Status};
use crate::store::StoreError;
use serde::Serialize;
use std::collections::HashMap;

/// The tag carrying the deployment's id.
pub const ID_TAG: &str = "proxdeck-id-";
/// The tag carrying the installation's id.
pub const OF_TAG: &str = "proxdeck-of-";
/// The description line carrying the deployment's id.
const ID_LINE: &str = "proxdeck-id:";
/// The description line carrying the installation's id.
const OF_LINE: &str = "proxdeck-installation:";
/// The data dir's file holding the installation id.
pub const INSTALLATION_FILE: &str = "installation";

/// What proxdeck writes onto a guest it creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub deployment: DeploymentId,
    pub installation: String,
}

impl Identity {
    /// The two tags (lowercase, as Proxmox stores tags).
    pub fn tags(&self) -> Vec<String> {
        vec![
            format!("{ID_TAG}{}", self.deployment.0.to_ascii_lowercase()),
            format!("{OF_TAG}{}", self.installation.to_ascii_lowercase()),
        ]
    }

    /// The lines appended to the guest's description.
    pub fn description_lines(&self) -> String {
        format!(
            "{ID_LINE} {}\n{OF_LINE} {}",
            self.deployment.0, self.installation
        )
    }
}

/// What a guest carries, read back. `installation` is `None` when only the id survived
/// (someone edited the tags or the description).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mark {
    pub deployment: DeploymentId,
    pub installation: Option<String>,
}

/// A deployment or installation id as the marks spell them.
fn id_like(s: &str) -> bool {
    (4..=32).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

/// Reads the mark from a guest's tags, else from its description.
pub fn read_mark(tags: &[String], description: Option<&str>) -> Option<Mark> {
    let tag = |prefix: &str| {
        tags.iter()
            .filter_map(|t| {
                t.trim()
                    .to_ascii_lowercase()
                    .strip_prefix(prefix)
                    .map(str::to_string)
            })
            .find(|v| id_like(v))
    };
    let line = |prefix: &str| {
        description?
            .lines()
            .filter_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_string()))
            .find(|v| id_like(v))
    };
    let deployment = tag(ID_TAG).or_else(|| line(ID_LINE))?;
    Some(Mark {
        deployment: DeploymentId(deployment),
        installation: tag(OF_TAG).or_else(|| line(OF_LINE)),
    })
}

/// The mark of a cluster list entry (tags only: the list carries no description).
pub fn mark_of(r: &Resource) -> Option<Mark> {
    read_mark(&r.tag_list(), None)
}

/// This data dir's installation id, made on first use: eight characters from the deployment
/// ids' alphabet, kept in `installation` in the data dir.
pub fn installation(paths: &DataPaths) -> std::io::Result<String> {
    use std::io::Write;
    let path = paths.root.join(INSTALLATION_FILE);
    let read = |path: &std::path::Path| -> std::io::Result<Option<String>> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let id = text.trim().to_string();
                if id_like(&id) {
                    Ok(Some(id))
                } else {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "{} holds {id:?}, not an installation id; restore it from a backup of the data dir (guests carry it as their proxdeck-of- tag)",
                            path.display()
                        ),
                    ))
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    };
    if let Some(id) = read(&path)? {
        return Ok(id);
    }
    std::fs::create_dir_all(&paths.root)?;
    let fresh: String = format!(
        "{}{}",
        super::pipeline::new_id().0,
        &super::pipeline::new_id().0[..2]
    );
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(format!("{fresh}\n").as_bytes())?;
            Ok(fresh)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read(&path)?.ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "installation id vanished")
        }),
        Err(e) => Err(e),
    }
}

/// The id `terraform import` takes for a guest: bpg's `<node_name>/<vm_id>` for containers
/// and VMs alike (the stand-in templates' `terraform_data` accepts it as well).
pub fn terraform_import_id(node: &str, vmid: u32) -> String {
    format!("{node}/{vmid}")
}

/// The identity a new guest of `id` carries.
pub fn identity_for(paths: &DataPaths, id: &DeploymentId) -> std::io::Result<Identity> {
    Ok(Identity {
        deployment: id.clone(),
        installation: installation(paths)?,
    })
}

/// Whether a mark is this installation's mark of deployment `id`.
pub fn marks_deployment(mark: &Mark, id: &DeploymentId, installation: &str) -> bool {
    mark.deployment == *id
        && mark
            .installation
            .as_deref()
            .is_none_or(|i| i == installation)
}

/// The guests of the cluster that carry this installation's mark of deployment `id`
/// (templates excluded).
pub fn guests_of<'a>(
    guests: &'a [Resource],
    id: &DeploymentId,
    installation: &str,
) -> Vec<&'a Resource> {
    guests
        .iter()
        .filter(|r| !r.template && r.vmid.is_some() && r.guest_kind().is_some())
        .filter(|r| mark_of(r).is_some_and(|m| marks_deployment(&m, id, installation)))
        .collect()
}

/// A guest that carries the id of no live deployment of this installation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Orphan {
    pub vmid: u32,
    #[serde(rename = "type")]
    pub kind: GuestKind,
    pub node: String,
    pub name: String,
    pub status: String,
    /// The deployment id the guest carries.
    pub deployment: DeploymentId,
    /// That deployment's name, when proxdeck still has its record.
    pub deployment_name: Option<String>,
    /// Why it is an orphan, in words.
    pub why: String,
}

/// The orphans among the cluster's guests: guests carrying this installation's mark (or a
/// mark without installation whose deployment this store knows), held by no live entry's
/// vmid, whose deployment is gone (no record, or DELETED) or settled on another guest (a
/// duplicate). A deployment that is in flight is left to its own run, which adopts or removes
/// its guests. Pure: the tests drive it with made-up lists.
pub fn orphans(guests: &[Resource], list: &[Deployment], installation: &str) -> Vec<Orphan> {
    let live_vmids: std::collections::HashSet<u32> = list
        .iter()
        .filter(|d| d.status != Status::Deleted)
        .filter_map(|d| d.vmid)
        .collect();
    let by_id: HashMap<&DeploymentId, &Deployment> = list.iter().map(|d| (&d.id, d)).collect();
    let mut out = Vec::new();
    for r in guests {
        let (Some(vmid), Some(kind)) = (r.vmid, r.guest_kind()) else {
            continue;
        };
        if r.template || live_vmids.contains(&vmid) {
            continue;
        }
        let Some(mark) = mark_of(r) else { continue };
        let record = by_id.get(&mark.deployment).copied();
        match mark.installation.as_deref() {
            Some(i) if i != installation => continue,
            // Without the installation tag only a deployment this store knows makes it ours.
            None if record.is_none() => continue,
            _ => {}
        }
        let why = match record {
            None => format!(
                "its deployment {} is not in proxdeck's records (forgotten, or a run killed before it was recorded)",
                mark.deployment
            ),
            Some(d) if d.status == Status::Deleted => {
                format!("its deployment {} ({}) is DELETED", d.name, d.id)
            }
            Some(d) if d.status.is_in_flight() => continue,
            Some(d) => format!(
                "a second guest of {} ({}), whose guest is {}",
                d.name,
                d.id,
                d.vmid
                    .map(|v| format!("vmid {v}"))
                    .unwrap_or_else(|| "not recorded".into())
            ),
        };
        out.push(Orphan {
            vmid,
            kind,
            node: r.node.clone().unwrap_or_default(),
            name: r.name.clone().unwrap_or_default(),
            status: r.status.clone().unwrap_or_else(|| "unknown".into()),
            deployment: mark.deployment.clone(),
            deployment_name: record.map(|d| d.name.clone()),
            why,
        });
    }
    out.sort_by_key(|o| o.vmid);
    out
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Proxmox(#[from] ProxmoxError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the installation id: {0}")]
    Installation(#[from] std::io::Error),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotGone(String),
}

/// Stops (if running) and deletes a guest through the Proxmox API, waiting on each task, then
/// checks that the cluster no longer lists it. `say` gets a line per step.
pub async fn remove_guest(
    client: &Client,
    node: &str,
    kind: GuestKind,
    vmid: u32,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<(), IdentityError> {
    let label = format!("{} {vmid}", kind.label());
    let status = client.guest_status(node, kind, vmid).await?;
    if status.status == "running" {
        say(format!("stopping {label} on {node}"));
        let upid = client
            .power(node, kind, vmid, PowerAction::Stop, None)
            .await?;
        client.wait_task(&upid, &format!("stop of {label}")).await?;
    }
    say(format!("deleting {label} on {node}"));
    let upid = client.delete_guest(node, kind, vmid).await?;
    client
        .wait_task(&upid, &format!("delete of {label}"))
        .await?;
    let left = client.guests().await?;
    if left.iter().any(|g| g.vmid == Some(vmid)) {
        return Err(IdentityError::NotGone(format!(
            "Proxmox still lists {label} after its delete task ended"
        )));
    }
    say(format!("{label} is gone from the cluster"));
    Ok(())
}

/// The orphans of the cluster now.
pub async fn find_orphans(engine: &Engine) -> Result<Vec<Orphan>, IdentityError> {
    let client = Client::new(engine.config.proxmox()?)?;
    let guests = client.guests().await?;
    let list = engine.db.call(|s| s.list()).await?;
    let installation = installation(&engine.paths)?;
    Ok(orphans(&guests, &list, &installation))
}

/// Removes the orphan with `vmid` through the Proxmox API, after checking again that it is
/// one. Refuses any other guest, naming what it is instead.
pub async fn remove_orphan(
    engine: &Engine,
    vmid: u32,
    say: &mut (dyn FnMut(String) + Send),
) -> Result<Orphan, IdentityError> {
    let client = Client::new(engine.config.proxmox()?)?;
    let guests = client.guests().await?;
    let list = engine.db.call(|s| s.list()).await?;
    let installation = installation(&engine.paths)?;
    let Some(guest) = guests.iter().find(|g| g.vmid == Some(vmid)) else {
        return Err(IdentityError::Refused(format!(
            "the cluster has no guest with vmid {vmid} (`proxdeck resources --orphans` lists the orphans)"
        )));
    };
    let found = orphans(&guests, &list, &installation)
        .into_iter()
        .find(|o| o.vmid == vmid);
    let Some(orphan) = found else {
        return Err(IdentityError::Refused(why_not_orphan(
            guest,
            &list,
            &installation,
        )));
    };
    engine.audit(
        "remove-orphan",
        &orphan.deployment,
        serde_json::json!({"vmid": vmid, "node": orphan.node, "name": orphan.name, "why": orphan.why}),
    );
    remove_guest(&client, &orphan.node, orphan.kind, vmid, say).await?;
    Ok(orphan)
}

/// What the guest with `vmid` is, for a user who took it for an orphan.
pub async fn not_an_orphan(engine: &Engine, vmid: u32) -> Result<String, IdentityError> {
    let client = Client::new(engine.config.proxmox()?)?;
    let guests = client.guests().await?;
    let list = engine.db.call(|s| s.list()).await?;
    let installation = installation(&engine.paths)?;
    Ok(match guests.iter().find(|g| g.vmid == Some(vmid)) {
        None => format!(
            "the cluster has no guest with vmid {vmid} (`proxdeck resources --orphans` lists the orphans)"
        ),
        Some(g) => why_not_orphan(g, &list, &installation),
    })
}

/// Why the guest `r` is not an orphan proxdeck may remove.
fn why_not_orphan(r: &Resource, list: &[Deployment], installation: &str) -> String {
    let vmid = r.vmid.unwrap_or_default();
    let label = format!(
        "{} {vmid}",
        r.guest_kind().map(GuestKind::label).unwrap_or("guest")
    );
    if let Some(d) = list
        .iter()
        .find(|d| d.vmid == Some(vmid) && d.status != Status::Deleted)
    {
        return match d.origin {
            crate::domain::Origin::Imported => format!(
                "{label} is the imported entry {} ({}); proxdeck does not remove guests it did not make (`proxdeck forget {}` drops the entry)",
                d.name, d.id, d.id
            ),
            _ => format!(
                "{label} is the guest of deployment {} ({}): `proxdeck destroy {}` removes it",
                d.name, d.id, d.id
            ),
        };
    }
    match mark_of(r) {
        None => format!(
            "{label} carries no proxdeck id: proxdeck does not remove guests it did not make"
        ),
        Some(m) if m.installation.as_deref().is_some_and(|i| i != installation) => format!(
            "{label} belongs to deployment {} of another proxdeck installation ({}); remove it from there",
            m.deployment,
            m.installation.unwrap_or_default()
        ),
        Some(m) => format!(
            "{label} belongs to deployment {}, which is in flight or not recorded here with this installation's mark; wait for its run to end, then check again",
            m.deployment
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(vmid: u32, tags: &str) -> Resource {
        Resource {
            id: format!("lxc/{vmid}"),
            kind: "lxc".into(),
            node: Some("pve1".into()),
            vmid: Some(vmid),
            name: Some(format!("g{vmid}")),
            status: Some("running".into()),
            tags: (!tags.is_empty()).then(|| tags.to_string()),
            ..Resource::default()
        }
    }

    fn entry(id: &str, vmid: Option<u32>, status: Status) -> Deployment {
        Deployment {
            id: DeploymentId(id.into()),
            name: format!("app-{id}"),
            vmid,
            status,
            ..Deployment::default()
        }
    }

    fn tags(id: &str, of: &str) -> String {
        format!("flask;proxdeck;{ID_TAG}{id};{OF_TAG}{of}")
    }

    #[test]
    fn marks_round_trip_through_tags_and_description() {
        let me = Identity {
            deployment: DeploymentId("k3x9ta".into()),
            installation: "abcd2345".into(),
        };
        let want = Mark {
            deployment: me.deployment.clone(),
            installation: Some("abcd2345".into()),
        };
        assert_eq!(read_mark(&me.tags(), None), Some(want.clone()));
        let description = format!("proxdeck deployment shop of x\n{}", me.description_lines());
        assert_eq!(read_mark(&[], Some(&description)), Some(want));
        // Proxmox lowercases tags; the list separates them with ';'.
        let r = guest(100, "PROXDECK-ID-K3X9TA;proxdeck");
        assert_eq!(
            mark_of(&r),
            Some(Mark {
                deployment: DeploymentId("k3x9ta".into()),
                installation: None
            })
        );
        assert_eq!(read_mark(&["proxdeck-id-".into()], Some("nothing")), None);
        assert_eq!(read_mark(&["proxdeck-id-x;y".into()], None), None);
    }

    #[test]
    fn orphans_are_this_installations_guests_of_no_live_deployment() {
        let guests = [
            // Held by a live deployment's vmid: not an orphan.
            guest(100, &tags("aaaaaa", "mine2345")),
            // Its deployment is DELETED.
            guest(101, &tags("bbbbbb", "mine2345")),
            // Its deployment was forgotten (or never recorded).
            guest(102, &tags("cccccc", "mine2345")),
            // Another installation's: never ours.
            guest(103, &tags("dddddd", "other234")),
            // No mark at all.
            guest(104, "web"),
            // A second guest of a settled deployment whose guest is 100.
            guest(105, &tags("aaaaaa", "mine2345")),
            // A guest of a deployment in flight: its own run decides.
            guest(106, &tags("eeeeee", "mine2345")),
            // Only the id tag, for a deployment this store knows as DELETED: ours.
            guest(107, &format!("{ID_TAG}bbbbbb")),
            // Only the id tag, for an id unknown here: could be anyone's.
            guest(108, &format!("{ID_TAG}ffffff")),
        ];
        let list = [
            entry("aaaaaa", Some(100), Status::Running),
            entry("bbbbbb", Some(101), Status::Deleted),
            entry("eeeeee", Some(110), Status::Provisioning),
        ];
        let found = orphans(&guests, &list, "mine2345");
        let vmids: Vec<u32> = found.iter().map(|o| o.vmid).collect();
        assert_eq!(vmids, [101, 102, 105, 107]);
        assert!(found[0].why.contains("DELETED"), "{}", found[0].why);
        assert_eq!(found[0].deployment_name.as_deref(), Some("app-bbbbbb"));
        assert!(found[1].why.contains("not in proxdeck's records"));
        assert!(found[2].why.contains("second guest of app-aaaaaa"));
        assert!(found[2].why.contains("vmid 100"));
        // A template never is one.
        let mut tpl = guest(120, &tags("cccccc", "mine2345"));
        tpl.template = true;
        assert!(orphans(&[tpl], &[], "mine2345").is_empty());
    }

    #[test]
    fn refusals_say_what_the_guest_is() {
        let list = [entry("aaaaaa", Some(100), Status::Running)];
        let why = why_not_orphan(&guest(100, &tags("aaaaaa", "mine2345")), &list, "mine2345");
        assert!(why.contains("proxdeck destroy aaaaaa"), "{why}");
        let why = why_not_orphan(&guest(104, "web"), &list, "mine2345");
        assert!(why.contains("carries no proxdeck id"), "{why}");
        let why = why_not_orphan(&guest(103, &tags("dddddd", "other234")), &list, "mine2345");
        assert!(
            why.contains("another proxdeck installation (other234)"),
            "{why}"
        );
    }

    #[test]
    fn the_installation_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let paths = DataPaths::new(dir.path());
        let first = installation(&paths).unwrap();
        assert_eq!(first.len(), 8);
        assert!(id_like(&first));
        assert_eq!(installation(&paths).unwrap(), first);
        std::fs::write(dir.path().join(INSTALLATION_FILE), "not an id!\n").unwrap();
        let err = installation(&paths).unwrap_err();
        assert!(err.to_string().contains("not an installation id"), "{err}");
    }
}
