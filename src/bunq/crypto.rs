//! RSA-2048 keys and the PKCS#1 v1.5 / SHA-256 signatures bunq uses in both directions.
//!
//! * The client signs the exact request body bytes (the empty string for a GET) and sends the
//!   standard-base64 signature in `X-Bunq-Client-Signature`.
//! * bunq signs the exact response body bytes with its server key, which the client learns from
//!   `POST /installation`; the client verifies `X-Bunq-Server-Signature` before it acts on a
//!   response.
//!
//! Signing is always blinded (`sign_with_rng`): the `rsa` crate's plain `Signer` does not blind in
//! 0.9, and RUSTSEC-2023-0071 (Marvin) concerns unblinded private-key operations.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::{RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;
use zeroize::Zeroizing;

/// Key size bunq requires.
pub const KEY_BITS: usize = 2048;

/// Why a key or a signature was rejected. Carries no key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// Key generation failed (the OS random source is broken).
    #[error("could not generate an RSA-{KEY_BITS} key: {0}")]
    KeyGeneration(String),
    /// A PEM text did not hold a key of the expected kind.
    #[error("invalid {kind} PEM: {reason}")]
    InvalidPem {
        /// "private key" or "public key".
        kind: &'static str,
        /// The decoder's reason (never the key itself).
        reason: String,
    },
    /// The signature header was not valid base64 or not a signature of this key's size.
    #[error("signature is not valid base64 RSA signature")]
    MalformedSignature,
    /// The signature is well formed but does not match the bytes.
    #[error("signature does not match the body")]
    SignatureMismatch,
}

/// The client's RSA private key. `Debug` never prints it.
#[derive(Clone)]
pub struct PrivateKey {
    key: RsaPrivateKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

impl PrivateKey {
    /// Generates a fresh RSA-2048 key from the OS random source.
    pub fn generate() -> Result<Self, CryptoError> {
        let key = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS)
            .map_err(|err| CryptoError::KeyGeneration(err.to_string()))?;
        Ok(PrivateKey { key })
    }

    /// Reads a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`), the form the state file and the
    /// official SDKs store.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, CryptoError> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem).map_err(|err| CryptoError::InvalidPem {
            kind: "private key",
            reason: err.to_string(),
        })?;
        Ok(PrivateKey { key })
    }

    /// The key as PKCS#8 PEM, wiped from memory when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, CryptoError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|err| CryptoError::InvalidPem {
                kind: "private key",
                reason: err.to_string(),
            })
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.to_public_key(),
        }
    }

    /// Signs `body` (RSA PKCS#1 v1.5, SHA-256, blinded) and returns standard base64.
    pub fn sign(&self, body: &[u8]) -> String {
        let signing_key = SigningKey::<Sha256>::new(self.key.clone());
        let signature = signing_key.sign_with_rng(&mut rsa::rand_core::OsRng, body);
        STANDARD.encode(signature.to_bytes())
    }
}

/// An RSA public key: the client's (sent at installation) or bunq's server key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: RsaPublicKey,
}

impl PublicKey {
    /// Reads a SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`), the form bunq sends and
    /// expects. Windows line endings and surrounding whitespace are tolerated.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let normalized = pem.trim().replace("\r\n", "\n");
        let key = RsaPublicKey::from_public_key_pem(&normalized).map_err(|err| {
            CryptoError::InvalidPem {
                kind: "public key",
                reason: err.to_string(),
            }
        })?;
        Ok(PublicKey { key })
    }

    /// The key as `-----BEGIN PUBLIC KEY-----` PEM with LF line endings and a trailing newline.
    pub fn to_pem(&self) -> String {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_else(|err| unreachable!("an RSA public key always encodes as SPKI: {err}"))
    }

    /// Checks a standard-base64 signature over exactly `body`.
    pub fn verify(&self, body: &[u8], signature_base64: &str) -> Result<(), CryptoError> {
        let raw = STANDARD
            .decode(signature_base64.trim())
            .map_err(|_| CryptoError::MalformedSignature)?;
        if raw.len() != rsa::traits::PublicKeyParts::size(&self.key) {
            return Err(CryptoError::MalformedSignature);
        }
        let signature =
            Signature::try_from(raw.as_slice()).map_err(|_| CryptoError::MalformedSignature)?;
        VerifyingKey::<Sha256>::new(self.key.clone())
            .verify(body, &signature)
            .map_err(|_| CryptoError::SignatureMismatch)
    }
}

/// The one RSA key of the unit tests (generating one is slow in debug builds); tests that need
/// a client and a server key use it for both.
#[cfg(test)]
pub(crate) fn test_key() -> &'static PrivateKey {
    static KEY: std::sync::OnceLock<PrivateKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| PrivateKey::generate().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;
    use test_key as key;

    #[test]
    fn signature_verifies_over_the_exact_bytes_only() {
        let signature = key().sign(b"{\"ip\":\"1.2.3.4\"}");
        let public = key().public_key();
        assert_eq!(public.verify(b"{\"ip\":\"1.2.3.4\"}", &signature), Ok(()));
        assert_eq!(
            public.verify(b"{\"ip\": \"1.2.3.4\"}", &signature),
            Err(CryptoError::SignatureMismatch)
        );
    }

    #[test]
    fn empty_body_is_signed_too() {
        let signature = key().sign(b"");
        assert_eq!(key().public_key().verify(b"", &signature), Ok(()));
    }

    #[test]
    fn public_pem_uses_the_spki_label_bunq_expects() {
        let pem = key().public_key().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"));
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), key().public_key());
    }

    #[test]
    fn private_key_round_trips_through_pkcs8_pem() {
        let pem = key().to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let again = PrivateKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.public_key(), key().public_key());
    }

    #[test]
    fn garbage_signature_is_malformed_not_a_panic() {
        let public = key().public_key();
        assert_eq!(
            public.verify(b"x", "!!!"),
            Err(CryptoError::MalformedSignature)
        );
        assert_eq!(
            public.verify(b"x", "AAAA"),
            Err(CryptoError::MalformedSignature)
        );
    }

    #[test]
    fn debug_never_prints_the_private_key() {
        assert_eq!(format!("{:?}", key()), "PrivateKey(<redacted>)");
    }
}
