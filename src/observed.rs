//! The observed world: what IAM and the cluster hold now, as plain data.
//!
//! Readers of the live world (a later module) and `--observed FILE` snapshots
//! both produce an [`Observed`]. Documents are kept as IAM returned them
//! (often percent-encoded): decoding and comparing is the planner's job, so a
//! snapshot is a faithful record of the live world.

use crate::desired::Desired;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::BTreeMap;

/// Snapshot format version written by `kftenant observe` and read by `plan --observed`.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

fn format_version() -> u32 {
    SNAPSHOT_FORMAT_VERSION
}

/// The live world, limited to what kftenant may care about.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    /// Snapshot format version.
    #[serde(default = "format_version")]
    pub format_version: u32,
    /// IAM roles (under kftenant's path, or with a name kftenant wants).
    #[serde(default)]
    pub roles: Vec<ObservedRole>,
    /// Customer-managed policies (under kftenant's path, or with a name it wants).
    #[serde(default)]
    pub policies: Vec<ObservedPolicy>,
    /// Kubeflow Profiles (managed ones, or with a name kftenant wants).
    #[serde(default)]
    pub profiles: Vec<ObservedProfile>,
}

/// A role as IAM describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedRole {
    /// Role name.
    pub name: String,
    /// IAM path.
    pub path: String,
    /// Role ARN.
    pub arn: String,
    /// The trust policy as IAM returned it (percent-encoded or plain JSON).
    pub assume_role_policy_document: String,
    /// Boundary policy ARN.
    #[serde(default)]
    pub permissions_boundary: Option<String>,
    /// Seconds.
    pub max_session_duration: u32,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// ARNs of attached managed policies.
    #[serde(default)]
    pub attached_policy_arns: Vec<String>,
    /// Inline policy documents by name, as IAM returned them.
    #[serde(default)]
    pub inline_policies: BTreeMap<String, String>,
}

/// A customer-managed policy as IAM describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedPolicy {
    /// Policy name.
    pub name: String,
    /// IAM path.
    pub path: String,
    /// Policy ARN.
    pub arn: String,
    /// The default version's document, as IAM returned it.
    pub document: String,
    /// Id of the default version (`v3`).
    #[serde(default)]
    pub default_version_id: String,
    /// Ids of every version, oldest first (IAM keeps at most 5).
    #[serde(default)]
    pub version_ids: Vec<String>,
    /// How many roles, users and groups it is attached to (all of them, managed or not).
    #[serde(default)]
    pub attachment_count: usize,
    /// The description, set once at creation (see [`crate::desired::policy_marker`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Tags; `None` when not read: a policy carrying this cluster's
    /// [`crate::desired::policy_marker`] is known to be kftenant's without them.
    #[serde(default)]
    pub tags: Option<BTreeMap<String, String>>,
}

/// A Kubeflow Profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedProfile {
    /// Profile name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The whole `spec`.
    #[serde(default)]
    pub spec: crate::desired::Document,
    /// True when the Profile has a deletion timestamp (finalizers still running).
    #[serde(default)]
    pub deleting: bool,
}

impl Observed {
    /// Parses a snapshot written by `kftenant observe`.
    pub fn from_json(text: &str) -> Result<Observed, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The snapshot as pretty JSON, entries sorted by name so files diff well.
    pub fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out).expect("writing to memory");
        String::from_utf8(out).expect("serde_json writes UTF-8")
    }

    /// [`Observed::to_json`] into `w`, without copying the world.
    fn write_json(&self, mut w: impl std::io::Write) -> std::io::Result<()> {
        fn by_name<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&T> {
            let mut v: Vec<&T> = items.iter().collect();
            v.sort_by(|a, b| name(a).cmp(name(b)));
            v
        }
        /// The fields of [`Observed`] in their order, entries sorted.
        #[derive(Serialize)]
        struct Sorted<'a> {
            format_version: u32,
            roles: Vec<&'a ObservedRole>,
            policies: Vec<&'a ObservedPolicy>,
            profiles: Vec<&'a ObservedProfile>,
        }
        let sorted = Sorted {
            format_version: self.format_version,
            roles: by_name(&self.roles, |r| &r.name),
            policies: by_name(&self.policies, |p| &p.name),
            profiles: by_name(&self.profiles, |p| &p.name),
        };
        serde_json::to_writer_pretty(&mut w, &sorted)?;
        w.write_all(b"\n")
    }

    /// A short digest of the snapshot (FNV-1a 64 over [`Observed::to_json`]),
    /// to tell whether the live world changed since a plan was made. Hashed
    /// as it is written: the text of a large world is never held.
    pub fn digest(&self) -> String {
        struct Fnv(u64);
        impl std::io::Write for Fnv {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                for b in buf {
                    self.0 ^= u64::from(*b);
                    self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
                }
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        self.write_json(&mut h).expect("hashing cannot fail");
        format!("{:016x}", h.0)
    }

    /// The live world IAM and Kubernetes would report once `desired` is fully
    /// applied, written the way IAM writes it back: documents percent-encoded,
    /// one-element lists collapsed to strings, lists in another order.
    /// Used for converged fixtures, benchmarks and the convergence property.
    pub fn converged(desired: &Desired) -> Observed {
        let roles = desired
            .roles
            .values()
            .map(|r| ObservedRole {
                name: r.name.clone(),
                path: r.path.clone(),
                arn: r.arn.clone(),
                assume_role_policy_document: iam_encode(&r.trust_policy.to_json()),
                permissions_boundary: r.permissions_boundary.clone(),
                max_session_duration: r.max_session_duration,
                tags: r.tags.clone(),
                attached_policy_arns: r.managed_policy_arns.iter().rev().cloned().collect(),
                inline_policies: r
                    .inline_policies
                    .iter()
                    .map(|(k, v)| (k.clone(), iam_encode(&v.to_json())))
                    .collect(),
            })
            .collect();
        let policies = desired
            .policies
            .values()
            .map(|p| ObservedPolicy {
                name: p.name.clone(),
                path: p.path.clone(),
                arn: p.arn.clone(),
                document: iam_encode(&p.document.to_json()),
                default_version_id: "v1".into(),
                version_ids: vec!["v1".into()],
                attachment_count: desired
                    .roles
                    .values()
                    .filter(|r| {
                        r.managed_policy_arns.contains(&p.arn)
                            || r.permissions_boundary.as_ref() == Some(&p.arn)
                    })
                    .count(),
                // As the bulk read sees a policy kftenant created.
                description: crate::desired::policy_marker(&desired.cluster),
                tags: None,
            })
            .collect();
        let profiles = desired
            .profiles
            .values()
            .map(|p| {
                let mut labels = p.labels.clone();
                // Other controllers add their own metadata; kftenant must ignore it.
                labels.insert("kubernetes.io/metadata.name".into(), p.name.clone());
                ObservedProfile {
                    name: p.name.clone(),
                    labels,
                    annotations: p.annotations.clone(),
                    spec: p.spec.clone(),
                    deleting: false,
                }
            })
            .collect();
        Observed {
            format_version: SNAPSHOT_FORMAT_VERSION,
            roles,
            policies,
            profiles,
        }
    }
}

/// A document as IAM returns it from GetRole / GetRolePolicy: re-serialised
/// (one-element lists as strings, statements reversed) and percent-encoded.
pub fn iam_encode(doc: &Json) -> String {
    let reshaped = reshape(doc);
    percent_encoding::utf8_percent_encode(&reshaped.to_string(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

fn reshape(v: &Json) -> Json {
    match v {
        Json::Array(items) if items.len() == 1 => reshape(&items[0]),
        Json::Array(items) => Json::Array(items.iter().rev().map(reshape).collect()),
        Json::Object(m) => Json::Object(m.iter().map(|(k, v)| (k.clone(), reshape(v))).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_hashes_the_sorted_snapshot_text_and_sees_any_change() {
        let mut o = Observed::default();
        for name in ["b", "a"] {
            o.profiles.push(ObservedProfile {
                name: name.into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
                spec: Default::default(),
                deleting: false,
            });
        }
        let text = o.to_json();
        assert!(text.find("\"a\"") < text.find("\"b\""), "{text}");
        // FNV-1a 64 over the text, as saved plans recorded it.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in text.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        assert_eq!(o.digest(), format!("{h:016x}"));
        o.profiles[0].deleting = true;
        assert_ne!(o.digest(), format!("{h:016x}"));
    }
}
