//! Signed checkpoints of the audit log's head.
//!
//! The hash chain proves the log consistent with itself, so someone who can
//! write the audit folder can rewrite every record, recompute every hash and
//! `HEAD`, and the chain still verifies. A checkpoint states "record N had
//! hash H at time T", signed with an Ed25519 key kept away from the server.
//! Checkpoints taken regularly and stored elsewhere (another machine, a
//! ticket, an e-mail to the data owner) anchor the log: a log rewritten after
//! a checkpoint no longer holds record N with hash H.
//!
//! Files are text: the secret key file holds the 32-byte seed in hex (mode
//! 0600), the public key file the 32-byte public key in hex, a checkpoint
//! is a JSON object.

use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::{Verified, verify_through};
use crate::error::{EngineError, Result};

/// What a signature covers, so it cannot be replayed as another kind of statement.
const DOMAIN: &str = "tsunagu audit checkpoint v1";

/// A signed statement of the audit log's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Sequence number of the newest record (0 for an empty log).
    pub seq: u64,
    /// Its hash.
    pub hash: String,
    /// When the checkpoint was taken (UTC, RFC 3339).
    pub time: String,
    /// Public key that signed it (hex), for information: verification uses
    /// the public key given separately.
    pub public_key: String,
    /// Ed25519 signature (hex) of the domain, seq, hash and time.
    pub signature: String,
}

fn message(seq: u64, hash: &str, time: &str) -> Vec<u8> {
    format!("{DOMAIN}\nseq {seq}\nhash {hash}\ntime {time}\n").into_bytes()
}

fn err(m: String) -> EngineError {
    EngineError::Audit(m)
}

fn read_hex<const N: usize>(path: &Path, what: &str) -> Result<[u8; N]> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| err(format!("{}: cannot read the {what}: {e}", path.display())))?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| err(format!("{}: not a {what} (hex expected)", path.display())))?;
    bytes.try_into().map_err(|_| {
        err(format!(
            "{}: not a {what} ({N} bytes of hex expected)",
            path.display()
        ))
    })
}

/// Writes a new key pair: the secret key to `out` (mode 0600, never
/// overwritten) and the public key to `out` + `.pub`; returns the public key in hex.
pub fn keygen(out: &Path) -> Result<String> {
    use std::io::Write;
    let key = SigningKey::from_bytes(&rand::random::<[u8; 32]>());
    let public = hex::encode(key.verifying_key().to_bytes());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let io = |p: &Path, e: std::io::Error| err(format!("{}: {e}", p.display()));
    let mut f = opts.open(out).map_err(|e| io(out, e))?;
    f.write_all(format!("{}\n", hex::encode(key.to_bytes())).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| io(out, e))?;
    let pub_path = public_key_path(out);
    std::fs::write(&pub_path, format!("{public}\n")).map_err(|e| io(&pub_path, e))?;
    Ok(public)
}

/// Where [`keygen`] writes the public key of the secret key at `secret`.
pub fn public_key_path(secret: &Path) -> std::path::PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    name.into()
}

/// Reads a secret key written by [`keygen`].
pub fn read_signing_key(path: &Path) -> Result<SigningKey> {
    Ok(SigningKey::from_bytes(&read_hex::<32>(path, "secret key")?))
}

/// Reads a public key written by [`keygen`].
pub fn read_public_key(path: &Path) -> Result<VerifyingKey> {
    VerifyingKey::from_bytes(&read_hex::<32>(path, "public key")?)
        .map_err(|_| err(format!("{}: not an Ed25519 public key", path.display())))
}

/// Verifies the log in `dir` and signs its head.
pub fn checkpoint(dir: &Path, key: &SigningKey) -> Result<Checkpoint> {
    let (verified, _) = verify_through(dir, None)?;
    let (seq, hash) = verified.last;
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let signature = key.sign(&message(seq, &hash, &time));
    Ok(Checkpoint {
        seq,
        hash,
        time,
        public_key: hex::encode(key.verifying_key().to_bytes()),
        signature: hex::encode(signature.to_bytes()),
    })
}

impl Checkpoint {
    /// Parses a checkpoint file.
    pub fn read(path: &Path) -> Result<Checkpoint> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| err(format!("{}: cannot read: {e}", path.display())))?;
        serde_json::from_str(&text)
            .map_err(|e| err(format!("{}: not a checkpoint: {e}", path.display())))
    }

    /// The checkpoint as a line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Checks the signature with `public`.
    pub fn check_signature(&self, public: &VerifyingKey) -> Result<()> {
        let bad = || {
            err(
                "the checkpoint's signature does not verify with this public key: \
                 the checkpoint was altered or signed with another key"
                    .into(),
            )
        };
        let bytes: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        public
            .verify(
                &message(self.seq, &self.hash, &self.time),
                &Signature::from_bytes(&bytes),
            )
            .map_err(|_| bad())
    }
}

/// Checks that the log in `dir` verifies and still holds the checkpointed
/// record with the checkpointed hash, the checkpoint being signed by `public`.
pub fn verify_checkpoint(
    dir: &Path,
    checkpoint: &Checkpoint,
    public: &VerifyingKey,
) -> Result<Verified> {
    checkpoint.check_signature(public)?;
    let (verified, hash) = verify_through(dir, Some(checkpoint.seq))?;
    match hash {
        None => Err(err(format!(
            "the log ends at record {} but the checkpoint of {} holds record {}: records were removed",
            verified.records, checkpoint.time, checkpoint.seq
        ))),
        Some(h) if h != checkpoint.hash => Err(err(format!(
            "record {} does not have the hash checkpointed at {}: the log was rewritten",
            checkpoint.seq, checkpoint.time
        ))),
        Some(_) => Ok(verified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditLog, Decision, Entry};

    #[test]
    fn a_checkpoint_verifies_until_the_log_is_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..3 {
            log.append(Entry::statement(
                "ana",
                "analyst",
                &format!("SELECT {i}"),
                Decision::Allowed,
                None,
            ))
            .unwrap();
        }
        let keyfile = dir.path().join("key");
        keygen(&keyfile).unwrap();
        let key = read_signing_key(&keyfile).unwrap();
        let public = read_public_key(&public_key_path(&keyfile)).unwrap();
        let cp = checkpoint(dir.path(), &key).unwrap();
        assert_eq!(cp.seq, 3);
        // Records appended later keep it valid.
        log.append(Entry::login("ana", Some("analyst"), "127.0.0.1:1", None))
            .unwrap();
        assert_eq!(
            verify_checkpoint(dir.path(), &cp, &public).unwrap().records,
            4
        );
        let mut forged = cp.clone();
        forged.seq = 2;
        assert!(
            verify_checkpoint(dir.path(), &forged, &public)
                .unwrap_err()
                .to_string()
                .contains("signature")
        );
        // A second key pair does not verify the first one's checkpoint.
        let other = dir.path().join("other");
        keygen(&other).unwrap();
        let other = read_public_key(&public_key_path(&other)).unwrap();
        assert!(verify_checkpoint(dir.path(), &cp, &other).is_err());
        assert!(
            keygen(&keyfile).is_err(),
            "an existing key is never overwritten"
        );
    }
}
