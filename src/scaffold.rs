//! `kftenant init`: the files of a new tenant repository, as text. Pure: the
//! command line writes them (refusing to overwrite anything).

use crate::kubeflow::DEFAULT_SERVICE_ACCOUNT;

/// What a new repository is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// EKS cluster name.
    pub cluster: String,
    /// 12-digit AWS account id.
    pub account_id: String,
    /// AWS region.
    pub region: String,
    /// The cluster's OIDC issuer, with or without `https://`.
    pub oidc_issuer: String,
    /// The first tenant's name.
    pub tenant: String,
    /// The first tenant's owner.
    pub owner: String,
}

/// The GitHub Actions workflow that validates and plans pull requests.
pub const WORKFLOW: &str = include_str!("../examples/github-actions/kftenant-plan.yml");

/// The files of a new repository: `(path, text)`, paths relative to its root.
pub fn files(o: &InitOptions) -> Vec<(String, String)> {
    let issuer = o.oidc_issuer.trim_start_matches("https://");
    let config = format!(
        r#"# kftenant.toml: the cluster this repository describes, and the rules every
# tenant follows. Reference: kftenant's README ("kftenant.toml"); editors
# check it with kftenant's schema/kftenant-toml.schema.json.

[cluster]
name = "{cluster}"
account_id = "{account}"
region = "{region}"
# `aws eks describe-cluster --name {cluster} --query cluster.identity.oidc.issuer`, without https://
oidc_issuer = "{issuer}"

[iam]
role_name_template = "{{tenant}}-{{cluster}}-role"
role_path = "/kftenant/"

[profile]
# The Kubeflow profile controller only annotates {DEFAULT_SERVICE_ACCOUNT}; kftenant owns the trust policy.
annotate_only = true

[guardrails]
require_boundary = false

[prune]
enabled = true
max_deletions = 5
# A tenant removed from tenants/ is deleted (with its namespace) only once it is listed here.
decommissioned = []
"#,
        cluster = o.cluster,
        account = o.account_id,
        region = o.region,
    );
    let tenant = format!(
        r#"# yaml-language-server: $schema=https://raw.githubusercontent.com/OWNER/kftenant/main/schema/tenant.schema.json
apiVersion: kftenant.io/v1alpha1
kind: Tenant
metadata:
  name: {tenant}
spec:
  owner: {owner}
  iam:
    managedPolicies: []
  profile:
    resourceQuota:
      hard:
        cpu: "8"
        memory: 32Gi
"#,
        tenant = o.tenant,
        owner = o.owner,
    );
    vec![
        ("kftenant.toml".into(), config),
        (format!("tenants/{}.yaml", o.tenant), tenant),
        (
            ".github/workflows/kftenant-plan.yml".into(),
            WORKFLOW.to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{self, MemSource};

    #[test]
    fn a_new_repository_validates() {
        let files = files(&InitOptions {
            cluster: "ml-prod".into(),
            account_id: "012345678901".into(),
            region: "eu-west-1".into(),
            oidc_issuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC".into(),
            tenant: "team-a".into(),
            owner: "alice@example.com".into(),
        });
        let mut src = MemSource::default();
        for (path, text) in &files {
            src = src.with(path, text);
        }
        let repo = model::load(&src).unwrap_or_else(|d| panic!("{d:#?}"));
        assert_eq!(repo.tenants[0].name, "team-a");
        assert_eq!(
            repo.config.cluster.oidc_issuer,
            "oidc.eks.eu-west-1.amazonaws.com/id/ABC"
        );
        assert!(
            files
                .iter()
                .any(|(p, _)| p == ".github/workflows/kftenant-plan.yml")
        );
    }
}
