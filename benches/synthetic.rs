//! A synthetic tenant repository of any size, for benchmarks and the live
//! tests that need many tenants. Included with `#[path]` by `benches/plan.rs`,
//! `examples/plan-10k.rs`, `examples/gen-repo.rs` and `tests/support/repo.rs`.

// Each includer uses a part.
#![allow(dead_code)]

use kftenant::model::MemSource;

/// Where a synthetic repository lives: account, cluster name, and a prefix
/// for tenant names (Profiles are cluster-scoped, so runs that share an API
/// server need their own names).
pub struct Names<'a> {
    pub account_id: &'a str,
    pub cluster: &'a str,
    pub tenant_prefix: &'a str,
}

impl Default for Names<'_> {
    fn default() -> Self {
        Names {
            account_id: "123456789012",
            cluster: "kubeflow-bench",
            tenant_prefix: "",
        }
    }
}

/// `n` tenants over 20 shared policies, each with 3 managed policies, one
/// inline policy, tags, an extra service account and a quota: the shape of a
/// real tenant, so sizes and work per tenant are realistic.
pub fn repository(n: usize) -> MemSource {
    repository_at(n, &Names::default())
}

/// [`repository`] in another account and cluster, with prefixed tenant names.
pub fn repository_at(n: usize, names: &Names<'_>) -> MemSource {
    let Names {
        account_id,
        cluster,
        tenant_prefix: p,
    } = names;
    let mut src = MemSource::default().with(
        "kftenant.toml",
        &format!("[cluster]\nname = \"{cluster}\"\naccount_id = \"{account_id}\"\nregion = \"us-west-2\"\noidc_issuer = \"oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E\"\n\n[iam]\npermissions_boundary = \"boundary\"\n\n[prune]\nmax_deletions = 10\n"),
    );
    let policy = |action: &str| {
        format!(
            "{{\"Version\": \"2012-10-17\", \"Statement\": [{{\"Effect\": \"Allow\", \"Action\": [\"{action}\"], \"Resource\": \"*\"}}]}}"
        )
    };
    src = src.with("policies/boundary.json", &policy("s3:*"));
    for p in 0..20 {
        src = src.with(
            &format!("policies/shared-{p}.json"),
            &policy(&format!("s3:GetObject{p}")),
        );
    }
    for i in 0..n {
        let yaml = format!(
            "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {p}team-{i:05}\nspec:\n  owner: owner-{i}@example.com\n  iam:\n    managedPolicies: [shared-{a}, shared-{b}, arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n    inlinePolicies:\n      - name: own-bucket\n        document:\n          Version: \"2012-10-17\"\n          Statement:\n            - Effect: Allow\n              Action: [s3:GetObject, s3:PutObject]\n              Resource: arn:aws:s3:::bucket-{i}/*\n    tags:\n      cost-center: \"{c}\"\n    serviceAccounts: [ml-pipeline-runner]\n  profile:\n    resourceQuota:\n      hard: {{cpu: \"8\", memory: 32Gi}}\n",
            a = i % 20,
            b = (i + 7) % 20,
            c = 1000 + i % 50
        );
        src = src.with(&format!("tenants/{p}team-{i:05}.yaml"), &yaml);
    }
    src
}
