//! Lowercase hex, the one spelling of digests and tokens the project writes: API-key
//! fingerprints, saved-plan checksums and config fingerprints, the simulator's tokens.

use sha2::{Digest as _, Sha256};

/// `bytes` as lowercase hex, two digits per byte.
pub fn lower(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The SHA-256 of `bytes` as lowercase hex (64 digits).
pub fn sha256(bytes: &[u8]) -> String {
    lower(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digest_and_leading_zeros() {
        assert_eq!(
            sha256(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(lower(&[0x00, 0x0f, 0xa0]), "000fa0");
    }
}
