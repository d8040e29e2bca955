//! kftenant: a GitOps reconciler for Kubeflow tenants on EKS.
//!
//! A platform team keeps one git repository of tenant definitions; kftenant
//! turns it into per-tenant IAM roles (IRSA trust, policies, boundary, tags)
//! and Kubeflow `Profile`s, in a safe order, and keeps them converged.
//!
//! # Layout
//! Data flows one way; each step is a module:
//!
//! ```text
//! git (checkout, commit trees)
//!   -> model (parse + validate)  -> plan::desired (render)
//!                                        |
//! live::observe -> plan::observed  ---> plan (pure diff -> ordered, typed changes)
//!                                        |
//!                    report (text / markdown / JSON)    live::apply (thin executors)
//!                                        |
//!                    daemon (loop, HTTP, lease)
//! ```
//!
//! Leaves, used by everything above them: [`diag`] (diagnostics with
//! `file:line:column`), [`names`] (AWS and Kubernetes name rules, ARNs),
//! [`ownership`] (kftenant's tags, labels and policy marker, and the checks
//! on them), [`document`] (JSON documents kept as text), [`kubeflow`] (what
//! Kubeflow's controllers expect), [`quantity`] (Kubernetes quantities, parsed
//! and printed exactly as Go does), [`quota`] (what a Kubernetes
//! `ResourceQuota` accepts; tenants' quotas over the defaults).
//!
//! - [`yaml`] — a YAML tree that keeps node positions.
//! - [`policy`] — IAM policy grammar, sizes, semantic comparison.
//! - [`config`] — `kftenant.toml`.
//! - [`model`] — the tenant repository and its validation.
//! - [`plan`] — the planner, with its inputs [`plan::desired`] and [`plan::observed`].
//! - [`report`] — renderers.
//! - [`status_page`] — the HTML status page (`kftenant run`'s `/`, `drift --format html`).
//! - [`applied`] — the apply report (data).
//! - [`schema`] — JSON Schemas of the formats.
//! - [`scaffold`] — the files `kftenant init` writes.
//! - [`import`] — the repository `kftenant import` writes from a live installation.
//! - [`live`] — IAM and Kubernetes: reading the live world, executing plans.
//! - [`git`] — the tenant repository in git: the daemon's checkout, commit
//!   trees for `plan --base`, signature verification.
//! - [`daemon`] — `kftenant run`.
//!
//! `live`, `git` and `daemon` need the `live` feature (on by default); without
//! it the crate is the pure core, which the fuzz targets (`fuzz/`) build.
//!
//! The pure modules (`diag`, `names`, `ownership`, `document`, `kubeflow`,
//! `quantity`, `quota`, `yaml`, `policy`, `config`, `model`, `plan`, `report`,
//! `status_page`, `applied`, `schema`, `scaffold`, `import`)
//! use no network, clock, async runtime, git or client library: what they
//! need comes in as data. `tests/architecture.rs` checks it, and that no two
//! top-level modules import each other.

#![forbid(unsafe_code)]

pub mod applied;
pub mod config;
#[cfg(feature = "live")]
pub mod daemon;
pub mod diag;
pub mod document;
#[cfg(feature = "live")]
pub mod git;
pub mod import;
pub mod kubeflow;
#[cfg(feature = "live")]
pub mod live;
pub mod model;
pub mod names;
pub mod ownership;
pub mod plan;
pub mod policy;
pub mod quantity;
pub mod quota;
pub mod report;
pub mod scaffold;
pub mod schema;
pub mod status_page;
pub mod yaml;
