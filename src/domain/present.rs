//! How deployments and jobs are worded, shared by the CLI and the TUI so both say the same
//! thing the same way: a deployment's name with its id, the status a user reads (QUEUED while
//! a deploy waits its turn), a job in one phrase, an operation's result in one line.
//! Pure formatting: no I/O, no colours (each front end styles the words its own way).

use super::job::{Job, JobState, OpKind};
use super::{Deployment, Status};

/// `shop (k3x9ta)`.
pub fn who(d: &Deployment) -> String {
    format!("{} ({})", d.name, d.id)
}

/// `shop (k3x9ta) is RUNNING at http://10.0.0.5:8000/`: what an operation left behind.
pub fn settled(d: &Deployment) -> String {
    let url = match (d.status, &d.url) {
        (Status::Running, Some(url)) => format!(" at {url}"),
        _ => String::new(),
    };
    format!("{} is {}{url}", who(d), d.status)
}

/// The status a user reads: QUEUED for a new deployment whose deploy waits in the queue,
/// else the deployment's own status.
pub fn status_text(d: &Deployment, job: Option<&Job>) -> String {
    match job {
        Some(j) if j.state == JobState::Queued && d.status == Status::Pending => {
            "QUEUED".to_string()
        }
        _ => d.status.to_string(),
    }
}

/// A job in a few words: `deploy running`, `redeploy queued (2nd in line)`,
/// `destroy cancelling`, `retry failed`.
pub fn job_phrase(j: &Job) -> String {
    let op = j.kind().as_str();
    match j.state {
        JobState::Running if j.cancel_requested => format!("{op} cancelling"),
        JobState::Queued => match j.position {
            Some(p) => format!("{op} queued ({} in line)", ordinal(p)),
            None => format!("{op} queued"),
        },
        state => format!("{op} {state}"),
    }
}

/// `1st`, `2nd`, `3rd`, `4th`, ..., `11th`, `21st`.
pub fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What a front end says when it hands an operation to the worker.
pub fn queued_note(op: OpKind, target: &str, j: &Job) -> String {
    let what = if op == OpKind::Sync {
        "sync".to_string()
    } else {
        format!("{op} {target}")
    };
    match (j.state, j.position) {
        (JobState::Queued, Some(p)) if p > 1 => {
            format!("{what} is queued as job {} ({} in line)", j.id, ordinal(p))
        }
        _ => format!("{what} started as job {}", j.id),
    }
}

/// What goes on after a front end closes: `2 jobs go on in proxdeck's worker: deploy shop
/// (running), redeploy api (queued)`, or `None` when nothing runs.
pub fn work_goes_on(jobs: &[(Job, String)]) -> Option<String> {
    let active: Vec<String> = jobs
        .iter()
        .filter(|(j, _)| j.state.is_active())
        .map(|(j, name)| {
            let what = if j.kind() == OpKind::Sync {
                "sync".to_string()
            } else {
                format!("{} {name}", j.kind())
            };
            format!("{what} ({})", j.state)
        })
        .collect();
    if active.is_empty() {
        return None;
    }
    let n = active.len();
    Some(format!(
        "{n} job{} go{} on in proxdeck's worker: {}. `proxdeck jobs` lists them; `proxdeck logs -f ID` follows one.",
        if n == 1 { "" } else { "s" },
        if n == 1 { "es" } else { "" },
        active.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeploymentId, JobId, Op};

    fn job(op: Op, state: JobState, position: Option<u32>) -> Job {
        Job {
            id: JobId(7),
            op,
            deployment: Some(DeploymentId("k3x9ta".into())),
            state,
            requested_by: "me via cli".into(),
            created_at: 0,
            started_at: None,
            finished_at: None,
            cancel_requested: false,
            log_from: 0,
            outcome: None,
            position,
        }
    }

    #[test]
    fn a_waiting_deploy_reads_queued_with_its_place() {
        let d = Deployment {
            id: DeploymentId("k3x9ta".into()),
            name: "shop".into(),
            ..Deployment::default()
        };
        let j = job(Op::Deploy, JobState::Queued, Some(2));
        assert_eq!(status_text(&d, Some(&j)), "QUEUED");
        assert_eq!(status_text(&d, None), "PENDING");
        assert_eq!(job_phrase(&j), "deploy queued (2nd in line)");
        assert_eq!(
            queued_note(OpKind::Deploy, "shop", &j),
            "deploy shop is queued as job #7 (2nd in line)"
        );
        let mut running = job(Op::Destroy { force: false }, JobState::Running, None);
        assert_eq!(job_phrase(&running), "destroy running");
        running.cancel_requested = true;
        assert_eq!(job_phrase(&running), "destroy cancelling");
        assert_eq!(
            [1, 2, 3, 4, 11, 12, 13, 21, 22, 101].map(ordinal),
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"
            ]
        );
    }

    #[test]
    fn closing_a_front_end_names_the_work_that_goes_on() {
        assert_eq!(work_goes_on(&[]), None);
        let done = job(Op::Deploy, JobState::Succeeded, None);
        assert_eq!(work_goes_on(&[(done.clone(), "shop".into())]), None);
        let text = work_goes_on(&[
            (job(Op::Deploy, JobState::Running, None), "shop".into()),
            (done, "old".into()),
            (job(Op::Sync, JobState::Queued, Some(1)), String::new()),
        ])
        .unwrap();
        assert!(
            text.starts_with(
                "2 jobs go on in proxdeck's worker: deploy shop (running), sync (queued)"
            ),
            "{text}"
        );
    }
}
