//! The addresses of the daemon's pages: the link to an instance's page, and the percent-
//! decoding of a requested path. Shared by the pages and the estate's picture.

use std::fmt::Write;

/// The link to an instance's page.
pub fn resource_href(address: &str) -> String {
    let mut out = String::from("/resource/");
    for byte in address.bytes() {
        if byte.is_ascii_alphanumeric() || b"/@._-".contains(&byte) {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Undoes percent-encoding in a path.
pub fn decode(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(byte) = std::str::from_utf8(&bytes[i + 1..(i + 3).min(bytes.len())])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
