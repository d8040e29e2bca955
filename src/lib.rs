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
//! model (parse + validate)  ->  desired (render roles, policies, Profiles)
//!                                     |
//! observed (snapshot / live)  ---->  plan (pure diff -> ordered changes)
//!                                     |
//!                                   report (text / markdown / JSON)
//! ```
//!
//! - [`diag`] — diagnostics with `file:line:column`.
//! - [`yaml`] — a YAML tree that keeps node positions.
//! - [`policy`] — IAM policy grammar, sizes, semantic comparison.
//! - [`config`] — `kftenant.toml`.
//! - [`model`] — the tenant repository and its validation.
//! - [`desired`] — the desired world.
//! - [`observed`] — the observed world and its snapshot format.
//! - [`plan`] — the planner.
//! - [`report`] — renderers.
//! - [`schema`] — JSON Schemas of the formats.
//! - [`applied`] — the apply report (data).
//! - [`live`] — the only networked module: reading IAM and Profiles, executing plans.
//!
//! `model`, `desired`, `observed`, `plan`, `applied` and `report` use no network, clock, async
//! runtime or client library: what they need comes in as data.

#![forbid(unsafe_code)]

pub mod applied;
pub mod config;
pub mod daemon;
pub mod desired;
pub mod diag;
pub mod live;
pub mod model;
pub mod observed;
pub mod plan;
pub mod policy;
pub mod report;
pub mod schema;
pub mod source;
pub mod verify;
pub mod yaml;
