//! One module per screen (`XxxScreen`): the screen's own state (selection, scroll, form
//! fields), how it reacts to an `Action`, and how it renders. Shared data (the deployments,
//! the cluster, the statistics) lives in `App` and is lent to the screen; a screen never sends
//! a `Request` itself: it returns [`Intent`]s, and `App` acts on them.

pub mod dashboard;
pub mod details;
pub mod logs;
pub mod resources;
pub mod stats;
pub mod wizard;

pub use dashboard::DashboardScreen;
pub use details::DetailsScreen;
pub use logs::LogsScreen;
pub use resources::ResourcesScreen;
pub use stats::StatsScreen;
pub use wizard::WizardScreen;

use crate::domain::Deployment;
use crate::domain::spec::DeployInput;
use crate::protocol::Request;
use crate::tui::theme::Theme;

/// What every screen may read while it draws.
pub struct Ctx<'a> {
    pub deployments: &'a [Deployment],
    /// The queued and running jobs (a deployment has at most one).
    pub jobs: &'a [crate::domain::Job],
    /// False until the engine's first snapshot arrived ("loading" rather than "empty").
    pub loaded: bool,
    /// Only the newest deployments are here yet (`DeploymentsHead`): how many there are in all.
    pub partial_total: Option<u64>,
    pub theme: &'a Theme,
    /// Unix milliseconds, the reference for ages and elapsed times.
    pub now_ms: i64,
    /// Seconds east of UTC, for clock times.
    pub utc_offset: i32,
    /// Animation frame of spinners.
    pub spinner: usize,
}

/// What a screen asks `App` to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    Send(Request),
    /// Close this screen (back to the one below).
    Close,
    /// The wizard's confirmed request: deploy it (the name is the one the review showed).
    Deploy(Box<DeployInput>),
    /// A short note for the status line.
    Flash(String),
}
