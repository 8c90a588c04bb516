//! [`KeyRing`]: the active signing key plus retired keys that stay published.
//!
//! Rotation: new tokens are signed by the active key only; a retired key stays in the
//! JWKS until every token it signed has expired (at most [`crate::MAX_TOKEN_LIFETIME_SECS`]
//! after it was retired), then the operator removes it.

use serde_json::{Value, json};

use crate::error::KeyRingError;
use crate::key::{SigningAlg, SigningKey};

/// The active key and the retired-but-published keys, with distinct `kid`s.
#[derive(Debug, Clone)]
pub struct KeyRing {
    active: SigningKey,
    retired: Vec<SigningKey>,
}

impl KeyRing {
    /// A ring with one key and nothing retired.
    #[must_use]
    pub const fn new(active: SigningKey) -> Self {
        Self {
            active,
            retired: Vec::new(),
        }
    }

    /// A ring with an active key and keys that are retired but still published.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::DuplicateKid`] if two keys share a `kid`.
    pub fn with_retired(
        active: SigningKey,
        retired: Vec<SigningKey>,
    ) -> Result<Self, KeyRingError> {
        let mut ring = Self::new(active);
        for key in retired {
            ring.check_new_kid(key.kid())?;
            ring.retired.push(key);
        }
        Ok(ring)
    }

    /// The key that signs new tokens.
    #[must_use]
    pub const fn active(&self) -> &SigningKey {
        &self.active
    }

    /// The retired keys, still published, most recently retired first.
    #[must_use]
    pub fn retired(&self) -> &[SigningKey] {
        &self.retired
    }

    /// The published key with this `kid`, active or retired.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys().find(|k| k.kid() == kid)
    }

    /// All published keys, active first.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.active).chain(&self.retired)
    }

    /// Makes `new_active` the signing key; the old active key becomes the most recently
    /// retired one and stays published.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::DuplicateKid`] if `new_active`'s `kid` is already in the ring; the
    /// ring is then unchanged.
    pub fn rotate(&mut self, new_active: SigningKey) -> Result<(), KeyRingError> {
        self.check_new_kid(new_active.kid())?;
        let old = std::mem::replace(&mut self.active, new_active);
        self.retired.insert(0, old);
        Ok(())
    }

    /// Stops publishing a retired key, once no unexpired token it signed remains.
    ///
    /// Returns the removed key, or `None` if no retired key has this `kid` (the active
    /// key cannot be removed).
    pub fn remove_retired(&mut self, kid: &str) -> Option<SigningKey> {
        let pos = self.retired.iter().position(|k| k.kid() == kid)?;
        Some(self.retired.remove(pos))
    }

    /// The algorithms of the published keys, without repeats, active key's first.
    #[must_use]
    pub fn algs(&self) -> Vec<SigningAlg> {
        let mut algs = Vec::with_capacity(2);
        for alg in self.keys().map(SigningKey::alg) {
            if !algs.contains(&alg) {
                algs.push(alg);
            }
        }
        algs
    }

    /// The JWK set to publish: `{"keys": [...]}`, active key first.
    #[must_use]
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.keys().map(SigningKey::public_jwk).collect();
        json!({ "keys": keys })
    }

    /// Refuses a `kid` already in the ring.
    fn check_new_kid(&self, kid: &str) -> Result<(), KeyRingError> {
        if self.get(kid).is_some() {
            return Err(KeyRingError::DuplicateKid(kid.to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(alg: SigningAlg, kid: &str) -> SigningKey {
        SigningKey::generate(alg, Some(kid.to_owned())).unwrap()
    }

    fn kids(jwks: &Value) -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn jwks_lists_active_first_then_retired() {
        let ring = KeyRing::with_retired(
            key(SigningAlg::Es256, "new"),
            vec![key(SigningAlg::Rs256, "old")],
        )
        .unwrap();
        assert_eq!(kids(&ring.jwks()), ["new", "old"]);
        assert_eq!(ring.algs(), [SigningAlg::Es256, SigningAlg::Rs256]);
        assert_eq!(ring.get("old").unwrap().alg(), SigningAlg::Rs256);
        assert!(ring.get("nope").is_none());
    }

    #[test]
    fn rotation_retires_the_old_key_and_keeps_it_published() {
        let mut ring = KeyRing::new(key(SigningAlg::Es256, "k1"));
        ring.rotate(key(SigningAlg::Es256, "k2")).unwrap();
        ring.rotate(key(SigningAlg::Es256, "k3")).unwrap();
        assert_eq!(ring.active().kid(), "k3");
        assert_eq!(kids(&ring.jwks()), ["k3", "k2", "k1"]);
        assert_eq!(ring.algs(), [SigningAlg::Es256]);

        assert_eq!(ring.remove_retired("k1").unwrap().kid(), "k1");
        assert!(
            ring.remove_retired("k3").is_none(),
            "active key is not removable"
        );
        assert_eq!(kids(&ring.jwks()), ["k3", "k2"]);
    }

    #[test]
    fn duplicate_kids_are_refused() {
        let err = KeyRing::with_retired(
            key(SigningAlg::Es256, "same"),
            vec![key(SigningAlg::Es256, "same")],
        )
        .unwrap_err();
        assert_eq!(err, KeyRingError::DuplicateKid("same".to_owned()));

        let mut ring = KeyRing::new(key(SigningAlg::Es256, "a"));
        let err = ring.rotate(key(SigningAlg::Es256, "a")).unwrap_err();
        assert_eq!(err.to_string(), "duplicate `kid` `a` in the key ring");
        assert_eq!(ring.active().kid(), "a");
        assert!(ring.retired().is_empty());
    }
}
