//! Password hashing: bcrypt over the hex SHA-256 of the password, in Django's
//! `bcrypt_sha256$…` format. The pre-hash means no byte beyond bcrypt's 72-byte limit is ever
//! ignored, and hashes imported from a Django deployment verify as they are.

use std::sync::{Arc, OnceLock};

use aws_lc_rs::digest;

use super::hash_pool::{HashPool, Saturated};
use crate::domain::{Password, PasswordPolicy, Problems};

const PREFIX: &str = "bcrypt_sha256$";

/// Hashes and verifies passwords on the bounded [`HashPool`].
pub struct PasswordHasher {
    cost: u32,
    pool: HashPool,
    /// Verified against when the user does not exist, so that costs what a real check costs.
    /// Made lazily (hashing it at start-up would delay readiness by a whole bcrypt).
    dummy: Arc<OnceLock<String>>,
}

impl PasswordHasher {
    /// Hash jobs waiting for a thread.
    pub fn queue_depth(&self) -> usize {
        self.pool.queue_depth()
    }

    pub fn new(cost: u32, pool: HashPool) -> Self {
        Self {
            cost,
            pool,
            dummy: Arc::new(OnceLock::new()),
        }
    }

    pub async fn hash(&self, password: &Password) -> Result<String, Saturated> {
        let input = prehash(password.expose());
        let cost = self.cost;
        self.pool.run(move || hash_prehashed(&input, cost)).await
    }

    /// Checks `candidate` against `stored`, or against a dummy hash of the same cost when
    /// there is no stored hash (unknown user), so both cases take the same time.
    pub async fn verify(&self, candidate: &str, stored: Option<String>) -> Result<bool, Saturated> {
        let input = prehash(candidate);
        let (cost, dummy) = (self.cost, Arc::clone(&self.dummy));
        self.pool
            .run(move || match stored {
                Some(stored) => verify_prehashed(&input, &stored),
                None => {
                    let dummy = dummy.get_or_init(|| hash_prehashed("latchkey-dummy", cost));
                    let _ = verify_prehashed(&input, dummy);
                    false
                }
            })
            .await
    }

    /// Runs the password policy on the hashing pool. Its work is bounded, but it is CPU
    /// work all the same (the similarity check), so it stays off the async workers and
    /// queues behind the same limit as hashing.
    pub async fn check_policy(
        &self,
        policy: PasswordPolicy,
        raw: String,
        attributes: Vec<String>,
    ) -> Result<Result<Password, Problems>, Saturated> {
        self.pool
            .run(move || {
                let attributes: Vec<&str> = attributes.iter().map(String::as_str).collect();
                policy.parse(&raw, &attributes)
            })
            .await
    }

    /// Prepares the dummy hash in the background, so the first unknown-user login is not
    /// slower than the others.
    pub fn warm_up(&self) {
        let (cost, dummy, pool) = (self.cost, Arc::clone(&self.dummy), self.pool.clone());
        drop(tokio::spawn(async move {
            let _ = pool
                .run(move || {
                    dummy.get_or_init(|| hash_prehashed("latchkey-dummy", cost));
                })
                .await;
        }));
    }
}

/// Hashes on the calling thread, for the command line (no pool, no runtime).
pub fn hash_blocking(password: &Password, cost: u32) -> String {
    hash_prehashed(&prehash(password.expose()), cost)
}

fn prehash(password: &str) -> String {
    let digest = digest::digest(&digest::SHA256, password.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn hash_prehashed(input: &str, cost: u32) -> String {
    match bcrypt::hash(input, cost) {
        Ok(hash) => format!("{PREFIX}{hash}"),
        // Only an out-of-range cost fails, and the configuration rejects those.
        Err(e) => {
            log::error!(target: "latchkey::auth", "bcrypt failed: {e}");
            String::new()
        }
    }
}

/// A hash that is not ours (corrupt row, unknown scheme) never verifies.
fn verify_prehashed(input: &str, stored: &str) -> bool {
    stored
        .strip_prefix(PREFIX)
        .is_some_and(|hash| bcrypt::verify(input, hash).unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_passwords_are_not_truncated() {
        let base = "a".repeat(72);
        let hash = hash_prehashed(&prehash(&format!("{base}B")), 4);
        assert!(hash.starts_with("bcrypt_sha256$$2b$04$"));
        assert!(verify_prehashed(&prehash(&format!("{base}B")), &hash));
        assert!(!verify_prehashed(&prehash(&format!("{base}C")), &hash));
    }

    #[test]
    fn verifies_a_hash_made_by_django() {
        // Django's BCryptSHA256PasswordHasher algorithm (hexlify(sha256(pw)) fed to the Python
        // bcrypt package, cost 4) for the password "lètmein-please".
        let django = "bcrypt_sha256$$2b$04$M24ZLocacqQbfGrFbjUVSOb1QKCM20tNdT721txxG961g3E9ob6ju";
        assert!(verify_prehashed(&prehash("lètmein-please"), django));
        assert!(!verify_prehashed(&prehash("letmein-please"), django));
        assert!(!verify_prehashed(
            &prehash("x"),
            "pbkdf2_sha256$600000$salt$hash"
        ));
        assert!(!verify_prehashed(&prehash("x"), ""));
    }
}
