//! The deploy wizard: repository and ref (checked in the background: `git ls-remote`, then
//! the framework detected with its reason), the framework (detected, or picked from the
//! catalog), the guest (name suggested from the repository; a new guest, LXC or VM, on a node
//! with its free capacity, or an existing host reached over SSH: address, port, user), resources (the framework's defaults until typed), environment variables (values
//! masked), and a review of what the engine would create before the deploy is confirmed.
//!
//! Owns the form: `tui-input` fields, the page, the focus, the errors (from
//! `DeployInput::validate` as the user types, one message per field), the answers of the
//! background checks (kept only while they match what is typed: latest wins). Esc steps back a
//! page and the typed values stay. It must not do I/O: checks and the review are `Request`s.

use super::{Ctx, Intent};
use crate::domain::spec::{DeployInput, suggest_name, validate_env_name};
use crate::domain::{Catalog, GuestType};
use crate::protocol::{ClusterSnapshot, Detected, Request, Settings};
use crate::tui::keys::{Action, Mode};
use crate::tui::widgets::Field;
use crate::tui::widgets::text::{SPINNER, format_bytes, wrap};
use crossterm::event::{Event, KeyEvent};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Padding, Paragraph};
use tui_input::Input;
use tui_input::backend::crossterm::to_input_request;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    Source,
    Framework,
    Guest,
    Resources,
    Env,
    Review,
}

impl Page {
    const ALL: [Page; 6] = [
        Page::Source,
        Page::Framework,
        Page::Guest,
        Page::Resources,
        Page::Env,
        Page::Review,
    ];

    fn title(self) -> &'static str {
        match self {
            Page::Source => "Repository",
            Page::Framework => "Framework",
            Page::Guest => "Guest",
            Page::Resources => "Resources",
            Page::Env => "Environment",
            Page::Review => "Review",
        }
    }

    fn index(self) -> usize {
        Page::ALL.iter().position(|p| *p == self).unwrap_or(0)
    }

    fn fields(self) -> &'static [FieldId] {
        match self {
            Page::Source => &[FieldId::Repo, FieldId::Ref],
            Page::Guest => &[FieldId::Name, FieldId::Target, FieldId::Type, FieldId::Node],
            Page::Resources => &[
                FieldId::Cores,
                FieldId::Memory,
                FieldId::Disk,
                FieldId::Port,
            ],
            _ => &[],
        }
    }

    /// The validation fields (`FieldError::field`) this page answers for.
    fn checks(self) -> &'static [&'static str] {
        match self {
            Page::Source => &["repo", "ref"],
            Page::Framework => &["framework"],
            Page::Guest => &["name", "type", "node", "host", "ssh-port", "ssh-user"],
            Page::Resources => &["cores", "memory", "disk", "port"],
            Page::Env => &["env"],
            Page::Review => &[],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FieldId {
    Repo,
    Ref,
    Name,
    /// A new guest or an existing host.
    Target,
    Type,
    Node,
    Host,
    SshPort,
    SshUser,
    Cores,
    Memory,
    Disk,
    Port,
}

impl FieldId {
    fn is_text(self) -> bool {
        !matches!(self, FieldId::Type | FieldId::Node | FieldId::Target)
    }

    /// The name `DeployInput::validate` uses for it.
    fn check(self) -> &'static str {
        match self {
            FieldId::Repo => "repo",
            FieldId::Ref => "ref",
            FieldId::Name => "name",
            FieldId::Target => "target",
            FieldId::Host => "host",
            FieldId::SshPort => "ssh-port",
            FieldId::SshUser => "ssh-user",
            FieldId::Type => "type",
            FieldId::Node => "node",
            FieldId::Cores => "cores",
            FieldId::Memory => "memory",
            FieldId::Disk => "disk",
            FieldId::Port => "port",
        }
    }

    fn label(self) -> &'static str {
        match self {
            FieldId::Repo => "Repository",
            FieldId::Ref => "Ref",
            FieldId::Name => "Name",
            FieldId::Target => "Onto",
            FieldId::Host => "Host",
            FieldId::SshPort => "SSH port",
            FieldId::SshUser => "SSH user",
            FieldId::Type => "Type",
            FieldId::Node => "Node",
            FieldId::Cores => "Cores",
            FieldId::Memory => "Memory MiB",
            FieldId::Disk => "Disk GiB",
            FieldId::Port => "App port",
        }
    }
}

/// Where the app goes: a guest proxdeck creates, or a host that exists (`deploy --host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Target {
    #[default]
    NewGuest,
    Host,
}

/// The Guest page's fields for a host that exists.
const HOST_FIELDS: [FieldId; 5] = [
    FieldId::Name,
    FieldId::Target,
    FieldId::Host,
    FieldId::SshPort,
    FieldId::SshUser,
];

/// Where new guests go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodeChoice {
    /// The config's `proxmox.node`.
    #[default]
    Default,
    /// The online node with the most free memory where the guest fits.
    Auto,
    Named(String),
}

/// The background check of the repository, for the (repo, ref) it was asked about.
#[derive(Debug, Clone, Default)]
struct RepoCheck {
    key: Option<(String, String)>,
    checked: Option<Result<String, String>>,
    detected: Option<Result<Detected, String>>,
}

#[derive(Debug, Clone, Default)]
struct EnvEdit {
    /// The entry being edited; `None`: a new one.
    index: Option<usize>,
    key: Input,
    value: Input,
    on_value: bool,
    error: Option<String>,
}

/// The review the engine answered, for the input it was asked about.
#[derive(Debug, Clone)]
struct Review {
    input: DeployInput,
    result: Result<Vec<(String, String)>, String>,
}

#[derive(Debug, Clone)]
pub struct WizardScreen {
    page: Page,
    focus: usize,
    repo: Input,
    git_ref: Input,
    name: Input,
    cores: Input,
    memory: Input,
    disk: Input,
    port: Input,
    guest_type: GuestType,
    node: NodeChoice,
    target: Target,
    host: Input,
    ssh_port: Input,
    ssh_user: Input,
    /// 0: auto (detected); i: the catalog's entry i-1.
    framework: usize,
    env: Vec<(String, String)>,
    env_sel: usize,
    env_edit: Option<EnvEdit>,
    check: RepoCheck,
    /// The (repo, ref) of the last `CheckRepo` sent.
    asked: Option<(String, String)>,
    review: Option<Review>,
    review_scroll: usize,
    errors: Vec<(&'static str, String)>,
    notice: Option<String>,
    /// A field was edited since the last tick: the repository check waits for a pause.
    typing: bool,
}

impl Default for WizardScreen {
    fn default() -> Self {
        WizardScreen::new()
    }
}

impl WizardScreen {
    pub fn new() -> WizardScreen {
        let mut w = WizardScreen {
            page: Page::Source,
            focus: 0,
            repo: Input::default(),
            git_ref: Input::default(),
            name: Input::default(),
            cores: Input::default(),
            memory: Input::default(),
            disk: Input::default(),
            port: Input::default(),
            guest_type: GuestType::Lxc,
            node: NodeChoice::Default,
            target: Target::NewGuest,
            host: Input::default(),
            ssh_port: Input::default(),
            ssh_user: Input::default(),
            framework: 0,
            env: Vec::new(),
            env_sel: 0,
            env_edit: None,
            check: RepoCheck::default(),
            asked: None,
            review: None,
            review_scroll: 0,
            errors: Vec::new(),
            notice: None,
            typing: false,
        };
        w.revalidate();
        w
    }

    pub fn page(&self) -> Page {
        self.page
    }

    /// The fields of the page shown: the Guest page asks for a host's address instead of a
    /// type and a node when the app goes onto an existing host.
    fn fields(&self) -> &'static [FieldId] {
        if self.page == Page::Guest && self.target == Target::Host {
            &HOST_FIELDS
        } else {
            self.page.fields()
        }
    }

    fn field(&self) -> Option<FieldId> {
        self.fields().get(self.focus).copied()
    }

    pub fn mode(&self) -> Mode {
        if self.env_edit.is_some() {
            return Mode::WizardEnvEdit;
        }
        match self.page {
            Page::Framework => Mode::WizardList,
            Page::Env => Mode::WizardEnv,
            Page::Review => Mode::WizardReview,
            _ => match self.field() {
                Some(f) if !f.is_text() => Mode::WizardChoice,
                _ => Mode::WizardText,
            },
        }
    }

    fn input_mut(&mut self, f: FieldId) -> Option<&mut Input> {
        Some(match f {
            FieldId::Repo => &mut self.repo,
            FieldId::Ref => &mut self.git_ref,
            FieldId::Name => &mut self.name,
            FieldId::Cores => &mut self.cores,
            FieldId::Memory => &mut self.memory,
            FieldId::Disk => &mut self.disk,
            FieldId::Port => &mut self.port,
            FieldId::Host => &mut self.host,
            FieldId::SshPort => &mut self.ssh_port,
            FieldId::SshUser => &mut self.ssh_user,
            FieldId::Type | FieldId::Node | FieldId::Target => return None,
        })
    }

    fn input_of(&self, f: FieldId) -> Option<&Input> {
        Some(match f {
            FieldId::Repo => &self.repo,
            FieldId::Ref => &self.git_ref,
            FieldId::Name => &self.name,
            FieldId::Cores => &self.cores,
            FieldId::Memory => &self.memory,
            FieldId::Disk => &self.disk,
            FieldId::Port => &self.port,
            FieldId::Host => &self.host,
            FieldId::SshPort => &self.ssh_port,
            FieldId::SshUser => &self.ssh_user,
            FieldId::Type | FieldId::Node | FieldId::Target => return None,
        })
    }

    /// The repository and ref as typed: what the background check is keyed on.
    fn source_key(&self) -> (String, String) {
        (
            self.repo.value().trim().to_string(),
            self.git_ref.value().trim().to_string(),
        )
    }

    /// The framework detected for what is typed now, if the check has answered.
    fn detected(&self) -> Option<&Result<Detected, String>> {
        (self.check.key.as_ref() == Some(&self.source_key()))
            .then_some(self.check.detected.as_ref())
            .flatten()
    }

    fn checked(&self) -> Option<&Result<String, String>> {
        (self.check.key.as_ref() == Some(&self.source_key()))
            .then_some(self.check.checked.as_ref())
            .flatten()
    }

    fn framework_id(&self) -> Option<String> {
        match self.framework {
            0 => match self.detected() {
                Some(Ok(d)) => Some(d.framework.clone()),
                _ => None,
            },
            i => Catalog::builtin()
                .frameworks
                .get(i - 1)
                .map(|f| f.id.clone()),
        }
    }

    /// The request as typed. Empty fields are left to the defaults.
    pub fn input(&self) -> DeployInput {
        let text = |i: &Input| Some(i.value().trim().to_string()).filter(|v| !v.is_empty());
        let number = |i: &Input| text(i).and_then(|v| v.parse::<u32>().ok());
        let onto_host = self.target == Target::Host;
        // `ADDRESS[:PORT]`, as `deploy --host` takes it (an IPv6 address in brackets).
        let host = text(&self.host)
            .filter(|_| onto_host)
            .map(|h| match text(&self.ssh_port) {
                Some(p) if h.contains(':') && !h.starts_with('[') => format!("[{h}]:{p}"),
                Some(p) => format!("{h}:{p}"),
                None => h,
            });
        DeployInput {
            repo: self.repo.value().trim().to_string(),
            git_ref: text(&self.git_ref),
            framework: self.framework_id().unwrap_or_default(),
            guest_type: self.guest_type.as_str().to_string(),
            name: text(&self.name),
            cores: number(&self.cores),
            memory_mib: number(&self.memory),
            disk_gib: number(&self.disk),
            port: number(&self.port),
            node: match &self.node {
                NodeChoice::Default => None,
                NodeChoice::Auto => Some(crate::config::AUTO_NODE.to_string()),
                NodeChoice::Named(n) => Some(n.clone()),
            },
            env: self.env.clone(),
            host,
            ssh_user: text(&self.ssh_user).filter(|_| onto_host),
            ..DeployInput::default()
        }
    }

    /// Validates what is typed: the spec's per-field messages, plus numbers that do not parse
    /// and a framework that could not be detected.
    fn revalidate(&mut self) {
        let mut errors: Vec<(&'static str, String)> = Vec::new();
        for (field, input) in [
            ("cores", &self.cores),
            ("memory", &self.memory),
            ("disk", &self.disk),
            ("port", &self.port),
        ] {
            let v = input.value().trim();
            if !v.is_empty() && v.parse::<u32>().is_err() {
                errors.push((field, format!("{v:?} is not a whole number")));
            }
        }
        if self.target == Target::Host {
            let port = self.ssh_port.value().trim();
            if !port.is_empty() && !port.parse::<u16>().is_ok_and(|p| p > 0) {
                errors.push((
                    "ssh-port",
                    format!("{port:?} is not a port (1 to 65535; empty: 22)"),
                ));
            }
            if self.host.value().trim().is_empty() {
                errors.push((
                    "host",
                    "the address of the host to deploy onto (an IP address or a DNS name)".into(),
                ));
            }
        }
        if let Err(e) = self.input().validate(Catalog::builtin()) {
            for fe in e.errors {
                if !errors.iter().any(|(f, _)| *f == fe.field) {
                    errors.push((fe.field, fe.message));
                }
            }
        }
        if self.framework == 0 && !errors.iter().any(|(f, _)| *f == "framework") {
            match self.detected() {
                Some(Ok(_)) => {}
                Some(Err(e)) => errors.push((
                    "framework",
                    format!("detection failed ({e}); pick one from the list"),
                )),
                None => errors.push((
                    "framework",
                    "not detected yet: wait for the repository check, or pick one".into(),
                )),
            }
        }
        self.errors = errors;
    }

    fn error(&self, field: &str) -> Option<&str> {
        self.errors
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }

    /// A key the keymap does not bind, typed into the focused field.
    pub fn edit(&mut self, key: KeyEvent) -> bool {
        let Some(request) = to_input_request(&Event::Key(key)) else {
            return false;
        };
        let changed = if let Some(edit) = &mut self.env_edit {
            let input = if edit.on_value {
                &mut edit.value
            } else {
                &mut edit.key
            };
            edit.error = None;
            input.handle(request).is_some()
        } else {
            match self.field() {
                Some(f) => self.input_mut(f).and_then(|i| i.handle(request)).is_some(),
                None => false,
            }
        };
        if changed {
            self.typing = true;
            self.notice = None;
            self.revalidate();
        }
        changed
    }

    /// The clock moved: once typing paused on a valid repository, check it in the background.
    pub fn tick(&mut self, out: &mut Vec<Intent>) {
        if !std::mem::take(&mut self.typing) && self.page == Page::Source {
            self.ask_check(out);
        }
    }

    fn ask_check(&mut self, out: &mut Vec<Intent>) {
        let key = self.source_key();
        if key.0.is_empty() || self.error("repo").is_some() || self.error("ref").is_some() {
            return;
        }
        if self.asked.as_ref() == Some(&key) {
            return;
        }
        self.asked = Some(key.clone());
        self.check = RepoCheck {
            key: Some(key.clone()),
            checked: None,
            detected: None,
        };
        out.push(Intent::Send(Request::CheckRepo {
            repo: key.0,
            git_ref: key.1,
        }));
        self.revalidate();
    }

    /// Whether a background check is running for what is typed (spinners animate).
    pub fn busy(&self) -> bool {
        let key = Some(self.source_key());
        let checking = self.check.key == key
            && (self.check.checked.is_none()
                || (matches!(self.check.checked, Some(Ok(_))) && self.check.detected.is_none()));
        checking || (self.page == Page::Review && self.review.is_none())
    }

    pub fn apply_repo_checked(
        &mut self,
        repo: &str,
        git_ref: &str,
        result: &Result<String, String>,
    ) {
        if self.check.key.as_ref() == Some(&(repo.to_string(), git_ref.to_string())) {
            self.check.checked = Some(result.clone());
            if result.is_err() {
                self.check.detected = None;
            }
            self.revalidate();
        }
    }

    pub fn apply_detected(&mut self, repo: &str, git_ref: &str, result: &Result<Detected, String>) {
        if self.check.key.as_ref() == Some(&(repo.to_string(), git_ref.to_string())) {
            self.check.detected = Some(result.clone());
            self.revalidate();
        }
    }

    pub fn apply_reviewed(
        &mut self,
        input: &DeployInput,
        result: &Result<Vec<(String, String)>, String>,
    ) {
        if *input == self.input() {
            self.review = Some(Review {
                input: input.clone(),
                result: result.clone(),
            });
        }
    }

    fn page_errors(&self) -> Vec<String> {
        self.page
            .checks()
            .iter()
            .filter_map(|f| self.error(f).map(|m| format!("{f}: {m}")))
            .collect()
    }

    fn go(&mut self, page: Page, out: &mut Vec<Intent>) {
        self.page = page;
        self.focus = 0;
        self.notice = None;
        if page == Page::Review {
            self.review = None;
            self.review_scroll = 0;
            out.push(Intent::Send(Request::Review(Box::new(self.input()))));
        }
    }

    fn next_page(&mut self, out: &mut Vec<Intent>) {
        if self.page == Page::Source {
            self.ask_check(out);
        }
        let errors = self.page_errors();
        if let Some(first) = errors.first() {
            self.notice = Some(format!("Fix this first: {first}"));
            return;
        }
        if let Some(next) = Page::ALL.get(self.page.index() + 1) {
            self.go(*next, out);
        }
    }

    fn cycle_node(&mut self, cluster: Option<&Result<ClusterSnapshot, String>>) {
        let mut choices = vec![NodeChoice::Default, NodeChoice::Auto];
        if let Some(Ok(c)) = cluster {
            choices.extend(c.nodes.iter().map(|n| NodeChoice::Named(n.name.clone())));
        }
        let i = choices.iter().position(|c| *c == self.node).unwrap_or(0);
        self.node = choices[(i + 1) % choices.len()].clone();
    }

    /// Applies an action; returns whether anything changed on screen.
    pub fn handle(
        &mut self,
        action: Action,
        cluster: Option<&Result<ClusterSnapshot, String>>,
        out: &mut Vec<Intent>,
    ) -> bool {
        if let Some(edit) = &mut self.env_edit {
            match action {
                Action::Back => self.env_edit = None,
                Action::NextField | Action::PrevField => edit.on_value = !edit.on_value,
                Action::Submit => self.save_env(),
                _ => return false,
            }
            self.revalidate();
            return true;
        }
        match (self.page, action) {
            (_, Action::Back) => {
                self.notice = None;
                match Page::ALL.get(self.page.index().wrapping_sub(1)) {
                    Some(prev) if self.page != Page::Source => {
                        self.page = *prev;
                        self.focus = 0;
                    }
                    _ => out.push(Intent::Close),
                }
            }
            (Page::Framework, Action::Up) => self.framework = self.framework.saturating_sub(1),
            (Page::Framework, Action::Down) => {
                self.framework = (self.framework + 1).min(Catalog::builtin().frameworks.len());
            }
            (Page::Framework, Action::Top) => self.framework = 0,
            (Page::Framework, Action::Bottom) => {
                self.framework = Catalog::builtin().frameworks.len();
            }
            (Page::Env, Action::Up) => self.env_sel = self.env_sel.saturating_sub(1),
            (Page::Env, Action::Down) => {
                self.env_sel = (self.env_sel + 1).min(self.env.len().saturating_sub(1));
            }
            (Page::Env, Action::AddEnv) => {
                self.env_edit = Some(EnvEdit::default());
            }
            (Page::Env, Action::EditEnv) => {
                if let Some((k, v)) = self.env.get(self.env_sel) {
                    self.env_edit = Some(EnvEdit {
                        index: Some(self.env_sel),
                        key: Input::new(k.clone()),
                        value: Input::new(v.clone()),
                        on_value: true,
                        error: None,
                    });
                }
            }
            (Page::Env, Action::RemoveEnv) => {
                if self.env_sel < self.env.len() {
                    self.env.remove(self.env_sel);
                    self.env_sel = self.env_sel.min(self.env.len().saturating_sub(1));
                }
            }
            (Page::Review, Action::Up) => self.review_scroll = self.review_scroll.saturating_sub(1),
            (Page::Review, Action::Down) => self.review_scroll += 1,
            (Page::Review, Action::Submit) => self.confirm(out),
            // Enter: the next page when this one is complete; else the first field to fix.
            (_, Action::Submit) => {
                self.revalidate();
                let fields = self.fields();
                let wrong = fields.iter().position(|f| self.error(f.check()).is_some());
                match wrong {
                    Some(i) if i != self.focus => {
                        self.focus = i;
                        if let Some(first) = self.page_errors().first() {
                            self.notice = Some(format!("Fix this first: {first}"));
                        }
                    }
                    _ => self.next_page(out),
                }
            }
            (_, Action::NextField) => {
                let n = self.fields().len();
                if n > 0 {
                    self.focus = (self.focus + 1) % n;
                }
                if self.page == Page::Source && self.focus == 0 {
                    self.ask_check(out);
                }
            }
            (_, Action::PrevField) => {
                let n = self.fields().len();
                if n > 0 {
                    self.focus = (self.focus + n - 1) % n;
                }
            }
            (_, Action::Toggle) => match self.field() {
                Some(FieldId::Type) => {
                    self.guest_type = match self.guest_type {
                        GuestType::Lxc => GuestType::Vm,
                        GuestType::Vm => GuestType::Lxc,
                    };
                }
                Some(FieldId::Node) => self.cycle_node(cluster),
                Some(FieldId::Target) => {
                    self.target = match self.target {
                        Target::NewGuest => Target::Host,
                        Target::Host => Target::NewGuest,
                    };
                }
                _ => return false,
            },
            _ => return false,
        }
        self.revalidate();
        true
    }

    fn confirm(&mut self, out: &mut Vec<Intent>) {
        let input = self.input();
        match &self.review {
            None => self.notice = Some("Waiting for the review…".into()),
            Some(r) if r.input != input => {
                out.push(Intent::Send(Request::Review(Box::new(input))));
                self.review = None;
            }
            Some(Review { result: Err(e), .. }) => {
                self.notice = Some(format!("Cannot deploy this: {e}"));
            }
            Some(Review {
                result: Ok(rows), ..
            }) => {
                let mut input = input;
                // The name the review showed is the one the deployment gets.
                if let Some((_, name)) = rows.iter().find(|(label, _)| label == "name") {
                    input.name = Some(name.clone());
                }
                out.push(Intent::Deploy(Box::new(input)));
            }
        }
    }

    fn save_env(&mut self) {
        let Some(edit) = &mut self.env_edit else {
            return;
        };
        let key = edit.key.value().trim().to_string();
        let value = edit.value.value().to_string();
        if let Err(e) = validate_env_name(&key) {
            edit.error = Some(format!("name: {e}"));
            edit.on_value = false;
            return;
        }
        if self
            .env
            .iter()
            .enumerate()
            .any(|(i, (k, _))| *k == key && Some(i) != edit.index)
        {
            edit.error = Some(format!("{key} is already set; edit that one"));
            return;
        }
        if value.contains(['\n', '\r', '\0']) {
            edit.error = Some("the value must be one line".into());
            return;
        }
        match edit.index {
            Some(i) if i < self.env.len() => self.env[i] = (key, value),
            _ => {
                self.env.push((key, value));
                self.env_sel = self.env.len() - 1;
            }
        }
        self.env_edit = None;
    }

    pub fn render(
        &mut self,
        frame: &mut Frame,
        area: Rect,
        cx: &Ctx,
        cluster: Option<&Result<ClusterSnapshot, String>>,
        settings: Option<&Settings>,
    ) {
        let theme = cx.theme;
        let [steps, body, notice] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        let mut crumbs = vec![Span::raw(" ")];
        for (i, p) in Page::ALL.iter().enumerate() {
            if i > 0 {
                crumbs.push(Span::styled(" › ", theme.muted()));
            }
            let style = if *p == self.page {
                theme.focused()
            } else if i < self.page.index() {
                Style::new()
            } else {
                theme.muted()
            };
            crumbs.push(Span::styled(p.title(), style));
        }
        frame.render_widget(Paragraph::new(Line::from(crumbs)), steps);

        let block = Block::bordered()
            .border_style(theme.border())
            .title(Span::styled(
                format!(
                    " New deployment · {}/{} {} ",
                    self.page.index() + 1,
                    Page::ALL.len(),
                    self.page.title()
                ),
                theme.title(),
            ))
            .padding(Padding::horizontal(1));
        let inner = block.inner(body);
        frame.render_widget(block, body);
        match self.page {
            Page::Source => self.render_source(frame, inner, cx),
            Page::Framework => self.render_framework(frame, inner, cx),
            Page::Guest => self.render_guest(frame, inner, cx, cluster, settings),
            Page::Resources => self.render_resources(frame, inner, cx, settings),
            Page::Env => self.render_env(frame, inner, cx),
            Page::Review => self.render_review(frame, inner, cx),
        }
        if let Some(text) = &self.notice {
            frame.render_widget(
                Paragraph::new(Span::styled(format!(" {text}"), theme.warning())),
                notice,
            );
        }
    }

    /// Draws the page's fields from the top of `area`; returns the rows used.
    fn render_fields(
        &self,
        frame: &mut Frame,
        area: Rect,
        cx: &Ctx,
        placeholders: &[(FieldId, String)],
    ) -> u16 {
        let mut y = area.y;
        for (i, f) in self.fields().iter().enumerate() {
            let Some(input) = self.input_of(*f) else {
                continue;
            };
            let placeholder = placeholders
                .iter()
                .find(|(id, _)| id == f)
                .map(|(_, p)| p.as_str())
                .unwrap_or("");
            let field = Field {
                label: f.label(),
                input,
                placeholder,
                focused: i == self.focus && self.env_edit.is_none(),
                masked: false,
                error: self.error(f.check()),
                theme: cx.theme,
            };
            let h = field.height();
            if y + h > area.bottom() {
                break;
            }
            field.render(
                frame,
                Rect {
                    y,
                    height: h,
                    ..area
                },
            );
            y += h;
        }
        y - area.y
    }

    fn status_line<'a>(
        &self,
        cx: &Ctx,
        result: Option<&'a Result<String, String>>,
        waiting: &'a str,
    ) -> Line<'a> {
        let theme = cx.theme;
        match result {
            None => Line::from(vec![
                Span::styled(
                    format!("{} ", SPINNER[cx.spinner % SPINNER.len()]),
                    theme.spinner(),
                ),
                Span::styled(waiting, theme.muted()),
            ]),
            Some(Ok(text)) => Line::from(vec![
                Span::styled("✓ ", theme.ok()),
                Span::raw(text.as_str()),
            ]),
            Some(Err(text)) => Line::from(vec![
                Span::styled("✗ ", theme.error()),
                Span::styled(text.as_str(), theme.error()),
            ]),
        }
    }

    fn check_lines(&self, cx: &Ctx) -> Vec<Line<'_>> {
        let mut lines = Vec::new();
        if self.check.key.as_ref() != Some(&self.source_key()) {
            return lines;
        }
        lines.push(self.status_line(
            cx,
            self.checked(),
            "checking the repository (git ls-remote)…",
        ));
        if matches!(self.checked(), Some(Ok(_))) {
            let detected = self.detected().map(|r| {
                r.as_ref()
                    .map(|d| format!("framework: {} ({})", d.framework, d.reason))
                    .map_err(|e| e.clone())
            });
            let line = match &detected {
                None => self.status_line(cx, None, "detecting the framework…"),
                Some(Ok(t)) => Line::from(vec![
                    Span::styled("✓ ", cx.theme.ok()),
                    Span::raw(t.clone()),
                ]),
                Some(Err(t)) => Line::from(vec![
                    Span::styled("✗ ", cx.theme.error()),
                    Span::styled(t.clone(), cx.theme.error()),
                ]),
            };
            lines.push(line);
        }
        lines
    }

    fn render_source(&self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let used = self.render_fields(
            frame,
            area,
            cx,
            &[
                (
                    FieldId::Repo,
                    "https://…, git@host:path, file:///…, owner/repo".into(),
                ),
                (FieldId::Ref, "the default branch".into()),
            ],
        );
        let rest = Rect {
            y: area.y + used + 1,
            height: area.height.saturating_sub(used + 1),
            ..area
        };
        let mut lines = self.check_lines(cx);
        if lines.is_empty() {
            lines.push(Line::from(Span::styled(
                "The repository is checked with git ls-remote when you pause typing.",
                cx.theme.muted(),
            )));
        }
        frame.render_widget(Paragraph::new(lines), rest);
    }

    fn render_framework(&self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let theme = cx.theme;
        let catalog = Catalog::builtin();
        let auto = match self.detected() {
            Some(Ok(d)) => {
                let name = catalog
                    .get(&d.framework)
                    .map_or(d.framework.as_str(), |f| f.name.as_str());
                format!("auto: {name} ({})", d.reason)
            }
            Some(Err(e)) => format!("auto: detection failed: {e}"),
            None if self.check.key.as_ref() == Some(&self.source_key()) => {
                format!("auto: {} detecting…", SPINNER[cx.spinner % SPINNER.len()])
            }
            None => "auto: detected when the repository is checked".to_string(),
        };
        let mut items = vec![ListItem::new(auto)];
        items.extend(catalog.frameworks.iter().map(|f| {
            // "MERN (MongoDB, Express, React, Node)" reads as MERN in a list.
            let short = f.name.split(" (").next().unwrap_or(&f.name);
            ListItem::new(Line::from(vec![
                Span::raw(format!("{short:<10}")),
                Span::styled(
                    format!(
                        " {:<9} port {:<5} {}",
                        f.language, f.default_port, f.runtime
                    ),
                    theme.muted(),
                ),
            ]))
        }));
        let [list_area, error_area] =
            Layout::vertical([Constraint::Fill(1), Constraint::Length(2)]).areas(area);
        let list = List::new(items)
            .highlight_style(theme.selected())
            .highlight_symbol("› ");
        let mut state = ListState::default().with_selected(Some(self.framework));
        frame.render_stateful_widget(list, list_area, &mut state);
        if let Some(e) = self.error("framework") {
            let lines: Vec<Line> = wrap(e, usize::from(area.width))
                .into_iter()
                .take(2)
                .map(|l| Line::from(Span::styled(l, theme.error())))
                .collect();
            frame.render_widget(Paragraph::new(lines), error_area);
        }
    }

    fn render_guest(
        &self,
        frame: &mut Frame,
        area: Rect,
        cx: &Ctx,
        cluster: Option<&Result<ClusterSnapshot, String>>,
        settings: Option<&Settings>,
    ) {
        let theme = cx.theme;
        let suggestion = if self.repo.value().trim().is_empty() {
            "suggested from the repository".to_string()
        } else {
            suggest_name(self.repo.value().trim())
        };
        let mut y = area.y;
        let name_field = Field {
            label: FieldId::Name.label(),
            input: &self.name,
            placeholder: &suggestion,
            focused: self.field() == Some(FieldId::Name),
            masked: false,
            error: self.error("name"),
            theme,
        };
        let h = name_field.height();
        name_field.render(
            frame,
            Rect {
                y,
                height: h.min(area.height),
                ..area
            },
        );
        y += h;
        let choice = |focused: bool, label: &str, spans: Vec<Span<'static>>| {
            let mut line = vec![
                Span::styled(if focused { "› " } else { "  " }, theme.focused()),
                Span::styled(
                    format!(
                        "{label:<w$}",
                        w = usize::from(crate::tui::widgets::field::LABEL_WIDTH)
                    ),
                    if focused {
                        theme.focused()
                    } else {
                        theme.table_header()
                    },
                ),
            ];
            line.extend(spans);
            Line::from(line)
        };
        let pick = |on: bool, text: &'static str| {
            if on {
                Span::styled(format!("[{text}]"), theme.focused())
            } else {
                Span::styled(format!(" {text} "), theme.muted())
            }
        };
        let target_line = choice(
            self.field() == Some(FieldId::Target),
            FieldId::Target.label(),
            vec![
                pick(self.target == Target::NewGuest, "a new guest"),
                Span::raw(" "),
                pick(self.target == Target::Host, "an existing host"),
            ],
        );
        if y < area.bottom() {
            frame.render_widget(
                Paragraph::new(target_line),
                Rect {
                    y,
                    height: 1,
                    ..area
                },
            );
            y += 1;
        }
        if self.target == Target::Host {
            let placeholders = [
                (FieldId::Host, "10.0.0.5 or app.lan".to_string()),
                (FieldId::SshPort, "22".to_string()),
                (FieldId::SshUser, "the config's guest.ssh_user".to_string()),
            ];
            for (i, f) in HOST_FIELDS.iter().enumerate().skip(2) {
                let Some(input) = self.input_of(*f) else {
                    continue;
                };
                let placeholder = placeholders
                    .iter()
                    .find(|(id, _)| id == f)
                    .map_or("", |(_, p)| p.as_str());
                let field = Field {
                    label: f.label(),
                    input,
                    placeholder,
                    focused: i == self.focus,
                    masked: false,
                    error: self.error(f.check()),
                    theme,
                };
                let h = field.height();
                if y + h > area.bottom() {
                    break;
                }
                field.render(
                    frame,
                    Rect {
                        y,
                        height: h,
                        ..area
                    },
                );
                y += h;
            }
            let note = "No guest is created: proxdeck connects over SSH with its key \
                        (keys/id_ed25519.pub in the user's authorized_keys; root or sudo -n), \
                        then installs and starts the app there.";
            let lines: Vec<Line> = wrap(note, usize::from(area.width))
                .into_iter()
                .map(|l| Line::from(Span::styled(l, theme.muted())))
                .collect();
            let rest = Rect {
                y: (y + 1).min(area.bottom()),
                height: area.bottom().saturating_sub(y + 1),
                ..area
            };
            frame.render_widget(Paragraph::new(lines), rest);
            return;
        }
        let type_line = choice(
            self.field() == Some(FieldId::Type),
            "Type",
            vec![
                pick(self.guest_type == GuestType::Lxc, "LXC container"),
                Span::raw(" "),
                pick(self.guest_type == GuestType::Vm, "VM"),
            ],
        );
        let default_node = settings
            .and_then(|s| s.default_node.clone())
            .unwrap_or_else(|| "the config's".into());
        let node_text = match &self.node {
            NodeChoice::Default => format!("default ({default_node})"),
            NodeChoice::Auto => "auto (most free memory where it fits)".to_string(),
            NodeChoice::Named(n) => n.clone(),
        };
        let node_line = choice(
            self.field() == Some(FieldId::Node),
            "Node",
            vec![Span::raw(format!("‹ {node_text} ›"))],
        );
        let mut lines = vec![type_line, node_line];
        if let Some(e) = self.error("node") {
            lines.push(Line::from(Span::styled(
                format!("              {e}"),
                theme.error(),
            )));
        }
        lines.push(Line::from(""));
        match cluster {
            None => lines.push(Line::from(Span::styled(
                format!(
                    "{} reading the cluster's nodes…",
                    SPINNER[cx.spinner % SPINNER.len()]
                ),
                theme.muted(),
            ))),
            Some(Err(e)) => {
                for l in wrap(&format!("Nodes unavailable: {e}"), usize::from(area.width))
                    .into_iter()
                    .take(3)
                {
                    lines.push(Line::from(Span::styled(l, theme.warning())));
                }
            }
            Some(Ok(c)) => {
                lines.push(Line::from(Span::styled(
                    format!(
                        "{:<12} {:<8} {:>5} {:>22} {:>22}",
                        "NODE", "STATUS", "CPUS", "FREE MEMORY", "FREE DISK"
                    ),
                    theme.table_header(),
                )));
                for n in &c.nodes {
                    let chosen = matches!(&self.node, NodeChoice::Named(x) if *x == n.name);
                    let style = if chosen {
                        theme.focused()
                    } else if n.online {
                        Style::new()
                    } else {
                        theme.muted()
                    };
                    lines.push(Line::from(Span::styled(
                        format!(
                            "{:<12} {:<8} {:>5} {:>22} {:>22}",
                            n.name,
                            n.status,
                            n.maxcpu,
                            format!(
                                "{} of {}",
                                format_bytes(n.maxmem.saturating_sub(n.mem)),
                                format_bytes(n.maxmem)
                            ),
                            format!(
                                "{} of {}",
                                format_bytes(n.maxdisk.saturating_sub(n.disk)),
                                format_bytes(n.maxdisk)
                            ),
                        ),
                        style,
                    )));
                }
            }
        }
        let rest = Rect {
            y,
            height: area.bottom().saturating_sub(y),
            ..area
        };
        frame.render_widget(Paragraph::new(lines), rest);
    }

    fn render_resources(
        &self,
        frame: &mut Frame,
        area: Rect,
        cx: &Ctx,
        settings: Option<&Settings>,
    ) {
        let catalog = Catalog::builtin();
        let port = self
            .framework_id()
            .and_then(|f| catalog.get(&f).map(|f| f.default_port.to_string()))
            .unwrap_or_else(|| "the framework's".into());
        let used = self.render_fields(
            frame,
            area,
            cx,
            &[
                (
                    FieldId::Cores,
                    crate::domain::spec::DEFAULT_CORES.to_string(),
                ),
                (
                    FieldId::Memory,
                    crate::domain::spec::DEFAULT_MEMORY_MIB.to_string(),
                ),
                (
                    FieldId::Disk,
                    crate::domain::spec::DEFAULT_DISK_GIB.to_string(),
                ),
                (FieldId::Port, port),
            ],
        );
        let network = settings.map_or("as configured".to_string(), |s| s.network.clone());
        let lines = vec![
            Line::from(vec![
                Span::raw("  "),
                Span::styled(
                    format!(
                        "{:<w$}",
                        "Network",
                        w = usize::from(crate::tui::widgets::field::LABEL_WIDTH)
                    ),
                    cx.theme.table_header(),
                ),
                Span::raw(network),
            ]),
            Line::from(Span::styled(
                "  (network.pool in config.toml gives static addresses; DHCP otherwise)",
                cx.theme.muted(),
            )),
        ];
        let rest = Rect {
            y: area.y + used + 1,
            height: area.height.saturating_sub(used + 1),
            ..area
        };
        frame.render_widget(Paragraph::new(lines), rest);
    }

    fn render_env(&self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let theme = cx.theme;
        let intro = "Environment variables for the app. Values are secrets: masked here, kept \
                     out of the database and the logs.";
        let mut lines: Vec<Line> = wrap(intro, usize::from(area.width))
            .into_iter()
            .map(|l| Line::from(Span::styled(l, theme.muted())))
            .collect();
        lines.push(Line::from(""));
        if self.env.is_empty() {
            lines.push(Line::from(Span::styled(
                "  none yet: press a to add one",
                theme.muted(),
            )));
        }
        for (i, (k, v)) in self.env.iter().enumerate() {
            let selected = i == self.env_sel && self.env_edit.is_none();
            let style = if selected {
                theme.selected()
            } else {
                Style::new()
            };
            lines.push(Line::from(vec![
                Span::styled(if selected { "› " } else { "  " }, theme.focused()),
                Span::styled(
                    format!("{k} = {}", "•".repeat(v.chars().count().clamp(3, 12))),
                    style,
                ),
            ]));
        }
        if let Some(e) = self.error("env") {
            lines.push(Line::from(Span::styled(e.to_string(), theme.error())));
        }
        frame.render_widget(Paragraph::new(lines), area);
        if let Some(edit) = &self.env_edit {
            let h = 4 + u16::from(edit.error.is_some());
            let popup = area.centered(
                Constraint::Length(area.width.min(64)),
                Constraint::Length(h + 2),
            );
            let block = Block::bordered()
                .border_style(theme.focused())
                .title(Span::styled(
                    if edit.index.is_some() {
                        " Edit variable "
                    } else {
                        " New variable "
                    },
                    theme.title(),
                ));
            let inner = block.inner(popup);
            frame.render_widget(ratatui::widgets::Clear, popup);
            frame.render_widget(block, popup);
            let key = Field {
                label: "Name",
                input: &edit.key,
                placeholder: "e.g. DATABASE_URL",
                focused: !edit.on_value,
                masked: false,
                error: None,
                theme,
            };
            key.render(frame, Rect { height: 1, ..inner });
            let value = Field {
                label: "Value",
                input: &edit.value,
                placeholder: "(masked as you type)",
                focused: edit.on_value,
                masked: true,
                error: None,
                theme,
            };
            value.render(
                frame,
                Rect {
                    y: inner.y + 2,
                    height: 1,
                    ..inner
                },
            );
            if let Some(e) = &edit.error
                && inner.height > 3
            {
                frame.render_widget(
                    Paragraph::new(Span::styled(e.as_str(), theme.error())),
                    Rect {
                        y: inner.y + 3,
                        height: 1,
                        ..inner
                    },
                );
            }
        }
    }

    fn render_review(&mut self, frame: &mut Frame, area: Rect, cx: &Ctx) {
        let theme = cx.theme;
        let current = self.input();
        let mut lines: Vec<Line> = Vec::new();
        match &self.review {
            None => lines.push(Line::from(vec![
                Span::styled(
                    format!("{} ", SPINNER[cx.spinner % SPINNER.len()]),
                    theme.spinner(),
                ),
                Span::styled(
                    "preflight and terraform plan: what this would create… (the first plan \
                     downloads the provider)",
                    theme.muted(),
                ),
            ])),
            Some(r) if r.input != current => lines.push(Line::from(Span::styled(
                "The form changed since the review: press enter to review again.",
                theme.warning(),
            ))),
            Some(Review { result: Err(e), .. }) => {
                lines.push(Line::from(Span::styled(
                    "This cannot be deployed as it is:",
                    theme.error(),
                )));
                for l in wrap(e, usize::from(area.width)) {
                    lines.push(Line::from(Span::styled(l, theme.error())));
                }
                lines.push(Line::from(""));
                lines.push(Line::from(Span::styled(
                    "esc goes back to fix it.",
                    theme.muted(),
                )));
            }
            Some(Review {
                result: Ok(rows), ..
            }) => {
                let label_w = 12usize;
                let value_w = usize::from(area.width).saturating_sub(label_w + 1).max(10);
                for (label, value) in rows {
                    for (i, part) in wrap(value, value_w).into_iter().enumerate() {
                        let head = if i == 0 { label.as_str() } else { "" };
                        lines.push(Line::from(vec![
                            Span::styled(format!("{head:<label_w$} "), theme.table_header()),
                            Span::raw(part),
                        ]));
                    }
                }
                lines.push(Line::from(""));
                lines.push(Line::from(vec![
                    Span::styled("enter", theme.hint_key().add_modifier(Modifier::BOLD)),
                    Span::raw(" deploys it now; "),
                    Span::styled("esc", theme.hint_key()),
                    Span::raw(" goes back to change it."),
                ]));
            }
        }
        let max_scroll = lines.len().saturating_sub(usize::from(area.height));
        self.review_scroll = self.review_scroll.min(max_scroll);
        frame.render_widget(
            Paragraph::new(lines).scroll((u16::try_from(self.review_scroll).unwrap_or(0), 0)),
            area,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyModifiers};

    fn typed(w: &mut WizardScreen, text: &str) {
        for c in text.chars() {
            w.edit(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
    }

    fn act(w: &mut WizardScreen, action: Action) -> Vec<Intent> {
        let mut out = Vec::new();
        w.handle(action, None, &mut out);
        out
    }

    fn detected_flask(w: &mut WizardScreen) {
        let (repo, r) = w.source_key();
        w.check.key = Some((repo.clone(), r.clone()));
        w.apply_repo_checked(&repo, &r, &Ok("answers".into()));
        w.apply_detected(
            &repo,
            &r,
            &Ok(Detected {
                framework: "flask".into(),
                reason: "requirements.txt has flask".into(),
            }),
        );
    }

    #[test]
    fn errors_follow_typing_field_by_field() {
        let mut w = WizardScreen::new();
        assert!(w.error("repo").unwrap().contains("required"));
        typed(&mut w, "https://x.com/a;b");
        assert!(
            w.error("repo").unwrap().contains("not allowed"),
            "{:?}",
            w.errors
        );
        for _ in 0..4 {
            w.edit(KeyEvent::new(KeyCode::Backspace, KeyModifiers::NONE));
        }
        typed(&mut w, "/shop.git");
        assert_eq!(w.error("repo"), None, "{:?}", w.errors);
        act(&mut w, Action::NextField);
        typed(&mut w, "a..b");
        assert!(w.error("ref").is_some());
        assert_eq!(w.mode(), Mode::WizardText);
    }

    #[test]
    fn a_valid_repository_is_checked_once_typing_pauses() {
        let mut w = WizardScreen::new();
        typed(&mut w, "acme/shop");
        let mut out = Vec::new();
        w.tick(&mut out);
        assert!(out.is_empty(), "still typing during the first tick");
        w.tick(&mut out);
        assert_eq!(
            out,
            [Intent::Send(Request::CheckRepo {
                repo: "acme/shop".into(),
                git_ref: String::new()
            })]
        );
        out.clear();
        w.tick(&mut out);
        assert!(out.is_empty(), "the same key is not asked twice");
        assert!(w.busy());
        // An answer for something no longer typed is dropped.
        typed(&mut w, "2");
        w.apply_repo_checked("acme/shop", "", &Ok("answers".into()));
        assert_eq!(w.checked(), None);
    }

    #[test]
    fn pages_need_their_fields_valid_and_esc_keeps_what_was_typed() {
        let mut w = WizardScreen::new();
        let out = act(&mut w, Action::Submit);
        assert!(out.is_empty());
        act(&mut w, Action::Submit);
        assert_eq!(w.page(), Page::Source, "an empty repository blocks");
        assert!(w.notice.as_deref().unwrap_or("").contains("repo"));

        w.focus = 0;
        typed(&mut w, "file:///srv/git/flask-sample.git");
        // The page is complete (the ref may stay empty): enter goes on.
        let out = act(&mut w, Action::Submit);
        assert_eq!(w.page(), Page::Framework);
        assert!(matches!(
            out.as_slice(),
            [Intent::Send(Request::CheckRepo { .. })]
        ));
        // Auto without a detection yet: blocked until it answers or one is picked.
        act(&mut w, Action::Submit);
        assert_eq!(w.page(), Page::Framework);
        detected_flask(&mut w);
        act(&mut w, Action::Submit);
        assert_eq!(w.page(), Page::Guest);
        assert_eq!(w.input().framework, "flask");

        typed(&mut w, "Bad Name");
        assert!(w.error("name").is_some());
        act(&mut w, Action::Back);
        act(&mut w, Action::Back);
        assert_eq!(w.page(), Page::Source);
        assert_eq!(w.repo.value(), "file:///srv/git/flask-sample.git");
        assert_eq!(w.name.value(), "Bad Name");
        assert_eq!(act(&mut w, Action::Back), [Intent::Close]);
    }

    #[test]
    fn choices_toggle_and_numbers_are_checked() {
        let mut w = WizardScreen::new();
        w.page = Page::Guest;
        w.focus = 2;
        assert_eq!(w.mode(), Mode::WizardChoice);
        act(&mut w, Action::Toggle);
        assert_eq!(w.input().guest_type, "vm");
        act(&mut w, Action::NextField);
        let cluster: Result<ClusterSnapshot, String> = Ok(ClusterSnapshot {
            nodes: vec![crate::protocol::NodeInfo {
                name: "pve2".into(),
                online: true,
                status: "online".into(),
                cpu: 0.1,
                maxcpu: 8,
                mem: 0,
                maxmem: 1,
                disk: 0,
                maxdisk: 1,
                uptime: 1,
            }],
            guests: vec![],
        });
        let mut out = Vec::new();
        w.handle(Action::Toggle, Some(&cluster), &mut out);
        assert_eq!(w.input().node.as_deref(), Some("auto"));
        w.handle(Action::Toggle, Some(&cluster), &mut out);
        assert_eq!(w.input().node.as_deref(), Some("pve2"));
        w.handle(Action::Toggle, Some(&cluster), &mut out);
        assert_eq!(w.input().node, None);

        w.page = Page::Resources;
        w.focus = 0;
        typed(&mut w, "two");
        assert!(w.error("cores").unwrap().contains("whole number"));
        w.cores = Input::new("0".into());
        w.revalidate();
        assert!(w.error("cores").unwrap().contains("out of range"));
    }

    #[test]
    fn env_vars_are_added_edited_removed_and_checked() {
        let mut w = WizardScreen::new();
        w.page = Page::Env;
        act(&mut w, Action::AddEnv);
        assert_eq!(w.mode(), Mode::WizardEnvEdit);
        typed(&mut w, "1BAD");
        act(&mut w, Action::Submit);
        assert!(w.env_edit.as_ref().unwrap().error.is_some());
        w.env_edit.as_mut().unwrap().key = Input::new("SECRET_KEY".into());
        act(&mut w, Action::NextField);
        typed(&mut w, "s3cr3t");
        act(&mut w, Action::Submit);
        assert_eq!(w.env, [("SECRET_KEY".to_string(), "s3cr3t".to_string())]);
        act(&mut w, Action::EditEnv);
        typed(&mut w, "!");
        act(&mut w, Action::Submit);
        assert_eq!(w.env[0].1, "s3cr3t!");
        act(&mut w, Action::AddEnv);
        typed(&mut w, "SECRET_KEY");
        act(&mut w, Action::Submit);
        assert!(
            w.env_edit
                .as_ref()
                .unwrap()
                .error
                .as_deref()
                .unwrap()
                .contains("already")
        );
        act(&mut w, Action::Back);
        act(&mut w, Action::RemoveEnv);
        assert!(w.env.is_empty());
    }

    #[test]
    fn review_then_deploy_with_the_reviewed_name() {
        let mut w = WizardScreen::new();
        typed(&mut w, "file:///srv/git/flask-sample.git");
        detected_flask(&mut w);
        w.page = Page::Env;
        let out = act(&mut w, Action::Submit);
        assert_eq!(w.page(), Page::Review);
        let Some(Intent::Send(Request::Review(input))) = out.first() else {
            panic!("{out:?}")
        };
        assert!(act(&mut w, Action::Submit).is_empty(), "no answer yet");
        w.apply_reviewed(input, &Ok(vec![("name".into(), "flask-sample-2".into())]));
        let out = act(&mut w, Action::Submit);
        let Some(Intent::Deploy(deploy)) = out.first() else {
            panic!("{out:?}")
        };
        assert_eq!(deploy.name.as_deref(), Some("flask-sample-2"));
        assert_eq!(deploy.framework, "flask");
        assert_eq!(deploy.repo, "file:///srv/git/flask-sample.git");
        // A review refused by the engine blocks the deploy.
        w.apply_reviewed(&w.input(), &Err("proxmox is not configured".into()));
        assert!(act(&mut w, Action::Submit).is_empty());
        assert!(w.notice.as_deref().unwrap().contains("not configured"));
    }

    #[test]
    fn an_existing_host_replaces_type_and_node_with_its_address() {
        let mut w = WizardScreen::new();
        w.repo = Input::new("file:///srv/git/flask-sample.git".into());
        detected_flask(&mut w);
        w.page = Page::Guest;
        w.focus = 1;
        act(&mut w, Action::Toggle);
        assert_eq!(w.fields(), HOST_FIELDS);
        // Without an address the page is not complete: enter goes to the host field.
        let out = act(&mut w, Action::Submit);
        assert!(out.is_empty());
        assert_eq!((w.page(), w.field()), (Page::Guest, Some(FieldId::Host)));
        assert!(w.notice.as_deref().unwrap_or("").contains("host"));
        typed(&mut w, "10.0.0.5");
        act(&mut w, Action::NextField);
        typed(&mut w, "70000");
        assert!(w.error("ssh-port").unwrap().contains("not a port"));
        w.ssh_port = Input::new("2222".into());
        act(&mut w, Action::NextField);
        typed(&mut w, "deploy");
        w.revalidate();
        let input = w.input();
        assert_eq!(input.host.as_deref(), Some("10.0.0.5:2222"));
        assert_eq!(input.ssh_user.as_deref(), Some("deploy"));
        act(&mut w, Action::Submit);
        assert_eq!(w.page(), Page::Resources);
        // IPv6 goes in brackets; back to a new guest, no host is sent.
        w.host = Input::new("fd00::5".into());
        assert_eq!(w.input().host.as_deref(), Some("[fd00::5]:2222"));
        w.target = Target::NewGuest;
        assert_eq!((w.input().host, w.input().ssh_user), (None, None));
    }
}
