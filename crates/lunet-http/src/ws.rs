//! WebSocket (RFC 6455) helpers that need bytes work: the handshake's accept
//! key (SHA-1 and base64 from well-kept crates) and payload masking.

use base64::Engine;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut h = sha1_smol::Sha1::new();
    h.update(key);
    h.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(h.digest().bytes())
}

/// Whether `key` is a valid `Sec-WebSocket-Key`: base64 of 16 bytes.
pub fn key_ok(key: &[u8]) -> bool {
    key.len() == 24
        && base64::engine::general_purpose::STANDARD.decode(key).is_ok_and(|k| k.len() == 16)
}

/// XORs `data` with the 4-byte masking key (masking and unmasking alike).
pub fn mask(data: &[u8], key: [u8; 4]) -> Vec<u8> {
    data.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6455_sample_handshake() {
        // The example of RFC 6455, section 1.3.
        assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert!(key_ok(b"dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!key_ok(b"short"));
        assert!(!key_ok(b"dGhlIHNhbXBsZSBub25jZQ!!"));
    }

    #[test]
    fn masking_round_trips() {
        let k = [0x37, 0xfa, 0x21, 0x3d];
        // RFC 6455 section 5.7: a masked "Hello".
        assert_eq!(mask(b"Hello", k), [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
        assert_eq!(mask(&mask(b"Hello", k), k), b"Hello");
    }
}
