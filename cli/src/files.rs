//! Reading and writing the files the tool works with: PEM, key files, and
//! secrets written with mode 0600.

use std::fs;
use std::io::Write;
use std::path::Path;

use secure_link::rustls::{self, AlertDescription, CertificateError};
use secure_link::{HmacKey, LinkError};

use crate::shared::Error;

/// Keys shorter than this are refused: an HMAC key is only as strong as it
/// is long, and these are typed into files by people.
const MIN_KEY_LEN: usize = 16;

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
/// lines starting with `#` skipped), each at least [`MIN_KEY_LEN`] bytes
/// and ended by a newline. Errors name the file and the line, never the
/// key.
///
/// A key line without its newline is refused: a file caught while it is
/// being written ends that way, and the hex digits written so far would
/// make a wrong key, long enough to pass (60 of 64 digits are 30 bytes).
pub(crate) fn read_keys(path: &Path) -> Result<Vec<HmacKey>, Error> {
    let text = zeroize::Zeroizing::new(read_text(path, "HMAC key file")?);
    let mut keys = Vec::new();
    for (number, line) in text.split_inclusive('\n').enumerate() {
        let complete = line.ends_with('\n');
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{} line {}", path.display(), number + 1);
        if !complete {
            return Err(Error::msg(format!(
                "{}: the key line has no newline at its end: is the file still being written? \
                 (write the new file beside it and rename it over the old one; \
                 `secure-link gen-key` ends its line)",
                at()
            )));
        }
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

/// A link error in words a user can act on, on the client's side: a
/// certificate refused is the server's, an alert is the server's verdict
/// on ours.
pub(crate) fn explain(err: &LinkError) -> String {
    match err {
        LinkError::Tls(rustls::Error::InvalidCertificate(cert)) => {
            let cause = certificate_problem(cert, "--ca", "the --server-name given");
            format!("the server's certificate was rejected: {cause}")
        }
        // In TLS 1.3 a refused client certificate arrives after connect,
        // as an alert on the first read, flush or close.
        LinkError::Tls(rustls::Error::AlertReceived(AlertDescription::CertificateRequired)) => {
            "the server requires a client certificate (TLS alert CertificateRequired): \
             give --cert-chain and --private-key, signed by the server's --client-ca"
                .to_owned()
        }
        LinkError::Tls(rustls::Error::AlertReceived(
            alert @ (AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnsupportedCertificate),
        )) => format!(
            "the server refused this client's certificate (TLS alert {alert:?}): \
             --cert-chain must be signed by the server's --client-ca"
        ),
        other => explain_common(other),
    }
}

/// A link error in words a user can act on, on the server's side: a
/// certificate refused is the client's.
pub(crate) fn explain_on_server(err: &LinkError) -> String {
    match err {
        LinkError::Tls(rustls::Error::InvalidCertificate(cert)) => {
            let cause = certificate_problem(cert, "--client-ca", "its use");
            format!("the client's certificate was rejected: {cause}")
        }
        LinkError::Tls(rustls::Error::NoCertificatesPresented) => {
            "the client presented no certificate (--client-ca requires one)".to_owned()
        }
        other => explain_common(other),
    }
}

/// What is wrong with a certificate: `ca` is the flag naming the roots it
/// was checked against, `name` what it must be valid for.
fn certificate_problem(cert: &CertificateError, ca: &str, name: &str) -> String {
    match cert {
        CertificateError::UnknownIssuer => {
            format!("unknown issuer: it is not signed by the CA you trust ({ca})")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!("name mismatch: it is not valid for {name}")
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired".to_owned(),
        other => format!("{other:?}"),
    }
}

fn explain_common(err: &LinkError) -> String {
    match err {
        LinkError::InvalidHmac => {
            "invalid HMAC: the peer does not hold the same HMAC key".to_owned()
        }
        other => other.to_string(),
    }
}
