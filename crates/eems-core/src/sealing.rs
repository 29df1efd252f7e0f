//! MS-WSMV message-encryption framing (2.2.9.1), shared by NTLM and Kerberos sealing: a
//! `multipart/encrypted` body whose second part is `u32le header length`, the security
//! header (NTLM: the 16-byte signature; Kerberos: the wrap token header, 60 bytes with AES),
//! then exactly `Length` bytes of ciphertext. See `winrm-on-the-wire.md` §5.2.

const BOUNDARY: &str = "--Encrypted Boundary";

/// The MIME protocol of a sealed body, which follows the HTTP auth scheme: Windows answers
/// `HTTP-Kerberos-session-encrypted` under `Negotiate` with 415, and Exchange's `/PowerShell`
/// clients (`-Authentication Kerberos`, pypsrp) send it under the `Kerberos` scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `application/HTTP-SPNEGO-session-encrypted`: NTLM, and Kerberos under `Negotiate`.
    Spnego,
    /// `application/HTTP-Kerberos-session-encrypted`: Kerberos under the `Kerberos` scheme.
    Kerberos,
}

impl Protocol {
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::Spnego => "application/HTTP-SPNEGO-session-encrypted",
            Protocol::Kerberos => "application/HTTP-Kerberos-session-encrypted",
        }
    }

    /// The HTTP authentication scheme whose tokens seal under this protocol.
    pub const fn scheme(self) -> &'static str {
        match self {
            Protocol::Spnego => "Negotiate",
            Protocol::Kerberos => "Kerberos",
        }
    }

    /// The HTTP `Content-Type` of a body sealed with this protocol.
    pub const fn content_type(self) -> &'static str {
        match self {
            Protocol::Spnego => {
                "multipart/encrypted;protocol=\"application/HTTP-SPNEGO-session-encrypted\";boundary=\"Encrypted Boundary\""
            }
            Protocol::Kerberos => {
                "multipart/encrypted;protocol=\"application/HTTP-Kerberos-session-encrypted\";boundary=\"Encrypted Boundary\""
            }
        }
    }
}

/// A parsed sealed body; `header` and `data` borrow from it.
#[derive(Debug)]
pub struct Frame<'a> {
    /// `Length=` of `OriginalContent`: the plaintext length.
    pub length: usize,
    pub header: &'a [u8],
    /// Exactly `length` bytes.
    pub data: &'a [u8],
}

/// Frames a sealed message exactly as Windows emits it: no CRLF between the ciphertext and
/// the closing boundary.
pub fn frame(protocol: Protocol, length: usize, header: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "{BOUNDARY}\r\n\tContent-Type: {}\r\n\
         \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={length}\r\n\
         {BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n",
        protocol.name()
    )
    .into_bytes();
    let header_len = u32::try_from(header.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(data);
    out.extend_from_slice(format!("{BOUNDARY}--\r\n").as_bytes());
    out
}

/// Parses a sealed body by length (the ciphertext may contain anything, boundary bytes
/// included). The first part must name `protocol`; `header_len_ok` says which security header
/// lengths the mechanism allows. A CRLF before the closing boundary is refused, as Windows
/// refuses it.
pub fn parse(
    body: &[u8],
    protocol: Protocol,
    header_len_ok: impl Fn(usize) -> bool,
) -> Result<Frame<'_>, &'static str> {
    let opening = format!("{BOUNDARY}\r\n");
    let rest = body
        .strip_prefix(opening.as_bytes())
        .ok_or("missing opening boundary")?;
    // The first part is ASCII headers: searching it for the next boundary is safe, unlike
    // searching the binary part.
    let second = rest
        .windows(opening.len())
        .position(|w| w == opening.as_bytes())
        .ok_or("missing second part")?;
    let part_header = std::str::from_utf8(&rest[..second]).map_err(|_| "non-ASCII part header")?;
    let mut length = None;
    let mut protocol_ok = false;
    for line in part_header.split("\r\n").map(str::trim) {
        if let Some(v) = strip_prefix_ci(line, "content-type:") {
            protocol_ok |= v.trim().eq_ignore_ascii_case(protocol.name());
        } else if let Some(v) = strip_prefix_ci(line, "originalcontent:") {
            length = v
                .split(';')
                .find_map(|p| strip_prefix_ci(p.trim(), "length="))
                .and_then(|n| n.parse::<usize>().ok());
        }
    }
    if !protocol_ok {
        return Err(match protocol {
            Protocol::Spnego => "first part is not application/HTTP-SPNEGO-session-encrypted",
            Protocol::Kerberos => "first part is not application/HTTP-Kerberos-session-encrypted",
        });
    }
    let length = length.ok_or("no Length= in OriginalContent")?;
    let rest = &rest[second + opening.len()..];
    let line_end = rest
        .windows(2)
        .position(|w| w == b"\r\n")
        .ok_or("truncated second part")?;
    let ct = std::str::from_utf8(&rest[..line_end]).map_err(|_| "non-ASCII part header")?;
    if !strip_prefix_ci(ct.trim(), "content-type:")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/octet-stream"))
    {
        return Err("second part is not application/octet-stream");
    }
    let rest = &rest[line_end + 2..];
    let header_len = rest
        .get(..4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or("truncated security header length")?;
    if !header_len_ok(header_len) {
        return Err("security header length out of range");
    }
    let header_end = 4usize
        .checked_add(header_len)
        .ok_or("security header length out of range")?;
    let header = rest.get(4..header_end).ok_or("truncated security header")?;
    let end = header_end
        .checked_add(length)
        .ok_or("Length out of range")?;
    let data = rest
        .get(header_end..end)
        .ok_or("ciphertext shorter than Length")?;
    let tail = &rest[end..];
    let closing = format!("{BOUNDARY}--");
    let after = tail
        .strip_prefix(closing.as_bytes())
        .ok_or("closing boundary does not follow the ciphertext")?;
    if !(after.is_empty() || after == b"\r\n") {
        return Err("data after the closing boundary");
    }
    Ok(Frame {
        length,
        header,
        data,
    })
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_then_parse_gives_back_header_and_data_for_both_protocols() {
        for protocol in [Protocol::Spnego, Protocol::Kerberos] {
            let header = [7u8; 60];
            // Binary data that contains the boundary itself: parsing goes by length.
            let data = b"--Encrypted Boundary--\r\n\x00\xff";
            let body = frame(protocol, data.len(), &header, data);
            let f = parse(&body, protocol, |n| n == 60).unwrap();
            assert_eq!(f.header, &header[..]);
            assert_eq!(f.data, &data[..]);
            assert_eq!(f.length, data.len());
            let other = match protocol {
                Protocol::Spnego => Protocol::Kerberos,
                Protocol::Kerberos => Protocol::Spnego,
            };
            assert!(
                parse(&body, other, |_| true)
                    .unwrap_err()
                    .contains(other.name())
            );
            assert_eq!(
                parse(&body, protocol, |n| n == 16).unwrap_err(),
                "security header length out of range"
            );
        }
    }
}
