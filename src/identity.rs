//! A peer's identity from its certificate: the first DNS name, or failing
//! that, the subject's common name.
//!
//! The certificate has already been verified by rustls; this only reads it,
//! with rustls' own parser (webpki) for the names and a small reader for
//! the common name, which webpki does not expose. Anything unexpected in
//! the subject gives `None`, never a panic.

use rustls_pki_types::CertificateDer;

/// The DER encoding of the attribute type `id-at-commonName` (2.5.4.3).
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

/// The first DNS name of `cert`'s subject alternative names, or its
/// subject's first common name.
pub(crate) fn of(cert: &CertificateDer<'_>) -> Option<String> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    if let Some(name) = cert.valid_dns_names().next() {
        return Some(name.to_owned());
    }
    common_name(cert.subject())
}

/// The first common name in a DER `Name` (its contents: a sequence of
/// relative distinguished names, each a SET of AttributeTypeAndValue).
fn common_name(mut rdns: &[u8]) -> Option<String> {
    while !rdns.is_empty() {
        let (set, rest) = tlv(rdns, 0x31)?;
        rdns = rest;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (attribute, rest) = tlv(attributes, 0x30)?;
            attributes = rest;
            let (oid, value) = tlv(attribute, 0x06)?;
            if oid != COMMON_NAME_OID {
                continue;
            }
            let (&tag, _) = value.split_first()?;
            let (text, _) = tlv(value, tag)?;
            return match tag {
                // UTF8String, PrintableString, IA5String, TeletexString
                // (read as Latin-1-compatible ASCII only).
                0x0c | 0x13 | 0x16 => std::str::from_utf8(text).ok().map(str::to_owned),
                0x14 if text.is_ascii() => std::str::from_utf8(text).ok().map(str::to_owned),
                _ => None,
            };
        }
    }
    None
}

/// Splits one DER element with tag `tag` off the front of `der`: its
/// contents, and what follows it.
fn tlv(der: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&found, rest) = der.split_first()?;
    if found != tag {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: the low bits say how many length bytes follow.
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    Some(rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `O=lab!!` as one attribute set of the contents of a DER Name.
    const ORGANIZATION: &[u8] = &[
        0x31, 0x0e, 0x30, 0x0c, 0x06, 0x03, 0x55, 0x04, 0x0a, 0x0c, 0x05, b'l', b'a', b'b', b'!',
        b'!', //
    ];

    /// `CN=node-1`, likewise.
    const COMMON_NAME: &[u8] = &[
        0x31, 0x0f, 0x30, 0x0d, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x06, b'n', b'o', b'd', b'e',
        b'-', b'1',
    ];

    /// `O=lab!!, CN=node-1`.
    fn subject() -> Vec<u8> {
        [ORGANIZATION, COMMON_NAME].concat()
    }

    #[test]
    fn the_common_name_is_found_after_other_attributes() {
        assert_eq!(common_name(&subject()).as_deref(), Some("node-1"));
        assert_eq!(common_name(COMMON_NAME).as_deref(), Some("node-1"));
        assert_eq!(common_name(ORGANIZATION), None);
    }

    #[test]
    fn malformed_subjects_give_none_not_a_panic() {
        let subject = subject();
        for cut in 0..subject.len() {
            let _ = common_name(&subject[..cut]);
        }
        assert_eq!(common_name(&[0x31, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(common_name(&[0x31, 0x80]), None);
        assert_eq!(common_name(&[0x30, 0x00]), None);
    }
}
