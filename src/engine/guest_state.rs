//! What is on a guest for one app, read over the deployment's SSH session (as root, `sudo -n`
//! for another user; every value in a command shell-quoted). Two questions:
//!
//! - While the health check waits: is the app's service crashing? An app that exits right
//!   after it starts (a missing setting, a crash on import) fails the health check at once
//!   with its last log lines, instead of being waited on for the whole `timeouts.health_secs`.
//!   A probe reads, for a systemd unit, its `ActiveState` and `NRestarts`; for an OpenRC
//!   service whether it is started; for proxdeck's plain supervisor (no service manager)
//!   whether the supervisor lives and how many times it logged that the app exited
//!   (`run/app.log`). The first probe is the baseline; the app counts as crashing once it was
//!   restarted [`RESTARTS_TO_FAIL`] more times, or as dead when its service stopped.
//! - After the app was removed from a host (`destroy` of a `--host` deployment): is anything
//!   left? Its service (unit file, OpenRC script, a running unit), its system user, its folder.
//!
//!   While it waits, the probe also lists who listens on the app's port (`ss -ltnp`): a
//!   process not running as the app's own user (its service's processes all do) holding the
//!   port fails the check at once, naming it; so does an answer while only such a process
//!   listens (another app answering for this one).
//! - Which releases the guest keeps (`releases/`), for `rollback` to reconcile the store.
//!
//! It only reads; it never restarts, stops or changes anything on the guest.

use super::guest;
use super::provision;
use super::ssh::{self, SshError, Target};
use crate::protocol::LogStream;
use std::time::Duration;

/// Restarts after the baseline that mean the app keeps exiting (the service managers restart
/// it every 2 s); one alone may be a slow dependency.
pub const RESTARTS_TO_FAIL: u64 = 2;
/// How long one probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// The app's log lines a crash report carries.
pub const LAST_LINES: u32 = 20;

/// Which service manager runs the app, as the provisioning installed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    OpenRc,
    Supervisor,
}

/// What one probe saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub manager: Manager,
    /// The service (or supervisor) is up, possibly between two restarts.
    pub alive: bool,
    /// Restarts counted so far (systemd's `NRestarts`, the supervisor's "exited" lines).
    pub restarts: u64,
    /// Who listens on the app's port; `None` when the guest cannot say (no `ss`).
    pub listeners: Option<Vec<Listener>>,
}

/// A process listening on the app's port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Runs as the app's own user: the app's service.
    pub ours: bool,
    /// `NAME (pid N, user U[, unit X])`.
    pub what: String,
}

/// Why the health check stops waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Crash {
    /// Restarted this many times since the health check began.
    Restarting(u64),
    /// The service is not running any more (failed, or ended without a restart).
    Stopped,
    /// Another process (not the app's service) listens on the app's port.
    PortHeld { port: u16, by: String },
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Crash::Restarting(n) => write!(
                f,
                "the app keeps exiting right after it starts: its service restarted it {n} times while the health check waited"
            ),
            Crash::Stopped => f.write_str(
                "the app's service stopped while the health check waited: the app exited and was not restarted",
            ),
            Crash::PortHeld { port, by } => write!(
                f,
                "port {port} is held by {by}, not by this app's service: what answers there is not this release"
            ),
        }
    }
}

/// The probe for the app `name` under `app_root`: prints `manager=`, then the manager's own
/// state lines (`ActiveState=`, `NRestarts=`) or proxdeck's (`state=`, `supervisor=`,
/// `exits=`). Values are shell-quoted.
pub fn probe_command(name: &str, app_root: &str) -> String {
    let q = |s: &str| {
        shlex::try_quote(s)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| "''".to_string())
    };
    format!(
        r#"svc={svc}; dir={dir}
if [ -d /run/systemd/system ] && [ -f "/etc/systemd/system/$svc.service" ] && command -v systemctl >/dev/null 2>&1; then
  echo manager=systemd
  systemctl show -p ActiveState -p NRestarts "$svc" 2>/dev/null || true
elif [ -f "/etc/init.d/$svc" ] && command -v rc-service >/dev/null 2>&1; then
  echo manager=openrc
  if rc-service "$svc" status >/dev/null 2>&1; then echo state=started; else echo state=stopped; fi
else
  echo manager=supervisor
  pid=$(cat "$dir/run/app.pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo supervisor=alive; else echo supervisor=dead; fi
  echo "exits=$(grep -c '^proxdeck supervisor: the app exited' "$dir/run/app.log" 2>/dev/null || true)"
fi
"#,
        svc = q(&provision::service_name(name)),
        dir = q(&provision::app_dir(app_root, name)),
    )
}

/// The part of a probe that lists who listens on TCP `port`: `listeners=ss` when `ss` can
/// tell, then one `listener=ours|other WHAT` line per process.
pub fn listeners_command(port: u16, app_user: &str) -> String {
    let user = shlex::try_quote(app_user)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| "''".to_string());
    format!(
        r#"if command -v ss >/dev/null 2>&1; then
  echo listeners=ss
  for pid in $(ss -ltnpH "sport = :{port}" 2>/dev/null | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
    owner=$(stat -c %U "/proc/$pid" 2>/dev/null || echo '?')
    name=$(cat "/proc/$pid/comm" 2>/dev/null || echo '?')
    unit=$(sed -n 's#^0::.*/\([^/]*\.service\)$##p' "/proc/$pid/cgroup" 2>/dev/null | head -n 1)
    if [ "$owner" = {user} ]; then who=ours; else who=other; fi
    echo "listener=$who $name (pid $pid, user $owner${{unit:+, unit $unit}})"
  done
fi
"#
    )
}

/// Reads a probe's output; `None` when it is not one.
pub fn parse_probe(text: &str) -> Option<Probe> {
    let mut manager = None;
    let mut alive = false;
    let mut restarts = 0u64;
    let mut listeners: Option<Vec<Listener>> = None;
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else {
            continue;
        };
        match key {
            "manager" => {
                manager = match value {
                    "systemd" => Some(Manager::Systemd),
                    "openrc" => Some(Manager::OpenRc),
                    "supervisor" => Some(Manager::Supervisor),
                    _ => None,
                }
            }
            // "activating" is systemd waiting to restart the app: alive, its restarts count.
            "ActiveState" => alive = matches!(value, "active" | "activating" | "reloading"),
            "state" => alive = value == "started",
            "supervisor" => alive = value == "alive",
            "NRestarts" | "exits" => restarts = value.trim().parse().unwrap_or(0),
            "listeners" => listeners = Some(Vec::new()),
            "listener" => {
                if let (Some(list), Some((who, what))) = (listeners.as_mut(), value.split_once(' '))
                {
                    list.push(Listener {
                        ours: who == "ours",
                        what: what.to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    Some(Probe {
        manager: manager?,
        alive,
        restarts,
        listeners,
    })
}

/// Another process than the app's service holding its port, as the probe saw it.
pub fn port_held(probe: &Probe, port: u16) -> Option<Crash> {
    let others: Vec<&str> = probe
        .listeners
        .as_ref()?
        .iter()
        .filter(|l| !l.ours)
        .map(|l| l.what.as_str())
        .collect();
    (!others.is_empty()).then(|| Crash::PortHeld {
        port,
        by: others.join("; "),
    })
}

/// Whether the app's own service listens on its port: `None` when the guest cannot say.
pub fn ours_listening(probe: &Probe) -> Option<bool> {
    Some(probe.listeners.as_ref()?.iter().any(|l| l.ours))
}

/// Whether the app is crashing, from the baseline probe and a later one.
pub fn verdict(base: &Probe, now: &Probe) -> Option<Crash> {
    if !now.alive {
        return Some(Crash::Stopped);
    }
    let more = now.restarts.saturating_sub(base.restarts);
    (more >= RESTARTS_TO_FAIL).then_some(Crash::Restarting(more))
}

/// A command run as root on the guest: directly for root, else through `sudo -n`.
fn as_root(target: &Target, command: &str) -> String {
    if !guest::needs_sudo(target) {
        return command.to_string();
    }
    let quoted = shlex::try_quote(command)
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| "''".to_string());
    format!("sudo -n sh -c {quoted}")
}

/// Runs one probe over `session`. Blocks.
pub fn probe(session: &ssh2::Session, target: &Target, command: &str) -> Result<Probe, SshError> {
    let mut stdout = String::new();
    let mut stderr = Vec::new();
    let mut collect = |stream: LogStream, lines: Vec<String>| match stream {
        LogStream::Stdout => {
            for l in lines {
                stdout.push_str(&l);
                stdout.push('\n');
            }
        }
        _ => stderr.extend(lines),
    };
    let rc = ssh::exec(
        session,
        target,
        &as_root(target, command),
        None,
        PROBE_TIMEOUT,
        &mut collect,
    )?;
    parse_probe(&stdout).ok_or_else(|| SshError::Protocol {
        target: target.label(),
        message: format!(
            "the service probe printed no state (status {rc}): {}",
            stderr.join(" ")
        ),
    })
}

/// The app's last `LAST_LINES` log lines (journal, OpenRC log or `run/app.log`, whichever
/// the guest has), empty when they cannot be read. Blocks.
pub fn last_lines(
    session: &ssh2::Session,
    target: &Target,
    name: &str,
    app_root: &str,
) -> Vec<String> {
    let Ok(script) = provision::render_logs(name, app_root, LAST_LINES, false) else {
        return Vec::new();
    };
    let mut lines = Vec::new();
    let mut collect = |_: LogStream, batch: Vec<String>| lines.extend(batch);
    let read = guest::run_script(
        session,
        target,
        &script,
        PROBE_TIMEOUT,
        &|| false,
        &mut collect,
    );
    if read.is_err() {
        return Vec::new();
    }
    let skip = lines.len().saturating_sub(LAST_LINES as usize);
    lines.into_iter().skip(skip).collect()
}

/// The command that lists the app's releases on its guest, as the scripts do
/// (`proxdeck-kept: FOLDER STATE [current]`), then `listed`.
pub fn releases_command(name: &str, app_root: &str) -> String {
    let dir = shlex::try_quote(&provision::app_dir(app_root, name))
        .map(|c| c.into_owned())
        .unwrap_or_else(|_| "''".to_string());
    format!(
        r#"dir={dir}; cur=$(readlink "$dir/current" 2>/dev/null || true); cur=${{cur#releases/}}
for d in $(find "$dir/releases" -mindepth 1 -maxdepth 1 -type d -printf '%f
' 2>/dev/null | sort -t- -k1,1n); do
  s=$(cat "$dir/releases/$d/state" 2>/dev/null || true)
  case "$s" in built | failed) ;; *) s=building ;; esac
  c=; [ "$d" = "$cur" ] && c=' current'
  printf 'proxdeck-kept: %s %s%s
' "$d" "$s" "$c"
done
echo listed
"#
    )
}

/// The app's releases on its guest. Blocks.
pub fn guest_releases(
    session: &ssh2::Session,
    target: &Target,
    name: &str,
    app_root: &str,
) -> Result<Vec<provision::KeptRelease>, SshError> {
    let mut lines = provision::ReleaseLines::default();
    let mut done = false;
    let mut stderr = Vec::new();
    let mut collect = |stream: LogStream, batch: Vec<String>| match stream {
        LogStream::Stdout => {
            for l in batch {
                done |= l.trim() == "listed";
                lines.read(&l);
            }
        }
        _ => stderr.extend(batch),
    };
    let rc = ssh::exec(
        session,
        target,
        &as_root(target, &releases_command(name, app_root)),
        None,
        PROBE_TIMEOUT,
        &mut collect,
    )?;
    if !done {
        return Err(SshError::Protocol {
            target: target.label(),
            message: format!(
                "the list of releases did not finish (status {rc}): {}",
                stderr.join(" ")
            ),
        });
    }
    Ok(lines.kept)
}

/// The command that lists what is left of the app `name` after its removal: one `left: ...`
/// line per thing still there, then `checked`. Values are shell-quoted.
pub fn leftovers_command(name: &str, app_root: &str) -> String {
    let q = |s: &str| {
        shlex::try_quote(s)
            .map(|c| c.into_owned())
            .unwrap_or_else(|_| "''".to_string())
    };
    format!(
        r#"svc={svc}; dir={dir}; user={user}
if [ -e "/etc/systemd/system/$svc.service" ]; then echo "left: the systemd unit $svc"; fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ] && systemctl is-active --quiet "$svc" 2>/dev/null; then echo "left: the running service $svc"; fi
if [ -e "/etc/init.d/$svc" ]; then echo "left: the OpenRC service $svc"; fi
if id -u "$user" >/dev/null 2>&1; then echo "left: the system user $user"; fi
if [ -e "$dir" ]; then echo "left: the folder $dir"; fi
echo checked
"#,
        svc = q(&provision::service_name(name)),
        dir = q(&provision::app_dir(app_root, name)),
        user = q(&provision::app_user(name)),
    )
}

/// Reads what [`leftovers_command`] printed: the things left, or `None` when the check did not
/// run to its end.
pub fn parse_leftovers(text: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    if !lines.contains(&"checked") {
        return None;
    }
    Some(
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("left: "))
            .map(str::to_string)
            .collect(),
    )
}

/// What is left on the guest of the app `name` (empty: all gone). Blocks.
pub fn leftovers(
    session: &ssh2::Session,
    target: &Target,
    name: &str,
    app_root: &str,
) -> Result<Vec<String>, SshError> {
    let mut stdout = String::new();
    let mut stderr = Vec::new();
    let mut collect = |stream: LogStream, lines: Vec<String>| match stream {
        LogStream::Stdout => {
            for l in lines {
                stdout.push_str(&l);
                stdout.push('\n');
            }
        }
        _ => stderr.extend(lines),
    };
    let command = leftovers_command(name, app_root);
    let rc = ssh::exec(
        session,
        target,
        &as_root(target, &command),
        None,
        PROBE_TIMEOUT,
        &mut collect,
    )?;
    parse_leftovers(&stdout).ok_or_else(|| SshError::Protocol {
        target: target.label(),
        message: format!(
            "the check of what is left did not finish (status {rc}): {}",
            stderr.join(" ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_are_listed_only_from_a_finished_check() {
        assert_eq!(parse_leftovers("checked\n"), Some(vec![]));
        assert_eq!(
            parse_leftovers(
                "left: the system user pd-shop\nleft: the folder /opt/x/shop\nchecked\n"
            ),
            Some(vec![
                "the system user pd-shop".to_string(),
                "the folder /opt/x/shop".to_string()
            ])
        );
        assert_eq!(parse_leftovers("left: the folder /x\n"), None);
        let c = leftovers_command("shop", "/srv/my apps");
        assert!(
            c.starts_with("svc=proxdeck-shop; dir='/srv/my apps/shop'; user=pd-shop\n"),
            "{c}"
        );
    }

    #[test]
    fn probes_of_each_manager_parse() {
        assert_eq!(
            parse_probe("manager=systemd\nActiveState=activating\nNRestarts=3\n"),
            Some(Probe {
                manager: Manager::Systemd,
                alive: true,
                restarts: 3,
                listeners: None,
            })
        );
        assert_eq!(
            parse_probe("manager=systemd\nActiveState=failed\nNRestarts=5\n"),
            Some(Probe {
                manager: Manager::Systemd,
                alive: false,
                restarts: 5,
                listeners: None,
            })
        );
        assert_eq!(
            parse_probe("manager=openrc\nstate=started\n"),
            Some(Probe {
                manager: Manager::OpenRc,
                alive: true,
                restarts: 0,
                listeners: None,
            })
        );
        assert_eq!(
            parse_probe("manager=supervisor\nsupervisor=alive\nexits=\n"),
            Some(Probe {
                manager: Manager::Supervisor,
                alive: true,
                restarts: 0,
                listeners: None,
            })
        );
        assert_eq!(parse_probe("sh: 1: syntax error\n"), None);
    }

    #[test]
    fn listeners_on_the_port_name_what_is_not_the_apps() {
        let text = "manager=systemd\nActiveState=active\nNRestarts=0\nlisteners=ss\n\
            listener=other gunicorn (pid 41, user pd-a, unit proxdeck-a.service)\n";
        let p = parse_probe(text).unwrap();
        assert_eq!(ours_listening(&p), Some(false));
        let held = port_held(&p, 5000).unwrap().to_string();
        assert!(
            held.contains(
                "port 5000 is held by gunicorn (pid 41, user pd-a, unit proxdeck-a.service)"
            ),
            "{held}"
        );
        let ours = parse_probe("manager=supervisor\nsupervisor=alive\nlisteners=ss\nlistener=ours python3 (pid 7, user pd-b)\n").unwrap();
        assert_eq!(ours_listening(&ours), Some(true));
        assert_eq!(port_held(&ours, 5000), None);
        // No `ss` on the guest: it cannot tell, and nothing is concluded.
        let blind = parse_probe("manager=openrc\nstate=started\n").unwrap();
        assert_eq!((ours_listening(&blind), port_held(&blind, 1)), (None, None));
        let c = listeners_command(5000, "pd-b");
        assert!(c.contains("sport = :5000") && c.contains("= pd-b ]"), "{c}");
        let r = releases_command("shop", "/srv/my apps");
        assert!(r.starts_with("dir='/srv/my apps/shop';"), "{r}");
    }

    #[test]
    fn restarts_count_from_the_baseline() {
        let at = |restarts, alive| Probe {
            manager: Manager::Supervisor,
            alive,
            restarts,
            listeners: None,
        };
        // Exits before the health check began (an earlier deploy's) do not count.
        assert_eq!(verdict(&at(7, true), &at(7, true)), None);
        assert_eq!(verdict(&at(7, true), &at(8, true)), None);
        assert_eq!(
            verdict(&at(7, true), &at(9, true)),
            Some(Crash::Restarting(2))
        );
        assert_eq!(verdict(&at(0, true), &at(0, false)), Some(Crash::Stopped));
        assert!(Crash::Restarting(2).to_string().contains("2 times"));
    }

    #[test]
    fn the_probe_quotes_what_it_is_given() {
        let c = probe_command("shop", "/srv/my apps");
        assert!(
            c.starts_with("svc=proxdeck-shop; dir='/srv/my apps/shop'\n"),
            "{c}"
        );
        let target = Target {
            host: "h".into(),
            port: 22,
            user: "deploy".into(),
        };
        let wrapped = as_root(&target, "echo 'x'");
        assert_eq!(
            shlex::split(&wrapped).unwrap(),
            ["sudo", "-n", "sh", "-c", "echo 'x'"]
        );
    }
}
