//! Keys: what a valid key is, and how it travels in a URL.
//!
//! A key is one percent-encoded path segment (`/kv/user%2F42`), so any UTF-8 text can be a
//! key, `/` included. The limits are memcached's: a key is 1 to 250 bytes. One more rule: a
//! key that starts with `sha256:` names a blob (see `blob.rs`), and must be followed by
//! exactly 64 lowercase hex digits, as the dbserver names them. Every server checks a key
//! with [`decode`] before doing anything with it, so a bad key is a clear `400`, never a
//! panic deeper down.

use std::borrow::Cow;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The longest key, in bytes, as in memcached.
pub const MAX_KEY_BYTES: usize = 250;

/// What starts a blob's key: the name of the hash its value must have.
pub const BLOB_PREFIX: &str = "sha256:";

/// Why a key was refused. The message is written for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the key is empty")]
    Empty,
    #[error("the key is {0} bytes long; the limit is {MAX_KEY_BYTES}")]
    TooLong(usize),
    #[error("the key is not valid UTF-8 once percent-decoded")]
    NotUtf8,
    #[error("the key has a '%' not followed by two hex digits; write '%25' for a literal '%'")]
    BadEscape,
    /// Refused here, not left to find no such key: a typo in a 64-digit hash is easy to
    /// make and hard to see, and the rule is the fix.
    #[error(
        "a key starting with 'sha256:' must be followed by exactly 64 lowercase hex digits \
         (0-9, a-f), the SHA-256 its value has; this one has {0:?} after it. \
         `gclab cli put FILE` prints a blob's address"
    )]
    BadBlobAddress(String),
}

/// Checks a key typed by a person or sent by a client.
pub fn validate(key: &str) -> Result<(), KeyError> {
    match key.len() {
        0 => Err(KeyError::Empty),
        n if n > MAX_KEY_BYTES => Err(KeyError::TooLong(n)),
        _ => match key.strip_prefix(BLOB_PREFIX) {
            Some(hash) if !is_sha256_hex(hash) => Err(KeyError::BadBlobAddress(hash.to_owned())),
            _ => Ok(()),
        },
    }
}

/// 64 lowercase hex digits: uppercase is refused, so that one blob has one name.
fn is_sha256_hex(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Turns one raw URL path segment into a checked key. Borrowed when nothing was escaped,
/// which is most keys: a cache hit then copies its key nowhere.
pub fn decode(segment: &str) -> Result<Cow<'_, str>, KeyError> {
    // `percent_decode_str` passes a stray `%` through unchanged, so `%zz` would quietly
    // become the key "%zz"; a client that meant something else deserves to hear about it.
    let bytes = segment.as_bytes();
    for (i, _) in segment.match_indices('%') {
        let hex = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(i + 1) && hex(i + 2)) {
            return Err(KeyError::BadEscape);
        }
    }
    let key = percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| KeyError::NotUtf8)?;
    validate(&key)?;
    Ok(key)
}

/// Everything but letters, digits and `-_~` is escaped, so the key is always exactly one
/// path segment. That is RFC 3986's unreserved set less the dot: the keys `.` and `..` left
/// as they are would be *dot segments*, which curl, proxies and URL libraries remove
/// (`/kv/..` means `/`), and the key would be lost on the way. As `%2E%2E` they arrive.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');

/// Turns a key into one URL path segment.
pub fn encode(key: &str) -> String {
    utf8_percent_encode(key, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_a_url_segment() {
        for key in [
            "foo", "user/42", "a b", "ключ", "100%", ".", "..", "./x", "?x=1#y",
        ] {
            let segment = encode(key);
            assert!(!segment.contains('/'), "{segment}");
            assert!(
                !segment.contains('.'),
                "{segment}: a dot segment would be removed"
            );
            assert_eq!(decode(&segment).as_deref(), Ok(key));
        }
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        assert_eq!(decode(""), Err(KeyError::Empty));
        assert_eq!(decode(&"k".repeat(251)), Err(KeyError::TooLong(251)));
        assert_eq!(decode(&"k".repeat(250)).map(|k| k.len()), Ok(250));
        assert_eq!(decode("%ff%fe"), Err(KeyError::NotUtf8));
        assert_eq!(decode("%zz"), Err(KeyError::BadEscape));
        assert_eq!(decode("abc%4"), Err(KeyError::BadEscape));
        let hash = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(validate(&format!("sha256:{hash}")), Ok(()));
        for bad in [
            &hash[1..],
            &hash.to_uppercase(),
            &format!("{hash}0"),
            "",
            "xyz",
        ] {
            assert_eq!(
                validate(&format!("sha256:{bad}")),
                Err(KeyError::BadBlobAddress(bad.to_owned()))
            );
        }
        assert_eq!(
            validate("sha256"),
            Ok(()),
            "not a blob key without the colon"
        );
        assert_eq!(
            KeyError::TooLong(300).to_string(),
            "the key is 300 bytes long; the limit is 250"
        );
    }

    proptest::proptest! {
        #[test]
        fn every_valid_key_survives_the_trip_through_a_url(key in "\\PC{1,60}") {
            proptest::prop_assume!(validate(&key).is_ok());
            let segment = encode(&key);
            let decoded = decode(&segment);
            proptest::prop_assert_eq!(decoded.as_deref(), Ok(key.as_str()));
        }

        #[test]
        fn any_segment_decodes_to_a_valid_key_or_a_reason_never_a_panic(segment in ".{0,300}") {
            if let Ok(key) = decode(&segment) {
                proptest::prop_assert!(validate(&key).is_ok());
            }
        }

        #[test]
        fn any_bytes_percent_encoded_decode_without_panicking(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let segment: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
            match decode(&segment) {
                Ok(key) => proptest::prop_assert_eq!(key.as_bytes(), &bytes[..]),
                Err(e) => proptest::prop_assert!(matches!(e, KeyError::Empty | KeyError::TooLong(_) | KeyError::NotUtf8 | KeyError::BadBlobAddress(_))),
            }
        }
    }
}
