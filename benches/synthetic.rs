//! A synthetic tenant repository of any size, for benchmarks.
//! Included with `#[path]` by `benches/plan.rs` and `examples/plan-10k.rs`.

use kftenant::model::MemSource;

/// `n` tenants over 20 shared policies, each with 3 managed policies, one
/// inline policy, tags, an extra service account and a quota: the shape of a
/// real tenant, so sizes and work per tenant are realistic.
pub fn repository(n: usize) -> MemSource {
    let mut src = MemSource::default().with(
        "kftenant.toml",
        "[cluster]\nname = \"kubeflow-bench\"\naccount_id = \"123456789012\"\nregion = \"us-west-2\"\noidc_issuer = \"oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E\"\n\n[iam]\npermissions_boundary = \"boundary\"\n\n[prune]\nmax_deletions = 10\n",
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
            "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: team-{i:05}\nspec:\n  owner: owner-{i}@example.com\n  iam:\n    managedPolicies: [shared-{a}, shared-{b}, arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess]\n    inlinePolicies:\n      - name: own-bucket\n        document:\n          Version: \"2012-10-17\"\n          Statement:\n            - Effect: Allow\n              Action: [s3:GetObject, s3:PutObject]\n              Resource: arn:aws:s3:::bucket-{i}/*\n    tags:\n      cost-center: \"{c}\"\n    serviceAccounts: [ml-pipeline-runner]\n  profile:\n    resourceQuota:\n      hard: {{cpu: \"8\", memory: 32Gi}}\n",
            a = i % 20,
            b = (i + 7) % 20,
            c = 1000 + i % 50
        );
        src = src.with(&format!("tenants/team-{i:05}.yaml"), &yaml);
    }
    src
}
