//! Commit signature verification: [`super::GitSource::sync_verified`] takes a
//! commit only when git's SSH signature on it (`git config gpg.format ssh`,
//! `git commit -S`) was made by a key in an allowed-signers file, as Flux's
//! `GitRepository.spec.verify` does. (Not yet a `kftenant run` option.)
//!
//! FILE has the format of git's `gpg.ssh.allowedSignersFile` (OpenSSH
//! `allowed_signers`): `principals [options] key-type base64-key [comment]`
//! per line, `#` comments. The principals only name the signer in logs; any
//! listed key is trusted for the whole repository. Supported keys: Ed25519
//! and ECDSA (P-256); OpenPGP signatures are refused with a message saying so.
//!
//! `ssh-key` (RustCrypto) parses and checks the `SSHSIG` format; git2 cuts a
//! commit into its signature and the signed bytes.

use ssh_key::{HashAlg, PublicKey, SshSig};
use std::path::Path;

/// The SSHSIG namespace git signs commits in.
const NAMESPACE: &str = "git";

/// Why a commit was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The commit carries no signature.
    Unsigned,
    /// Signed with OpenPGP, or a signature that is not SSH's or does not parse.
    Unsupported(String),
    /// Signed by a key that is not in the allowed-signers file (its SHA-256 fingerprint).
    UnknownKey(String),
    /// Signed in the name of an allowed key, but the signature does not
    /// match the commit (altered after signing, or forged).
    BadSignature {
        /// The principals of the allowed key.
        signer: String,
        /// What the check said.
        error: String,
    },
}

impl Refusal {
    /// A stable label for metrics: `unsigned`, `unsupported`, `unknown_key`, `bad_signature`.
    pub fn label(&self) -> &'static str {
        match self {
            Refusal::Unsigned => "unsigned",
            Refusal::Unsupported(_) => "unsupported",
            Refusal::UnknownKey(_) => "unknown_key",
            Refusal::BadSignature { .. } => "bad_signature",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsigned => write!(f, "the commit is not signed"),
            Refusal::Unsupported(why) => write!(f, "{why}"),
            Refusal::UnknownKey(fingerprint) => write!(
                f,
                "signed by key {fingerprint}, which is not an allowed signer"
            ),
            Refusal::BadSignature { signer, error } => {
                write!(f, "bad signature by {signer}: {error}")
            }
        }
    }
}

/// Keys allowed to sign the commits kftenant applies.
#[derive(Debug, Clone)]
pub struct AllowedSigners {
    keys: Vec<(String, PublicKey)>,
}

impl AllowedSigners {
    /// Reads an allowed-signers file; every bad line is an error `file:line: message`.
    pub fn load(path: &Path) -> Result<AllowedSigners, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        AllowedSigners::parse(&text, &path.display().to_string())
    }

    /// Parses the text of an allowed-signers file named `origin` (for messages).
    pub fn parse(text: &str, origin: &str) -> Result<AllowedSigners, String> {
        let mut keys = Vec::new();
        let mut errors = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let principals = words[0].to_string();
            // Options (`namespaces="git"`, `valid-after=...`) come before the key.
            let key = words
                .iter()
                .position(|w| {
                    w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-")
                })
                .and_then(|at| words.get(at..at + 2))
                .map(|kw| kw.join(" "));
            match key.as_deref().map(PublicKey::from_openssh) {
                Some(Ok(k)) => keys.push((principals, k)),
                Some(Err(e)) => errors.push(format!("{origin}:{}: bad public key: {e}", i + 1)),
                None => errors.push(format!(
                    "{origin}:{}: no public key (expected `principals [options] key-type base64-key`)",
                    i + 1
                )),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("\n"));
        }
        if keys.is_empty() {
            return Err(format!(
                "{origin}: no allowed signers: every commit would be refused"
            ));
        }
        Ok(AllowedSigners { keys })
    }

    /// Checks the signature of commit `oid`; returns the signer's principals.
    pub fn verify_commit(
        &self,
        repo: &git2::Repository,
        oid: git2::Oid,
    ) -> Result<String, Refusal> {
        let (signature, signed) = repo
            .extract_signature(&oid, None)
            .map_err(|_| Refusal::Unsigned)?;
        let signature = signature
            .as_str()
            .ok_or_else(|| Refusal::Unsupported("the commit's signature is not text".into()))?;
        if signature.contains("BEGIN PGP SIGNATURE") {
            return Err(Refusal::Unsupported(
                "the commit has an OpenPGP signature; only SSH signatures are verified".into(),
            ));
        }
        let sig = SshSig::from_pem(signature).map_err(|e| {
            Refusal::Unsupported(format!("the commit's signature does not parse: {e}"))
        })?;
        let Some((who, key)) = self
            .keys
            .iter()
            .find(|(_, k)| k.key_data() == sig.public_key())
        else {
            return Err(Refusal::UnknownKey(
                sig.public_key().fingerprint(HashAlg::Sha256).to_string(),
            ));
        };
        key.verify(NAMESPACE, &signed, &sig)
            .map_err(|e| Refusal::BadSignature {
                signer: who.clone(),
                error: e.to_string(),
            })?;
        Ok(who.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::git::{GitSource, SourceError};
    use std::process::Command;

    fn run(dir: &Path, program: &str, args: &[&str]) {
        let out = Command::new(program)
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("{program} (install it): {e}"));
        assert!(out.status.success(), "{program} {args:?}: {out:?}");
    }

    /// A new Ed25519 key pair made by `ssh-keygen`; returns (private key path, public key line).
    fn keypair(dir: &Path, name: &str) -> (String, String) {
        let key = dir.join(name);
        run(
            dir,
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                name,
                "-f",
                key.to_str().unwrap(),
            ],
        );
        let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
        (key.display().to_string(), public.trim().to_string())
    }

    /// A commit by git itself, SSH-signed with `key` or unsigned.
    fn commit(repo: &Path, content: &str, key: Option<&str>) {
        std::fs::write(repo.join("a.txt"), content).unwrap();
        run(repo, "git", &["add", "a.txt"]);
        let mut args = vec![
            "-c",
            "user.email=t@e",
            "-c",
            "user.name=t",
            "-c",
            "gpg.format=ssh",
        ];
        let signing = key.map(|k| format!("user.signingkey={k}"));
        if let Some(s) = &signing {
            args.extend(["-c", s.as_str()]);
        }
        args.extend(["commit", "-q", "-m", content]);
        if signing.is_some() {
            args.push("-S");
        }
        run(repo, "git", &args);
    }

    #[test]
    fn only_commits_signed_by_an_allowed_key_are_checked_out() {
        let keys = tempfile::tempdir().unwrap();
        let (alice, alice_pub) = keypair(keys.path(), "alice");
        let (mallory, _) = keypair(keys.path(), "mallory");
        let signers =
            AllowedSigners::parse(&format!("alice@example.com {alice_pub}\n"), "signers").unwrap();
        let remote = tempfile::tempdir().unwrap();
        run(remote.path(), "git", &["init", "-q", "-b", "main"]);
        commit(remote.path(), "1", Some(&alice));
        let cache = tempfile::tempdir().unwrap();
        let src = GitSource::local(remote.path(), cache.path());
        let good = src.sync_verified(Some(&signers)).unwrap();
        let read = || std::fs::read_to_string(good.root.join("a.txt")).unwrap();
        assert_eq!(read(), "1");

        for (content, key, why) in [
            ("2", None, "the commit is not signed"),
            (
                "3",
                Some(mallory.as_str()),
                "which is not an allowed signer",
            ),
        ] {
            commit(remote.path(), content, key);
            match src.sync_verified(Some(&signers)) {
                Err(SourceError::Unverified { reason, .. }) => {
                    assert!(reason.to_string().contains(why), "{reason}")
                }
                other => panic!("commit {content} not refused: {other:?}"),
            }
            assert_eq!(read(), "1", "the last good checkout stays");
        }
        // Without verification the same head is taken; signed again, it is verified.
        assert_eq!(
            std::fs::read_to_string(src.sync().unwrap().root.join("a.txt")).unwrap(),
            "3"
        );
        commit(remote.path(), "4", Some(&alice));
        let next = src.sync_verified(Some(&signers)).unwrap();
        assert_ne!(next.commit, good.commit);
        assert_eq!(read(), "4");

        // Alice's signature moved onto other content: the key is allowed, the signature is bad.
        let head = Command::new("git")
            .args(["cat-file", "commit", "HEAD"])
            .current_dir(remote.path())
            .output()
            .unwrap()
            .stdout;
        let forged = String::from_utf8(head)
            .unwrap()
            .replace("\n\n4\n", "\n\nforged\n");
        std::fs::write(keys.path().join("forged"), forged).unwrap();
        let out = Command::new("git")
            .args(["hash-object", "-t", "commit", "-w"])
            .arg(keys.path().join("forged"))
            .current_dir(remote.path())
            .output()
            .unwrap();
        let id = String::from_utf8(out.stdout).unwrap();
        run(
            remote.path(),
            "git",
            &["update-ref", "refs/heads/main", id.trim()],
        );
        match src.sync_verified(Some(&signers)) {
            Err(SourceError::Unverified { reason, .. }) => {
                assert_eq!(reason.label(), "bad_signature");
                assert!(
                    reason
                        .to_string()
                        .starts_with("bad signature by alice@example.com"),
                    "{reason}"
                )
            }
            other => panic!("forged commit not refused: {other:?}"),
        }
        assert_eq!(read(), "4");
    }

    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAID/vAOL+yNFrUgD4MnBw/Z9u4oUSgVV67oYgNIM6c/gU";

    #[test]
    fn allowed_signers_lines_with_options_and_comments() {
        let text = format!(
            "# platform team\nalice@example.com {ED25519} alice\nbob@example.com,ci namespaces=\"git\" {ED25519}\n"
        );
        let a = AllowedSigners::parse(&text, "signers").unwrap();
        assert_eq!(a.keys.len(), 2);
        assert_eq!(a.keys[1].0, "bob@example.com,ci");
    }

    #[test]
    fn bad_lines_are_reported_with_their_location() {
        let text = format!("alice {ED25519}\nbob\ncarol ssh-ed25519 AAAAnotbase64\n");
        let e = AllowedSigners::parse(&text, "signers").unwrap_err();
        assert!(e.starts_with("signers:2: no public key"), "{e}");
        assert!(e.contains("\nsigners:3: bad public key"), "{e}");
        let e = AllowedSigners::parse("# nobody\n", "signers").unwrap_err();
        assert!(e.contains("no allowed signers"), "{e}");
    }
}
