//! [`KeyRing`]: every published signing key; the first key of each algorithm signs for it.
//!
//! Legate may sign with two algorithms at once: ES256 by default, and RS256 for relying
//! parties that accept only RSA (Microsoft Entra). The ring holds keys in order; for each
//! [`SigningAlg`] the first key of that algorithm is its *signer*, and every other key is
//! retired but stays published in the JWKS.
//!
//! Rotation: [`KeyRing::rotate`] puts a new key first, so it signs for its algorithm from
//! then on; the previous signer of that algorithm stays published until every token it
//! signed has expired (at most [`crate::MAX_TOKEN_LIFETIME_SECS`] after it was retired),
//! then the operator removes it.

use serde_json::{Value, json};

use crate::error::KeyRingError;
use crate::key::{SigningAlg, SigningKey};

/// The published keys, in order, with distinct `kid`s; never empty.
#[derive(Debug, Clone)]
pub struct KeyRing {
    /// The first key.
    first: SigningKey,
    /// The other keys, in order.
    rest: Vec<SigningKey>,
}

impl KeyRing {
    /// A ring with one key, which signs for its algorithm.
    #[must_use]
    pub fn new(active: SigningKey) -> Self {
        Self {
            first: active,
            rest: Vec::new(),
        }
    }

    /// A ring with `active` first, then `retired` in order. Each key that is the first of
    /// its algorithm signs for that algorithm; the others are retired but published.
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
            ring.rest.push(key);
        }
        Ok(ring)
    }

    /// A ring from keys in configuration order (see [`KeyRing::with_retired`]).
    ///
    /// # Errors
    ///
    /// [`KeyRingError::Empty`] for no key, [`KeyRingError::DuplicateKid`] if two keys
    /// share a `kid`.
    pub fn from_keys(keys: Vec<SigningKey>) -> Result<Self, KeyRingError> {
        let mut iter = keys.into_iter();
        let active = iter.next().ok_or(KeyRingError::Empty)?;
        Self::with_retired(active, iter.collect())
    }

    /// The first key of the ring: the signer for its algorithm.
    #[must_use]
    pub fn active(&self) -> &SigningKey {
        &self.first
    }

    /// The key that signs tokens of `alg`: the first key of that algorithm, if any.
    #[must_use]
    pub fn signer(&self, alg: SigningAlg) -> Option<&SigningKey> {
        self.keys().find(|k| k.alg() == alg)
    }

    /// The retired keys (published, signing for nothing), in ring order.
    #[must_use]
    pub fn retired(&self) -> Vec<&SigningKey> {
        self.keys().filter(|k| !self.is_signer(k)).collect()
    }

    /// The published key with this `kid`, signer or retired.
    #[must_use]
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys().find(|k| k.kid() == kid)
    }

    /// All published keys, in ring order.
    pub fn keys(&self) -> impl Iterator<Item = &SigningKey> {
        std::iter::once(&self.first).chain(&self.rest)
    }

    /// Makes `new_active` the signer for its algorithm: it goes first; the previous signer
    /// of that algorithm is retired and stays published.
    ///
    /// # Errors
    ///
    /// [`KeyRingError::DuplicateKid`] if `new_active`'s `kid` is already in the ring; the
    /// ring is then unchanged.
    pub fn rotate(&mut self, new_active: SigningKey) -> Result<(), KeyRingError> {
        self.check_new_kid(new_active.kid())?;
        let old = std::mem::replace(&mut self.first, new_active);
        self.rest.insert(0, old);
        Ok(())
    }

    /// Stops publishing a retired key, once no unexpired token it signed remains.
    ///
    /// Returns the removed key, or `None` if no retired key has this `kid` (a signer
    /// cannot be removed).
    pub fn remove_retired(&mut self, kid: &str) -> Option<SigningKey> {
        let pos = self
            .rest
            .iter()
            .position(|k| k.kid() == kid && !self.is_signer(k))?;
        Some(self.rest.remove(pos))
    }

    /// The algorithms of the published keys, without repeats, in ring order.
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

    /// The JWK set to publish: `{"keys": [...]}`, every key, in ring order.
    #[must_use]
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.keys().map(SigningKey::public_jwk).collect();
        json!({ "keys": keys })
    }

    /// Whether `key` is the signer for its algorithm.
    fn is_signer(&self, key: &SigningKey) -> bool {
        self.signer(key.alg()).is_some_and(|s| s.kid() == key.kid())
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
    fn jwks_lists_every_key_in_ring_order() {
        let ring = KeyRing::with_retired(
            key(SigningAlg::Es256, "new"),
            vec![key(SigningAlg::Rs256, "rsa"), key(SigningAlg::Es256, "old")],
        )
        .unwrap();
        assert_eq!(kids(&ring.jwks()), ["new", "rsa", "old"]);
        assert_eq!(ring.algs(), [SigningAlg::Es256, SigningAlg::Rs256]);
        assert_eq!(ring.get("rsa").unwrap().alg(), SigningAlg::Rs256);
        assert!(ring.get("nope").is_none());
    }

    #[test]
    fn the_first_key_of_each_algorithm_signs_for_it() {
        let ring = KeyRing::from_keys(vec![
            key(SigningAlg::Es256, "ec-1"),
            key(SigningAlg::Es256, "ec-0"),
            key(SigningAlg::Rs256, "rsa-1"),
            key(SigningAlg::Rs256, "rsa-0"),
        ])
        .unwrap();
        assert_eq!(ring.signer(SigningAlg::Es256).unwrap().kid(), "ec-1");
        assert_eq!(ring.signer(SigningAlg::Rs256).unwrap().kid(), "rsa-1");
        let retired: Vec<&str> = ring.retired().iter().map(|k| k.kid()).collect();
        assert_eq!(retired, ["ec-0", "rsa-0"]);

        let ec_only = KeyRing::new(key(SigningAlg::Es256, "ec"));
        assert!(ec_only.signer(SigningAlg::Rs256).is_none());
        assert_eq!(
            KeyRing::from_keys(Vec::new()).unwrap_err(),
            KeyRingError::Empty
        );
    }

    #[test]
    fn rotating_one_algorithm_keeps_the_other_signer() {
        let mut ring = KeyRing::from_keys(vec![
            key(SigningAlg::Es256, "ec-1"),
            key(SigningAlg::Rs256, "rsa-1"),
        ])
        .unwrap();
        ring.rotate(key(SigningAlg::Rs256, "rsa-2")).unwrap();
        assert_eq!(ring.signer(SigningAlg::Rs256).unwrap().kid(), "rsa-2");
        assert_eq!(ring.signer(SigningAlg::Es256).unwrap().kid(), "ec-1");
        assert_eq!(kids(&ring.jwks()), ["rsa-2", "ec-1", "rsa-1"]);
        assert!(
            ring.remove_retired("ec-1").is_none(),
            "a signer is not removable"
        );
        assert_eq!(ring.remove_retired("rsa-1").unwrap().kid(), "rsa-1");
        assert_eq!(kids(&ring.jwks()), ["rsa-2", "ec-1"]);
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
