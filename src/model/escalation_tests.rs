//! The escalation guardrail: one test per default `[guardrails]
//! escalation_actions` entry, and the rules around it (repo policies, AWS
//! managed policies, boundaries, patterns on both sides).

use super::tests::{CONFIG, base, problems, tenant};
use super::*;

/// A tenant file whose one inline policy has the statement `statement` (YAML
/// flow mapping) on line 12, column 15.
fn inline_statement(statement: &str) -> String {
    tenant(
        "team-a",
        &format!(
            "  owner: a@example.com\n  iam:\n    inlinePolicies:\n      - name: p\n        document:\n          Statement:\n            - {statement}\n"
        ),
    )
}

/// The problems of a repository whose tenant `team-a` has that statement.
fn refused(config: &str, statement: &str) -> Vec<String> {
    problems(
        &base()
            .with("kftenant.toml", config)
            .with("tenants/a.yaml", &inline_statement(statement)),
    )
}

fn allow(element: &str, value: &str) -> String {
    format!("{{Effect: Allow, {element}: {value}, Resource: \"*\"}}")
}

/// The message for statement 1 of `tenants/a.yaml` granting `action`.
fn inline_error(action: &str, through: &str) -> Vec<String> {
    vec![format!(
        "tenants/a.yaml:12:15: guardrail: statement 1 grants the escalation action `{action}` through {through}, and tenant `team-a` has no permissions boundary\n  hint: {ESCALATION_HINT}"
    )]
}

/// Refused as a literal (any case), as patterns that match it (`?`, `*`),
/// through `NotAction`, and in an attached repo policy; accepted with a boundary.
fn check_escalation_path(action: &str) {
    let (svc, name) = action.split_once(':').unwrap();
    let quoted = |a: &str| format!("\"{a}\"");
    for granted in [
        action.to_string(),
        action.to_ascii_lowercase(),
        format!("{svc}:?{}", &name[1..]),
        format!("{svc}:{}*{}", &name[..1], &name[1..]),
        format!("{svc}:{}*", &name[..name.len() - 1]),
    ] {
        // The prefix pattern may also name a longer listed action: only check
        // that this one is among them.
        let p = refused(CONFIG, &allow("Action", &quoted(&granted)));
        if granted.ends_with('*') {
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].contains(&format!("`{action}`"))
                    && p[0].contains(&format!("through Action `{granted}`")),
                "{p:?}"
            );
        } else {
            assert_eq!(
                p,
                inline_error(action, &format!("Action `{granted}`")),
                "{granted}"
            );
        }
    }
    // NotAction listing every other default entry grants this one only. The
    // default denied_actions would already refuse any such statement (it grants
    // `*` but for some actions), so they are emptied here.
    let others: Vec<String> = config::ESCALATION_ACTIONS
        .iter()
        .filter(|(a, _)| *a != action)
        .map(|(a, _)| quoted(a))
        .collect();
    let config = format!("{CONFIG}[guardrails]\ndenied_actions = []\n");
    let not_action = allow("NotAction", &format!("[{}]", others.join(", ")));
    assert_eq!(
        refused(&config, &not_action),
        inline_error(action, "NotAction")
    );
    // ... and nothing once the NotAction list excludes it too, through a pattern.
    let all = format!("[{}, \"{svc}:{}*\"]", others.join(", "), &name[..1]);
    assert_eq!(
        refused(&config, &allow("NotAction", &all)),
        Vec::<String>::new()
    );
    // A repo policy granting it, attached by the tenant: reported at the attachment.
    let policy = format!(
        "{{\"Version\": \"2012-10-17\",\n \"Statement\": [\n  {{\"Effect\": \"Allow\", \"Action\": \"{action}\", \"Resource\": \"*\"}}]}}"
    );
    let src = base().with("policies/p.json", &policy).with(
        "tenants/a.yaml",
        &tenant(
            "team-a",
            "  owner: a@example.com\n  iam:\n    managedPolicies: [p]\n",
        ),
    );
    assert_eq!(
        problems(&src),
        vec![format!(
            "tenants/a.yaml:8:23: guardrail: tenant `team-a` has no permissions boundary, and `p` (policies/p.json:3:3) statement 1 grants the escalation action `{action}` through Action `{action}`\n  hint: {ESCALATION_HINT}"
        )]
    );
    // With a boundary the role is limited by it: all of this is accepted.
    let bounded = tenant(
        "team-a",
        &format!(
            "  owner: a@example.com\n  iam:\n    permissionsBoundary: shared\n    managedPolicies: [p]\n    inlinePolicies:\n      - name: p\n        document:\n          Statement:\n            - {}\n",
            allow("Action", &quoted(action))
        ),
    );
    let src = base()
        .with("policies/p.json", &policy)
        .with("tenants/a.yaml", &bounded);
    assert_eq!(problems(&src), Vec::<String>::new());
}

macro_rules! escalation_paths {
    ($($test:ident: $action:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_escalation_path($action);
            }
        )*
        /// The actions tested above, in the order of the default list.
        const TESTED: &[&str] = &[$($action),*];
    };
}

escalation_paths! {
    iam_attach_role_policy: "iam:AttachRolePolicy",
    iam_attach_user_policy: "iam:AttachUserPolicy",
    iam_attach_group_policy: "iam:AttachGroupPolicy",
    iam_put_role_policy: "iam:PutRolePolicy",
    iam_put_user_policy: "iam:PutUserPolicy",
    iam_put_group_policy: "iam:PutGroupPolicy",
    iam_create_policy_version: "iam:CreatePolicyVersion",
    iam_set_default_policy_version: "iam:SetDefaultPolicyVersion",
    iam_add_user_to_group: "iam:AddUserToGroup",
    iam_delete_role_permissions_boundary: "iam:DeleteRolePermissionsBoundary",
    iam_put_role_permissions_boundary: "iam:PutRolePermissionsBoundary",
    iam_delete_user_permissions_boundary: "iam:DeleteUserPermissionsBoundary",
    iam_put_user_permissions_boundary: "iam:PutUserPermissionsBoundary",
    iam_detach_role_policy: "iam:DetachRolePolicy",
    iam_delete_role_policy: "iam:DeleteRolePolicy",
    iam_detach_user_policy: "iam:DetachUserPolicy",
    iam_delete_user_policy: "iam:DeleteUserPolicy",
    iam_detach_group_policy: "iam:DetachGroupPolicy",
    iam_delete_group_policy: "iam:DeleteGroupPolicy",
    iam_remove_user_from_group: "iam:RemoveUserFromGroup",
    iam_create_access_key: "iam:CreateAccessKey",
    iam_create_login_profile: "iam:CreateLoginProfile",
    iam_update_login_profile: "iam:UpdateLoginProfile",
    iam_update_assume_role_policy: "iam:UpdateAssumeRolePolicy",
    sts_assume_role: "sts:AssumeRole",
    iam_create_role: "iam:CreateRole",
    iam_create_user: "iam:CreateUser",
    iam_pass_role: "iam:PassRole",
    iam_tag_role: "iam:TagRole",
    iam_untag_role: "iam:UntagRole",
    iam_tag_policy: "iam:TagPolicy",
    iam_untag_policy: "iam:UntagPolicy",
    iam_update_role: "iam:UpdateRole",
    lambda_update_function_code: "lambda:UpdateFunctionCode",
    lambda_update_function_configuration: "lambda:UpdateFunctionConfiguration",
    glue_update_dev_endpoint: "glue:UpdateDevEndpoint",
    cloudformation_update_stack: "cloudformation:UpdateStack",
    cloudformation_execute_change_set: "cloudformation:ExecuteChangeSet",
    codebuild_start_build: "codebuild:StartBuild",
    codebuild_start_build_batch: "codebuild:StartBuildBatch",
    ec2_modify_instance_attribute: "ec2:ModifyInstanceAttribute",
    ec2_create_launch_template_version: "ec2:CreateLaunchTemplateVersion",
    ec2_modify_launch_template: "ec2:ModifyLaunchTemplate",
    ec2_instance_connect_send_ssh_public_key: "ec2-instance-connect:SendSSHPublicKey",
    ec2_instance_connect_send_serial_console_ssh_public_key: "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
    ssm_send_command: "ssm:SendCommand",
    ssm_start_session: "ssm:StartSession",
    sagemaker_create_presigned_notebook_instance_url: "sagemaker:CreatePresignedNotebookInstanceUrl",
    sagemaker_update_notebook_instance: "sagemaker:UpdateNotebookInstance",
    apprunner_update_service: "apprunner:UpdateService",
    bedrock_agentcore_start_code_interpreter_session: "bedrock-agentcore:StartCodeInterpreterSession",
    bedrock_agentcore_invoke_code_interpreter: "bedrock-agentcore:InvokeCodeInterpreter",
    eks_create_access_entry: "eks:CreateAccessEntry",
    eks_associate_access_policy: "eks:AssociateAccessPolicy",
    eks_update_access_entry: "eks:UpdateAccessEntry",
}

#[test]
fn every_default_escalation_action_has_its_test() {
    let defaults: Vec<&str> = config::ESCALATION_ACTIONS.iter().map(|(a, _)| *a).collect();
    assert_eq!(defaults, TESTED);
    assert_eq!(config::Guardrails::default().escalation_actions, defaults);
}

#[test]
fn a_repo_policy_is_refused_at_each_tenant_without_a_boundary() {
    let policy = "{\"Version\": \"2012-10-17\",\n \"Statement\": [\n  {\"Effect\": \"Allow\", \"Action\": \"s3:GetObject\", \"Resource\": \"*\"},\n  {\"Effect\": \"Allow\", \"Action\": [\"s3:PutObject\", \"iam:*Role*\"], \"Resource\": \"*\"}]}";
    let src = base()
        .with("policies/ops.json", policy)
        .with(
            "tenants/a.yaml",
            &tenant(
                "team-a",
                "  owner: a@example.com\n  iam:\n    managedPolicies:\n      - shared\n      - ops\n",
            ),
        )
        .with(
            "tenants/b.yaml",
            &tenant(
                "team-b",
                "  owner: b@example.com\n  iam:\n    managedPolicies: [ops]\n    permissionsBoundary: shared\n",
            ),
        );
    // Reported once, where team-a attaches it; team-b has a boundary; the
    // policy itself is valid. 12 actions match `iam:*Role*`.
    assert_eq!(
        problems(&src),
        vec![format!(
            "tenants/a.yaml:10:9: guardrail: tenant `team-a` has no permissions boundary, and `ops` (policies/ops.json:4:3) statement 2 grants the escalation actions `iam:AttachRolePolicy`, `iam:PutRolePolicy`, `iam:DeleteRolePermissionsBoundary`, `iam:PutRolePermissionsBoundary`, `iam:DetachRolePolicy`, `iam:DeleteRolePolicy` and 6 more through Action `iam:*Role*`\n  hint: {ESCALATION_HINT}"
        )]
    );
}

#[test]
fn a_default_boundary_in_kftenant_toml_counts() {
    let config = format!("{CONFIG}[iam]\npermissions_boundary = \"shared\"\n");
    let p = refused(&config, &allow("Action", "\"iam:PassRole\""));
    assert_eq!(p, Vec::<String>::new());
    // A boundary written wrong is its own error, not also an escalation.
    let src = base().with(
        "tenants/a.yaml",
        &tenant(
            "team-a",
            "  owner: a@example.com\n  iam:\n    permissionsBoundary: nope\n    inlinePolicies:\n      - {name: p, document: {Statement: [{Effect: Allow, Action: \"iam:PassRole\", Resource: \"*\"}]}}\n",
        ),
    );
    let p = problems(&src);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].contains("`nope` is neither an ARN nor a policy"),
        "{p:?}"
    );
}

#[test]
fn an_inline_file_is_refused_at_its_statement_naming_the_tenant() {
    let file = "{\n  \"Statement\": [\n    {\"Effect\": \"Allow\", \"Action\": \"ssm:*\", \"Resource\": \"*\"}\n  ]\n}\n";
    let spec = |boundary: &str| {
        format!(
            "  owner: a@example.com\n  iam:\n    inlinePolicies:\n      - {{name: ops, file: inline/ops.json}}\n{boundary}"
        )
    };
    let src = base()
        .with("inline/ops.json", file)
        .with("tenants/a.yaml", &tenant("team-a", &spec("")))
        .with(
            "tenants/b.yaml",
            &tenant("team-b", &spec("    permissionsBoundary: shared\n")),
        );
    assert_eq!(
        problems(&src),
        vec![format!(
            "inline/ops.json:3:5: guardrail: statement 1 grants the escalation actions `ssm:SendCommand`, `ssm:StartSession` through Action `ssm:*`, and tenant `team-a` has no permissions boundary\n  hint: {ESCALATION_HINT}"
        )]
    );
}

#[test]
fn aws_managed_policies_that_escalate_need_a_boundary() {
    let spec = |arn: &str, boundary: &str| {
        format!("  owner: a@example.com\n  iam:\n    managedPolicies:\n      - {arn}\n{boundary}")
    };
    let power = "arn:aws:iam::aws:policy/PowerUserAccess";
    let p = problems(&base().with("tenants/a.yaml", &tenant("team-a", &spec(power, ""))));
    assert_eq!(
        p,
        vec![format!(
            "tenants/a.yaml:9:9: guardrail: tenant `team-a` has no permissions boundary, and `{power}` grants privilege-escalation actions (`arn:*:iam::aws:policy/PowerUserAccess` in [guardrails] escalation_policy_arns)\n  hint: give the tenant a permissions boundary (spec.iam.permissionsBoundary, or [iam] permissions_boundary in kftenant.toml), or attach a policy that grants only what it needs"
        )]
    );
    // Any partition; the job-function path.
    for arn in [
        "arn:aws-cn:iam::aws:policy/PowerUserAccess",
        "arn:aws:iam::aws:policy/job-function/DataScientist",
        "arn:aws:iam::aws:policy/AmazonSageMakerFullAccess",
    ] {
        let p = problems(&base().with("tenants/a.yaml", &tenant("team-a", &spec(arn, ""))));
        assert_eq!(p.len(), 1, "{arn}: {p:?}");
    }
    // With a boundary: accepted. Read-only policies: accepted either way.
    let bounded = spec(power, "    permissionsBoundary: shared\n");
    assert!(problems(&base().with("tenants/a.yaml", &tenant("team-a", &bounded))).is_empty());
    let read = spec("arn:aws:iam::aws:policy/AmazonSageMakerReadOnly", "");
    assert!(problems(&base().with("tenants/a.yaml", &tenant("team-a", &read))).is_empty());
    // A denied policy is reported once, as denied.
    let admin = spec("arn:aws:iam::aws:policy/AdministratorAccess", "");
    let p = problems(&base().with("tenants/a.yaml", &tenant("team-a", &admin)));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].contains("is denied by"), "{p:?}");
}

#[test]
fn listed_patterns_meet_granted_patterns() {
    // A configured list may hold patterns: a grant overlapping one is refused.
    let config = format!("{CONFIG}[guardrails]\nescalation_actions = [\"iam:Put*\"]\n");
    for granted in [
        "iam:*Polic*",
        "iam:PutRolePolicy",
        "IAM:PUT*",
        "iam:P?t*",
        "iam:*",
    ] {
        let p = refused(&config, &allow("Action", &format!("\"{granted}\"")));
        let through = format!("Action `{granted}`");
        if granted == "iam:*" {
            // `iam:*` is a denied action already: one error for one mistake.
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(p[0].contains("denied action `iam:*`"), "{p:?}");
        } else {
            assert_eq!(p, inline_error("iam:Put*", &through), "{granted}");
        }
    }
    // `iam:*Get` would overlap (`iam:PutGet`); these cannot.
    for granted in [
        "iam:Get*",
        "iam:Get*Put",
        "iam:?et*",
        "iam:List*",
        "s3:Put*",
    ] {
        let p = refused(&config, &allow("Action", &format!("\"{granted}\"")));
        assert_eq!(p, Vec::<String>::new(), "{granted}");
    }
}

#[test]
fn not_action_excludes_a_listed_pattern_only_when_one_entry_contains_it() {
    let config =
        format!("{CONFIG}[guardrails]\ndenied_actions = []\nescalation_actions = [\"iam:Put*\"]\n");
    let not = |list: &str| refused(&config, &allow("NotAction", list));
    assert!(not("[\"iam:P*\"]").is_empty());
    assert!(not("[\"iam:*\"]").is_empty());
    assert!(not("[\"*\"]").is_empty());
    assert!(not("[\"iam:?*\"]").is_empty(), "names are never empty");
    assert_eq!(
        not("[\"iam:PutRole*\"]"),
        inline_error("iam:Put*", "NotAction")
    );
    assert_eq!(not("[\"iam:?ut\"]"), inline_error("iam:Put*", "NotAction"));
    // Several entries covering it only together are not credited (conservative:
    // IAM's action list is open, so no finite list of names is known to cover it).
    assert_eq!(
        not("[\"iam:PutRole*\", \"iam:PutUser*\", \"iam:PutGroup*\"]"),
        inline_error("iam:Put*", "NotAction")
    );
}

#[test]
fn everything_at_once_is_one_error_per_statement() {
    let config = format!("{CONFIG}[guardrails]\ndenied_actions = []\n");
    let p = refused(&config, &allow("Action", "\"*\""));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("tenants/a.yaml:12:15: guardrail: statement 1 grants the escalation actions `iam:AttachRolePolicy`, `iam:AttachUserPolicy`, `iam:AttachGroupPolicy`, `iam:PutRolePolicy`, `iam:PutUserPolicy`, `iam:PutGroupPolicy` and 49 more through Action `*`"),
        "{p:?}"
    );
    // With the default denied_actions, `*` is reported as denied only.
    let p = refused(CONFIG, &allow("Action", "\"*\""));
    assert!(
        p.iter().all(|m| m.contains("allows the denied action")),
        "{p:?}"
    );
    // `*:*` is not an action pattern: a grammar error (and, read as text, a
    // grant of `iam:*`), no escalation on top.
    let p = refused(CONFIG, &allow("Action", "\"*:*\""));
    assert!(
        p.iter()
            .any(|m| m.contains("`*:*` is not a valid IAM action")),
        "{p:?}"
    );
    assert!(!p.iter().any(|m| m.contains("escalation")), "{p:?}");
    // Deny statements grant nothing.
    let deny = "{Effect: Deny, Action: \"iam:*\", Resource: \"*\"}";
    assert!(refused(CONFIG, deny).is_empty());
}
