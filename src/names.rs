//! Names and ARNs: the rules AWS and Kubernetes put on the names kftenant
//! reads and renders, and the ARNs it builds from them.
//!
//! A leaf module: it knows no file format and no client. Every check returns
//! `None` when the name is fine, or what is wrong in words, so callers can put
//! the message at the place the name came from.

/// `None` when `s` is a DNS-1123 label (namespaces, Profiles); otherwise what is wrong.
pub fn check_dns_label(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("it is empty".into());
    }
    if s.len() > 63 {
        return Some(format!("it is {} characters, the limit is 63", s.len()));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Some("only lowercase letters, digits and `-` are allowed".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Some("it must start and end with a letter or digit".into());
    }
    None
}

/// `None` when `s` is a DNS-1123 subdomain (service account names, label prefixes).
pub fn check_dns_subdomain(s: &str) -> Option<String> {
    if s.len() > 253 {
        return Some("longer than 253 characters".into());
    }
    s.split('.').find_map(check_dns_label)
}

/// `None` when `s` only has characters IAM allows in role and policy names.
pub fn check_iam_name_chars(s: &str) -> Option<String> {
    s.chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+=,.@_-".contains(*c)))
        .map(|c| format!("`{c}` is not allowed in IAM names (letters, digits and +=,.@_- only)"))
}

/// Policy names (managed and inline): IAM characters, 1 to 128 of them.
pub fn check_policy_name(s: &str) -> Option<String> {
    if s.is_empty() || s.len() > 128 {
        return Some("must be 1 to 128 characters".into());
    }
    check_iam_name_chars(s)
}

/// IAM paths: `/` or `/segments/`, printable ASCII, at most 512 characters.
pub fn check_iam_path(p: &str) -> Option<String> {
    if p.len() > 512 || !p.starts_with('/') || !p.ends_with('/') || p.contains("//") {
        return Some(format!("role_path `{p}` is not an IAM path"));
    }
    if !p.chars().all(|c| ('\u{21}'..='\u{7e}').contains(&c)) {
        return Some(format!(
            "role_path `{p}` has characters outside printable ASCII"
        ));
    }
    None
}

/// `None` when `arn` is a well-formed IAM policy ARN.
pub fn check_policy_arn(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let bad = |why: &str| Some(format!("`{arn}` is not a valid IAM policy ARN: {why}"));
    if parts.len() != 6 || parts[0] != "arn" {
        return bad("expected arn:<partition>:iam::<account>:policy/<name>");
    }
    if !PARTITIONS.contains(&parts[1]) {
        return bad("unknown partition");
    }
    if parts[2] != "iam" {
        return bad("service must be `iam`");
    }
    if !parts[3].is_empty() {
        return bad("IAM ARNs have no region");
    }
    if parts[4] != "aws" && !is_account_id(parts[4]) {
        return bad("account must be 12 digits or `aws`");
    }
    let Some(rest) = parts[5].strip_prefix("policy/") else {
        return bad("resource must start with `policy/`");
    };
    let name = rest.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || check_policy_name(name).is_some() {
        return bad("bad policy name");
    }
    None
}

/// `None` when `key` is a Kubernetes label or annotation key (`[prefix/]name`).
pub fn check_label_key(key: &str) -> Option<String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(msg) = prefix.and_then(check_dns_subdomain) {
        return Some(format!("prefix is not a DNS subdomain: {msg}"));
    }
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    (!ok).then(|| "name must be 1 to 63 alphanumeric characters, `-`, `_` or `.`".to_string())
}

/// True for a 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.chars().all(|c| c.is_ascii_digit())
}

/// The AWS partitions kftenant knows.
pub const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// `aws`, `aws-cn` or `aws-us-gov`: the partition of `region`.
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

/// Where a role or policy lives: partition and account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account<'a> {
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: &'a str,
    /// The 12-digit account id.
    pub id: &'a str,
}

impl Account<'_> {
    /// `arn:<partition>:iam::<account>:role<path><name>`.
    pub fn role_arn(&self, path: &str, name: &str) -> String {
        format!("arn:{}:iam::{}:role{path}{name}", self.partition, self.id)
    }

    /// `arn:<partition>:iam::<account>:policy<path><name>`.
    pub fn policy_arn(&self, path: &str, name: &str) -> String {
        format!("arn:{}:iam::{}:policy{path}{name}", self.partition, self.id)
    }

    /// `arn:<partition>:iam::<account>:oidc-provider/<issuer>`.
    pub fn oidc_provider_arn(&self, issuer: &str) -> String {
        format!(
            "arn:{}:iam::{}:oidc-provider/{issuer}",
            self.partition, self.id
        )
    }
}

/// Matches `text` against a glob: `*` any run of characters, `?` any one.
/// The patterns of IAM (actions, policy ARNs in guardrails) and of OpenSSH
/// (known_hosts host names) both mean this.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_and_subdomains() {
        assert_eq!(check_dns_label("team-a"), None);
        assert!(check_dns_label("Team").is_some());
        assert!(check_dns_label("-a").is_some());
        assert!(check_dns_label(&"a".repeat(64)).is_some());
        assert_eq!(check_dns_subdomain("ml-pipeline.runner"), None);
        assert!(check_dns_subdomain("a..b").is_some());
    }

    #[test]
    fn policy_arns() {
        assert_eq!(
            check_policy_arn("arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess"),
            None
        );
        assert_eq!(
            check_policy_arn("arn:aws-cn:iam::123456789012:policy/team/x"),
            None
        );
        for bad in [
            "arn:aws:s3:::bucket",
            "arn:aws:iam:us-east-1:aws:policy/X",
            "arn:aws:iam::12:policy/X",
            "arn:aws:iam::aws:role/X",
            "arn:aws:iam::aws:policy/",
            "arn:oops:iam::aws:policy/X",
        ] {
            assert!(check_policy_arn(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn arns_follow_the_partition() {
        let a = Account {
            partition: partition_of("cn-north-1"),
            id: "123456789012",
        };
        assert_eq!(
            a.role_arn("/kftenant/", "r"),
            "arn:aws-cn:iam::123456789012:role/kftenant/r"
        );
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition_of("eu-west-1"), "aws");
    }

    #[test]
    fn label_keys() {
        assert_eq!(check_label_key("acme.example/team"), None);
        assert_eq!(check_label_key("team"), None);
        assert!(check_label_key("acme.example/").is_some());
        assert!(check_label_key("Bad_Prefix/x").is_some());
    }
}
