//! Content-addressed blobs: a value whose key is the SHA-256 of its own bytes.
//!
//! `gclab cli put FILE` sends the bytes to the dbserver (`POST /blobs`), which names them
//! itself: `sha256:` and 64 lowercase hex digits ([`address`]). A client never chooses a
//! blob's name, so a name always means those bytes and no others. That makes a blob
//! *immutable*: it can be cached forever, by anyone, and checked by anyone.
//!
//! The check is the lesson here. A frontend that loads a `sha256:` key, from the dbserver
//! or from a peer, hashes what it got before it caches or serves it ([`check`]). Bytes that
//! do not hash to their name (a bad disk, a bad peer, a bug) are refused: they are never
//! cached, so the next Get asks again, and the client hears that the hash did not match
//! rather than getting wrong bytes.
//!
//! A blob is one value, so it is at most `--max-value-bytes` (1 MiB). A bigger file would
//! be cut into chunks, each stored as a blob of its own, plus a manifest blob listing the
//! chunks' addresses; the manifest's address names the whole file (see the README).

use sha2::{Digest, Sha256};

use crate::key::BLOB_PREFIX;

/// The address of `bytes`: `sha256:` and the hash as 64 lowercase hex digits.
pub fn address(bytes: &[u8]) -> String {
    format!("{BLOB_PREFIX}{}", hex::encode(Sha256::digest(bytes)))
}

/// Whether `key` names a blob, so that its value must hash to it.
pub fn is_blob(key: &str) -> bool {
    key.starts_with(BLOB_PREFIX)
}

/// Bytes loaded for a blob key that do not hash to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the hash did not match: the {len} bytes loaded hash to {found}")]
pub struct Mismatch {
    pub len: usize,
    /// The address the bytes really have.
    pub found: String,
}

/// Checks that `value`, loaded for `key`, is what the key names. Any key that is not a
/// blob's passes: only a blob's name says what its value must be.
pub fn check(key: &str, value: &[u8]) -> Result<(), Mismatch> {
    if !is_blob(key) {
        return Ok(());
    }
    let found = address(value);
    if found == key {
        return Ok(());
    }
    Err(Mismatch {
        len: value.len(),
        found,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_the_sha256_of_the_bytes_in_lowercase_hex() {
        // `printf abc | sha256sum`
        assert_eq!(
            address(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn only_the_bytes_a_blob_key_names_pass_the_check() {
        let key = address(b"abc");
        assert_eq!(check(&key, b"abc"), Ok(()));
        let refused = check(&key, b"abd").unwrap_err();
        assert_eq!(refused.found, address(b"abd"));
        assert!(refused.to_string().starts_with("the hash did not match"));
        assert_eq!(check("foo", b"anything"), Ok(()), "not a blob key");
    }
}
