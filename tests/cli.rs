//! The `kftenant` binary end to end: exit codes, output, committed fixtures.

mod support;

use kftenant::plan::{desired, observed::Observed};
use kftenant::{model, schema};
use std::path::PathBuf;
use std::process::{Command, Output};
use support::repo::copy_dir;

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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn validate_sample_repo_passes() {
    let out = kftenant(&["validate", "sample-repo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "sample-repo: valid (6 tenants, 3 shared policies)\n"
    );
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
        "tenants/research.yaml:27:9: duplicate tenant `nlp-research`\n  hint: first defined at tenants/research.yaml:6:9",
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
        stdout.ends_with("Plan: 29 to create, 0 to update, 0 to delete (6 tenants).\n"),
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
fn emptied_tenants_folder_refuses_to_delete_everything() {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&root().join("sample-repo"), tmp.path());
    for e in std::fs::read_dir(tmp.path().join("tenants")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let repo = tmp.path().to_str().unwrap();
    let snapshot = root().join("tests/fixtures/sample-converged.json");
    let out = kftenant(&["plan", repo, "--observed", snapshot.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("error: refusing to delete every tenant (forecasting, fraud-detection, nlp-research, platform-sandbox, recommendations, vision-research)"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let out = kftenant(&[
        "plan",
        repo,
        "--observed",
        snapshot.to_str().unwrap(),
        "--allow-mass-delete",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["format_version"], kftenant::plan::PLAN_FORMAT_VERSION);
    assert_eq!(
        plan["summary"]["delete"],
        plan["changes"].as_array().unwrap().len()
    );
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
        md.starts_with("#### Tenants changed by this pull request (against main, "),
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
