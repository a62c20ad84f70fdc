//! RS256 signatures (RSASSA-PKCS1-v1_5 with SHA-256, RFC 8017 §8.2.2) for the build without
//! `ring` (the wasm module): the public-key operation as 16 squarings and one multiplication
//! (e = 65537 = 2^16 + 1) in crypto-bigint's Montgomery arithmetic, then the encoding the
//! signature must decode to, built from the message and compared whole.
//!
//! Why not the `rsa` crate's verify: its generic windowed `modpow` walks every bit of the
//! exponent's 64-bit word and its `num-bigint-dig` limbs need a 64×64→128 multiply that wasm
//! does not have; this path does about a fifth of the Montgomery products on 32-bit limbs
//! (in Envoy's V8: 99 µs a verify against 552 µs, a 2048-bit key). The `rsa` crate still reads
//! and validates every key, and verifies where this path does not apply (another exponent,
//! a modulus that is not 2048, 3072 or 4096 bits).
//!
//! Encode-and-compare (RFC 8017 §8.2.2 step 3 and its note) leaves nothing to parse in the
//! decoded block: a signature is accepted only when s^65537 mod n is exactly the block this
//! message's digest makes.

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, Uint, U2048, U3072, U4096};
use sha2::{Digest, Sha256};

/// The public exponent this path computes with, big-endian as a JWK's `e` carries it.
const EXPONENT_65537: [u8; 3] = [0x01, 0x00, 0x01];

/// The DER prefix of a SHA-256 DigestInfo (RFC 8017 §9.2 note 1).
const SHA256_DIGEST_INFO: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

/// A public key this path verifies with: the modulus' Montgomery parameters, computed once
/// when the key is read (milliseconds in wasm), never per request.
#[derive(Debug, Clone)]
pub enum PublicKey {
    Bits2048(Box<DynResidueParams<{ U2048::LIMBS }>>),
    Bits3072(Box<DynResidueParams<{ U3072::LIMBS }>>),
    Bits4096(Box<DynResidueParams<{ U4096::LIMBS }>>),
}

impl PublicKey {
    /// The key of modulus `n` and exponent `e` (big-endian, no leading zero), or `None` where
    /// this path does not apply: an exponent other than 65537, an even modulus, or a modulus
    /// that does not fill 256, 384 or 512 bytes exactly.
    pub fn new(n: &[u8], e: &[u8]) -> Option<PublicKey> {
        let odd = n.last().is_some_and(|low| low & 1 == 1);
        if e != EXPONENT_65537 || !odd || n.first() == Some(&0) {
            return None;
        }
        // `DynResidueParams::new` panics on an even modulus: refused above.
        match n.len() {
            U2048::BYTES => Some(PublicKey::Bits2048(Box::new(DynResidueParams::new(
                &U2048::from_be_slice(n),
            )))),
            U3072::BYTES => Some(PublicKey::Bits3072(Box::new(DynResidueParams::new(
                &U3072::from_be_slice(n),
            )))),
            U4096::BYTES => Some(PublicKey::Bits4096(Box::new(DynResidueParams::new(
                &U4096::from_be_slice(n),
            )))),
            _ => None,
        }
    }

    /// Whether `signature` is this key's RS256 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.recover(signature) {
            Some(block) => block == encoded(block.len(), &Sha256::digest(message)),
            None => false,
        }
    }

    /// s^65537 mod n as k big-endian bytes (RFC 8017 RSAVP1 and I2OSP); `None` when the
    /// signature is not k bytes long or not below the modulus (§8.2.2 step 1, §5.2.2 step 1).
    fn recover(&self, signature: &[u8]) -> Option<Vec<u8>> {
        match self {
            PublicKey::Bits2048(params) => power_65537(params, signature),
            PublicKey::Bits3072(params) => power_65537(params, signature),
            PublicKey::Bits4096(params) => power_65537(params, signature),
        }
    }
}

fn power_65537<const LIMBS: usize>(
    params: &DynResidueParams<LIMBS>,
    signature: &[u8],
) -> Option<Vec<u8>>
where
    Uint<LIMBS>: Encoding,
{
    if signature.len() != Uint::<LIMBS>::BYTES {
        return None;
    }
    let s = Uint::<LIMBS>::from_be_slice(signature);
    if s >= *params.modulus() {
        return None;
    }
    let base = DynResidue::new(&s, *params);
    let mut power = base;
    for _ in 0..16 {
        power = power.square();
    }
    Some(power.mul(&base).retrieve().to_be_bytes().as_ref().to_vec())
}

/// EMSA-PKCS1-v1_5 (RFC 8017 §9.2) of a SHA-256 digest in `k` bytes:
/// `00 01 FF…FF 00 DigestInfo digest`.
fn encoded(k: usize, digest: &[u8]) -> Vec<u8> {
    // k is at least 256 here; were it too short for the suffix, the block would not be k
    // bytes long and so match no decoded signature.
    let padding = k.saturating_sub(3 + SHA256_DIGEST_INFO.len() + digest.len());
    let mut block = Vec::with_capacity(k);
    block.extend_from_slice(&[0x00, 0x01]);
    block.resize(2 + padding, 0xff);
    block.push(0x00);
    block.extend_from_slice(&SHA256_DIGEST_INFO);
    block.extend_from_slice(digest);
    block
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use rsa::traits::PublicKeyParts;
    use rsa::{BigUint, RsaPrivateKey};

    const KEY_2048: &str = include_str!("../flow/testdata/rsa-test-key.pem");
    const KEY_3072: &str = include_str!("../flow/testdata/rsa-3072-test-key.pem");
    const KEY_4096: &str = include_str!("../flow/testdata/rsa-4096-test-key.pem");
    const KEY_E3: &str = include_str!("../flow/testdata/rsa-e3-test-key.pem");

    fn private(pem: &str) -> RsaPrivateKey {
        RsaPrivateKey::from_pkcs8_pem(pem).expect("test key")
    }

    fn public(key: &RsaPrivateKey) -> Option<PublicKey> {
        PublicKey::new(&key.n().to_bytes_be(), &key.e().to_bytes_be())
    }

    fn sign(key: &RsaPrivateKey, message: &[u8]) -> Vec<u8> {
        SigningKey::<Sha256>::new(key.clone())
            .sign(message)
            .to_vec()
    }

    const MESSAGE: &[u8] = b"eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJib2IifQ";

    #[test]
    fn signatures_of_every_supported_size_verify_and_any_flipped_bit_refuses() {
        for pem in [KEY_2048, KEY_3072, KEY_4096] {
            let key = private(pem);
            let fast = public(&key).expect("e = 65537, whole bytes");
            let signature = sign(&key, MESSAGE);
            assert!(fast.verifies(MESSAGE, &signature));
            for byte in [0, 1, signature.len() / 2, signature.len() - 1] {
                let mut tampered = signature.clone();
                tampered[byte] ^= 0x01;
                assert!(!fast.verifies(MESSAGE, &tampered), "signature byte {byte}");
            }
            let mut other = MESSAGE.to_vec();
            other[10] ^= 0x01;
            assert!(!fast.verifies(&other, &signature));
            assert!(!fast.verifies(b"", &signature));
        }
    }

    #[test]
    fn the_power_is_the_rsa_crates_modpow() {
        let key = private(KEY_2048);
        let fast = public(&key).expect("applies");
        let e = BigUint::from(65537u32);
        for seed in [1u8, 2, 0x5a, 0xc3, 0xfe] {
            let mut s = vec![seed; 256];
            s[0] = 0x12; // below the modulus, whose top byte is larger
            let expected = BigUint::from_bytes_be(&s).modpow(&e, key.n());
            let mut expected = expected.to_bytes_be();
            while expected.len() < 256 {
                expected.insert(0, 0);
            }
            assert_eq!(fast.recover(&s), Some(expected), "seed {seed}");
        }
    }

    #[test]
    fn a_signature_that_is_the_encoded_block_itself_is_refused() {
        // s = EM would pass an exponent-1 mistake; s^65537 is something else entirely.
        let key = private(KEY_2048);
        let fast = public(&key).expect("applies");
        let block = encoded(256, &Sha256::digest(MESSAGE));
        assert!(!fast.verifies(MESSAGE, &block));
    }

    #[test]
    fn out_of_range_and_wrong_length_signatures_are_refused() {
        let key = private(KEY_2048);
        let fast = public(&key).expect("applies");
        let n = key.n().to_bytes_be();
        let signature = sign(&key, MESSAGE);
        // n + 1 still fits k bytes (n is odd); n - 1 is in range but no signature.
        let n_plus_one = (key.n() + BigUint::from(1u8)).to_bytes_be();
        let n_minus_one = (key.n() - BigUint::from(1u8)).to_bytes_be();
        for s in [
            vec![],
            vec![0u8; 255],
            vec![0u8; 256],
            {
                let mut one = vec![0u8; 256];
                one[255] = 1;
                one
            },
            n.clone(),
            vec![0xff; 256],
            n_plus_one,
            n_minus_one,
            [&[0u8][..], &signature].concat(),
            signature[1..].to_vec(),
        ] {
            assert!(!fast.verifies(MESSAGE, &s), "{} bytes", s.len());
        }
        assert!(fast.verifies(MESSAGE, &signature));
    }

    #[test]
    fn keys_this_path_does_not_apply_to_are_left_to_the_rsa_crate() {
        let e3 = private(KEY_E3);
        assert!(public(&e3).is_none(), "e = 3");
        let key = private(KEY_2048);
        let (n, e) = (key.n().to_bytes_be(), key.e().to_bytes_be());
        let mut even = n.clone();
        even[255] &= 0xfe;
        assert!(PublicKey::new(&even, &e).is_none(), "even modulus");
        assert!(PublicKey::new(&n[1..], &e).is_none(), "255 bytes");
        assert!(
            PublicKey::new(&[&[0u8][..], &n].concat(), &e).is_none(),
            "leading zero"
        );
        assert!(PublicKey::new(&[], &e).is_none());
        assert!(PublicKey::new(&n, &[1, 0, 0, 1]).is_none());
        assert!(PublicKey::new(&n, &e).is_some());
    }
}
