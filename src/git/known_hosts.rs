//! known_hosts: whether an SSH server's host key is the one the operator
//! wrote down, as OpenSSH's `ssh` decides it. `ssh-key` parses the file (host
//! patterns, hashed names, markers, keys); matching a name against patterns
//! is OpenSSH's logic, kept here.

use crate::names::glob_match;
use hmac::{Hmac, Mac};
use ssh_key::known_hosts::{HostPatterns, KnownHosts, Marker};
use std::path::Path;

/// The name OpenSSH looks a server up by in known_hosts: `host` on port 22,
/// `[host]:port` on any other, in lower case.
pub(super) fn known_hosts_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if port == 22 {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

/// What a known_hosts file says of a server's host key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HostKeyStatus {
    /// A line for the server has this key.
    Known,
    /// Lines for the server exist, none with this key: the key changed, or
    /// this is another machine.
    Changed,
    /// No line for the server.
    Unknown,
    /// A `@revoked` line for the server has this key (whatever else says).
    Revoked,
}

/// Looks `name` (from [`known_hosts_name`]) up in an OpenSSH known_hosts file
/// with `key`, the host key in SSH wire form. See [`host_key_status`].
pub(super) fn known_host(
    known_hosts: &Path,
    name: &str,
    key: &[u8],
) -> std::io::Result<HostKeyStatus> {
    Ok(host_key_status(
        &std::fs::read_to_string(known_hosts)?,
        name,
        key,
    ))
}

/// As OpenSSH's `ssh` reads known_hosts: comma-separated host patterns with
/// `*` and `?` where a matching `!pattern` rules the line out, hashed names
/// (`|1|salt|hash`, written by `HashKnownHosts yes` and `ssh-keygen -H`), and
/// `@revoked` lines. `@cert-authority` lines are skipped (libgit2 never shows
/// a host certificate), as are lines that do not parse (an unknown marker, a
/// line without a key).
pub(super) fn host_key_status(known_hosts: &str, name: &str, key: &[u8]) -> HostKeyStatus {
    let mut status = HostKeyStatus::Unknown;
    for entry in KnownHosts::new(known_hosts).filter_map(Result::ok) {
        let revoked = match entry.marker() {
            None => false,
            Some(Marker::Revoked) => true,
            Some(_) => continue,
        };
        if !host_matches(entry.host_patterns(), name) {
            continue;
        }
        let same_key = entry.public_key().to_bytes().ok().as_deref() == Some(key);
        match (revoked, same_key) {
            (true, true) => return HostKeyStatus::Revoked,
            (true, false) => {}
            (false, true) => status = HostKeyStatus::Known,
            (false, false) if status == HostKeyStatus::Unknown => status = HostKeyStatus::Changed,
            (false, false) => {}
        }
    }
    status
}

/// OpenSSH's `match_hostname`: one hashed name, or patterns (compared in
/// lower case) of which one must match and no negated one may.
fn host_matches(hosts: &HostPatterns, name: &str) -> bool {
    match hosts {
        HostPatterns::HashedName { salt, hash } => {
            let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(salt) else {
                return false;
            };
            mac.update(name.as_bytes());
            mac.verify_slice(hash).is_ok()
        }
        HostPatterns::Patterns(patterns) => {
            let mut matched = false;
            for pattern in patterns.iter().map(|p| p.to_ascii_lowercase()) {
                match pattern.strip_prefix('!') {
                    Some(negated) if glob_match(negated, name) => return false,
                    Some(_) => {}
                    None => matched |= glob_match(&pattern, name),
                }
            }
            matched
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_name_brackets_only_other_ports() {
        assert_eq!(known_hosts_name("GitHub.com", 22), "github.com");
        assert_eq!(known_hosts_name("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(known_hosts_name("::1", 2222), "[::1]:2222");
    }

    /// Two ed25519 host keys (from ssh-keygen), base64 of the wire form.
    const KEY_A: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIFFbQsltbqOUHlJKiXtceGKVHwmWNpeGMk8CD/RsGGZH";
    const KEY_B: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIMp6pph9/TnOY4z5w/xSKvggSM0KJdA9YeXFI0I1yK9u";

    /// The SSH wire form of a base64 ed25519 key, as libgit2 hands it over.
    fn key_bytes(key: &str) -> Vec<u8> {
        ssh_key::PublicKey::from_openssh(&format!("ssh-ed25519 {key}"))
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    fn status(known_hosts: &str, name: &str, key: &str) -> HostKeyStatus {
        host_key_status(known_hosts, name, &key_bytes(key))
    }

    #[test]
    fn host_key_lookup_keys_by_host_and_port() {
        use HostKeyStatus::*;
        let file = format!(
            "# comment\n\n[127.0.0.1]:2222 ssh-ed25519 {KEY_A} test\n\
             127.0.0.1 ssh-ed25519 {KEY_B}\n"
        );
        assert_eq!(status(&file, "[127.0.0.1]:2222", KEY_A), Known);
        assert_eq!(status(&file, "[127.0.0.1]:2222", KEY_B), Changed);
        // The port-22 entry says nothing of other ports, and the other way round.
        assert_eq!(status(&file, "[127.0.0.1]:2223", KEY_B), Unknown);
        assert_eq!(status(&file, "127.0.0.1", KEY_B), Known);
        assert_eq!(status(&file, "127.0.0.1", KEY_A), Changed);
        assert_eq!(status(&file, "[127.0.0.2]:2222", KEY_A), Unknown);
        assert_eq!(status("", "127.0.0.1", KEY_A), Unknown);
    }

    #[test]
    fn host_key_lookup_takes_lists_wildcards_negation_and_markers() {
        use HostKeyStatus::*;
        let file = format!(
            "git.example.com,Git.Other.COM ssh-ed25519 {KEY_A}\n\
             *.corp.example,!evil.corp.example ssh-ed25519 {KEY_A}\n\
             [gi?.example.org]:* ssh-ed25519 {KEY_A}\n\
             @cert-authority * ssh-ed25519 {KEY_B}\n\
             @revoked old.example.com ssh-ed25519 {KEY_B}\n\
             old.example.com ssh-ed25519 {KEY_B}\n\
             @future * ssh-ed25519 {KEY_B}\n\
             broken-line-without-key\n"
        );
        assert_eq!(status(&file, "git.other.com", KEY_A), Known);
        assert_eq!(status(&file, "a.b.corp.example", KEY_A), Known);
        assert_eq!(status(&file, "evil.corp.example", KEY_A), Unknown);
        assert_eq!(status(&file, "[git.example.org]:2222", KEY_A), Known);
        assert_eq!(status(&file, "git.example.org", KEY_A), Unknown);
        // A certificate authority's key is not a host key.
        assert_eq!(status(&file, "anything.example", KEY_B), Unknown);
        assert_eq!(status(&file, "old.example.com", KEY_B), Revoked);
    }

    #[test]
    fn host_key_lookup_matches_names_hashed_by_ssh_keygen() {
        use HostKeyStatus::*;
        // `ssh-keygen -H` of a line for [git.example.com]:2222 (OpenSSH 9.2).
        let file = format!(
            "|1|hjng7qCH6zfv/ivNYjddfulAWWQ=|hQ+OTEAInBWN2Ultg2ZrcVvJRq8= ssh-ed25519 {KEY_A}\n"
        );
        assert_eq!(status(&file, "[git.example.com]:2222", KEY_A), Known);
        assert_eq!(status(&file, "[git.example.com]:2222", KEY_B), Changed);
        assert_eq!(status(&file, "git.example.com", KEY_A), Unknown);
        assert_eq!(
            status("|1|garbage ssh-ed25519 AAAA\n", "git.example.com", KEY_A),
            Unknown
        );
    }

    #[test]
    fn wildcards_match_like_openssh() {
        for (pattern, text, expected) in [
            ("*", "", true),
            ("*", "abc", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*.example.com", "example.com", false),
            ("*b*b*", "abcbd", true),
            ("", "a", false),
        ] {
            assert_eq!(glob_match(pattern, text), expected, "{pattern} ~ {text}");
        }
    }
}
