//! Where a deployment's words go: every line is cleaned of terminal escape codes (the colours
//! and cursor moves of npm, pip or a build tool), redacted (secrets become `***`), persisted in
//! the store first, then sent to the clients as `EngineEvent`s. Status changes go through here
//! too, so what a user sees is always what the store holds.

use crate::domain::{Deployment, DeploymentId, Stage, Status};
use crate::engine::process::Output;
use crate::protocol::{EngineEvent, LogLine, LogStream};
use crate::store::{Db, Result, now_ms};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// The line without terminal escape sequences (CSI such as colours and cursor moves, OSC such
/// as window titles and hyperlinks) and control characters other than whitespace. The parser
/// is anstream's (clap's terminal layer, already part of the build): a VT state machine.
pub fn strip_escapes(line: &str) -> String {
    if !line.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return line.to_string();
    }
    anstream::adapter::strip_str(line).to_string()
}

/// Replaces every secret value in a line with `***`.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// Secrets shorter than 3 characters are not redacted: they would mask ordinary text and
    /// protect nothing.
    pub fn new<I: IntoIterator<Item = String>>(secrets: I) -> Redactor {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 3).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn redact(&self, line: &str) -> String {
        let mut out = line.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }
}

#[derive(Clone)]
pub struct Reporter {
    pub id: DeploymentId,
    db: Db,
    events: mpsc::UnboundedSender<EngineEvent>,
    redactor: Arc<Redactor>,
    stage: Arc<Mutex<Option<Stage>>>,
}

impl Reporter {
    pub fn new(
        id: DeploymentId,
        db: Db,
        events: mpsc::UnboundedSender<EngineEvent>,
        redactor: Redactor,
    ) -> Reporter {
        Reporter {
            id,
            db,
            events,
            redactor: Arc::new(redactor),
            stage: Arc::new(Mutex::new(None)),
        }
    }

    fn current_stage(&self) -> Option<Stage> {
        *self.stage.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Persists and publishes a batch of lines from one stream.
    pub async fn lines(&self, stream: LogStream, lines: Vec<String>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let at = now_ms();
        let stage = self.current_stage();
        let lines: Vec<LogLine> = lines
            .into_iter()
            .map(|text| LogLine {
                at,
                stream,
                stage,
                text: self.redactor.redact(&strip_escapes(&text)),
            })
            .collect();
        let id = self.id.clone();
        let stored = lines.clone();
        self.db.call(move |s| s.append_logs(&id, &stored)).await?;
        let _ = self.events.send(EngineEvent::Log {
            id: self.id.clone(),
            lines,
        });
        Ok(())
    }

    pub async fn info(&self, text: impl Into<String>) -> Result<()> {
        self.lines(LogStream::Info, vec![text.into()]).await
    }

    /// Marks the start of a stage in the store and the log.
    pub async fn stage(&self, stage: Stage) -> Result<()> {
        *self.stage.lock().unwrap_or_else(|p| p.into_inner()) = Some(stage);
        let id = self.id.clone();
        self.db.call(move |s| s.set_stage(&id, stage)).await?;
        let _ = self.events.send(EngineEvent::StageStarted {
            id: self.id.clone(),
            stage,
        });
        self.info(format!("--- stage {stage} ---")).await
    }

    /// Moves the deployment to `to` (checked against the graph), then tells the clients.
    pub async fn transition(&self, to: Status, message: Option<String>) -> Result<Deployment> {
        let id = self.id.clone();
        let stage = self.current_stage();
        let message = message.map(|m| self.redactor.redact(&m));
        let d = self
            .db
            .call(move |s| s.transition(&id, to, stage, message.as_deref()))
            .await?;
        let _ = self.events.send(EngineEvent::StatusChanged {
            id: self.id.clone(),
            status: to,
            stage: d.stage,
        });
        Ok(d)
    }

    /// A channel for process output; a task forwards each batch to [`Reporter::lines`] in
    /// order. Await the returned handle after the process finished to be sure all is stored.
    pub fn pipe(
        &self,
    ) -> (
        mpsc::UnboundedSender<Output>,
        tokio::task::JoinHandle<Result<()>>,
    ) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Output>();
        let me = self.clone();
        let handle = tokio::spawn(async move {
            while let Some(o) = rx.recv().await {
                me.lines(o.stream, o.lines).await?;
            }
            Ok(())
        });
        (tx, handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_longest_first() {
        let r = Redactor::new(vec![
            "abc".to_string(),
            "abcdef".to_string(),
            "x".to_string(),
        ]);
        assert_eq!(r.redact("token=abcdef and abc, x"), "token=*** and ***, x");
        assert_eq!(Redactor::default().redact("plain"), "plain");
    }

    #[test]
    fn escape_codes_are_stripped() {
        // npm's and pip's colours, a bold reset, a cursor move and an erase.
        assert_eq!(
            strip_escapes("\x1b[1m\x1b[31mnpm ERR!\x1b[39m\x1b[22m code 1"),
            "npm ERR! code 1"
        );
        assert_eq!(strip_escapes("\x1b[2K\x1b[1Gdone"), "done");
        assert_eq!(
            strip_escapes("\x1b[38;5;196mred\x1b[0m \x1b[38;2;1;2;3mrgb\x1b[m"),
            "red rgb"
        );
        // OSC: a window title (BEL-terminated) and a hyperlink (ST-terminated).
        assert_eq!(strip_escapes("\x1b]0;title\x07text"), "text");
        assert_eq!(
            strip_escapes("\x1b]8;;https://example.org\x1b\\link\x1b]8;;\x1b\\"),
            "link"
        );
        // Tabs and text without escapes pass through; non-ASCII text is kept.
        assert_eq!(strip_escapes("a\tb ünïcode ✓"), "a\tb ünïcode ✓");
        // A secret split by colour codes is still masked once the codes are gone.
        let r = Redactor::new(vec!["hunter22".to_string()]);
        assert_eq!(r.redact(&strip_escapes("pw=hun\x1b[1mter22")), "pw=***");
    }
}
