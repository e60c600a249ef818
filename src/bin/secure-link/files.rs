//! Reading and writing the files the tool works with: PEM, key files, and
//! secrets written with mode 0600.

use std::fs;
use std::io::Write;
use std::path::Path;

use secure_link::rustls::{self, CertificateError};
use secure_link::{HmacKey, LinkError};

use crate::Error;

/// Keys shorter than this are refused: an HMAC key is only as strong as it
/// is long, and these are typed into files by people.
pub(crate) const MIN_KEY_LEN: usize = 16;

/// Reads a text file, naming it in the error.
pub(crate) fn read_text(path: &Path, what: &str) -> Result<String, Error> {
    fs::read_to_string(path)
        .map_err(|err| Error::msg(format!("cannot read {what} {}: {err}", path.display())))
}

/// Warns (as ssh does for private keys) when a secret file can be read by
/// its group or by others, naming the file and the fix.
pub(crate) fn warn_if_exposed(path: &Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let Ok(meta) = fs::metadata(path) else {
            return; // reading it reports the problem
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{what} {} is readable by group or others (mode {mode:03o}); restrict it with: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

/// Reads an HMAC key file: one key as hex digits, surrounding whitespace
/// ignored, at least [`MIN_KEY_LEN`] bytes.
pub(crate) fn read_key(path: &Path) -> Result<HmacKey, Error> {
    let mut keys = read_keys(path)?;
    if keys.len() != 1 {
        return Err(Error::msg(format!(
            "{}: holds {} keys; one is expected here",
            path.display(),
            keys.len()
        )));
    }
    Ok(keys.remove(0))
}

/// Reads a file of HMAC keys, one per line as hex digits (blank lines and
/// lines starting with `#` skipped), each at least [`MIN_KEY_LEN`] bytes.
/// Errors name the file and the line, never the key.
pub(crate) fn read_keys(path: &Path) -> Result<Vec<HmacKey>, Error> {
    let text = zeroize::Zeroizing::new(read_text(path, "HMAC key file")?);
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{} line {}", path.display(), number + 1);
        let key = HmacKey::from_hex(line)
            .map_err(|err| Error::msg(format!("{}: {}", at(), explain(&err))))?;
        if key.len() < MIN_KEY_LEN {
            return Err(Error::msg(format!(
                "{}: the HMAC key is {} bytes; at least {MIN_KEY_LEN} are required \
                 (make one with `secure-link gen-key`)",
                at(),
                key.len()
            )));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err(Error::msg(format!(
            "{}: no HMAC key in the file (make one with `secure-link gen-key`)",
            path.display()
        )));
    }
    Ok(keys)
}

/// Writes `contents` to a new file (or over an existing one with `force`),
/// readable by the owner only when `secret`.
pub(crate) fn write_new(
    path: &Path,
    contents: &str,
    secret: bool,
    force: bool,
) -> Result<(), Error> {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            Error::msg(format!(
                "{} exists; use --force to overwrite it",
                path.display()
            ))
        } else {
            Error::msg(format!("cannot write {}: {err}", path.display()))
        }
    })?;
    // An existing file keeps its mode when truncated: tighten it.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(contents.as_bytes())
        .map_err(|err| Error::msg(format!("cannot write {}: {err}", path.display())))
}

/// A link error in words a user can act on.
pub(crate) fn explain(err: &LinkError) -> String {
    match err {
        LinkError::Tls(rustls::Error::InvalidCertificate(cert)) => {
            let cause = match cert {
                CertificateError::UnknownIssuer => {
                    "unknown issuer: it is not signed by the CA you trust (--ca)".to_owned()
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "name mismatch: it is not valid for the --server-name given".to_owned()
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "expired".to_owned()
                }
                other => format!("{other:?}"),
            };
            format!("the server's certificate was rejected: {cause}")
        }
        LinkError::InvalidHmac => {
            "invalid HMAC: the peer does not hold the same HMAC key".to_owned()
        }
        other => other.to_string(),
    }
}
