//! The `kftenant` binary end to end: exit codes, output, committed fixtures.

#[path = "cli/broken.rs"]
mod broken;
mod support;

use kftenant::plan::{desired, observed::Observed};
use kftenant::{model, schema};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::repo::copy_dir;
use support::text;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn kftenant(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kftenant"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("kftenant runs")
}

#[test]
fn validate_sample_repo_passes() {
    let out = kftenant(&["validate", "sample-repo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with("sample-repo: valid (6 tenants, 3 shared policies)\nread 10 files:\n"),
        "{stdout}"
    );
    // What was read is listed, with the tenants each file defines.
    assert!(stdout.contains("\n  tenants/research.yaml: nlp-research, vision-research\n"));
    assert!(stdout.contains("\n  inline/fraud-detection-artifacts.json\n"));
}

#[test]
fn broken_repo_reports_every_planted_error_with_its_location() {
    let out = kftenant(&["validate", "tests/fixtures/broken-repo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let planted = [
        "kftenant.toml:6:1: account_id `12345` is not a 12-digit AWS account id",
        "policies/ecr-pull.json:11:7: invalid JSON: trailing comma",
        "tenants/forecasting.yaml:12:9: guardrail: `arn:aws:iam::aws:policy/AdministratorAccess` is denied",
        "tenants/forecasting.yaml:13:9: spec.iam.managedPolicies: `datalake-reed` is neither an ARN nor a policy in policies/\n  hint: did you mean `datalake-read`?",
        "tenants/forecasting.yaml:17:7: tag key `aws:created-by`: the `aws:` prefix is reserved by AWS",
        "tenants/fraud-detection.yaml:7:3: unknown field `ownr` in spec\n  hint: did you mean `owner`?",
        "tenants/platform-sandbox.yaml:9:6: YAML syntax error",
        "tenants/recommendations.yaml:17:23: Effect must be \"Allow\" or \"Deny\", found allow",
        "tenants/research.yaml:27:9: duplicate tenant `nlp-research`: tenants/research.yaml defines it again; it is already defined at tenants/research.yaml:6:9",
    ];
    for p in planted {
        assert!(err.contains(p), "missing `{p}` in:\n{err}");
    }
    insta::assert_snapshot!("broken_repo_validate", err);
    // No plan at all from a broken repository.
    let out = kftenant(&["plan", "tests/fixtures/broken-repo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn validate_json_lists_problems() {
    let out = kftenant(&["validate", "tests/fixtures/broken-repo", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), 10);
    assert_eq!(v["problems"][0]["file"], "kftenant.toml");
    assert_eq!(v["problems"][0]["pos"]["line"], 6);
}

#[test]
fn plan_of_sample_repo_against_empty_world_exits_2() {
    let out = kftenant(&["plan", "sample-repo", "--source-commit", "abc"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("+ iam_role.fraud-detection-kubeflow-prod-role  (tenant `fraud-detection` is in git and has no role)"), "{stdout}");
    assert!(
        stdout.ends_with("Plan: 35 to create, 0 to update, 0 to delete (6 tenants).\n"),
        "{stdout}"
    );
}

#[test]
fn plan_against_converged_snapshot_exits_0() {
    let out = kftenant(&[
        "plan",
        "sample-repo",
        "--observed",
        "tests/fixtures/sample-converged.json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("No changes. IAM and the cluster match git."));
}

#[test]
fn converged_snapshot_fixture_is_fresh() {
    let repo = model::load_dir(&root().join("sample-repo")).unwrap();
    let want = Observed::converged(&desired::render(&repo)).to_json();
    let path = root().join("tests/fixtures/sample-converged.json");
    if std::env::var_os("KFTENANT_UPDATE_FIXTURES").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "tests/fixtures/sample-converged.json is stale: run `KFTENANT_UPDATE_FIXTURES=1 cargo test --test cli`"
    );
}

#[test]
fn committed_schemas_are_fresh() {
    for (name, want) in schema::all() {
        let path = root().join("schema").join(name);
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "schema/{name} is stale: run `cargo run -- schema`"
        );
    }
}

/// `deploy/iam-adopted-policy.json` is `iam-policy.json`'s tag-scoped writes
/// on every path (adopted roles keep theirs), `iam-adopt-policy.json` only
/// tags with this cluster's ownership, and neither reaches the controller's
/// own role. Moto does not evaluate IAM policies, so this checks their text.
#[test]
fn deploy_adoption_policies_are_the_owned_writes_on_every_path() {
    use kftenant::ownership::{MANAGER, TAG_CLUSTER, TAG_MANAGED_BY};
    use serde_json::{Value, json};
    use std::collections::BTreeSet;
    let read = |f: &str| -> Value {
        let text = std::fs::read_to_string(root().join("deploy").join(f)).unwrap();
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("deploy/{f}: {e}"))
    };
    let sid = |doc: &Value, sid: &str| -> Value {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no statement {sid}"))
            .clone()
    };
    let actions = |s: &Value| -> BTreeSet<String> {
        match &s["Action"] {
            Value::String(a) => [a.clone()].into(),
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("Action {other}"),
        }
    };
    let base = read("iam-policy.json");
    let adopt = read("iam-adopt-policy.json");
    let adopted = read("iam-adopted-policy.json");
    let ours = |prefix: &str| {
        json!({"StringEquals": {
            format!("{prefix}/{TAG_MANAGED_BY}"): MANAGER,
            format!("{prefix}/{TAG_CLUSTER}"): "CLUSTER_NAME",
        }})
    };
    let owned_roles = sid(&base, "ChangeOwnedRoles");
    let roles = sid(&adopted, "ChangeAdoptedRoles");
    assert_eq!(actions(&roles), actions(&owned_roles));
    assert_eq!(roles["Resource"], "arn:aws:iam::ACCOUNT_ID:role/*");
    assert_eq!(roles["Condition"], ours("iam:ResourceTag"));
    assert_eq!(owned_roles["Condition"], ours("iam:ResourceTag"));
    let policies = sid(&adopted, "ChangeAdoptedPolicies");
    assert_eq!(
        actions(&policies),
        actions(&sid(&base, "ChangeOwnedPolicies"))
    );
    assert_eq!(policies["Resource"], "arn:aws:iam::ACCOUNT_ID:policy/*");
    assert_eq!(policies["Condition"], ours("aws:ResourceTag"));
    for (name, action, resource) in [
        ("AdoptRoles", "iam:TagRole", "role/*"),
        ("AdoptPolicies", "iam:TagPolicy", "policy/*"),
    ] {
        let s = sid(&adopt, name);
        assert_eq!(actions(&s), [action.to_string()].into(), "{name}");
        assert_eq!(s["Resource"], format!("arn:aws:iam::ACCOUNT_ID:{resource}"));
        assert_eq!(s["Condition"], ours("aws:RequestTag"), "{name}");
    }
    // Allows only, but for the guard of the controller's own role.
    for (doc, guard) in [
        (&adopt, "NeverAdoptItself"),
        (&adopted, "NeverChangeItself"),
    ] {
        let allowed: BTreeSet<String> = doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["Effect"] == "Allow" && s["Resource"].as_str().unwrap().contains(":role/")
            })
            .flat_map(&actions)
            .collect();
        let g = sid(doc, guard);
        assert_eq!(g["Effect"], "Deny");
        assert_eq!(
            g["Resource"],
            "arn:aws:iam::ACCOUNT_ID:role/kftenant-controller"
        );
        assert_eq!(
            actions(&g),
            allowed,
            "{guard} denies every role write allowed"
        );
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 3);
    }
    // The files are documented where deploy/ is.
    let readme = std::fs::read_to_string(root().join("deploy/README.md")).unwrap();
    for f in ["iam-adopt-policy.json", "iam-adopted-policy.json"] {
        assert!(
            readme.contains(&format!("| `{f}` |")),
            "deploy/README.md lists {f}"
        );
    }
}

#[test]
fn readme_lists_the_default_escalation_guardrails() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for (action, why) in kftenant::config::ESCALATION_ACTIONS {
        let row = format!("| `{action}` | {why} |");
        assert!(readme.contains(&row), "README.md lacks the row {row}");
    }
    for (policy, grants) in kftenant::config::ESCALATION_POLICIES {
        let row = format!("| `{policy}` | {grants} |");
        assert!(readme.contains(&row), "README.md lacks the row {row}");
    }
}

/// The README's example: sample-repo without its boundary, and a shared policy
/// that passes roles.
#[test]
fn a_tenant_without_a_boundary_may_not_escalate() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("sample-repo"), tmp.path());
    let edit = |file: &str, from: &str, to: &str| {
        let path = tmp.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file}: {from}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "kftenant.toml",
        "permissions_boundary = \"tenant-boundary\"",
        "# permissions_boundary = \"tenant-boundary\"",
    );
    edit(
        "kftenant.toml",
        "require_boundary = true",
        "require_boundary = false",
    );
    edit(
        "tenants/forecasting.yaml",
        "      - ecr-pull\n",
        "      - ecr-pull\n      - pipelines\n",
    );
    std::fs::write(
        tmp.path().join("policies/pipelines.json"),
        r#"{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["states:StartExecution", "states:DescribeExecution"],
      "Resource": "*"
    },
    {
      "Effect": "Allow",
      "Action": ["iam:GetRole", "iam:Pass*"],
      "Resource": "arn:aws:iam::123456789012:role/pipelines/*"
    }
  ]
}
"#,
    )
    .unwrap();
    let out = kftenant(&["validate", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let example: String = readme
        .split("  $ kftenant validate .\n")
        .nth(1)
        .and_then(|rest| rest.split("  ```").next())
        .expect("the README has the example")
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
        .collect();
    assert!(example.contains("statement 2 grants the escalation action `iam:PassRole`"));
    assert!(
        err.starts_with(&example),
        "README example differs from:\n{err}"
    );
    assert!(
        err.ends_with("1 problem found; nothing was planned or applied.\n"),
        "{err}"
    );
}

#[test]
fn sample_tenant_files_point_editors_at_the_schema() {
    for entry in std::fs::read_dir(root().join("sample-repo/tenants")).unwrap() {
        let path = entry.unwrap().path();
        let first = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        assert_eq!(
            first,
            "# yaml-language-server: $schema=../../schema/tenant.schema.json",
            "{}",
            path.display()
        );
    }
}

#[test]
fn quota_mistakes_are_reported_where_they_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("sample-repo"), tmp.path());
    let file = tmp.path().join("tenants/platform-sandbox.yaml");
    let yaml = std::fs::read_to_string(&file).unwrap().replace(
        "        cpu: \"4\"\n        memory: 16Gi\n",
        "        cpu: \"4\"\n        memmory: 16Gi\n        requests.nvidia.com/gpus: null\n      scopes: [NotTerminatin]\n",
    );
    std::fs::write(&file, yaml).unwrap();
    let toml = tmp.path().join("kftenant.toml");
    let cfg = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("memory = \"64Gi\"", "memory = \"64GB\"");
    std::fs::write(&toml, cfg).unwrap();
    let out = kftenant(&["validate", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    for want in [
        "kftenant.toml:25:1: `64GB` is not a Kubernetes quantity\n  hint: did you mean `64G` or `64Gi`?",
        "tenants/platform-sandbox.yaml:18:9: `memmory` is not a resource a Kubernetes quota can limit\n  hint: did you mean `memory`?",
        "tenants/platform-sandbox.yaml:19:9: `requests.nvidia.com/gpus: null` removes a default limit, but [profile.default_resource_quota] has no `requests.nvidia.com/gpus`\n  hint: did you mean `requests.nvidia.com/gpu`?",
        "tenants/platform-sandbox.yaml:20:16: unknown quota scope `NotTerminatin`\n  hint: did you mean `NotTerminating`?",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
}

#[test]
fn emptied_tenants_folder_deletes_nothing_even_with_allow_mass_delete() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("sample-repo"), tmp.path());
    for e in std::fs::read_dir(tmp.path().join("tenants")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let repo = tmp.path().to_str().unwrap();
    let snapshot = root().join("tests/fixtures/sample-converged.json");
    for extra in [&[][..], &["--allow-mass-delete"][..]] {
        let mut args = vec![
            "plan",
            repo,
            "--observed",
            snapshot.to_str().unwrap(),
            "--format",
            "json",
        ];
        args.extend(extra);
        let out = kftenant(&args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "held deletions are not done: exit 1"
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["format_version"], kftenant::plan::PLAN_FORMAT_VERSION);
        assert_eq!(plan["summary"]["delete"], 0);
        assert_eq!(plan["summary"]["held"], 6);
        assert!(
            plan["held"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("[prune] decommissioned")
        );
    }
}

#[test]
fn markdown_out_file_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out_file = tmp.path().join("plan.md");
    let out = kftenant(&[
        "plan",
        "sample-repo",
        "--format",
        "markdown",
        "--out",
        out_file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let md = std::fs::read_to_string(&out_file).unwrap();
    assert!(md.starts_with("### kftenant plan for cluster `kubeflow-prod`"));
    assert!(md.len() < 65_000);
}

#[test]
fn help_explains_the_commands() {
    let out = kftenant(&["--help"]);
    let help = text(&out.stdout);
    for cmd in ["validate", "plan", "schema"] {
        assert!(help.contains(cmd), "{help}");
    }
    let out = kftenant(&["plan", "--help"]);
    assert!(text(&out.stdout).contains("0 no changes, 2 changes present, 1 error"));
}

#[test]
fn plan_against_a_base_revision_lists_the_tenants_a_pull_request_changes() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("sample-repo"), tmp.path());
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .args(["-c", "user.email=ci@example.com", "-c", "user.name=ci"])
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(st.status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "base"]);
    let f = tmp.path().join("tenants/forecasting.yaml");
    std::fs::write(
        &f,
        std::fs::read_to_string(&f)
            .unwrap()
            .replace("cost-center: \"4300\"", "cost-center: \"4301\""),
    )
    .unwrap();
    std::fs::remove_file(tmp.path().join("tenants/platform-sandbox.yaml")).unwrap();
    std::fs::write(tmp.path().join("tenants/new-team.yaml"), "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: new-team\nspec:\n  owner: n@acme.example\n").unwrap();
    let out = kftenant(&[
        "plan",
        tmp.path().to_str().unwrap(),
        "--base",
        "main",
        "--format",
        "markdown",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let md = text(&out.stdout);
    assert!(
        md.contains("\n#### Tenants changed by this pull request (against main, "),
        "{md}"
    );
    assert!(
        md.contains(
            ": 3\n- forecasting (changed)\n- new-team (added)\n- platform-sandbox (removed)\n"
        ),
        "{md}"
    );
    let bad = kftenant(&[
        "plan",
        tmp.path().to_str().unwrap(),
        "--base",
        "no-such-ref",
    ]);
    assert_eq!(bad.status.code(), Some(1));
}

/// A copy of sample-repo in a temp dir, and the converged snapshot of it.
fn sample_copy() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("sample-repo"), tmp.path());
    (tmp, root().join("tests/fixtures/sample-converged.json"))
}

fn plan_json(repo: &Path, snapshot: &Path, extra: &[&str]) -> (Option<i32>, serde_json::Value) {
    let mut args = vec![
        "plan",
        repo.to_str().unwrap(),
        "--observed",
        snapshot.to_str().unwrap(),
        "--format",
        "json",
    ];
    args.extend(extra);
    let out = kftenant(&args);
    let plan = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(&out.stdout), text(&out.stderr)));
    (out.status.code(), plan)
}

#[test]
fn a_tenant_moved_into_a_department_folder_is_still_read_and_nothing_is_deleted() {
    let (tmp, snapshot) = sample_copy();
    let t = tmp.path().join("tenants");
    std::fs::create_dir_all(t.join("risk/models")).unwrap();
    std::fs::rename(
        t.join("fraud-detection.yaml"),
        t.join("risk/fraud-detection.yaml"),
    )
    .unwrap();
    std::fs::rename(
        t.join("forecasting.yaml"),
        t.join("risk/models/forecasting.YML"),
    )
    .unwrap();
    let out = kftenant(&["validate", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("\n  tenants/risk/fraud-detection.yaml: fraud-detection\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n  tenants/risk/models/forecasting.YML: forecasting\n"),
        "{stdout}"
    );
    let (code, plan) = plan_json(tmp.path(), &snapshot, &[]);
    assert_eq!(code, Some(0), "{plan:#}");
    assert_eq!(plan["changes"], serde_json::json!([]));

    // A file kftenant would not read is an error, not a silent deletion.
    std::fs::rename(
        t.join("risk/fraud-detection.yaml"),
        t.join("risk/fraud-detection.yaml.bak"),
    )
    .unwrap();
    std::fs::write(tmp.path().join("platform-sandbox.yaml"), "kind: Tenant\n").unwrap();
    let out = kftenant(&["validate", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("platform-sandbox.yaml: not read: tenant files live under tenants/"),
        "{stderr}"
    );
    assert!(stderr.contains("tenants/risk/fraud-detection.yaml.bak: not read: a file under tenants/ must be a tenant file"), "{stderr}");
}

#[test]
fn removing_a_tenant_deletes_nothing_until_git_decommissions_it() {
    let (tmp, snapshot) = sample_copy();
    std::fs::remove_file(tmp.path().join("tenants/fraud-detection.yaml")).unwrap();
    let (code, plan) = plan_json(tmp.path(), &snapshot, &[]);
    assert_eq!(code, Some(1), "a held deletion is not done: {plan:#}");
    assert_eq!(plan["summary"]["delete"], 0);
    assert_eq!(plan["held"][0]["tenant"], "fraud-detection");
    let out = kftenant(&[
        "plan",
        tmp.path().to_str().unwrap(),
        "--observed",
        snapshot.to_str().unwrap(),
    ]);
    assert!(
        text(&out.stdout)
            .contains("Deletions held back (nothing of these is deleted):\n  ! fraud-detection")
    );

    // Decommissioned in git, in the same pull request: the plan deletes it,
    // and says that its namespace goes with it, in every format.
    let toml = tmp.path().join("kftenant.toml");
    let config = std::fs::read_to_string(&toml).unwrap();
    std::fs::write(
        &toml,
        config.replace(
            "max_deletions = 3\n",
            "max_deletions = 3\ndecommissioned = [\"fraud-detection\"]\n",
        ),
    )
    .unwrap();
    let (code, plan) = plan_json(tmp.path(), &snapshot, &[]);
    assert_eq!(code, Some(2), "{plan:#}");
    assert_eq!(
        plan["deleted_tenants"],
        serde_json::json!(["fraud-detection"])
    );
    assert_eq!(plan["held"], serde_json::json!([]));
    let repo = tmp.path().to_str().unwrap();
    let out = kftenant(&["plan", repo, "--observed", snapshot.to_str().unwrap()]);
    let t = text(&out.stdout);
    assert!(t.contains("Deletes tenants, with their namespaces and everything in them (notebooks, volumes, pipelines):\n  - fraud-detection\n"), "{t}");
    assert!(
        t.contains("deletes namespace `fraud-detection` and everything in it"),
        "{t}"
    );
    let out = kftenant(&[
        "plan",
        repo,
        "--observed",
        snapshot.to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert!(text(&out.stdout).contains(":rotating_light: Deletes tenants, with their namespaces"));

    // Decommissioning a tenant that is still defined is a mistake.
    std::fs::copy(
        root().join("sample-repo/tenants/fraud-detection.yaml"),
        tmp.path().join("tenants/fraud-detection.yaml"),
    )
    .unwrap();
    let out = kftenant(&["validate", repo]);
    assert_eq!(out.status.code(), Some(1));
    let line = 1 + std::fs::read_to_string(&toml)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("decommissioned"))
        .unwrap();
    let want = format!(
        "kftenant.toml:{line}:1: [prune] decommissioned lists `fraud-detection`, which tenants/fraud-detection.yaml:5:9 still defines"
    );
    assert!(text(&out.stderr).contains(&want), "{}", text(&out.stderr));
}

#[test]
fn a_pull_requests_own_changes_are_not_called_drift() {
    let (tmp, snapshot) = sample_copy();
    let run = |args: &[&str]| {
        let st = Command::new("git")
            .args(["-c", "user.email=ci@example.com", "-c", "user.name=ci"])
            .args(args)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(st.status.success(), "git {args:?}");
    };
    run(&["init", "-q", "-b", "main"]);
    run(&["add", "-A"]);
    run(&["commit", "-q", "-m", "base"]);
    // The pull request changes forecasting's tags; by hand, someone changed
    // recommendations' session duration in IAM.
    let f = tmp.path().join("tenants/forecasting.yaml");
    let yaml = std::fs::read_to_string(&f).unwrap();
    std::fs::write(
        &f,
        yaml.replace("cost-center: \"4300\"", "cost-center: \"4301\""),
    )
    .unwrap();
    let mut world: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&snapshot).unwrap()).unwrap();
    for r in world["roles"].as_array_mut().unwrap() {
        if r["name"] == "recommendations-kubeflow-prod-role" {
            r["max_session_duration"] = 10800.into();
        }
    }
    let drifted = tmp.path().join("drifted.json");
    std::fs::write(&drifted, world.to_string()).unwrap();
    let (code, plan) = plan_json(tmp.path(), &drifted, &["--base", "main"]);
    assert_eq!(code, Some(2), "{plan:#}");
    let drift: Vec<&str> = plan["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        drift,
        vec!["iam_role.recommendations-kubeflow-prod-role.max_session_duration"]
    );
    let change = |addr: &str| {
        plan["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["address"] == addr)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        change("iam_role.forecasting-kubeflow-prod-role.tags")["drift"],
        false,
        "the pull request's own change"
    );
    assert_eq!(
        change("iam_role.recommendations-kubeflow-prod-role.max_session_duration")["drift"],
        true
    );
    assert_eq!(
        plan["pull_request"]["tenants"],
        serde_json::json!([["forecasting", "changed"]])
    );
    let out = kftenant(&[
        "plan",
        tmp.path().to_str().unwrap(),
        "--observed",
        drifted.to_str().unwrap(),
        "--base",
        "main",
        "--format",
        "markdown",
    ]);
    let md = text(&out.stdout);
    let drift_section = md
        .split("#### Drift (changed outside git)")
        .nth(1)
        .unwrap()
        .split("<details>")
        .next()
        .unwrap();
    assert!(
        drift_section.contains("recommendations") && !drift_section.contains("forecasting"),
        "{md}"
    );
}

#[test]
fn usage_errors_exit_1_on_every_command_help_and_version_exit_0() {
    // Exit 2 means "changes present" to CI: a typo must not look like that.
    for cmd in [
        "validate", "plan", "observe", "apply", "drift", "run", "schema", "init",
    ] {
        let out = kftenant(&[cmd, "--no-such-flag"]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).starts_with("error: unexpected argument '--no-such-flag' found"),
            "{cmd}: {}",
            text(&out.stderr)
        );
        let out = kftenant(&[cmd, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{cmd} --help");
        assert!(
            text(&out.stdout).contains("Usage: kftenant"),
            "{cmd} --help"
        );
    }
    let usage_errors: &[&[&str]] = &[
        &[],
        &["no-such-command"],
        &["plan", "sample-repo", "--format", "xml"],
        &["drift", "sample-repo", "--format", "xml"],
        &["plan", "sample-repo", "--observed"],
        &["plan", "sample-repo", "--live", "--observed", "x.json"],
        &["drift", "sample-repo", "--iam-mode", "bogus"],
        &["apply", "sample-repo", "--workers", "-1"],
        &["run"],
        &["init"],
        &["run", "--repo", "x", "--interval", "99999999999999999h"],
        &["run", "--repo", "x", "--interval", "18446744073709551615"],
        &["run", "--repo", "x", "--jitter", "31d"],
        &["run", "--repo", "x", "--ready-grace", "1000000000000s"],
    ];
    for args in usage_errors {
        let out = kftenant(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: {}",
            text(&out.stderr)
        );
        // Without a command, clap shows the help (on standard error).
        let start = if args.is_empty() { "GitOps" } else { "error: " };
        assert!(text(&out.stderr).starts_with(start), "{args:?}");
        assert!(!text(&out.stderr).contains("panicked"), "{args:?}");
    }
    let out = kftenant(&["run", "--repo", "x", "--interval", "18446744073709551615"]);
    assert!(
        text(&out.stderr)
            .contains("`18446744073709551615` is longer than 30 days, the longest kftenant takes"),
        "{}",
        text(&out.stderr)
    );
    for args in [&["--version"][..], &["--help"], &["help", "plan"]] {
        let out = kftenant(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(!out.stdout.is_empty());
    }
    assert_eq!(
        text(&kftenant(&["--version"]).stdout),
        format!("kftenant {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn plan_and_drift_exit_1_on_errors_before_touching_the_live_world() {
    // plan: 0 and 2 are checked above (converged snapshot, empty world).
    let out = kftenant(&[
        "plan",
        "tests/fixtures/broken-repo",
        "--observed",
        "tests/fixtures/sample-converged.json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    // drift reads the repository before the live world: a broken one is exit
    // 1 with no AWS or cluster in reach. Its 0 and 2 need the live world:
    // tests/live.rs (empty_world_to_sample_repo, hand_made_drift_is_reported_then_corrected).
    let out = kftenant(&["drift", "tests/fixtures/broken-repo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).ends_with("10 problems found; nothing was planned or applied.\n"));
    assert!(out.stdout.is_empty());
}

#[test]
fn saved_plans_and_snapshots_of_another_format_version_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    // A plan of format version 1 (untyped `after`), as kftenant 0.1 wrote it.
    let out = kftenant(&["plan", "sample-repo", "--format", "json"]);
    let mut plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["format_version"] = 1.into();
    for c in plan["changes"].as_array_mut().unwrap() {
        let op = c.as_object_mut().unwrap().remove("operation").unwrap();
        c["after"] = op;
    }
    let old = tmp.path().join("old-plan.json");
    std::fs::write(&old, plan.to_string()).unwrap();
    let out = kftenant(&[
        "apply",
        "sample-repo",
        "--auto-approve",
        "--plan-file",
        old.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {}: the plan has format_version 1, this kftenant reads 2: make a new plan with this version\n",
            old.display()
        )
    );
    assert!(
        out.stdout.is_empty(),
        "refused before planning or applying anything"
    );
    // A snapshot from a future kftenant.
    let mut snap: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/sample-converged.json")).unwrap(),
    )
    .unwrap();
    snap["format_version"] = 99.into();
    let future = tmp.path().join("future.json");
    std::fs::write(&future, snap.to_string()).unwrap();
    let out = kftenant(&[
        "plan",
        "sample-repo",
        "--observed",
        future.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "error: {}: the snapshot has format_version 99, this kftenant reads 1: observe again with this version\n",
            future.display()
        )
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn any_source_commit_is_shown_without_panicking() {
    for commit in [
        "é".repeat(40),
        "🦀".repeat(13),
        "a\u{301}".repeat(20),
        String::new(),
    ] {
        let out = kftenant(&["plan", "sample-repo", "--source-commit", &commit]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{commit:?}: {}",
            text(&out.stderr)
        );
        let short: String = commit.chars().take(12).collect();
        let first = text(&out.stdout).lines().next().unwrap().to_string();
        assert!(first.ends_with(&format!("at commit {short}")), "{first}");
        let out = kftenant(&[
            "plan",
            "sample-repo",
            "--source-commit",
            &commit,
            "--format",
            "json",
        ]);
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["source_commit"], commit.as_str());
    }
}

/// Logs to a file or a pipe (not a terminal) carry no ANSI colour codes:
/// `kftenant run` logs its start, then fails for want of a Kubernetes
/// configuration, with standard error a pipe.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kftenant"))
        .args(["run", "--repo"])
        .arg(dir.path().join("nowhere"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--cache-dir",
        ])
        .arg(dir.path().join("cache"))
        .env("KUBECONFIG", dir.path().join("no-kubeconfig"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KFTENANT_GIT_TOKEN")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(err.contains("starting"), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
    assert_ne!(out.status.code(), Some(0), "{err}");
}
