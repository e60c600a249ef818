//! How a message is written as one line (`serve`'s output) and read back
//! from one (`send`'s input).
//!
//! Messages come from the network, so whatever bytes one holds it must be
//! exactly one line, and it must not drive the terminal it is printed on.
//!
//! * `text` (the default): UTF-8 as it is, except that `\` is written
//!   `\\`, newline, carriage return and tab `\n`, `\r`, `\t`, and every
//!   other control character (C0, DEL, C1) and every byte that is not
//!   valid UTF-8 `\xNN` (one per byte). Unambiguous, but `send` reads text
//!   lines as they are, without undoing escapes.
//! * `hex`: two lowercase hex digits per byte.
//! * `base64`: standard alphabet, with padding.
//!
//! `hex` and `base64` are exact both ways: any message round-trips through
//! `serve --format F` and `send --format F`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::shared::Error;

/// How messages are written as lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// UTF-8 text with control characters and invalid bytes escaped.
    #[default]
    Text,
    /// Lowercase hex, two digits per byte.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

impl Format {
    /// Appends `message` as one line, newline included, to `out`.
    pub(crate) fn write_line(self, message: &[u8], out: &mut Vec<u8>) {
        match self {
            Format::Text => escape(message, out),
            Format::Hex => out.extend_from_slice(hex::encode(message).as_bytes()),
            Format::Base64 => out.extend_from_slice(STANDARD.encode(message).as_bytes()),
        }
        out.push(b'\n');
    }

    /// The message a line (without its newline) stands for.
    pub(crate) fn read_line(self, line: &[u8]) -> Result<Vec<u8>, Error> {
        match self {
            Format::Text => Ok(line.to_vec()),
            Format::Hex => hex::decode(trim(line))
                .map_err(|err| Error::msg(format!("a line is not hex: {err}"))),
            Format::Base64 => STANDARD
                .decode(trim(line))
                .map_err(|err| Error::msg(format!("a line is not base64: {err}"))),
        }
    }
}

/// A line without a trailing carriage return (from CRLF input).
fn trim(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// `text` with control characters and backslashes escaped as `--format
/// text` writes messages: for peer-supplied names in log lines.
pub(crate) fn escape_text(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    escape(text.as_bytes(), &mut out);
    // Escaping valid UTF-8 yields valid UTF-8.
    String::from_utf8_lossy(&out).into_owned()
}

fn escape(message: &[u8], out: &mut Vec<u8>) {
    for chunk in message.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                c if c.is_control() => {
                    let mut utf8 = [0; 4];
                    for byte in c.encode_utf8(&mut utf8).bytes() {
                        escape_byte(byte, out);
                    }
                }
                c => {
                    let mut utf8 = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                }
            }
        }
        for &byte in chunk.invalid() {
            escape_byte(byte, out);
        }
    }
}

fn escape_byte(byte: u8, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'x',
        HEX[usize::from(byte >> 4)],
        HEX[usize::from(byte & 0xf)],
    ]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn line(format: Format, message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        format.write_line(message, &mut out);
        out
    }

    #[test]
    fn text_escapes_line_breaks_controls_and_invalid_utf8() {
        assert_eq!(line(Format::Text, b"plain words"), b"plain words\n");
        assert_eq!(
            line(Format::Text, b"two\nlines\r\tand \\ a backslash"),
            b"two\\nlines\\r\\tand \\\\ a backslash\n"
        );
        // ESC [2J (clear screen), BEL, DEL, a C1 control (U+009B, CSI),
        // a lone continuation byte.
        assert_eq!(
            line(Format::Text, b"\x1b[2J\x07\x7f\xc2\x9b\x80"),
            b"\\x1b[2J\\x07\\x7f\\xc2\\x9b\\x80\n"
        );
        assert_eq!(
            line(Format::Text, "héllo ✓".as_bytes()),
            "héllo ✓\n".as_bytes()
        );
    }

    #[test]
    fn every_format_writes_exactly_one_line() {
        let all: Vec<u8> = (0..=255).collect();
        for format in [Format::Text, Format::Hex, Format::Base64] {
            let out = line(format, &all);
            assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(out.last(), Some(&b'\n'));
            assert!(
                out.iter()
                    .all(|&b| b == b'\n' || (0x20..0x7f).contains(&b) || b >= 0x80)
            );
        }
    }

    #[test]
    fn hex_and_base64_round_trip_any_bytes() {
        let all: Vec<u8> = (0..=255).rev().collect();
        for format in [Format::Hex, Format::Base64] {
            for message in [&b""[..], b"\n", &all] {
                let mut out = line(format, message);
                out.pop();
                assert_eq!(format.read_line(&out).unwrap(), message);
                out.push(b'\r');
                assert_eq!(format.read_line(&out).unwrap(), message);
            }
            assert!(format.read_line(b"not valid!").is_err());
        }
        assert_eq!(line(Format::Hex, b"\x00\xff"), b"00ff\n");
        assert_eq!(line(Format::Base64, b"hi"), b"aGk=\n");
    }
}
