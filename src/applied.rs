//! The result of executing a plan, as plain data (rendered by `report`,
//! produced by `live::apply`).

use crate::plan::{Action, Conflict, Held};
use serde::{Deserialize, Serialize};

/// Version of the apply report JSON format.
pub const REPORT_FORMAT_VERSION: u32 = 1;

/// What happened to one change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Executed.
    Done,
    /// Failed, with the AWS or Kubernetes error.
    Failed {
        /// Error code (`NoSuchEntity`, `Throttling`, `Conflict`, ...).
        code: String,
        /// Error message.
        message: String,
    },
    /// Not attempted because an earlier step of the same tenant failed.
    Skipped {
        /// The address of the step that failed.
        after_failure_of: String,
    },
    /// Not attempted because writing stopped: the daemon was no longer sure
    /// to hold the leader lease. Counted as skipped.
    Stopped {
        /// Why, as a stable label: `LostLeadership`.
        code: String,
        /// In words.
        reason: String,
    },
}

/// One change and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    /// The change's address.
    pub address: String,
    /// Its tenant.
    pub tenant: Option<String>,
    /// Its action.
    pub action: Action,
    /// What happened.
    pub outcome: Outcome,
}

/// Counts of outcomes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplySummary {
    /// Steps done.
    pub done: usize,
    /// Steps failed.
    pub failed: usize,
    /// Steps skipped (after a failure of their tenant) or stopped (writing stopped).
    pub skipped: usize,
    /// Conflicts left untouched (from the plan).
    #[serde(default)]
    pub conflicts: usize,
    /// Deletions held back (from the plan).
    #[serde(default)]
    pub held: usize,
}

/// The result of an apply, rendered like a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyReport {
    /// JSON format version.
    pub format_version: u32,
    /// The commit that was applied, when known.
    pub source_commit: Option<String>,
    /// Results in plan order.
    pub results: Vec<StepResult>,
    /// What the plan could not do: live resources kftenant does not own.
    #[serde(default)]
    pub conflicts: Vec<Conflict>,
    /// What the plan held back: deletions git has not confirmed.
    #[serde(default)]
    pub held: Vec<Held>,
    /// Counts.
    pub summary: ApplySummary,
}

impl ApplyReport {
    /// True when every step was done.
    pub fn all_done(&self) -> bool {
        self.summary.failed == 0 && self.summary.skipped == 0
    }

    /// True when IAM and the cluster now match git: every step done, and
    /// nothing in conflict or held back.
    pub fn converged(&self) -> bool {
        self.all_done() && self.conflicts.is_empty() && self.held.is_empty()
    }
}
