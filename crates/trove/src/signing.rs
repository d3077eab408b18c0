//! Self-authenticating URLs for LFS transfers. The Hugging Face client sends neither the token
//! nor the batch response's headers on upload PUTs (hub-api.md E25), so each href carries an
//! expiry and an HMAC-SHA256 over everything it grants, keyed by a per-installation secret.

use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Write;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

pub struct UrlSigner {
    key: Vec<u8>,
}

impl UrlSigner {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// Loads `<data>/secret.key`, creating it (32 random bytes, mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("secret.key");
        match std::fs::read(&path) {
            Ok(key) if key.len() >= 32 => return Ok(Self::new(key)),
            Ok(_) => anyhow::bail!(
                "{} is too short; delete it to make a new one",
                path.display()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        }
        let key: [u8; 32] = rand::random();
        let mut file = create_private_file(&path)?;
        file.write_all(&key)?;
        file.sync_all()?;
        Ok(Self::new(key.to_vec()))
    }

    fn mac(&self, fields: &[&str], expires: u64) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        for field in fields {
            // Length-prefix every field so no two field lists produce the same input.
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field.as_bytes());
        }
        mac.update(&expires.to_be_bytes());
        mac
    }

    /// Hex signature over `fields` valid until `expires` (unix seconds).
    pub fn sign(&self, fields: &[&str], expires: u64) -> String {
        hex::encode(self.mac(fields, expires).finalize().into_bytes())
    }

    /// Constant-time check of a signature, refusing expired ones.
    pub fn verify(&self, fields: &[&str], expires: u64, signature: &str, now: u64) -> bool {
        if now > expires {
            return false;
        }
        let Ok(sig) = hex::decode(signature) else {
            return false;
        };
        self.mac(fields, expires).verify_slice(&sig).is_ok()
    }
}

/// Creates a new file readable only by its owner (it holds a secret).
pub fn create_private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_every_field_and_expire() {
        let signer = UrlSigner::new(vec![7; 32]);
        let sig = signer.sign(&["upload", "abc", "12"], 100);
        assert!(signer.verify(&["upload", "abc", "12"], 100, &sig, 50));
        assert!(!signer.verify(&["upload", "abc", "13"], 100, &sig, 50));
        assert!(!signer.verify(&["upload", "ab", "c12"], 100, &sig, 50));
        assert!(!signer.verify(&["upload", "abc", "12"], 101, &sig, 50));
        assert!(!signer.verify(&["upload", "abc", "12"], 100, &sig, 101));
        assert!(!signer.verify(&["upload", "abc", "12"], 100, "zz", 50));
    }

    #[test]
    fn the_key_is_created_once_with_private_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let a = UrlSigner::load_or_create(dir.path()).expect("create");
        let b = UrlSigner::load_or_create(dir.path()).expect("load");
        assert_eq!(a.sign(&["x"], 1), b.sign(&["x"], 1));
        let mode = std::fs::metadata(dir.path().join("secret.key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
