//! `proxdeck auto-deploy ID [on|off]`: turns deploy-on-push on or off for a deployment and
//! shows its state (the commit seen last, the next look, the last failure). The polling is
//! the worker's (`engine::autodeploy`); turning it on makes sure the worker runs.

use super::{AutoDeployArgs, CliError, print_json};
use crate::domain::{OpKind, policy, present};
use crate::engine::Engine;
use crate::store::autodeploy::AutoDeploy;

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|| "-".into())
}

pub(super) async fn command(engine: &Engine, a: &AutoDeployArgs) -> Result<(), CliError> {
    let key = a.id.clone();
    let d = engine.db.call(move |s| s.find(&key)).await?;
    let state = match a.state.as_deref() {
        Some("on") => {
            // Auto-deploy queues redeploys: refuse what could never be redeployed.
            if d.origin == crate::domain::Origin::Imported {
                return Err(CliError::failed(
                    policy::check(OpKind::Redeploy, &d)
                        .err()
                        .map(|r| r.0)
                        .unwrap_or_default(),
                ));
            }
            let id = d.id.clone();
            let s = engine
                .db
                .call(move |s| s.set_auto_deploy(&id, true))
                .await?;
            crate::engine::worker::ensure_running(engine).map_err(|e| {
                CliError::failed(format!(
                    "auto-deploy is on, but proxdeck's worker (which polls) could not be started: {e}"
                ))
            })?;
            s
        }
        Some(_) => {
            let id = d.id.clone();
            engine
                .db
                .call(move |s| s.set_auto_deploy(&id, false))
                .await?
        }
        None => {
            let id = d.id.clone();
            engine
                .db
                .call(move |s| s.auto_deploy(&id))
                .await?
                .unwrap_or(AutoDeploy {
                    deployment: d.id.clone(),
                    ..AutoDeploy::default()
                })
        }
    };
    if a.json {
        return print_json(&state);
    }
    let every = engine.config.auto_deploy.interval.as_secs();
    if !state.enabled {
        println!("auto-deploy is off for {}", present::who(&d));
        return Ok(());
    }
    println!(
        "auto-deploy is on for {}: the worker looks at {} of {} every {every} s and redeploys when its commit changes",
        present::who(&d),
        if d.git_ref.is_empty() {
            "the default branch"
        } else {
            &d.git_ref
        },
        d.repo
    );
    if let Some(seen) = &state.last_seen {
        println!("  last seen: {seen}");
    }
    if state.next_check_at > 0 {
        println!("  next look: {}", when(state.next_check_at));
    }
    if let Some(job) = state.job {
        println!("  redeploy job {job} queued by auto-deploy");
    }
    if let Some(e) = &state.last_error {
        println!(
            "  last failure ({} in a row, {}): {e}",
            state.failures,
            state.last_error_at.map(when).unwrap_or_default()
        );
    }
    Ok(())
}
