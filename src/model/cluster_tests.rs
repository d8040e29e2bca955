//! Loading repositories of several clusters.

use super::tests::{POLICY, tenant};
use super::*;

const BASE: &str = "[cluster]\naccount_id = \"123456789012\"\nregion = \"us-west-2\"\n\n[iam]\npolicy_name_template = \"{policy}-{cluster}\"\n";

fn cluster_file(name: &str, env: &str) -> String {
    format!(
        "[cluster]\noidc_issuer = \"oidc.eks.us-west-2.amazonaws.com/id/{}\"\nlabels = {{ env = \"{env}\" }}\n",
        name.to_uppercase()
    )
}

fn repo() -> MemSource {
    MemSource::default()
        .with("kftenant.toml", BASE)
        .with("clusters/dev.toml", &cluster_file("dev", "dev"))
        .with(
            "clusters/prod.toml",
            &format!(
                "{}\n[profile.default_resource_quota.hard]\ncpu = \"64\"\n",
                cluster_file("prod", "prod")
            ),
        )
        .with("policies/shared.json", POLICY)
        .with("tenants/everywhere.yaml", &tenant("everywhere", "  owner: a@x.com\n  iam:\n    managedPolicies: [shared]\n  overrides:\n    prod:\n      profile:\n        resourceQuota:\n          hard: {cpu: '8'}\n      members:\n        - {user: b@x.com, role: view}\n"))
        .with("tenants/dev-only.yaml", &tenant("dev-only", "  owner: a@x.com\n  clusters: [dev]\n"))
        .with(
            "tenants/prod-only.yaml",
            &tenant("prod-only", "  owner: a@x.com\n  clusterSelector:\n    matchLabels: {env: prod}\n"),
        )
}

fn problems_all(src: &MemSource) -> Vec<String> {
    match load_all(src) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(ToString::to_string).collect(),
    }
}

fn names(r: &Repository) -> Vec<&str> {
    r.tenants.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn each_cluster_sees_its_tenants_with_its_overrides() {
    let all = load_all(&repo()).unwrap();
    assert_eq!(all.len(), 2);
    let (dev, prod) = (&all[0], &all[1]);
    assert_eq!(dev.config.cluster.name, "dev");
    assert_eq!(
        dev.config.cluster.oidc_issuer,
        "oidc.eks.us-west-2.amazonaws.com/id/DEV"
    );
    assert_eq!(
        dev.config.cluster.account_id, "123456789012",
        "from the base"
    );
    assert_eq!(names(dev), ["dev-only", "everywhere"]);
    assert_eq!(names(prod), ["everywhere", "prod-only"]);
    let on = |r: &Repository, t: &str| r.tenants.iter().find(|x| x.name == t).unwrap().clone();
    // The override: quota merged over the cluster's default, members replaced.
    let e_prod = on(prod, "everywhere");
    assert_eq!(e_prod.resource_quota.hard["cpu"].to_string(), "8");
    assert_eq!(e_prod.members.len(), 1);
    let e_dev = on(dev, "everywhere");
    assert!(e_dev.resource_quota.hard.is_empty() && e_dev.members.is_empty());
    // The cluster file's default quota applies to prod's other tenants.
    assert_eq!(
        on(prod, "prod-only").resource_quota.hard["cpu"].to_string(),
        "64"
    );
    // Each cluster renders its own names.
    assert_eq!(dev.config.role_name("everywhere"), "everywhere-dev-role");
    assert_eq!(prod.config.policy_name("shared"), "shared-prod");
}

#[test]
fn one_cluster_reads_only_its_own_cluster_file() {
    let src = repo().with("clusters/dev.toml", "this is [not toml");
    let prod = load_cluster(&src, "prod").unwrap();
    assert_eq!(names(&prod), ["everywhere", "prod-only"]);
    assert!(prod.files.contains("clusters/prod.toml"));
    assert!(!prod.files.contains("clusters/dev.toml"));
    // The whole repository is broken, though: CI reviews every cluster.
    let all = problems_all(&src);
    assert!(all[0].starts_with("clusters/dev.toml:1:"), "{all:#?}");
    let err = load_cluster(&src, "qa").unwrap_err();
    // Only that problem: the tenants' cluster names are not checked against
    // a cluster that is not there.
    assert_eq!(err.len(), 1, "{err:#?}");
    assert_eq!(
        err[0].to_string(),
        "clusters: no cluster `qa`: this repository declares dev, prod\n  hint: add clusters/qa.toml, or name one of those"
    );
}

#[test]
fn a_repository_of_several_clusters_is_not_one_repository() {
    let err = load(&repo()).unwrap_err();
    assert!(
        err[0]
            .to_string()
            .contains("describes 2 clusters (dev, prod)"),
        "{err:?}"
    );
}

#[test]
fn a_repository_of_one_cluster_names_only_that_one() {
    let src = super::tests::base().with(
        "tenants/a.yaml",
        &tenant("team-a", "  owner: a@x.com\n  clusters: [prod]\n"),
    );
    assert_eq!(load(&src).unwrap().tenants.len(), 1);
    assert!(load_cluster(&src, "prod").is_ok());
    let err = load_cluster(&src, "dev").unwrap_err();
    assert_eq!(err.len(), 1, "{err:#?}");
    assert!(
        err[0]
            .to_string()
            .contains("no cluster `dev`: this repository describes cluster `prod`")
    );
    let src = src.with(
        "tenants/a.yaml",
        &tenant("team-a", "  owner: a@x.com\n  clusters: [dev]\n"),
    );
    assert_eq!(
        super::tests::problems(&src),
        vec![
            "tenants/a.yaml:7:14: spec.clusters: no cluster `dev` in this repository\n  hint: the clusters of this repository: prod"
        ]
    );
}

#[test]
fn two_clusters_in_one_account_must_not_share_a_role_or_policy_name() {
    let src = repo()
        .with("kftenant.toml", "[cluster]\naccount_id = \"123456789012\"\nregion = \"us-west-2\"\n\n[iam]\nrole_name_template = \"kf-{tenant}\"\n");
    let p = problems_all(&src);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with("clusters/prod.toml:1:1: clusters `dev` and `prod` share account 123456789012 and both would create policy `shared` from policies/shared.json"),
        "{p:#?}"
    );
    assert!(p[0].contains("policy_name_template = \"{policy}-{cluster}\""));
    assert!(
        p[1].starts_with("tenants/everywhere.yaml:4:9: tenant `everywhere` on cluster `prod` renders IAM role name `kf-everywhere`, which tenant `everywhere` on cluster `dev` renders too, in the same account 123456789012"),
        "{p:#?}"
    );
    // In another account, the same names are fine.
    let src = src.with(
        "clusters/prod.toml",
        &format!(
            "{}account_id = \"210987654321\"\n",
            cluster_file("prod", "prod")
        ),
    );
    assert_eq!(problems_all(&src), Vec::<String>::new());
}

#[test]
fn cluster_files_are_checked_where_they_are_written() {
    let src = repo()
        .with("kftenant.toml", &format!("{BASE}[cluster.x]\n"))
        .with(
            "clusters/dev.toml",
            "[cluster]\nname = \"development\"\nlabels = { env = \"dev\" }\n[iam]\nrole_pth = \"/x/\"\n",
        );
    let p = problems_all(&src);
    assert!(
        p.iter().any(|l| l.starts_with("kftenant.toml:")),
        "the base's shape is checked: {p:#?}"
    );
    let src = repo().with(
        "clusters/dev.toml",
        "[cluster]\nname = \"development\"\nlabels = { env = \"dev\" }\n[iam]\nrole_pth = \"/x/\"\n",
    );
    assert_eq!(
        problems_all(&src),
        vec![
            "clusters/dev.toml:5:1: unknown key `role_pth` in [iam]\n  hint: did you mean `role_path`?",
        ]
    );
    let src = repo().with(
        "clusters/dev.toml",
        "[cluster]\nname = \"development\"\nlabels = { env = \"dev\" }\n",
    );
    assert_eq!(
        problems_all(&src),
        vec![
            "clusters/dev.toml:1:1: missing `oidc_issuer` in [cluster]\n  hint: set it in clusters/dev.toml, or in kftenant.toml when every cluster shares it",
            "clusters/dev.toml:2:1: [cluster] name differs from the file's name `dev`: a cluster's name is the name of its file\n  hint: remove the key, or rename the file to clusters/<name>.toml",
        ]
    );
    let src = repo().with(
        "kftenant.toml",
        &BASE.replace("[cluster]\n", "[cluster]\nname = \"x\"\n"),
    );
    let p = problems_all(&src);
    assert!(
        p[0].starts_with("kftenant.toml:2:1: [cluster] name in kftenant.toml: with clusters/"),
        "{p:#?}"
    );
}

#[test]
fn a_problem_of_one_cluster_says_which() {
    // prod denies s3:GetObject: the shared policy is fine on dev only.
    let src = repo().with(
        "clusters/prod.toml",
        &format!(
            "{}\n[guardrails]\ndenied_actions = [\"s3:GetObject\"]\n",
            cluster_file("prod", "prod")
        ),
    );
    let p = problems_all(&src);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("policies/shared.json:")
            && p[0].contains("denied action `s3:GetObject`")
            && p[0].contains("(on cluster prod)"),
        "{p:#?}"
    );
    // A mistake every cluster sees is reported once, without a cluster.
    let src = repo().with(
        "tenants/dev-only.yaml",
        &tenant("dev-only", "  owner: a b\n"),
    );
    let p = problems_all(&src);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(!p[0].contains("on cluster"), "{p:#?}");
}

#[test]
fn adoption_is_per_cluster() {
    // The guide made `legacy`'s role on dev only (at `/`); on prod kftenant
    // creates it under its path. Each cluster's view says so.
    let legacy = "  owner: a@x.com\n  overrides:\n    dev:\n      adopt:\n        role: arn:aws:iam::123456789012:role/legacy-dev-role\n        profile: legacy\n      iam:\n        rolePath: /\n";
    let src = repo().with("tenants/legacy.yaml", &tenant("legacy", legacy));
    let all = load_all(&src).unwrap_or_else(|p| panic!("{p:#?}"));
    let want = |r: &Repository| {
        let t = r.tenants.iter().find(|t| t.name == "legacy").unwrap();
        (
            t.role_arn(&r.config),
            t.adopt.role,
            t.adopt.profile,
            r.config.cluster.name.clone(),
        )
    };
    assert_eq!(
        want(&all[0]),
        (
            "arn:aws:iam::123456789012:role/legacy-dev-role".to_string(),
            true,
            true,
            "dev".to_string()
        )
    );
    assert_eq!(
        want(&all[1]),
        (
            "arn:aws:iam::123456789012:role/kftenant/legacy-prod-role".to_string(),
            false,
            false,
            "prod".to_string()
        )
    );
    // Written for the whole tenant, dev's role is not prod's: refused there.
    let src = repo().with(
        "tenants/legacy.yaml",
        &tenant(
            "legacy",
            "  owner: a@x.com\n  adopt:\n    role: arn:aws:iam::123456789012:role/legacy-dev-role\n  iam:\n    rolePath: /\n",
        ),
    );
    let p = problems_all(&src);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("tenants/legacy.yaml:8:11: spec.adopt.role `arn:aws:iam::123456789012:role/legacy-dev-role` is not this tenant's role `arn:aws:iam::123456789012:role/legacy-prod-role` (on cluster prod)")
            && p[0].contains("spec.overrides.<cluster>"),
        "{p:#?}"
    );
    // A policy made before kftenant, named by its ARN on two clusters of
    // one account: its tags can give it to one cluster only.
    let src = repo().with(
        "tenants/everywhere.yaml",
        &tenant(
            "everywhere",
            "  owner: a@x.com\n  iam:\n    managedPolicies: [arn:aws:iam::123456789012:policy/shared]\n",
        ),
    );
    let p = problems_all(&src);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].starts_with("policies/shared.json: clusters `dev` and `prod` share account 123456789012 and both name policy `arn:aws:iam::123456789012:policy/shared` by its ARN"),
        "{p:#?}"
    );
    // On one cluster only, it is that cluster's, under its own name.
    let src = src.with(
        "tenants/everywhere.yaml",
        &tenant(
            "everywhere",
            "  owner: a@x.com\n  clusters: [dev]\n  iam:\n    managedPolicies: [arn:aws:iam::123456789012:policy/shared]\n",
        ),
    );
    let all = load_all(&src).unwrap_or_else(|p| panic!("{p:#?}"));
    let arn = |r: &Repository| r.policies[0].arn(&r.config);
    assert_eq!(arn(&all[0]), "arn:aws:iam::123456789012:policy/shared");
    assert_eq!(
        arn(&all[1]),
        "arn:aws:iam::123456789012:policy/kftenant/shared-prod"
    );
}
