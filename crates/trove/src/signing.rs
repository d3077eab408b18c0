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

    /// The hub's key. An embedded hub (SQLite) keeps it in `<data>/secret.key`, made on its
    /// first start. A hub on PostgreSQL keeps it in the database ([`SHARED_KEY_NAME`]), so
    /// that every node signs and checks with the same key whatever its data dir: the first
    /// node stores the data dir's `secret.key` when it has one (a hub moved there by
    /// `trove migrate` keeps its key), else 32 new random bytes, and every node uses what
    /// is stored. No file is written on PostgreSQL.
    pub async fn load(db: &trove_db::Db, data_dir: &Path) -> anyhow::Result<Self> {
        if db.backend() != trove_db::Backend::Postgres {
            return Self::load_or_create(data_dir);
        }
        let candidate = match read_key_file(data_dir)? {
            Some(key) => key,
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        let key = db
            .shared_secret(SHARED_KEY_NAME, &candidate)
            .await
            .context("reading the hub's URL-signing key from the database")?;
        anyhow::ensure!(
            key.len() >= 32,
            "the URL-signing key stored in the database is too short ({} bytes)",
            key.len()
        );
        Ok(Self::new(key))
    }

    /// Loads `<data>/secret.key`, creating it (32 random bytes, mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(key) = read_key_file(data_dir)? {
            return Ok(Self::new(key));
        }
        let path = data_dir.join("secret.key");
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

/// The name of the URL-signing key among the database's shared secrets.
pub const SHARED_KEY_NAME: &str = "url-signing";

/// `<data>/secret.key` if it exists; an error if it is unreadable or shorter than 32 bytes.
pub fn read_key_file(data_dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    let path = data_dir.join("secret.key");
    match std::fs::read(&path) {
        Ok(key) if key.len() >= 32 => Ok(Some(key)),
        Ok(_) => anyhow::bail!(
            "{} is too short; delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
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
