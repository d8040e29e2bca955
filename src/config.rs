//! `kftenant.toml`: the cluster-wide settings at the root of the tenant repository.
//!
//! This module owns the file's types (which also generate its JSON Schema),
//! its defaults, and its validation. It does no I/O: the text comes in.

use crate::diag::{Diagnostic, Diagnostics, Pos};
use crate::kubeflow::{DEFAULT_SERVICE_ACCOUNT, service_account_subject};
use crate::names::{self, Account};
use crate::quota::{self, Quota};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use std::collections::BTreeMap;

/// The file name of the repository configuration.
pub const CONFIG_FILE: &str = "kftenant.toml";

/// The whole `kftenant.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The EKS cluster this repository describes.
    pub cluster: ClusterConfig,
    /// How tenant IAM roles are named and shaped.
    #[serde(default)]
    pub iam: IamConfig,
    /// Defaults for the Kubeflow Profiles.
    #[serde(default)]
    pub profile: ProfileConfig,
    /// Rules every tenant must follow; a violation fails validation.
    #[serde(default)]
    pub guardrails: Guardrails,
    /// Deleting tenants that were removed from git.
    #[serde(default)]
    pub prune: PruneConfig,
    /// Contributors (`spec.members`), as Kubeflow's access management stores them.
    #[serde(default)]
    pub members: MembersConfig,
    /// The files the config was read from, to locate keys in messages.
    #[serde(skip)]
    #[schemars(skip)]
    pub origin: Origin,
}

/// The files a [`Config`] was read from: `kftenant.toml`, and for a cluster
/// of a repository with `clusters/`, its `clusters/<name>.toml` over it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    /// `(path, text)`, the file whose values win first.
    pub files: Vec<(String, String)>,
}

impl Origin {
    /// One file.
    pub fn single(file: &str, text: &str) -> Origin {
        Origin {
            files: vec![(file.to_string(), text.to_string())],
        }
    }

    /// Where the deepest key of `path` is written: in the first file that
    /// writes its first key (a cluster file before `kftenant.toml`), at the
    /// deepest key written there ([`locate_path`]). The first file at 1:1 when
    /// none writes it (a default).
    pub fn locate(&self, path: &[&str]) -> (String, Pos) {
        self.locator().locate(path)
    }

    /// A diagnostic at the key `path`.
    pub fn at(&self, path: &[&str], message: impl Into<String>) -> Diagnostic {
        self.locator().at(path, message)
    }

    /// Every file parsed once, for many lookups.
    pub fn locator(&self) -> OriginLocator<'_> {
        OriginLocator::new(self)
    }
}

/// `[cluster]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// EKS cluster name; used in role names and the `kftenant.io/cluster` tag.
    /// In a repository with `clusters/`, the cluster file's name (set it only
    /// to repeat that name).
    pub name: String,
    /// The 12-digit AWS account id that holds the roles.
    pub account_id: String,
    /// AWS region of the cluster, e.g. `us-west-2`.
    pub region: String,
    /// The cluster's OIDC issuer without `https://`,
    /// e.g. `oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E`.
    pub oidc_issuer: String,
    /// Labels of the cluster, which tenants select clusters by
    /// (`spec.clusterSelector`), e.g. `{ env = "prod" }`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The kubeconfig context to reach this cluster's API server with when a
    /// command reads several clusters (default: the context named like the
    /// cluster). Not used when one cluster is read (`--cluster`, a repository
    /// of one cluster, the daemon): that one uses the current context or the
    /// in-cluster service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_context: Option<String>,
}

/// `[iam]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct IamConfig {
    /// Role name template; placeholders `{tenant}` and `{cluster}`.
    pub role_name_template: String,
    /// IAM path of every role and repo policy kftenant creates.
    pub role_path: String,
    /// Name of the IAM policy made from `policies/<policy>.json`; placeholders
    /// `{policy}` and `{cluster}`. Clusters that share an account need
    /// `{cluster}` in it.
    pub policy_name_template: String,
    /// Permissions boundary (policy ARN or repo policy name) for tenants that name none.
    pub permissions_boundary: Option<String>,
    /// Maximum session duration in seconds (3600 to 43200).
    pub max_session_duration: u32,
}

impl Default for IamConfig {
    fn default() -> Self {
        IamConfig {
            role_name_template: "{tenant}-{cluster}-role".into(),
            role_path: "/kftenant/".into(),
            policy_name_template: "{policy}".into(),
            permissions_boundary: None,
            max_session_duration: 3600,
        }
    }
}

/// `[profile]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// The resource quota every tenant starts from. A tenant's
    /// `spec.profile.resourceQuota` overrides it key by key (`null` removes a
    /// key) and replaces its scopes when it names any.
    pub default_resource_quota: Option<ResourceQuotaSpec>,
    /// `annotateOnly` of the `AwsIamForServiceAccount` plugin: when true the
    /// Kubeflow controller only annotates the service account and leaves the
    /// role's trust policy to kftenant.
    pub annotate_only: bool,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        ProfileConfig {
            default_resource_quota: None,
            annotate_only: true,
        }
    }
}

/// A Kubernetes `ResourceQuotaSpec` (the subset Profiles use).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceQuotaSpec {
    /// Resource name to quantity, e.g. `cpu = "8"`, `"requests.nvidia.com/gpu" = 2`.
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
    /// Quota scopes, e.g. `NotTerminating`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// A Kubernetes quantity: a number or a string such as `32Gi`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Quantity {
    /// A plain integer.
    Int(i64),
    /// A number with a fraction, e.g. `1.5` (CPUs).
    Float(f64),
    /// A quantity string such as `500m` or `32Gi`.
    Str(String),
}

impl Quantity {
    /// The text Kubernetes reads: an integer's digits, or the string.
    pub fn text(&self) -> String {
        match self {
            Quantity::Int(i) => i.to_string(),
            Quantity::Float(f) => f.to_string(),
            Quantity::Str(s) => s.clone(),
        }
    }
}

/// `[guardrails]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Guardrails {
    /// Globs of managed policy ARNs tenants may attach; empty allows any.
    /// Repo policies are always allowed (they are reviewed in the repository).
    pub allowed_policy_arns: Vec<String>,
    /// Globs of managed policy ARNs tenants may never attach.
    pub denied_policy_arns: Vec<String>,
    /// Action patterns no `Allow` statement of a tenant or repo policy may grant in
    /// full (`*` covers `iam:*`; `NotAction` in an `Allow` grants what it does not exclude).
    pub denied_actions: Vec<String>,
    /// Action patterns of which a tenant whose role has no permissions boundary
    /// may not be granted even one (inline and repo policies; `iam:PassRole` refuses
    /// `iam:Pass*`, `iam:*Role*`, `*` and `NotAction` lists that do not exclude it).
    /// Default: the known IAM privilege-escalation paths (README, "Guardrails").
    pub escalation_actions: Vec<String>,
    /// Globs of managed policy ARNs a tenant whose role has no permissions
    /// boundary may not attach: AWS-managed policies that grant escalation
    /// actions (they cannot be read offline, so they are named).
    pub escalation_policy_arns: Vec<String>,
    /// Every role must have a permissions boundary.
    pub require_boundary: bool,
    /// At most this many managed policies per role (AWS default quota 10, up to 20).
    pub max_managed_policies_per_role: usize,
    /// Maximum trust policy length in characters (AWS default quota 2048, up to 4096).
    pub trust_policy_max_chars: usize,
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            allowed_policy_arns: Vec::new(),
            denied_policy_arns: vec![
                "arn:aws:iam::aws:policy/AdministratorAccess".into(),
                "arn:aws:iam::aws:policy/IAMFullAccess".into(),
            ],
            denied_actions: vec!["*".into(), "iam:*".into()],
            escalation_actions: ESCALATION_ACTIONS
                .iter()
                .map(|(a, _)| a.to_string())
                .collect(),
            escalation_policy_arns: ESCALATION_POLICIES
                .iter()
                .map(|(p, _)| format!("arn:*:iam::aws:policy/{p}"))
                .collect(),
            require_boundary: false,
            max_managed_policies_per_role: 10,
            trust_policy_max_chars: 2048,
        }
    }
}

/// `[members]`: how contributors are written, as KFAM writes them (the
/// defaults are kubeflow/manifests').
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MembersConfig {
    /// The request header that carries the user id (KFAM's `-userid-header`).
    pub userid_header: String,
    /// The prefix of the user id in that header (KFAM's `-userid-prefix`).
    pub userid_prefix: String,
    /// The Istio principals allowed to send that header to the namespace's
    /// workloads (KFAM's `ISTIO_INGRESS_GATEWAY_PRINCIPAL` and `KFP_UI_PRINCIPAL`).
    pub principals: Vec<String>,
    /// Delete contributors added by hand (in the dashboard) that git does not
    /// list. Off: they are reported as access not in git, and kept.
    pub prune_unmanaged: bool,
}

impl Default for MembersConfig {
    fn default() -> Self {
        MembersConfig {
            userid_header: "kubeflow-userid".into(),
            userid_prefix: String::new(),
            principals: vec![
                "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account".into(),
                "cluster.local/ns/kubeflow/sa/ml-pipeline-ui".into(),
            ],
            prune_unmanaged: false,
        }
    }
}

/// The default `[guardrails] escalation_actions`: the known ways for an IAM
/// principal to gain permissions it was not given, from Rhino Security Labs'
/// "AWS IAM privilege escalation" methods, Bishop Fox's iam-vulnerable, Pacu's
/// `iam__privesc_scan` and Datadog's pathfinding.cloud, plus what matters to
/// kftenant itself (its ownership is tag-based; tenants share an EKS cluster).
/// Each with why. Actions that escalate only together with `iam:PassRole`
/// (`ec2:RunInstances`, `lambda:CreateFunction`, `glue:CreateDevEndpoint`,
/// `cloudformation:CreateStack`, `sagemaker:CreateTrainingJob`, ...) are not
/// listed: refusing `iam:PassRole` breaks every such pair.
pub const ESCALATION_ACTIONS: &[(&str, &str)] = &[
    // Granting oneself more.
    (
        "iam:AttachRolePolicy",
        "attach AdministratorAccess to a role it can use, its own included",
    ),
    (
        "iam:AttachUserPolicy",
        "attach AdministratorAccess to a user it holds keys for",
    ),
    (
        "iam:AttachGroupPolicy",
        "attach AdministratorAccess to a group of such a user",
    ),
    (
        "iam:PutRolePolicy",
        "write an inline `*` policy on a role, its own included",
    ),
    ("iam:PutUserPolicy", "write an inline `*` policy on a user"),
    (
        "iam:PutGroupPolicy",
        "write an inline `*` policy on a group",
    ),
    (
        "iam:CreatePolicyVersion",
        "rewrite a customer-managed policy attached to it, as the default version",
    ),
    (
        "iam:SetDefaultPolicyVersion",
        "switch a policy back to an older, broader version",
    ),
    ("iam:AddUserToGroup", "join a more privileged group"),
    // Removing what limits a principal.
    (
        "iam:DeleteRolePermissionsBoundary",
        "remove the boundary that limits a role",
    ),
    (
        "iam:PutRolePermissionsBoundary",
        "replace the boundary of a role with a looser one",
    ),
    (
        "iam:DeleteUserPermissionsBoundary",
        "remove the boundary that limits a user",
    ),
    (
        "iam:PutUserPermissionsBoundary",
        "replace the boundary of a user with a looser one",
    ),
    (
        "iam:DetachRolePolicy",
        "remove a policy holding an explicit Deny from a role",
    ),
    (
        "iam:DeleteRolePolicy",
        "remove an inline policy holding an explicit Deny from a role",
    ),
    (
        "iam:DetachUserPolicy",
        "remove a policy holding an explicit Deny from a user",
    ),
    (
        "iam:DeleteUserPolicy",
        "remove an inline policy holding an explicit Deny from a user",
    ),
    (
        "iam:DetachGroupPolicy",
        "remove a policy holding an explicit Deny from a group",
    ),
    (
        "iam:DeleteGroupPolicy",
        "remove an inline policy holding an explicit Deny from a group",
    ),
    (
        "iam:RemoveUserFromGroup",
        "leave a group whose policies deny",
    ),
    // Becoming another principal.
    (
        "iam:CreateAccessKey",
        "long-lived keys for a more privileged user",
    ),
    (
        "iam:CreateLoginProfile",
        "a console password for a user that has none",
    ),
    ("iam:UpdateLoginProfile", "reset a user's console password"),
    (
        "iam:UpdateAssumeRolePolicy",
        "make a privileged role trust it",
    ),
    (
        "sts:AssumeRole",
        "become any role whose trust names the account (`:root`), where the caller's own policy decides; IRSA's sts:AssumeRoleWithWebIdentity is not affected",
    ),
    (
        "iam:CreateRole",
        "a role with a trust policy of its choosing: the first step of most chains, and tenants need none",
    ),
    (
        "iam:CreateUser",
        "a principal outside kftenant that outlives the tenant: the first step of the key and attach paths",
    ),
    (
        "iam:PassRole",
        "hand any role to a service (EC2, Lambda, Glue, CloudFormation, Data Pipeline, CodeBuild, ECS, SageMaker, App Runner, EKS Pod Identity) and run code as it",
    ),
    // kftenant's ownership and tag-based access.
    (
        "iam:TagRole",
        "kftenant owns roles by tag: tagging hands a role to kftenant or takes it over, and changes the principal tags tag-based (ABAC) policies trust",
    ),
    (
        "iam:UntagRole",
        "removing kftenant's tags turns another tenant's role into a conflict kftenant skips, and changes principal tags",
    ),
    ("iam:TagPolicy", "kftenant adopts policies by tag"),
    ("iam:UntagPolicy", "kftenant adopts policies by tag"),
    (
        "iam:UpdateRole",
        "changes settings kftenant owns (maximum session duration, description) on any role; drift across tenants rather than a privilege gain",
    ),
    // Running code as an existing role.
    (
        "lambda:UpdateFunctionCode",
        "run its code as an existing function's role",
    ),
    (
        "lambda:UpdateFunctionConfiguration",
        "run its code as an existing function's role, through a layer or a wrapper variable",
    ),
    (
        "glue:UpdateDevEndpoint",
        "add its SSH key to an existing Glue endpoint, which runs as the endpoint's role",
    ),
    (
        "cloudformation:UpdateStack",
        "change an existing stack that runs with a privileged service role",
    ),
    (
        "cloudformation:ExecuteChangeSet",
        "change an existing stack through a change set",
    ),
    (
        "codebuild:StartBuild",
        "override the buildspec of an existing project, which runs as its service role",
    ),
    (
        "codebuild:StartBuildBatch",
        "override the buildspec of an existing project, in a batch",
    ),
    (
        "ec2:ModifyInstanceAttribute",
        "change an instance's user data, run at its next start with its instance profile",
    ),
    (
        "ec2:CreateLaunchTemplateVersion",
        "change what an Auto Scaling group launches with its instance profile",
    ),
    (
        "ec2:ModifyLaunchTemplate",
        "make such a launch template version the default",
    ),
    (
        "ec2-instance-connect:SendSSHPublicKey",
        "log in to an instance and use its instance profile",
    ),
    (
        "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
        "log in to an instance's serial console and use its instance profile",
    ),
    (
        "ssm:SendCommand",
        "run commands as root on an instance, with its instance profile",
    ),
    (
        "ssm:StartSession",
        "a shell on an instance, with its instance profile",
    ),
    (
        "sagemaker:CreatePresignedNotebookInstanceUrl",
        "open an existing notebook instance, which runs as its role",
    ),
    (
        "sagemaker:UpdateNotebookInstance",
        "attach a lifecycle script to an existing notebook instance",
    ),
    (
        "apprunner:UpdateService",
        "change the start command of an existing App Runner service, which runs as its instance role",
    ),
    (
        "bedrock-agentcore:StartCodeInterpreterSession",
        "run code in an existing code interpreter, as its execution role",
    ),
    (
        "bedrock-agentcore:InvokeCodeInterpreter",
        "run code in an existing code interpreter, as its execution role",
    ),
    // The cluster the tenants share.
    (
        "eks:CreateAccessEntry",
        "EKS access for a principal it controls: cluster-admin reads every tenant's service-account tokens, and kftenant's",
    ),
    (
        "eks:AssociateAccessPolicy",
        "give such an access entry cluster-admin",
    ),
    (
        "eks:UpdateAccessEntry",
        "change the Kubernetes groups of an access entry",
    ),
];

/// The default `[guardrails] escalation_policy_arns` (as `arn:*:iam::aws:policy/<name>`,
/// any partition): AWS-managed policies a tenant might ask for that grant
/// escalation actions on any resource, each with what it grants. Found by
/// running [`ESCALATION_ACTIONS`] over every AWS-managed policy (1,525 in the
/// MAMIP mirror of September 2026: 326 grant one, 216 on any resource, mostly
/// `iam:PassRole` to one service); only an allow-list (`allowed_policy_arns`)
/// or a boundary covers them all. Deprecated policies (`AWSLambdaFullAccess`,
/// ...) are left out: IAM no longer attaches them to new roles. `AdministratorAccess` and `IAMFullAccess` are
/// in `denied_policy_arns`, refused with or without a boundary.
pub const ESCALATION_POLICIES: &[(&str, &str)] = &[
    (
        "PowerUserAccess",
        "every action but IAM's: sts:AssumeRole, and code as existing roles (Lambda, SSM, CodeBuild, CloudFormation, EC2, SageMaker)",
    ),
    (
        "AdministratorAccess-Amplify",
        "creates roles, attaches and puts policies, removes boundaries",
    ),
    (
        "AdministratorAccess-AWSElasticBeanstalk",
        "creates roles, attaches policies, passes roles",
    ),
    (
        "job-function/SystemAdministrator",
        "changes any function's code, any instance's user data and launch templates",
    ),
    (
        "job-function/DataScientist",
        "passes any role to SageMaker; function code, notebook instances, instance user data",
    ),
    (
        "AmazonSageMakerFullAccess",
        "passes any role to SageMaker; opens and changes any notebook instance",
    ),
    (
        "AWSLambda_FullAccess",
        "passes roles to Lambda; changes any function's code and configuration",
    ),
    (
        "AWSGlueConsoleFullAccess",
        "adds SSH keys to any Glue development endpoint; passes Glue roles",
    ),
    (
        "AWSGlueConsoleSageMakerNotebookFullAccess",
        "the same, and SageMaker notebook instances",
    ),
    (
        "AWSCloudFormationFullAccess",
        "updates any stack, which runs as its service role",
    ),
    (
        "AWSCodeBuildAdminAccess",
        "starts builds of any project with its own buildspec",
    ),
    (
        "AWSCodeBuildDeveloperAccess",
        "starts builds of any project with its own buildspec",
    ),
    (
        "AmazonSSMFullAccess",
        "commands and shells on any managed instance",
    ),
    (
        "AmazonEC2FullAccess",
        "user data and launch templates of any instance",
    ),
    (
        "AmazonECS_FullAccess",
        "passes ECS task and instance roles; updates stacks",
    ),
    (
        "AmazonElasticMapReduceFullAccess",
        "passes EMR roles; instance user data",
    ),
    (
        "BedrockAgentCoreFullAccess",
        "runs code in any code interpreter, as its execution role",
    ),
    (
        "EC2InstanceConnect",
        "logs in to any instance, with its instance profile",
    ),
    (
        "ResourceGroupsTaggingAPITagUntagSupportedResources",
        "tags and untags roles and policies (kftenant's ownership)",
    ),
];

/// `[prune]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PruneConfig {
    /// Delete managed tenants that are no longer in git and are listed in
    /// `decommissioned`. When false nothing is deleted, only reported.
    pub enabled: bool,
    /// Hold back every deletion when more tenants than this would be deleted
    /// at once (raise it in the same pull request, or `--allow-mass-delete`).
    pub max_deletions: usize,
    /// Tenants that may be deleted: their role, their Profile, and with it
    /// their namespace and everything in it. A tenant removed from `tenants/`
    /// but not listed here is held back (reported, never deleted), so a moved
    /// or lost file never deletes a namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decommissioned: Vec<String>,
}

impl Default for PruneConfig {
    fn default() -> Self {
        PruneConfig {
            enabled: true,
            max_deletions: 5,
            decommissioned: Vec::new(),
        }
    }
}

impl Config {
    /// AWS partition of the configured region.
    pub fn partition(&self) -> &'static str {
        names::partition_of(&self.cluster.region)
    }

    /// The account that holds the roles, in its partition.
    pub fn account(&self) -> Account<'_> {
        Account {
            partition: self.partition(),
            id: &self.cluster.account_id,
        }
    }

    /// ARN of the cluster's IAM OIDC provider.
    pub fn oidc_provider_arn(&self) -> String {
        self.account().oidc_provider_arn(&self.cluster.oidc_issuer)
    }

    /// The role name for `tenant`, from the template.
    pub fn role_name(&self, tenant: &str) -> String {
        self.iam
            .role_name_template
            .replace("{tenant}", tenant)
            .replace("{cluster}", &self.cluster.name)
    }

    /// `[profile] default_resource_quota` as a quota, with only its valid
    /// entries ([`load`] reports the others).
    pub fn default_quota(&self) -> Option<Quota> {
        let spec = self.profile.default_resource_quota.as_ref()?;
        Some(Quota {
            hard: spec
                .hard
                .iter()
                .filter(|(k, _)| quota::check_resource_name(k).is_none())
                .filter_map(|(k, v)| Some((k.clone(), quota::parse_value(k, &v.text()).ok()?)))
                .collect(),
            scopes: spec.scopes.clone(),
        })
    }

    /// The ARN of a tenant's role.
    pub fn role_arn(&self, tenant: &str) -> String {
        self.account()
            .role_arn(&self.iam.role_path, &self.role_name(tenant))
    }

    /// The IAM name of the policy made from `policies/<name>.json`.
    pub fn policy_name(&self, name: &str) -> String {
        self.iam
            .policy_name_template
            .replace("{policy}", name)
            .replace("{cluster}", &self.cluster.name)
    }

    /// The ARN of a customer-managed policy kftenant creates from the repository.
    pub fn repo_policy_arn(&self, name: &str) -> String {
        self.account()
            .policy_arn(&self.iam.role_path, &self.policy_name(name))
    }

    /// The trust policy of a tenant role: one statement, in exactly the shape the
    /// Kubeflow profile controller looks for (`Statement[0]`, `StringEquals` on
    /// `aud` and a list of `sub`s), so it never rewrites it. `default-editor` is
    /// always trusted, then `extra_service_accounts` in order.
    pub fn trust_policy(&self, tenant: &str, extra_service_accounts: &[String]) -> Json {
        let issuer = &self.cluster.oidc_issuer;
        let subs: Vec<String> = std::iter::once(DEFAULT_SERVICE_ACCOUNT)
            .chain(extra_service_accounts.iter().map(String::as_str))
            .map(|sa| service_account_subject(tenant, sa))
            .collect();
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Federated": self.oidc_provider_arn()},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {
                    format!("{issuer}:aud"): "sts.amazonaws.com",
                    format!("{issuer}:sub"): subs,
                }}
            }]
        })
    }
}

/// Parses and validates `kftenant.toml`. Every problem is recorded in `diags`;
/// the config is returned whenever it could be decoded.
///
/// A byte-order mark at the start is skipped. TOML's specification does not
/// mention one, but editors on Windows write it, the `toml` parser skips it,
/// and it cannot mean anything else; positions are counted without it.
pub fn load(text: &str, diags: &mut Diagnostics) -> Option<Config> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Syntax, unknown keys, missing keys and wrong types first, every one of
    // them with its position (serde would stop at the first).
    if !shape::check(text, CONFIG_FILE, shape::Required::All, diags) {
        return None;
    }
    let config: Config = match toml::from_str(text) {
        Ok(c) => Config {
            origin: Origin::single(CONFIG_FILE, text),
            ..c
        },
        Err(e) => {
            let pos = e
                .span()
                .map_or(Pos::new(1, 1), |s| offset_to_pos(text, s.start));
            diags.push(Diagnostic::at(
                CONFIG_FILE,
                pos,
                e.message().trim().to_string(),
            ));
            return None;
        }
    };
    // Semantic problems are recorded but the config is still returned, so
    // tenant checks that depend on it (guardrails, role names) run too and
    // every problem shows in one run. The repository is rejected either way.
    check(&config, diags);
    Some(config)
}

/// Checks the shape of `kftenant.toml` in a repository with `clusters/`,
/// where it holds what the clusters share and no key is required. True when
/// it is right.
pub fn check_base(text: &str, diags: &mut Diagnostics) -> bool {
    shape::check(text, CONFIG_FILE, shape::Required::NotCluster, diags)
}

/// The config of cluster `name` of a repository with `clusters/`: its file
/// `clusters/<name>.toml` (at `file`) over `kftenant.toml` (`base`, whose
/// shape [`check_base`] checked): tables merge key by key, any other value
/// (a list too) in the cluster file replaces the base's. The cluster's name
/// is its file's name.
pub fn load_layered(
    base: &str,
    name: &str,
    file: &str,
    text: &str,
    diags: &mut Diagnostics,
) -> Option<Config> {
    let before = diags.len();
    if !shape::check(text, file, shape::Required::NotCluster, diags) {
        return None;
    }
    let (Ok(mut merged), Ok(over)) = (
        toml::from_str::<toml::Table>(base),
        toml::from_str::<toml::Table>(text),
    ) else {
        return None;
    };
    let origin = Origin {
        files: vec![
            (file.to_string(), text.to_string()),
            (CONFIG_FILE.to_string(), base.to_string()),
        ],
    };
    if merged.get("cluster").and_then(|c| c.get("name")).is_some() {
        let (f, pos) = Origin::single(CONFIG_FILE, base).locate(&["cluster", "name"]);
        diags.push(
            Diagnostic::at(f, pos, "[cluster] name in kftenant.toml: with clusters/, each cluster's name is the name of its file")
                .with_hint("remove it here; name the files under clusters/ after the EKS clusters"),
        );
    }
    match over.get("cluster").and_then(|c| c.get("name")) {
        Some(toml::Value::String(n)) if n == name => {}
        Some(_) => diags.push(
            origin
                .at(&["cluster", "name"], format!("[cluster] name differs from the file's name `{name}`: a cluster's name is the name of its file"))
                .with_hint("remove the key, or rename the file to clusters/<name>.toml"),
        ),
        None => {}
    }
    merge_tables(&mut merged, over);
    let cluster = merged
        .entry("cluster")
        .or_insert_with(|| toml::Value::Table(Default::default()));
    if let toml::Value::Table(c) = cluster {
        c.insert("name".into(), toml::Value::String(name.to_string()));
        for key in ["account_id", "region", "oidc_issuer"] {
            if !c.contains_key(key) {
                diags.push(
                    Diagnostic::at(
                        file,
                        Pos::new(1, 1),
                        format!("missing `{key}` in [cluster]"),
                    )
                    .with_hint(format!(
                        "set it in {file}, or in kftenant.toml when every cluster shares it"
                    )),
                );
            }
        }
    }
    if diags.len() != before {
        return None;
    }
    let config: Config = match Config::deserialize(toml::Value::Table(merged)) {
        Ok(c) => Config { origin, ..c },
        Err(e) => {
            diags.push(Diagnostic::file(file, e.message().trim().to_string()));
            return None;
        }
    };
    check(&config, diags);
    Some(config)
}

/// Merges `over` into `base`: tables key by key, other values replaced.
fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Byte offset to 1-based line and column.
pub fn offset_to_pos(text: &str, offset: usize) -> Pos {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Pos::new(line, col)
}

/// Where `key` is set inside `[section]`, for messages about its value: the
/// key's span from the TOML parser, so dotted keys (`iam.role_path = ...`) and
/// inline tables (`iam = { role_path = ... }`) are found as well as
/// `[iam]` sections. The section's own position when the key is not written
/// (a default), and 1:1 when the text does not parse.
pub fn locate(text: &str, section: &str, key: &str) -> Pos {
    locate_path(text, &[section, key])
}

/// Where the deepest key of `path` that is written is: `locate` for nested
/// tables (`["profile", "default_resource_quota", "hard", "cpu"]` finds
/// `cpu` under `[profile.default_resource_quota.hard]`, in an inline table or
/// as a dotted key). 1:1 when not even the first key is written.
pub fn locate_path(text: &str, path: &[&str]) -> Pos {
    match toml::de::DeTable::parse(text) {
        Ok(root) => locate_path_in(text, root.get_ref(), path),
        Err(_) => Pos::new(1, 1),
    }
}

fn locate_path_in(text: &str, root: &toml::de::DeTable<'_>, path: &[&str]) -> Pos {
    let mut table = root;
    let mut found = None;
    for name in path {
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref() == name) else {
            break;
        };
        found = Some(k.span());
        match v.get_ref() {
            toml::de::DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found.map_or(Pos::new(1, 1), |span| offset_to_pos(text, span.start))
}

/// [`Origin::locate`] for many keys, each file parsed once: a config can have
/// a problem per entry of a list, and parsing a megabyte again for each would
/// take hours.
pub struct OriginLocator<'o> {
    files: Vec<(&'o str, &'o str, Option<toml::de::DeTable<'o>>)>,
}

impl<'o> OriginLocator<'o> {
    fn new(origin: &'o Origin) -> Self {
        let files = origin
            .files
            .iter()
            .map(|(f, t)| {
                let root = toml::de::DeTable::parse(t)
                    .ok()
                    .map(toml::Spanned::into_inner);
                (f.as_str(), t.as_str(), root)
            })
            .collect();
        OriginLocator { files }
    }

    /// See [`Origin::locate`].
    pub fn locate(&self, path: &[&str]) -> (String, Pos) {
        let writes = |root: &toml::de::DeTable<'_>| {
            let mut table = root;
            for (depth, name) in path.iter().enumerate() {
                match table.iter().find(|(k, _)| k.get_ref() == name) {
                    Some((_, v)) => match v.get_ref() {
                        toml::de::DeValue::Table(t) if depth + 1 < path.len() => table = t,
                        _ => return true,
                    },
                    None => return false,
                }
            }
            true
        };
        let found = self
            .files
            .iter()
            .find(|(_, _, root)| root.as_ref().is_some_and(writes))
            .or_else(|| self.files.first());
        match found {
            Some((file, text, root)) => (
                file.to_string(),
                root.as_ref()
                    .map_or(Pos::new(1, 1), |r| locate_path_in(text, r, path)),
            ),
            None => (CONFIG_FILE.to_string(), Pos::new(1, 1)),
        }
    }

    /// A diagnostic at the key `path`.
    pub fn at(&self, path: &[&str], message: impl Into<String>) -> Diagnostic {
        let (file, pos) = self.locate(path);
        Diagnostic::at(file, pos, message)
    }
}

fn check(c: &Config, diags: &mut Diagnostics) {
    let locator = c.origin.locator();
    let mut err = |section: &str, key: &str, msg: String, hint: Option<&str>| {
        let mut d = locator.at(&[section, key], msg);
        if let Some(h) = hint {
            d = d.with_hint(h);
        }
        diags.push(d);
    };
    let cl = &c.cluster;
    let name_ok = !cl.name.is_empty()
        && cl.name.len() <= 100
        && cl.name.starts_with(|ch: char| ch.is_ascii_alphanumeric())
        && cl
            .name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_');
    if !name_ok {
        err(
            "cluster",
            "name",
            format!("cluster name `{}` is not a valid EKS cluster name", cl.name),
            Some(
                "use letters, digits, `-` and `_`, starting with a letter or digit, at most 100 characters",
            ),
        );
    }
    if cl.account_id.len() != 12 || !cl.account_id.chars().all(|ch| ch.is_ascii_digit()) {
        err(
            "cluster",
            "account_id",
            format!(
                "account_id `{}` is not a 12-digit AWS account id",
                cl.account_id
            ),
            Some("quote it as a string so leading zeros are kept: account_id = \"012345678901\""),
        );
    }
    let region_ok = {
        let parts: Vec<&str> = cl.region.split('-').collect();
        parts.len() >= 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            })
            && parts
                .last()
                .is_some_and(|p| p.chars().all(|ch| ch.is_ascii_digit()))
    };
    if !region_ok {
        err(
            "cluster",
            "region",
            format!("region `{}` is not an AWS region name", cl.region),
            Some("for example `us-west-2`"),
        );
    }
    let issuer = &cl.oidc_issuer;
    if issuer.contains("://") {
        err(
            "cluster",
            "oidc_issuer",
            format!("oidc_issuer `{issuer}` must not include a scheme"),
            Some("drop `https://`: IAM condition keys use the bare host and path"),
        );
    } else if issuer.ends_with('/') || !issuer.contains('/') || issuer.contains(char::is_whitespace)
    {
        err(
            "cluster",
            "oidc_issuer",
            format!("oidc_issuer `{issuer}` is not an OIDC issuer host and path"),
            Some(
                "for example `oidc.eks.us-west-2.amazonaws.com/id/EXAMPLED539D4633E53DE1B716D3041E` (from `aws eks describe-cluster --query cluster.identity.oidc.issuer`)",
            ),
        );
    }
    let t = &c.iam.role_name_template;
    if !t.contains("{tenant}") {
        err(
            "iam",
            "role_name_template",
            format!("role_name_template `{t}` must contain `{{tenant}}`"),
            Some("otherwise every tenant gets the same role"),
        );
    }
    let stripped = t.replace("{tenant}", "").replace("{cluster}", "");
    if stripped.contains('{') || stripped.contains('}') {
        err(
            "iam",
            "role_name_template",
            format!("role_name_template `{t}` has an unknown placeholder"),
            Some("only `{tenant}` and `{cluster}` are known"),
        );
    } else if let Some(msg) = names::check_iam_name_chars(&stripped) {
        err(
            "iam",
            "role_name_template",
            format!("role_name_template `{t}`: {msg}"),
            None,
        );
    }
    let t = &c.iam.policy_name_template;
    let stripped = t.replace("{policy}", "").replace("{cluster}", "");
    if !t.contains("{policy}") {
        err(
            "iam",
            "policy_name_template",
            format!("policy_name_template `{t}` must contain `{{policy}}`"),
            Some("otherwise every policy gets the same name"),
        );
    } else if stripped.contains('{') || stripped.contains('}') {
        err(
            "iam",
            "policy_name_template",
            format!("policy_name_template `{t}` has an unknown placeholder"),
            Some("only `{policy}` and `{cluster}` are known"),
        );
    } else if let Some(msg) = names::check_iam_name_chars(&stripped) {
        err(
            "iam",
            "policy_name_template",
            format!("policy_name_template `{t}`: {msg}"),
            None,
        );
    }
    for (k, v) in &cl.labels {
        if let Some(msg) = names::check_label_key(k) {
            err(
                "cluster",
                "labels",
                format!("cluster label `{k}`: {msg}"),
                None,
            );
        }
        if v.len() > 63 {
            err(
                "cluster",
                "labels",
                format!("cluster label `{k}`: value longer than 63 characters"),
                None,
            );
        }
    }
    if let Some(msg) = names::check_iam_path(&c.iam.role_path) {
        err(
            "iam",
            "role_path",
            msg,
            Some("a path starts and ends with `/`, e.g. `/kftenant/`"),
        );
    }
    if let Some(b) = &c.iam.permissions_boundary {
        if b.starts_with("arn:") {
            if let Some(msg) = names::check_policy_arn(b) {
                err("iam", "permissions_boundary", msg, None);
            }
        }
    }
    if !(3600..=43200).contains(&c.iam.max_session_duration) {
        err(
            "iam",
            "max_session_duration",
            format!(
                "max_session_duration {} is outside 3600..=43200 seconds",
                c.iam.max_session_duration
            ),
            None,
        );
    }
    let g = &c.guardrails;
    if !(1..=20).contains(&g.max_managed_policies_per_role) {
        err(
            "guardrails",
            "max_managed_policies_per_role",
            format!(
                "max_managed_policies_per_role {} is outside 1..=20",
                g.max_managed_policies_per_role
            ),
            Some("AWS allows 10 by default; a quota increase raises it to at most 20"),
        );
    }
    if !(1..=4096).contains(&g.trust_policy_max_chars) {
        err(
            "guardrails",
            "trust_policy_max_chars",
            format!(
                "trust_policy_max_chars {} is outside 1..=4096",
                g.trust_policy_max_chars
            ),
            Some("AWS allows 2048 by default; a quota increase raises it to at most 4096"),
        );
    }
    for (key, list) in [
        ("allowed_policy_arns", &g.allowed_policy_arns),
        ("denied_policy_arns", &g.denied_policy_arns),
        ("escalation_policy_arns", &g.escalation_policy_arns),
    ] {
        for pat in list {
            if !pat.starts_with("arn:") {
                err(
                    "guardrails",
                    key,
                    format!("`{pat}` in {key} is not an ARN pattern"),
                    Some(
                        "patterns are ARNs with `*` wildcards, e.g. `arn:aws:iam::aws:policy/*ReadOnly*`",
                    ),
                );
            }
        }
    }
    for (key, list) in [
        ("denied_actions", &g.denied_actions),
        ("escalation_actions", &g.escalation_actions),
    ] {
        for a in list {
            if let Some(msg) = crate::policy::action_syntax(a) {
                err("guardrails", key, msg, None);
            }
        }
    }
    if let Some(q) = &c.profile.default_resource_quota {
        check_default_quota(q, &locator, diags);
    }
}

/// `[profile.default_resource_quota]`: the names, values and scopes
/// Kubernetes accepts, each problem at its key.
fn check_default_quota(q: &ResourceQuotaSpec, origin: &OriginLocator<'_>, diags: &mut Diagnostics) {
    const AT: [&str; 2] = ["profile", "default_resource_quota"];
    let mut push = |key: &[&str], p: quota::Problem| {
        let path: Vec<&str> = AT.iter().chain(key).copied().collect();
        let mut d = origin.at(&path, p.message);
        if let Some(h) = p.hint {
            d = d.with_hint(h);
        }
        diags.push(d);
    };
    for (k, v) in &q.hard {
        let problem =
            quota::check_resource_name(k).or_else(|| quota::parse_value(k, &v.text()).err());
        if let Some(p) = problem {
            push(&["hard", k], p);
        }
    }
    let scopes: Vec<&str> = q.scopes.iter().map(String::as_str).collect();
    for s in &scopes {
        if let Some(p) = quota::check_scope(s) {
            push(&["scopes"], p);
        }
        for k in q.hard.keys() {
            if let Some(p) = quota::check_scope_for(s, k) {
                push(&["hard", k], p);
            }
        }
    }
    if let Some((a, b)) = quota::conflicting_scopes(&scopes) {
        push(
            &["scopes"],
            quota::Problem {
                message: format!("quota scopes `{a}` and `{b}` exclude each other"),
                hint: None,
            },
        );
    }
    if q.hard.is_empty() && !scopes.is_empty() {
        push(
            &["scopes"],
            quota::Problem {
                message: "quota scopes without any `hard` limit limit nothing".into(),
                hint: Some(
                    "add limits under [profile.default_resource_quota.hard], or remove the scopes"
                        .into(),
                ),
            },
        );
    }
}

/// The shape of `kftenant.toml` checked against its JSON Schema (generated
/// from [`Config`]), with the TOML parser's spans: every syntax error, unknown
/// key (with "did you mean"), missing key and value of the wrong type is
/// reported in one run, each at its place.
mod shape {
    use super::{Config, offset_to_pos};
    use crate::diag::{Diagnostic, Diagnostics, did_you_mean};
    use serde_json::Value as Json;
    use toml::de::{DeTable, DeValue};

    type Spanned<T> = toml::Spanned<T>;

    /// Which keys must be written.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub(super) enum Required {
        /// Every key the schema requires (a repository of one cluster).
        All,
        /// Not `[cluster]` nor its keys: a file of a repository with
        /// `clusters/`, where they may come from the other file.
        NotCluster,
    }

    /// True when the shape of `file` is right (then serde can read it).
    pub(super) fn check(
        text: &str,
        file: &str,
        required: Required,
        diags: &mut Diagnostics,
    ) -> bool {
        let before = diags.len();
        let (root, errors) = DeTable::parse_recoverable(text);
        for e in &errors {
            let pos = e.span().map_or(crate::diag::Pos::new(1, 1), |s| {
                offset_to_pos(text, s.start)
            });
            diags.push(Diagnostic::at(
                file,
                pos,
                format!("TOML syntax error: {}", e.message().trim()),
            ));
        }
        if !errors.is_empty() {
            return false;
        }
        let schema =
            serde_json::to_value(schemars::schema_for!(Config)).expect("schema serialises");
        let cx = Cx {
            text,
            file,
            required,
            root: &schema,
        };
        cx.table(root.get_ref(), root.span(), &schema, "", diags);
        diags.len() == before
    }

    struct Cx<'a> {
        text: &'a str,
        file: &'a str,
        required: Required,
        root: &'a Json,
    }

    impl Cx<'_> {
        fn resolve<'s>(&'s self, schema: &'s Json) -> &'s Json {
            match schema.get("$ref").and_then(Json::as_str) {
                Some(r) => r
                    .strip_prefix("#/$defs/")
                    .and_then(|name| self.root["$defs"].get(name))
                    .unwrap_or(schema),
                None => schema,
            }
        }

        fn err(
            &self,
            span: std::ops::Range<usize>,
            msg: String,
            hint: Option<String>,
            diags: &mut Diagnostics,
        ) {
            let mut d = Diagnostic::at(self.file, offset_to_pos(self.text, span.start), msg);
            if let Some(h) = hint {
                d = d.with_hint(h);
            }
            diags.push(d);
        }

        /// The JSON types a schema allows (`anyOf` alternatives included).
        fn types(&self, schema: &Json) -> Vec<String> {
            let schema = self.resolve(schema);
            if let Some(alts) = schema
                .get("anyOf")
                .or_else(|| schema.get("oneOf"))
                .and_then(Json::as_array)
            {
                return alts.iter().flat_map(|a| self.types(a)).collect();
            }
            match schema.get("type") {
                Some(Json::String(t)) => vec![t.clone()],
                Some(Json::Array(ts)) => ts
                    .iter()
                    .filter_map(|t| t.as_str().map(String::from))
                    .collect(),
                _ => Vec::new(),
            }
        }

        fn table(
            &self,
            table: &DeTable<'_>,
            span: std::ops::Range<usize>,
            schema: &Json,
            path: &str,
            diags: &mut Diagnostics,
        ) {
            let schema = self.resolve(schema);
            let props = schema.get("properties").and_then(Json::as_object);
            let known: Vec<&str> = props
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            for (k, v) in table.iter() {
                let key = k.get_ref().as_ref();
                let full = if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                };
                let sub = props
                    .and_then(|p| p.get(key))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                match sub {
                    Some(sub) => self.value(v, sub, &full, diags),
                    None => {
                        let hint = match did_you_mean(key, &known) {
                            Some(m) => format!("did you mean `{m}`?"),
                            None => format!("known keys here: {}", known.join(", ")),
                        };
                        let place = if path.is_empty() {
                            "at the top level".to_string()
                        } else {
                            format!("in [{path}]")
                        };
                        self.err(
                            k.span(),
                            format!("unknown key `{key}` {place}"),
                            Some(hint),
                            diags,
                        );
                    }
                }
            }
            for req in schema
                .get("required")
                .and_then(Json::as_array)
                .into_iter()
                .flatten()
            {
                let Some(req) = req.as_str() else { continue };
                let optional = self.required == Required::NotCluster
                    && (path.is_empty() && req == "cluster" || path == "cluster");
                if !optional && !table.iter().any(|(k, _)| k.get_ref().as_ref() == req) {
                    let (msg, at) = if path.is_empty() {
                        (format!("missing [{req}]"), 0..0)
                    } else {
                        (format!("missing `{req}` in [{path}]"), span.clone())
                    };
                    self.err(at, msg, None, diags);
                }
            }
        }

        fn value(
            &self,
            v: &Spanned<DeValue<'_>>,
            schema: &Json,
            path: &str,
            diags: &mut Diagnostics,
        ) {
            let types = self.types(schema);
            let found = match v.get_ref() {
                DeValue::String(_) => "string",
                DeValue::Integer(_) => "integer",
                DeValue::Float(_) => "number",
                DeValue::Boolean(_) => "boolean",
                DeValue::Datetime(_) => "datetime",
                DeValue::Array(_) => "array",
                DeValue::Table(_) => "object",
            };
            let fits = types.is_empty()
                || types
                    .iter()
                    .any(|t| t == found || (t == "number" && found == "integer"));
            if !fits {
                let wanted = types
                    .iter()
                    .filter(|t| *t != "null")
                    .map(|t| match t.as_str() {
                        "object" => "a table",
                        "array" => "a list",
                        "string" => "a string",
                        "integer" => "a whole number",
                        "number" => "a number",
                        "boolean" => "true or false",
                        other => other,
                    })
                    .collect::<Vec<_>>()
                    .join(" or ");
                let raw = &self.text[v.span()];
                let hint = match (types.iter().any(|t| t == "string"), found) {
                    (true, "integer" | "number" | "boolean") => Some(format!(
                        "quote it: {} = \"{raw}\"{}",
                        path.rsplit('.').next().unwrap_or(path),
                        if path.ends_with("account_id") {
                            " (as a string, an account id keeps its leading zeros)"
                        } else {
                            ""
                        }
                    )),
                    (false, "string") if types.iter().any(|t| t == "integer" || t == "boolean") => {
                        Some(format!("remove the quotes: {}", raw.trim_matches('"')))
                    }
                    _ => None,
                };
                let found_words = match found {
                    "object" => "a table",
                    "array" => "a list",
                    "string" => "a string",
                    "integer" | "number" => "a number",
                    "boolean" => "a boolean",
                    _ => "a date",
                };
                self.err(
                    v.span(),
                    format!("`{path}` must be {wanted}, found {found_words}"),
                    hint,
                    diags,
                );
                return;
            }
            let schema = self.resolve(schema);
            match v.get_ref() {
                DeValue::Table(t) => {
                    // An object alternative of an anyOf: check against it.
                    let obj = schema
                        .get("anyOf")
                        .and_then(Json::as_array)
                        .and_then(|alts| {
                            alts.iter()
                                .find(|a| self.types(a).iter().any(|t| t == "object"))
                        })
                        .unwrap_or(schema);
                    self.table(t, v.span(), obj, path, diags);
                }
                DeValue::Array(items) => {
                    if let Some(item) = schema.get("items") {
                        for (i, it) in items.iter().enumerate() {
                            self.value(it, item, &format!("{path}[{i}]"), diags);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[cluster]
name = "kubeflow-prod"
account_id = "123456789012"
region = "us-west-2"
oidc_issuer = "oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE"
"#;

    fn errors(text: &str) -> Vec<String> {
        let mut d = Diagnostics::default();
        let _ = load(text, &mut d);
        d.sorted().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaults_follow_the_kubeflow_guide() {
        let mut d = Diagnostics::default();
        let c = load(GOOD, &mut d).unwrap();
        assert_eq!(c.role_name("team-a"), "team-a-kubeflow-prod-role");
        assert_eq!(c.iam.role_path, "/kftenant/");
        assert!(c.profile.annotate_only);
        assert_eq!(
            c.oidc_provider_arn(),
            "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/EXAMPLE"
        );
        assert_eq!(
            c.repo_policy_arn("s3"),
            "arn:aws:iam::123456789012:policy/kftenant/s3"
        );
    }

    #[test]
    fn syntax_and_unknown_fields_have_positions() {
        let e = errors("[cluster]\nname = \"x\"\nnmae = 1\n");
        assert_eq!(
            e,
            vec![
                "kftenant.toml:1:1: missing `account_id` in [cluster]",
                "kftenant.toml:1:1: missing `oidc_issuer` in [cluster]",
                "kftenant.toml:1:1: missing `region` in [cluster]",
                "kftenant.toml:3:1: unknown key `nmae` in [cluster]\n  hint: did you mean `name`?",
            ]
        );
        let e = errors("[cluster\n");
        assert!(e[0].starts_with("kftenant.toml:1:"), "{e:?}");
    }

    #[test]
    fn every_semantic_error_is_reported_at_its_key() {
        let text = "[cluster]\nname = \"prod\"\naccount_id = \"1234\"\nregion = \"west\"\noidc_issuer = \"https://oidc.example/id/X\"\n\n[iam]\nrole_name_template = \"{team}-role\"\nrole_path = \"kftenant\"\nmax_session_duration = 60\n\n[guardrails]\ntrust_policy_max_chars = 5000\n";
        let e = errors(text);
        let lines: Vec<&str> = e.iter().map(|s| s.split(": ").next().unwrap()).collect();
        assert_eq!(
            lines,
            vec![
                "kftenant.toml:3:1",
                "kftenant.toml:4:1",
                "kftenant.toml:5:1",
                "kftenant.toml:8:1",
                "kftenant.toml:8:1",
                "kftenant.toml:9:1",
                "kftenant.toml:10:1",
                "kftenant.toml:13:1"
            ],
            "{e:#?}"
        );
        assert!(e[4].contains("unknown placeholder") || e[3].contains("unknown placeholder"));
    }

    #[test]
    fn every_shape_error_is_reported_in_one_run_with_hints() {
        let text = "[cluster]\nname = \"prod\"\naccount_id = 123456789012\noidc_issuer = \"oidc.example/id/X\"\n\n[iam]\nrole_paht = \"/x/\"\nmax_session_duration = \"3600\"\n\n[prune]\nmax_deletions = \"5\"\n";
        let e = errors(text);
        assert_eq!(
            e,
            vec![
                "kftenant.toml:1:1: missing `region` in [cluster]",
                "kftenant.toml:3:14: `cluster.account_id` must be a string, found a number\n  hint: quote it: account_id = \"123456789012\" (as a string, an account id keeps its leading zeros)",
                "kftenant.toml:7:1: unknown key `role_paht` in [iam]\n  hint: did you mean `role_path`?",
                "kftenant.toml:8:24: `iam.max_session_duration` must be a whole number, found a string\n  hint: remove the quotes: 3600",
                "kftenant.toml:11:17: `prune.max_deletions` must be a whole number, found a string\n  hint: remove the quotes: 5",
            ]
        );
        // Dotted keys and inline tables are checked the same way.
        let e = errors(
            "cluster = { name = \"p\", account_id = \"123456789012\", region = \"us-west-2\", oidc_issuer = \"o.example/id/X\" }\niam.role_path = 7\n",
        );
        assert_eq!(
            e,
            vec![
                "kftenant.toml:2:17: `iam.role_path` must be a string, found a number\n  hint: quote it: role_path = \"7\""
            ]
        );
        let e = errors("[cluster\nname = 1\n");
        assert!(e[0].starts_with("kftenant.toml:1:"), "{e:?}");
        assert!(e[0].contains("TOML syntax error"), "{e:?}");
    }

    #[test]
    fn default_quota_is_checked_at_its_keys() {
        let text = format!(
            "{GOOD}\n[profile.default_resource_quota]\nscopes = [\"BestEffort\", \"NotTerminatin\"]\n\n[profile.default_resource_quota.hard]\nmemmory = \"1Gi\"\ncpu = \"lots\"\npods = 10\n\"nvidia.com/gpu\" = 1\nstorage = \"1Gi\"\n"
        );
        assert_eq!(
            errors(&text),
            vec![
                "kftenant.toml:9:1: unknown quota scope `NotTerminatin`\n  hint: did you mean `NotTerminating`?",
                "kftenant.toml:12:1: `memmory` is not a resource a Kubernetes quota can limit\n  hint: did you mean `memory`?",
                "kftenant.toml:13:1: `lots` is not a Kubernetes quantity\n  hint: a number with an optional suffix, e.g. 8, \"500m\", \"1.5\", \"32Gi\", \"1e3\"",
                "kftenant.toml:13:1: quota scope `BestEffort` cannot limit `cpu`\n  hint: a `BestEffort` quota limits only `pods`",
                "kftenant.toml:15:1: `nvidia.com/gpu` limits nothing: Kubernetes quotas count extended resources only as `requests.<name>`\n  hint: did you mean `requests.nvidia.com/gpu`?",
                "kftenant.toml:16:1: `storage` is not a resource a Kubernetes quota can limit\n  hint: did you mean `requests.storage`?",
            ]
        );
        // Inline tables and dotted keys are found too.
        let text =
            format!("{GOOD}[profile]\ndefault_resource_quota = {{ hard = {{ cpu = \"-1\" }} }}\n");
        assert_eq!(
            errors(&text),
            vec!["kftenant.toml:8:37: `cpu` must not be negative, found `-1`"]
        );
        let text = format!("{GOOD}[profile]\ndefault_resource_quota.scopes = [\"BestEffort\"]\n");
        assert_eq!(
            errors(&text),
            vec![
                "kftenant.toml:8:24: quota scopes without any `hard` limit limit nothing\n  hint: add limits under [profile.default_resource_quota.hard], or remove the scopes"
            ]
        );
    }

    #[test]
    fn default_quota_keeps_the_valid_entries() {
        let text = format!(
            "{GOOD}[profile.default_resource_quota.hard]\ncpu = 1.5\nmemory = \"lots\"\n\"requests.nvidia.com/gpu\" = 0\n"
        );
        let mut d = Diagnostics::default();
        let q = load(&text, &mut d).unwrap().default_quota().unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(
            q.to_json(),
            json!({"hard": {"cpu": "1500m", "requests.nvidia.com/gpu": "0"}})
        );
        let mut d = Diagnostics::default();
        assert_eq!(load(GOOD, &mut d).unwrap().default_quota(), None);
    }

    #[test]
    fn escalation_lists_are_checked() {
        let text = format!(
            "{GOOD}\n[guardrails]\nescalation_actions = [\"iam:PassRole\", \"iam PassRole\"]\nescalation_policy_arns = [\"PowerUserAccess\"]\n"
        );
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("kftenant.toml:9:1: `iam PassRole` is not a valid IAM action"),
            "{e:?}"
        );
        assert!(e[1].starts_with("kftenant.toml:10:1: `PowerUserAccess` in escalation_policy_arns is not an ARN pattern"), "{e:?}");
        // The defaults are valid, and every entry has its reason.
        let g = Guardrails::default();
        assert!(
            g.escalation_actions
                .iter()
                .all(|a| crate::policy::action_syntax(a).is_none())
        );
        assert!(
            ESCALATION_ACTIONS
                .iter()
                .chain(ESCALATION_POLICIES)
                .all(|(_, why)| !why.is_empty())
        );
        assert_eq!(
            g.escalation_policy_arns[0],
            "arn:*:iam::aws:policy/PowerUserAccess"
        );
        // Entries are not listed twice.
        let mut names: Vec<&str> = ESCALATION_ACTIONS.iter().map(|(a, _)| *a).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ESCALATION_ACTIONS.len());
    }

    #[test]
    fn offsets_map_to_lines() {
        assert_eq!(offset_to_pos("ab\ncd", 4), Pos::new(2, 2));
        assert_eq!(names::partition_of("cn-north-1"), "aws-cn");
    }
}
