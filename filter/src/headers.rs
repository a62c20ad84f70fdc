//! Header maps as the host hands them over, decoded without trusting their bytes.
//!
//! The proxy-wasm SDK's own readers panic on a header value that is not UTF-8, and HTTP lets a
//! client send such bytes (obs-text): one request would kill the VM. These functions never
//! panic: bytes that are not UTF-8 become U+FFFD (such a token is invalid anyway, and an
//! identity header is recognised by its name), and a malformed buffer yields what was whole.

use crate::request::RequestHeaders;

/// Decodes the proxy-wasm serialization of a header map: a little-endian `u32` count, then a
/// (`u32` name length, `u32` value length) pair per header, then each name and value followed
/// by a NUL byte.
pub fn decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for_each_pair(bytes, |name, value| {
        pairs.push((
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        ));
    });
    pairs
}

/// A request's header map, decoded into one buffer (see [`RequestHeaders`]).
pub fn decode_request_headers(bytes: &[u8]) -> RequestHeaders {
    let mut headers = RequestHeaders::with_capacity(bytes.len());
    for_each_pair(bytes, |name, value| {
        headers.push_bytes(name, value);
    });
    headers
}

/// Every (name, value) of a serialized header map, in order; stops at the first entry that
/// does not fit in `bytes`.
fn for_each_pair(bytes: &[u8], mut f: impl FnMut(&[u8], &[u8])) {
    let Some(count) = read_u32(bytes, 0) else {
        return;
    };
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    for i in 0..count {
        let Some(at) = i.checked_mul(8).and_then(|x| x.checked_add(4)) else {
            break;
        };
        let (Some(name_len), Some(value_len)) =
            (read_u32(bytes, at), read_u32(bytes, at.saturating_add(4)))
        else {
            break;
        };
        let Some(name) = slice(bytes, data, name_len) else {
            break;
        };
        data = data.saturating_add(name_len).saturating_add(1);
        let Some(value) = slice(bytes, data, value_len) else {
            break;
        };
        data = data.saturating_add(value_len).saturating_add(1);
        f(name, value);
    }
}

/// Whether a value may be written into a header: no control characters (so no CR/LF header
/// injection and no NUL), whatever an authorization server put in a username or scope.
pub fn is_safe_value(value: &str) -> bool {
    // Printable ASCII (and tab), the usual identity, is checked a byte at a time; anything
    // else by its characters (C1 controls are two bytes in UTF-8).
    value
        .bytes()
        .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        || !value
            .chars()
            .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
}

fn read_u32(bytes: &[u8], at: usize) -> Option<usize> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    usize::try_from(u32::from_le_bytes(raw)).ok()
}

fn slice(bytes: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    bytes.get(at..at.checked_add(len)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
        for (name, value) in pairs {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        for (name, value) in pairs {
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }

    #[test]
    fn decodes_a_header_map() {
        let bytes = encode(&[(b":path", b"/a"), (b"authorization", b"Bearer x")]);
        assert_eq!(
            decode_pairs(&bytes),
            vec![
                (":path".to_string(), "/a".to_string()),
                ("authorization".to_string(), "Bearer x".to_string()),
            ]
        );
        assert!(decode_pairs(&[]).is_empty());
    }

    #[test]
    fn bytes_that_are_not_utf8_do_not_panic() {
        let bytes = encode(&[
            (b"authorization", b"Bearer caf\xe9"),
            (b"x-\xff", b"\xff\xfe"),
        ]);
        let pairs = decode_pairs(&bytes);
        assert_eq!(pairs[0].1, "Bearer caf\u{fffd}");
        assert_eq!(
            pairs[1],
            ("x-\u{fffd}".to_string(), "\u{fffd}\u{fffd}".to_string())
        );
    }

    #[test]
    fn a_truncated_or_lying_buffer_yields_what_was_whole() {
        let bytes = encode(&[(b"a", b"1"), (b"b", b"2")]);
        for cut in 0..bytes.len() {
            assert!(decode_pairs(&bytes[..cut]).len() <= 2);
        }
        let mut lying = bytes.clone();
        lying[0] = 0xff; // claims 255 headers
        assert!(decode_pairs(&lying).len() <= 2);
        let huge = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ];
        assert!(decode_pairs(&huge).is_empty());
    }

    #[test]
    fn control_characters_make_a_value_unsafe() {
        assert!(is_safe_value("bob"));
        assert!(is_safe_value("read\twrite é"));
        assert!(!is_safe_value("bob\r\nx-consumer-id: admin"));
        assert!(!is_safe_value("a\0b"));
        assert!(!is_safe_value("a\u{7f}"));
        assert!(
            !is_safe_value("caf\u{e9}\u{85}next line"),
            "a C1 control (NEL) too"
        );
    }
}
