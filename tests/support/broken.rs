//! The corpus of broken repositories: sample-repo with one planted mistake
//! (or a few together), and every problem's first line as `kftenant
//! validate` reports it on a copy of sample-repo. `tests/cli/broken.rs` runs
//! each through `kftenant validate`; `tests/daemon.rs` pushes each to a
//! running daemon.
//!
//! Symbolic links are made here, not committed: git does not keep them
//! portably.

use std::path::Path;

/// One change to the copy of sample-repo.
pub enum Edit {
    /// Writes a file (creating folders).
    Write(&'static str, String),
    /// Replaces text in a file of sample-repo (which must contain it).
    Replace(&'static str, &'static str, String),
    /// Removes a file or folder.
    Remove(&'static str),
    /// A symbolic link at the path to a file outside the repository.
    LinkOutside(&'static str),
    /// Writes bytes that need not be UTF-8.
    Bytes(&'static str, Vec<u8>),
    /// Puts text before a file's content.
    Prepend(&'static str, &'static str),
}

use Edit::*;

pub struct Case {
    pub name: &'static str,
    pub edits: Vec<Edit>,
    /// Every problem's first line, in kftenant's order; empty: valid.
    pub expect: Vec<String>,
}

fn case(name: &'static str, edits: Vec<Edit>, expect: &[&str]) -> Case {
    Case {
        name,
        edits,
        expect: expect.iter().map(|s| s.to_string()).collect(),
    }
}

/// A tenant document named `name` with `spec` (indented two spaces).
fn tenant(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: kftenant.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

/// A new tenant file `tenants/new.yaml`.
fn new_tenant(spec: &str) -> Edit {
    Write("tenants/new.yaml", tenant("new-team", spec))
}

const OWNER: &str = "  owner: n@acme.example\n";

fn policy(statement: &str) -> String {
    format!("{{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [\n    {statement}\n  ]\n}}\n")
}

/// Applies `edits` to the repository at `repo`; `outside` is the file
/// links out of the repository point at. A `Replace` whose text is not in
/// the file panics.
pub fn apply(repo: &Path, outside: &Path, edits: &[Edit]) {
    for e in edits {
        match e {
            Write(path, content) => {
                let f = repo.join(path);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::fs::write(f, content).unwrap();
            }
            Replace(path, from, to) => {
                let f = repo.join(path);
                let old = std::fs::read_to_string(&f).unwrap();
                assert!(old.contains(from), "{path} has no `{from}`");
                std::fs::write(f, old.replacen(from, to, 1)).unwrap();
            }
            Remove(path) => {
                let p = repo.join(path);
                if p.is_dir() {
                    std::fs::remove_dir_all(p).unwrap();
                } else {
                    std::fs::remove_file(p).unwrap();
                }
            }
            Bytes(path, content) => std::fs::write(repo.join(path), content).unwrap(),
            Prepend(path, head) => {
                let f = repo.join(path);
                let old = std::fs::read_to_string(&f).unwrap();
                std::fs::write(f, format!("{head}{old}")).unwrap();
            }
            LinkOutside(path) => {
                let f = repo.join(path);
                std::fs::create_dir_all(f.parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(outside, f).unwrap();
            }
        }
    }
}

/// The corpus: at least 40 repositories, each one mistake or a few together.
pub fn cases() -> Vec<Case> {
    let bomb = {
        let mut t = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..9 {
            t.push_str(&format!(
                "a{i}: &a{i} [{}]\n",
                vec![format!("*a{}", i - 1); 9].join(", ")
            ));
        }
        t
    };
    let many_statements: String = (0..120)
        .map(|i| format!("{{\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"arn:aws:s3:::bucket-number-{i:04}/*\"}}"))
        .collect::<Vec<_>>()
        .join(",\n    ");
    vec![
        // --- YAML syntax
        case(
            "yaml: bad indentation",
            vec![new_tenant("  owner: n@acme.example\n iam: {}\n")],
            &[
                "tenants/new.yaml:7:5: YAML syntax error: while parsing a block mapping, did not find expected key",
            ],
        ),
        case(
            "yaml: a tab for indentation",
            vec![new_tenant("\towner: n@acme.example\n")],
            &[
                "tenants/new.yaml:6:2: YAML syntax error: tabs disallowed within this context (block indentation)",
            ],
        ),
        case(
            "yaml: unclosed quote",
            vec![new_tenant("  owner: \"n@acme.example\n")],
            &[
                "tenants/new.yaml:6:10: YAML syntax error: while scanning a quoted scalar, found unexpected end of stream",
            ],
        ),
        case(
            "yaml: unclosed flow list",
            vec![new_tenant(
                "  owner: n@acme.example\n  iam: {managedPolicies: [ecr-pull}\n",
            )],
            &[
                "tenants/new.yaml:7:35: YAML syntax error: while parsing a flow sequence, expected ',' or ']'",
            ],
        ),
        case(
            "yaml: unknown anchor",
            vec![new_tenant("  owner: *who\n")],
            &["tenants/new.yaml:6:10: YAML syntax error: while parsing node, found unknown anchor"],
        ),
        case(
            "yaml: unsupported tag",
            vec![new_tenant("  owner: !!binary bkBhY21lLmV4YW1wbGU=\n")],
            &[
                "tenants/new.yaml:6:19: YAML tag `!!binary` is not supported: kftenant reads strings, numbers, booleans, null, lists and mappings",
            ],
        ),
        case(
            "yaml: a tag that does not fit",
            vec![new_tenant(
                "  owner: n@acme.example\n  iam: {maxSessionDuration: !!int one-hour}\n",
            )],
            &["tenants/new.yaml:7:35: `one-hour` is not a valid `!!int`"],
        ),
        case(
            "yaml: not UTF-8 (Latin-1)",
            vec![Bytes("tenants/new.yaml", b"owner: caf\xe9\n".to_vec())],
            &["tenants/new.yaml:1:11: not UTF-8 text: byte 0xe9 is not part of a UTF-8 character"],
        ),
        case(
            "a byte-order mark everywhere is fine",
            vec![
                Prepend("kftenant.toml", "\u{feff}"),
                Prepend("tenants/research.yaml", "\u{feff}"),
                Prepend("policies/ecr-pull.json", "\u{feff}"),
                Prepend("inline/fraud-detection-artifacts.json", "\u{feff}"),
            ],
            &[],
        ),
        // --- unknown fields, duplicate keys
        case(
            "unknown top-level field",
            vec![Write(
                "tenants/new.yaml",
                tenant("new-team", OWNER).replace("metadata:", "metdata:"),
            )],
            &[
                "tenants/new.yaml:1:1: missing metadata",
                "tenants/new.yaml:3:1: unknown field `metdata` in the Tenant document",
            ],
        ),
        case(
            "unknown field in spec.iam",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicy: [ecr-pull]\n"
            ))],
            &["tenants/new.yaml:8:5: unknown field `managedPolicy` in spec.iam"],
        ),
        case(
            "unknown field in an inline policy",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - name: a\n        fille: inline/fraud-detection-artifacts.json\n"
            ))],
            &[
                "tenants/new.yaml:9:9: an inline policy needs `file` or `document`",
                "tenants/new.yaml:10:9: unknown field `fille` in an inline policy",
            ],
        ),
        case(
            "duplicate key",
            vec![new_tenant(&format!("{OWNER}{OWNER}"))],
            &["tenants/new.yaml:7:3: duplicate key `owner` in spec"],
        ),
        case(
            "YAML merge key is not read",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    <<: {{tags: {{a: b}}}}\n"
            ))],
            &["tenants/new.yaml:8:5: unknown field `<<` in spec.iam"],
        ),
        // --- wrong types
        case(
            "owner is a list",
            vec![new_tenant("  owner: [a@acme.example]\n")],
            &["tenants/new.yaml:6:10: spec.owner must be a string, found a list"],
        ),
        case(
            "maxSessionDuration is a quoted number",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    maxSessionDuration: \"7200\"\n"
            ))],
            &[
                "tenants/new.yaml:8:25: spec.iam.maxSessionDuration must be a number of seconds from 3600 to 43200, found the string \"7200\"",
            ],
        ),
        case(
            "a tag value is a number",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    tags: {{cost-center: 4410}}\n"
            ))],
            &[
                "tenants/new.yaml:8:25: value of `cost-center` in spec.iam.tags must be a string, found a number",
            ],
        ),
        case(
            "managedPolicies is a string",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicies: ecr-pull\n"
            ))],
            &["tenants/new.yaml:8:22: spec.iam.managedPolicies must be a list, found a string"],
        ),
        case(
            "a quota that is not a quantity",
            vec![new_tenant(&format!(
                "{OWNER}  profile:\n    resourceQuota:\n      hard: {{cpu: lots}}\n"
            ))],
            &["tenants/new.yaml:9:19: `lots` is not a Kubernetes quantity"],
        ),
        case(
            "the document is a list",
            vec![Write(
                "tenants/new.yaml",
                "- apiVersion: kftenant.io/v1alpha1\n".into(),
            )],
            &["tenants/new.yaml:1:1: the Tenant document must be a mapping, found a list"],
        ),
        case(
            "wrong apiVersion and kind",
            vec![Write(
                "tenants/new.yaml",
                tenant("new-team", OWNER)
                    .replace("kftenant.io/v1alpha1", "kftenant.io/v1")
                    .replace("kind: Tenant", "kind: Profile"),
            )],
            &[
                "tenants/new.yaml:1:13: apiVersion must be `kftenant.io/v1alpha1`, found `kftenant.io/v1`",
                "tenants/new.yaml:2:7: kind must be `Tenant`, found `Profile`",
            ],
        ),
        case(
            "an empty tenant file",
            vec![Write("tenants/new.yaml", "# nothing yet\n".into())],
            &["tenants/new.yaml: no Tenant document in this file"],
        ),
        // --- names
        case(
            "tenant name with capitals",
            vec![Write("tenants/new.yaml", tenant("New_Team", OWNER))],
            &[
                "tenants/new.yaml:4:9: tenant name `New_Team` is not a DNS-1123 label: only lowercase letters, digits and `-` are allowed",
            ],
        ),
        case(
            "tenant name too long",
            vec![Write("tenants/new.yaml", tenant(&"a".repeat(64), OWNER))],
            &[
                "tenants/new.yaml:4:9: IAM role name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-kubeflow-prod-role` is 83 characters, over the limit of 64",
                "tenants/new.yaml:4:9: tenant name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` is not a DNS-1123 label: it is 64 characters, the limit is 63",
            ],
        ),
        case(
            "role name over 64 characters",
            vec![Write("tenants/new.yaml", tenant(&"a".repeat(50), OWNER))],
            &[
                "tenants/new.yaml:4:9: IAM role name `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-kubeflow-prod-role` is 69 characters, over the limit of 64",
            ],
        ),
        case(
            "bad service account",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    serviceAccounts: [Runner_1]\n"
            ))],
            &[
                "tenants/new.yaml:8:23: service account `Runner_1` in namespace `new-team` is not a valid name: only lowercase letters, digits and `-` are allowed",
            ],
        ),
        case(
            "inline policy name with a space",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - name: my policy\n        file: inline/fraud-detection-artifacts.json\n"
            ))],
            &[
                "tenants/new.yaml:9:15: inline policy name `my policy`: ` ` is not allowed in IAM names (letters, digits and +=,.@_- only)",
            ],
        ),
        case(
            "bad label key",
            vec![new_tenant(&format!(
                "{OWNER}  profile:\n    labels: {{\"team name\": x}}\n"
            ))],
            &[
                "tenants/new.yaml:8:14: label `team name`: name must be 1 to 63 alphanumeric characters, `-`, `_` or `.`",
            ],
        ),
        case(
            "policy file name not an IAM name",
            vec![Write(
                "policies/ecr pull.json",
                policy(
                    "{\"Effect\": \"Allow\", \"Action\": \"ecr:GetAuthorizationToken\", \"Resource\": \"*\"}",
                ),
            )],
            &[
                "policies/ecr pull.json: policy name `ecr pull` (from the file name): ` ` is not allowed in IAM names (letters, digits and +=,.@_- only)",
            ],
        ),
        // --- duplicates
        case(
            "duplicate tenant across files",
            vec![Write("tenants/new.yaml", tenant("forecasting", OWNER))],
            &[
                "tenants/new.yaml:4:9: duplicate tenant `forecasting`: tenants/new.yaml defines it again; it is already defined at tenants/forecasting.yaml:5:9",
            ],
        ),
        case(
            "managed policy listed twice",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicies: [ecr-pull, ecr-pull]\n"
            ))],
            &["tenants/new.yaml:8:33: `ecr-pull` is listed twice in spec.iam.managedPolicies"],
        ),
        case(
            "inline policy defined twice",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - {{name: a, file: inline/fraud-detection-artifacts.json}}\n      - {{name: a, file: inline/fraud-detection-artifacts.json}}\n"
            ))],
            &["tenants/new.yaml:10:16: inline policy `a` is defined twice"],
        ),
        // --- ARNs
        case(
            "ARN with a short account",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicies: [\"arn:aws:iam::12345:policy/x\"]\n"
            ))],
            &[
                "tenants/new.yaml:8:23: spec.iam.managedPolicies: `arn:aws:iam::12345:policy/x` is not a valid IAM policy ARN: account must be 12 digits or `aws`",
            ],
        ),
        case(
            "boundary that is not an IAM ARN",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    permissionsBoundary: arn:aws:s3:::bucket\n"
            ))],
            &[
                "tenants/new.yaml:8:26: spec.iam.permissionsBoundary: `arn:aws:s3:::bucket` is not a valid IAM policy ARN: service must be `iam`",
            ],
        ),
        case(
            "ARN in an unknown partition",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicies: [\"arn:aws-mars:iam::aws:policy/x\"]\n"
            ))],
            &[
                "tenants/new.yaml:8:23: spec.iam.managedPolicies: `arn:aws-mars:iam::aws:policy/x` is not a valid IAM policy ARN: unknown partition",
            ],
        ),
        case(
            "missing repo policy",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicies: [ecr-pul]\n"
            ))],
            &[
                "tenants/new.yaml:8:23: spec.iam.managedPolicies: `ecr-pul` is neither an ARN nor a policy in policies/",
            ],
        ),
        // --- guardrails
        case(
            "denied managed policy",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicies: [\"arn:aws:iam::aws:policy/PowerUserAccess\"]\n"
            ))],
            &[
                "tenants/new.yaml:8:23: guardrail: `arn:aws:iam::aws:policy/PowerUserAccess` is denied by `arn:aws:iam::aws:policy/PowerUserAccess`",
            ],
        ),
        case(
            "inline document allowing iam:*",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - name: admin\n        document: {{Version: \"2012-10-17\", Statement: [{{Effect: Allow, Action: \"iam:*\", Resource: \"*\"}}]}}\n"
            ))],
            &[
                "tenants/new.yaml:10:55: guardrail: statement 1 allows the denied action `iam:*` through Action `iam:*`",
            ],
        ),
        case(
            "shared policy granting all through NotAction",
            vec![Write(
                "policies/open.json",
                policy("{\"Effect\": \"Allow\", \"NotAction\": \"s3:*\", \"Resource\": \"*\"}"),
            )],
            &[
                "policies/open.json:4:5: guardrail: statement 1 allows the denied action `*` through NotAction",
                "policies/open.json:4:5: guardrail: statement 1 allows the denied action `iam:*` through NotAction",
                "policies/open.json:4:5: guardrail: statement 1 allows the denied action `sts:AssumeRole` through NotAction",
            ],
        ),
        case(
            "policy grammar",
            vec![Write(
                "policies/grammar.json",
                policy(
                    "{\"Effect\": \"allow\", \"Action\": \"s3 GetObject\", \"Resorce\": \"*\", \"Principal\": \"*\"}",
                ),
            )],
            &[
                "policies/grammar.json:4:5: Statement needs Resource or NotResource",
                "policies/grammar.json:4:16: Effect must be \"Allow\" or \"Deny\", found allow",
                "policies/grammar.json:4:35: `s3 GetObject` is not a valid IAM action; expected `service:Action` (wildcards `*` and `?` allowed) or `*`",
                "policies/grammar.json:4:51: unknown element `Resorce` in Statement",
                "policies/grammar.json:4:67: Principal is only allowed in trust (resource-based) policies",
            ],
        ),
        case(
            "no boundary while one is required",
            vec![Replace(
                "kftenant.toml",
                "permissions_boundary = \"tenant-boundary\"\n",
                String::new(),
            )],
            &[
                "tenants/forecasting.yaml:5:9: guardrail: tenant `forecasting` has no permissions boundary, and [guardrails] require_boundary is set",
                "tenants/fraud-detection.yaml:5:9: guardrail: tenant `fraud-detection` has no permissions boundary, and [guardrails] require_boundary is set",
                "tenants/platform-sandbox.yaml:8:9: guardrail: tenant `platform-sandbox` has no permissions boundary, and [guardrails] require_boundary is set",
                "tenants/recommendations.yaml:5:9: guardrail: tenant `recommendations` has no permissions boundary, and [guardrails] require_boundary is set",
                "tenants/research.yaml:6:9: guardrail: tenant `nlp-research` has no permissions boundary, and [guardrails] require_boundary is set",
                "tenants/research.yaml:32:9: guardrail: tenant `vision-research` has no permissions boundary, and [guardrails] require_boundary is set",
            ],
        ),
        // --- sizes
        case(
            "too many tags",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    tags:\n{}",
                (0..48)
                    .map(|i| format!("      k{i}: v\n"))
                    .collect::<String>()
            ))],
            &[
                "tenants/new.yaml:8:5: 48 tags plus kftenant's 3 ownership tags exceed the IAM limit of 50 per role",
            ],
        ),
        case(
            "too many managed policies",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    managedPolicies: [{}]\n",
                (0..11)
                    .map(|i| format!("\"arn:aws:iam::aws:policy/P{i}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))],
            &["tenants/new.yaml:8:5: 11 managed policies, over the limit of 10 per role"],
        ),
        case(
            "inline policies over 10,240 characters",
            vec![
                Write("inline/big.json", policy(&many_statements)),
                new_tenant(&format!(
                    "{OWNER}  iam:\n    inlinePolicies:\n      - {{name: big, file: inline/big.json}}\n"
                )),
            ],
            &[
                "tenants/new.yaml:8:5: inline policies total 10838 characters, over the IAM limit of 10240 per role (whitespace not counted)",
            ],
        ),
        case(
            "shared policy over 6,144 characters",
            vec![Write("policies/big.json", policy(&many_statements))],
            &[
                "policies/big.json:1:1: managed policy is 10838 characters, over the IAM limit of 6144 (whitespace not counted)",
            ],
        ),
        case(
            "trust policy over 2,048 characters",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    serviceAccounts:\n{}",
                (0..40)
                    .map(|i| format!("      - service-account-number-{i}\n"))
                    .collect::<String>()
            ))],
            &[
                "tenants/new.yaml:8:5: the trust policy would be 2836 characters, over the limit of 2048",
            ],
        ),
        case(
            "a file over 1 MiB",
            vec![Write(
                "tenants/new.yaml",
                format!(
                    "{}{}",
                    tenant("new-team", OWNER),
                    "# padding\n".repeat(110_000)
                ),
            )],
            &["tenants/new.yaml: is 1100103 bytes, over the limit of 1048576 bytes"],
        ),
        // --- missing files
        case(
            "missing inline policy file",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - {{name: a, file: inline/nope.json}}\n"
            ))],
            &["tenants/new.yaml:9:25: inline policy file `inline/nope.json` does not exist"],
        ),
        case(
            "missing kftenant.toml",
            vec![Remove("kftenant.toml")],
            &["kftenant.toml: missing: the repository root needs a kftenant.toml"],
        ),
        case(
            "missing tenants folder",
            vec![Remove("tenants")],
            &["tenants: missing: tenant definitions live in tenants/ (*.yaml, in any subfolder)"],
        ),
        // --- paths out of the repository
        case(
            "inline file climbing out",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - {{name: a, file: ../outside.json}}\n"
            ))],
            &[
                "tenants/new.yaml:9:25: inline policy file `../outside.json` must be a path inside the repository",
            ],
        ),
        case(
            "inline file by absolute path",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - {{name: a, file: /etc/passwd}}\n"
            ))],
            &[
                "tenants/new.yaml:9:25: inline policy file `/etc/passwd` must be a path inside the repository",
            ],
        ),
        case(
            "inline file climbing out in the middle",
            vec![new_tenant(&format!(
                "{OWNER}  iam:\n    inlinePolicies:\n      - {{name: a, file: inline/../../outside.json}}\n"
            ))],
            &[
                "tenants/new.yaml:9:25: inline policy file `inline/../../outside.json` must be a path inside the repository",
            ],
        ),
        case(
            "tenant file linked outside",
            vec![LinkOutside("tenants/linked.yaml")],
            &[
                "tenants/linked.yaml: is a symbolic link that leads outside the repository; kftenant does not follow it",
            ],
        ),
        case(
            "inline policy file linked outside",
            vec![
                LinkOutside("inline/linked.json"),
                new_tenant(&format!(
                    "{OWNER}  iam:\n    inlinePolicies:\n      - {{name: a, file: inline/linked.json}}\n"
                )),
            ],
            &[
                "tenants/new.yaml:9:25: inline policy file `inline/linked.json` is a symbolic link that leads outside the repository; kftenant does not follow it",
            ],
        ),
        case(
            "shared policy linked outside",
            vec![LinkOutside("policies/linked.json")],
            &[
                "policies/linked.json: is a symbolic link that leads outside the repository; kftenant does not follow it",
            ],
        ),
        // --- bombs and depth
        case(
            "alias bomb",
            vec![Write("tenants/new.yaml", bomb)],
            &[
                "tenants/new.yaml:6:15: builds more than 250000 values (an alias counts as every value it copies), over kftenant's limit; the file was not read further",
            ],
        ),
        case(
            "aliased long text",
            vec![Write(
                "tenants/new.yaml",
                format!(
                    "s: &s {}\nl: [{}]\n",
                    "x".repeat(100_000),
                    vec!["*s"; 60].join(", ")
                ),
            )],
            &[
                "tenants/new.yaml:2:161: builds more than 4194304 bytes of text (an alias counts as the text it copies), over kftenant's limit; the file was not read further",
            ],
        ),
        case(
            "deep YAML nesting",
            vec![Write("tenants/new.yaml", "- ".repeat(100) + "x\n")],
            &[
                "tenants/new.yaml:1:129: nested more than 64 levels deep (aliases included), over kftenant's limit; the file was not read further",
            ],
        ),
        case(
            "deep JSON nesting",
            vec![Write(
                "policies/deep.json",
                format!("{{\"Statement\": {}1{}}}", "[".repeat(100), "]".repeat(100)),
            )],
            &[
                "policies/deep.json:1:78: nested more than 64 levels deep (aliases included), over kftenant's limit; the file was not read further",
            ],
        ),
        case(
            "more than 10,000 documents",
            vec![Write("tenants/new.yaml", "---\n".repeat(10_001))],
            &[
                "tenants/new.yaml:10001:1: more than 10000 documents in one file, over kftenant's limit; the file was not read further",
            ],
        ),
        Case {
            name: "more than 100 problems in one file",
            edits: vec![Write("tenants/new.yaml", "- x\n---\n".repeat(120))],
            // The first 100 found are shown; one line stands for the rest.
            expect: std::iter::once(
                "tenants/new.yaml: 20 more problems in this file not shown (at most 100 per file, 10000 in all)"
                    .to_string(),
            )
            .chain((0..100).map(|i| {
                format!(
                    "tenants/new.yaml:{}:1: the Tenant document must be a mapping, found a list",
                    2 * i + 1
                )
            }))
            .collect(),
        },
        // --- kftenant.toml
        case(
            "toml: syntax",
            vec![Replace("kftenant.toml", "[iam]", "[iam".into())],
            &["kftenant.toml:10:5: TOML syntax error: unclosed table, expected `]`"],
        ),
        case(
            "toml: unknown key",
            vec![Replace(
                "kftenant.toml",
                "role_path =",
                "role_paht =".into(),
            )],
            &["kftenant.toml:12:1: unknown key `role_paht` in [iam]"],
        ),
        case(
            "toml: account id as a number",
            vec![Replace(
                "kftenant.toml",
                "account_id = \"123456789012\"",
                "account_id = 123456789012".into(),
            )],
            &["kftenant.toml:6:14: `cluster.account_id` must be a string, found a number"],
        ),
        case(
            "toml: bad region and issuer",
            vec![
                Replace(
                    "kftenant.toml",
                    "region = \"us-west-2\"",
                    "region = \"west\"".into(),
                ),
                Replace(
                    "kftenant.toml",
                    "oidc_issuer = \"",
                    "oidc_issuer = \"https://".into(),
                ),
            ],
            &[
                "kftenant.toml:7:1: region `west` is not an AWS region name",
                "kftenant.toml:8:1: oidc_issuer `https://oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E` must not include a scheme",
            ],
        ),
        case(
            "toml: deep nesting",
            vec![Replace(
                "kftenant.toml",
                "[iam]",
                format!("x = {}1{}\n[iam]", "[".repeat(200), "]".repeat(200)),
            )],
            &[
                "kftenant.toml:10:85: TOML syntax error: cannot recurse further; max recursion depth met",
            ],
        ),
        case(
            "toml: bad guardrail pattern",
            vec![Replace(
                "kftenant.toml",
                "denied_policy_arns = [",
                "denied_policy_arns = [\"AdministratorAccess\",".into(),
            )],
            &[
                "kftenant.toml:29:1: `AdministratorAccess` in denied_policy_arns is not an ARN pattern",
            ],
        ),
        // --- files kftenant does not read
        case(
            "stray files",
            vec![
                Write("tenants/notes.txt", "x".into()),
                Write("tenants/a.json", "{}".into()),
                Write("policies/team/x.json", "{}".into()),
                Write("policies/readme.txt", "x".into()),
                Write("team.yaml", "kind: Tenant\n".into()),
            ],
            &[
                "policies/readme.txt: not read: a file in policies/ must be a policy document (<name>.json)",
                "policies/team/x.json: not read: shared policies live directly in policies/, not in subfolders",
                "team.yaml: not read: tenant files live under tenants/",
                "tenants/a.json: not read: a file under tenants/ must be a tenant file (*.yaml or *.yml)",
                "tenants/notes.txt: not read: a file under tenants/ must be a tenant file (*.yaml or *.yml)",
            ],
        ),
        // --- several at once
        case(
            "a config mistake and tenant mistakes together",
            vec![
                Replace(
                    "kftenant.toml",
                    "max_session_duration = 3600",
                    "max_session_duration = 60".into(),
                ),
                Write("tenants/new.yaml", tenant("forecasting", "  owner: a b\n")),
                Write("tenants/other.yaml", "kind: [\n".into()),
            ],
            &[
                "kftenant.toml:15:1: max_session_duration 60 is outside 3600..=43200 seconds",
                "tenants/new.yaml:4:9: duplicate tenant `forecasting`: tenants/new.yaml defines it again; it is already defined at tenants/forecasting.yaml:5:9",
                "tenants/new.yaml:6:10: spec.owner must be a user name without spaces",
                "tenants/other.yaml:2:1: YAML syntax error: while parsing a node, did not find expected node content",
            ],
        ),
    ]
}
