//! [`HmacKey`]: the pre-shared key that authorises a client.

use std::fmt;

use zeroize::{Zeroize, Zeroizing};

use crate::LinkError;

/// Length in bytes of a key made by [`HmacKey::generate`].
pub const GENERATED_KEY_LEN: usize = 32;

/// Keys shorter than this get no hash-based fingerprint (see
/// [`HmacKey::fingerprint`]).
pub const MIN_FINGERPRINT_KEY_LEN: usize = 16;

/// What [`HmacKey::fingerprint`] returns for a key shorter than
/// [`MIN_FINGERPRINT_KEY_LEN`].
pub const SHORT_KEY_FINGERPRINT: &str = "short-key";

/// Domain-separation label hashed before the key in a fingerprint, so a
/// fingerprint is not the hash of the key used anywhere else.
const FINGERPRINT_LABEL: &[u8] = b"secure-link key fingerprint v1\0";

/// The pre-shared HMAC-SHA256 key both ends of a link hold.
///
/// The bytes are wiped from memory when the key is dropped, and `Debug`
/// prints only the length, never the key:
///
/// ```
/// use secure_link::HmacKey;
///
/// let key = HmacKey::from(&b"secret"[..]);
/// assert_eq!(format!("{key:?}"), "HmacKey { len: 6, .. }");
/// let hex = key.to_hex();
/// assert_eq!(HmacKey::from_hex(&hex)?.as_bytes(), b"secret");
/// # Ok::<(), secure_link::LinkError>(())
/// ```
///
/// Any length is accepted (the lab that this crate grew out of uses 2-byte
/// keys); HMAC-SHA256 keys of 32 random bytes, as made by
/// [`HmacKey::generate`], are what you should use. An empty key is
/// accepted by `From` (HMAC defines it) but refused by
/// [`HmacKey::from_hex`], which reads keys typed or stored by people.
#[derive(Clone)]
pub struct HmacKey(Zeroizing<Vec<u8>>);

impl HmacKey {
    /// A new key of [`GENERATED_KEY_LEN`] bytes from the operating system's
    /// secure random number generator (through the crate's rustls crypto
    /// provider).
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] if the random number generator fails.
    pub fn generate() -> Result<Self, LinkError> {
        let mut bytes = Zeroizing::new(vec![0u8; GENERATED_KEY_LEN]);
        crate::tls::provider()
            .secure_random
            .fill(&mut bytes)
            .map_err(|_| LinkError::config("the system random number generator failed"))?;
        Ok(HmacKey(bytes))
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether `other` holds the same bytes, compared in constant time (for
    /// keys of equal length; a length difference shows at once).
    pub(crate) fn same_as(&self, other: &HmacKey) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(self.0.as_slice().ct_eq(other.0.as_slice()))
    }

    /// The key's length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the key is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses a key written as hexadecimal digits (either case); whitespace
    /// around it, such as a file's final newline, is ignored.
    ///
    /// # Errors
    ///
    /// [`LinkError::Config`] for an empty string, an odd number of digits or
    /// a character that is not a hex digit. The message never contains the
    /// input.
    pub fn from_hex(hex: &str) -> Result<Self, LinkError> {
        let hex = hex.trim();
        if hex.is_empty() {
            return Err(LinkError::config("the HMAC key is empty"));
        }
        // hex's own messages quote the offending character, which is part
        // of the secret: say where, not what.
        let bytes = hex::decode(hex).map_err(|err| {
            LinkError::config(match err {
                hex::FromHexError::InvalidHexCharacter { index, .. } => format!(
                    "the HMAC key is not valid hexadecimal: character {} is not a hex digit",
                    index + 1
                ),
                hex::FromHexError::OddLength | hex::FromHexError::InvalidStringLength => {
                    "the HMAC key is not valid hexadecimal: odd number of digits".to_owned()
                }
            })
        })?;
        Ok(HmacKey(Zeroizing::new(bytes)))
    }

    /// A short, stable, non-secret name for the key, to tell keys apart in
    /// logs during a rotation: 16 lowercase hex digits, the first 8 bytes
    /// of SHA-256 over the label `secure-link key fingerprint v1\0` and the
    /// key.
    ///
    /// A fingerprint lets whoever sees it test guesses of the key offline.
    /// That is harmless for a random key of 16 bytes or more (the 32 made by
    /// [`generate`](Self::generate)), but not for short ones, such as the
    /// lab's 2-byte keys: a key shorter than [`MIN_FINGERPRINT_KEY_LEN`]
    /// gets the fixed marker [`SHORT_KEY_FINGERPRINT`] instead, which says
    /// nothing about it. (A server names such keys by their position:
    /// see [`SecureServer::key_fingerprint`](crate::SecureServer::key_fingerprint).)
    ///
    /// ```
    /// use secure_link::HmacKey;
    /// let key = HmacKey::from(&[7u8; 32]);
    /// assert_eq!(key.fingerprint().len(), 16);
    /// assert_eq!(key.fingerprint(), HmacKey::from(&[7u8; 32]).fingerprint());
    /// assert_eq!(HmacKey::from(b"ab").fingerprint(), "short-key");
    /// ```
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        if self.len() < MIN_FINGERPRINT_KEY_LEN {
            return SHORT_KEY_FINGERPRINT.to_owned();
        }
        let digest = Sha256::new()
            .chain_update(FINGERPRINT_LABEL)
            .chain_update(self.as_bytes())
            .finalize();
        hex::encode(&digest[..8])
    }

    /// The key as lowercase hexadecimal digits, two per byte.
    ///
    /// The returned `String` is a copy of the secret that is not wiped on
    /// drop; write it where it is needed and let it go.
    pub fn to_hex(&self) -> String {
        hex::encode(self.as_bytes())
    }
}

impl From<&[u8]> for HmacKey {
    fn from(bytes: &[u8]) -> Self {
        HmacKey(Zeroizing::new(bytes.to_vec()))
    }
}

impl From<Vec<u8>> for HmacKey {
    fn from(bytes: Vec<u8>) -> Self {
        HmacKey(Zeroizing::new(bytes))
    }
}

impl<const N: usize> From<&[u8; N]> for HmacKey {
    fn from(bytes: &[u8; N]) -> Self {
        HmacKey::from(&bytes[..])
    }
}

impl From<&HmacKey> for HmacKey {
    fn from(key: &HmacKey) -> Self {
        key.clone()
    }
}

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacKey")
            .field("len", &self.0.len())
            .finish_non_exhaustive()
    }
}

impl Zeroize for HmacKey {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}
