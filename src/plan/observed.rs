//! The observed world: what IAM and the cluster hold now, as plain data.
//!
//! The live readers (`crate::live::observe`) and `--observed FILE` snapshots
//! both produce an [`Observed`]. Documents are stored as the readers decode
//! them (percent-decoding only, compact JSON), or raw when they do not parse;
//! the planner parses and normalises them before comparing. One of the
//! planner's two inputs; [`super::desired`] is the other.

use crate::document::Document;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Snapshot format version written by `kftenant observe` and read by `plan --observed`.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

fn format_version() -> u32 {
    SNAPSHOT_FORMAT_VERSION
}

/// Why a snapshot file cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not JSON of a snapshot.
    #[error("not a kftenant snapshot: {0}")]
    NotASnapshot(String),
    /// Written by another version of the format.
    #[error(
        "the snapshot has format_version {found}, this kftenant reads {SNAPSHOT_FORMAT_VERSION}: observe again with this version"
    )]
    Version {
        /// The version in the file.
        found: u32,
    },
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
    /// Managed policy ARNs the desired world names that IAM says do not exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_policies: Vec<String>,
    /// Tenant namespaces that exist (made by the Kubeflow controller).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<ObservedObject>,
    /// RoleBindings in tenant namespaces that KFAM lists (with `user` and
    /// `role` annotations): contributors and the owner's `namespaceAdmin`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub role_bindings: Vec<ObservedObject>,
    /// AuthorizationPolicies in tenant namespaces with `user` and `role` annotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorization_policies: Vec<ObservedObject>,
    /// ServiceAccounts in tenant namespaces that kftenant cares about: named
    /// in git, labelled by kftenant, or carrying an IAM role annotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<ObservedObject>,
}

/// A Kubernetes object kftenant looks at besides Profiles, as plain data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservedObject {
    /// Namespace (empty for a Namespace itself).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// What the kind holds besides metadata: a RoleBinding's `roleRef` and
    /// `subjects`, an AuthorizationPolicy's `spec`; `null` for the others.
    #[serde(default)]
    pub body: Document,
    /// True when it has a deletion timestamp.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
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
    /// The description, set once at creation (see [`crate::ownership::policy_marker`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Tags; `None` when not read: a policy carrying this cluster's
    /// [`crate::ownership::policy_marker`] is known to be kftenant's without them.
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
    pub spec: Document,
    /// True when the Profile has a deletion timestamp (finalizers still running).
    #[serde(default)]
    pub deleting: bool,
}

impl Observed {
    /// Parses a snapshot written by `kftenant observe`.
    pub fn from_json(text: &str) -> Result<Observed, SnapshotError> {
        Observed::read(text.as_bytes())
    }

    /// Parses a snapshot as it is read (the text of a large world is never
    /// held beside the world built from it), refusing other format versions.
    pub fn read(reader: impl std::io::Read) -> Result<Observed, SnapshotError> {
        let o: Observed = serde_json::from_reader(reader)
            .map_err(|e| SnapshotError::NotASnapshot(e.to_string()))?;
        if o.format_version != SNAPSHOT_FORMAT_VERSION {
            return Err(SnapshotError::Version {
                found: o.format_version,
            });
        }
        Ok(o)
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
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            missing_policies: &'a [String],
            #[serde(skip_serializing_if = "Vec::is_empty")]
            namespaces: Vec<&'a ObservedObject>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            role_bindings: Vec<&'a ObservedObject>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            authorization_policies: Vec<&'a ObservedObject>,
            #[serde(skip_serializing_if = "Vec::is_empty")]
            service_accounts: Vec<&'a ObservedObject>,
        }
        fn by_place(items: &[ObservedObject]) -> Vec<&ObservedObject> {
            let mut v: Vec<&ObservedObject> = items.iter().collect();
            v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
            v
        }
        let sorted = Sorted {
            format_version: self.format_version,
            roles: by_name(&self.roles, |r| &r.name),
            policies: by_name(&self.policies, |p| &p.name),
            profiles: by_name(&self.profiles, |p| &p.name),
            missing_policies: &self.missing_policies,
            namespaces: by_place(&self.namespaces),
            role_bindings: by_place(&self.role_bindings),
            authorization_policies: by_place(&self.authorization_policies),
            service_accounts: by_place(&self.service_accounts),
        };
        serde_json::to_writer_pretty(&mut w, &sorted)?;
        w.write_all(b"\n")
    }

    /// A digest of the snapshot (SHA-256 of [`Observed::to_json`], 16 hex
    /// digits), to tell whether the live world changed since a plan was made.
    /// Hashed as it is written: the text of a large world is never held.
    pub fn digest(&self) -> String {
        struct Hasher(Sha256);
        impl std::io::Write for Hasher {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hasher(Sha256::new());
        self.write_json(&mut h).expect("hashing cannot fail");
        let digest = h.0.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
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
        let h = Sha256::digest(text.as_bytes());
        let h: String = h[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(o.digest(), h);
        o.profiles[0].deleting = true;
        assert_ne!(o.digest(), h);
    }
}
