//! The token cache's entry format. Entries live in Envoy shared data (shared by every worker
//! of the VM) in a fixed set of slots addressed by the token's SHA-256, so memory is bounded
//! however many tokens are seen: a new token overwrites whatever held its slot. Each entry
//! carries the full digest (a slot collision is a miss, never a wrong identity), an expiry,
//! and the epoch it was written in (bumping the epoch drops every entry at once).

use crate::state::{Identity, IdentityJwt, Verdict};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::rc::Rc;

/// 2: active entries end with the identity JWT (see [`put_identity_jwt`]).
const FORMAT: u8 = 2;
const KIND_ACTIVE: u8 = 1;
const KIND_INVALID: u8 = 2;
const KIND_GLOBAL: u8 = 3;

pub type TokenDigest = [u8; 32];

/// The size of an entry that carries no identity (format, digest, epoch, expiry, kind).
pub const MIN_ENTRY_BYTES: usize = 1 + 32 + 4 + 8 + 1;

pub fn digest(token: &str) -> TokenDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// The cache key of a token for one service of one configuration: a token's verdict depends
/// on who answers (the configuration's namespace: see [`crate::config::cache_namespace`]) and
/// on the service that asks (service-bound tokens, `global_credentials`), so each caches its
/// own. Derived from the token's digest, so a revocation (which names only the digest) finds it.
pub fn scoped(namespace: &str, service: &str, token: &TokenDigest) -> TokenDigest {
    let mut hasher = Sha256::new();
    hasher.update(namespace.as_bytes());
    hasher.update([0u8]);
    hasher.update(service.as_bytes());
    hasher.update([0u8]);
    hasher.update(token);
    hasher.finalize().into()
}

pub fn digest_from_hex(hex: &str) -> Option<TokenDigest> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in bytes.chunks(2).enumerate() {
        let text = std::str::from_utf8(chunk).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

/// The prefix of a configuration's slot keys in shared data (`slot_key` appends the slot).
pub fn slot_prefix(namespace: &str) -> String {
    format!("oauth2.{namespace}.cache.")
}

/// The shared-data key of a configuration's cache epoch.
pub fn epoch_key(namespace: &str) -> String {
    format!("oauth2.{namespace}.epoch")
}

pub fn slot_key(prefix: &str, digest: &TokenDigest, slots: u32) -> String {
    let n = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    format!("{prefix}{}", n % slots.max(1))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub digest: TokenDigest,
    pub epoch: u32,
    /// Unix seconds after which the entry is stale.
    pub expires_at: u64,
    pub verdict: Verdict,
}

impl Entry {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.push(FORMAT);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        match &self.verdict {
            Verdict::Invalid => out.push(KIND_INVALID),
            Verdict::GlobalToken => out.push(KIND_GLOBAL),
            Verdict::Active(identity) => {
                out.push(KIND_ACTIVE);
                for field in identity_fields(identity) {
                    put_field(&mut out, field);
                }
                put_identity_jwt(&mut out, identity.identity_jwt.as_ref());
            }
        }
        out
    }

    /// The encoding, unless it is longer than `limit` bytes (such an entry is not cached).
    pub fn encode_within(&self, limit: usize) -> Option<Vec<u8>> {
        Some(self.encode()).filter(|bytes| bytes.len() <= limit)
    }

    pub fn decode(bytes: &[u8]) -> Option<Entry> {
        let mut r = Reader { bytes, at: 0 };
        if r.byte()? != FORMAT {
            return None;
        }
        let digest: TokenDigest = r.take(32)?.try_into().ok()?;
        let epoch = u32::from_be_bytes(r.take(4)?.try_into().ok()?);
        let expires_at = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
        let verdict = match r.byte()? {
            KIND_INVALID => Verdict::Invalid,
            KIND_GLOBAL => Verdict::GlobalToken,
            KIND_ACTIVE => Verdict::Active(Rc::new(Identity {
                consumer_id: r.field()?,
                consumer_custom_id: r.field()?,
                consumer_username: r.field()?,
                credential_identifier: r.field()?,
                authenticated_userid: r.field()?,
                authenticated_scope: r.field()?,
                expires_at: None,
                identity_jwt: r.identity_jwt()?,
            })),
            _ => return None,
        };
        Some(Entry {
            digest,
            epoch,
            expires_at,
            verdict,
        })
    }

    /// The entry answers for this token now, in this epoch.
    pub fn answers(&self, digest: &TokenDigest, epoch: u32, now: u64) -> bool {
        self.digest == *digest && self.epoch == epoch && now <= self.expires_at
    }
}

fn identity_fields(i: &Identity) -> [Option<&str>; 6] {
    [
        i.consumer_id.as_deref(),
        i.consumer_custom_id.as_deref(),
        i.consumer_username.as_deref(),
        i.credential_identifier.as_deref(),
        i.authenticated_userid.as_deref(),
        i.authenticated_scope.as_deref(),
    ]
}

/// A field is a 16-bit length (0xFFFF = absent) and its bytes.
fn put_field(out: &mut Vec<u8>, field: Option<&str>) {
    match field {
        Some(text) => {
            let bytes = text.as_bytes();
            let len = bytes.len().min(0xFFFE);
            out.extend_from_slice(&(len as u16).to_be_bytes());
            out.extend_from_slice(bytes.get(..len).unwrap_or_default());
        }
        None => out.extend_from_slice(&0xFFFFu16.to_be_bytes()),
    }
}

const IDENTITY_JWT_NONE: u8 = 0;
const IDENTITY_JWT_ACCESS_TOKEN: u8 = 1;
const IDENTITY_JWT_ISSUED: u8 = 2;

/// A kind byte, and for an issued identity JWT its text (a field). A JWT verified locally
/// stores no copy of itself: the request carries it.
fn put_identity_jwt(out: &mut Vec<u8>, jwt: Option<&IdentityJwt>) {
    match jwt {
        None => out.push(IDENTITY_JWT_NONE),
        Some(IdentityJwt::AccessToken) => out.push(IDENTITY_JWT_ACCESS_TOKEN),
        Some(IdentityJwt::Issued(text)) => {
            out.push(IDENTITY_JWT_ISSUED);
            put_field(out, Some(text));
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }

    fn field(&mut self) -> Option<Option<String>> {
        let len = u16::from_be_bytes(self.take(2)?.try_into().ok()?);
        if len == 0xFFFF {
            return Some(None);
        }
        let text = std::str::from_utf8(self.take(len as usize)?).ok()?;
        Some(Some(text.to_string()))
    }

    fn identity_jwt(&mut self) -> Option<Option<IdentityJwt>> {
        match self.byte()? {
            IDENTITY_JWT_NONE => Some(None),
            IDENTITY_JWT_ACCESS_TOKEN => Some(Some(IdentityJwt::AccessToken)),
            IDENTITY_JWT_ISSUED => Some(Some(IdentityJwt::Issued(self.field()??))),
            _ => None,
        }
    }
}

/// A worker's own copy of recent answers, in front of shared data: a hit costs no host call
/// and no decoding. It follows the same rules (digest, epoch, expiry); the root context removes
/// revoked digests from it on every poll, so it never outlives the shared cache's guarantees.
/// Bounded: when full it starts over (hot tokens come back at the next request).
#[derive(Debug)]
pub struct LocalCache {
    /// Keyed SipHash (the default): a client choosing tokens can cheaply grind a few bits of
    /// their digests, so an unkeyed hash of the digest would let it pile entries into one
    /// bucket.
    entries: HashMap<TokenDigest, Entry>,
    capacity: usize,
}

impl LocalCache {
    pub fn new(capacity: usize) -> Self {
        LocalCache {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, digest: &TokenDigest, epoch: u32, now: u64) -> Option<&Verdict> {
        self.entries
            .get(digest)
            .filter(|e| e.answers(digest, epoch, now))
            .map(|e| &e.verdict)
    }

    pub fn put(&mut self, entry: Entry) {
        if self.entries.len() >= self.capacity && !self.entries.contains_key(&entry.digest) {
            self.entries.clear();
        }
        self.entries.insert(entry.digest, entry);
    }

    pub fn remove(&mut self, digest: &TokenDigest) {
        self.entries.remove(digest);
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// How long a check's answer may be reused.
pub fn expiry_for(verdict: &Verdict, now: u64, max_ttl_s: u64, negative_ttl_s: u64) -> u64 {
    match verdict {
        Verdict::Active(identity) => {
            let cap = now.saturating_add(max_ttl_s);
            identity.expires_at.map_or(cap, |exp| exp.min(cap))
        }
        _ => now.saturating_add(negative_ttl_s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            consumer_id: Some("c1".into()),
            consumer_custom_id: None,
            consumer_username: Some("bob".into()),
            credential_identifier: Some("app".into()),
            authenticated_userid: Some("clark".into()),
            authenticated_scope: Some("email profile".into()),
            expires_at: None,
            identity_jwt: None,
        }
    }

    #[test]
    fn each_service_has_its_own_key_for_a_token() {
        let token = digest("t");
        assert_ne!(scoped("n", "a", &token), scoped("n", "b", &token));
        assert_eq!(scoped("n", "a", &token), scoped("n", "a", &digest("t")));
        assert_ne!(scoped("n", "a", &token), token);
        // Another configuration's namespace: another key (and no ambiguity in the joins).
        assert_ne!(scoped("m", "a", &token), scoped("n", "a", &token));
        assert_ne!(scoped("n", "", &token), scoped("", "n", &token));
    }

    #[test]
    fn entries_round_trip() {
        let with_jwt = |jwt| {
            Verdict::Active(
                Identity {
                    identity_jwt: Some(jwt),
                    ..identity()
                }
                .into(),
            )
        };
        for verdict in [
            Verdict::Active(identity().into()),
            with_jwt(IdentityJwt::AccessToken),
            with_jwt(IdentityJwt::Issued("a.b.c".into())),
            Verdict::Invalid,
            Verdict::GlobalToken,
        ] {
            let e = Entry {
                digest: digest("t"),
                epoch: 7,
                expires_at: 1000,
                verdict,
            };
            assert_eq!(Entry::decode(&e.encode()), Some(e));
        }
    }

    #[test]
    fn truncated_or_foreign_bytes_are_no_entry() {
        let bytes = Entry {
            digest: digest("t"),
            epoch: 1,
            expires_at: 9,
            verdict: Verdict::Active(identity().into()),
        }
        .encode();
        for n in 0..bytes.len() {
            assert_eq!(Entry::decode(bytes.get(..n).unwrap_or_default()), None);
        }
        assert_eq!(Entry::decode(b"\x09garbage"), None);
    }

    #[test]
    fn an_entry_answers_only_its_token_epoch_and_lifetime() {
        let e = Entry {
            digest: digest("t"),
            epoch: 3,
            expires_at: 100,
            verdict: Verdict::Invalid,
        };
        assert!(e.answers(&digest("t"), 3, 100));
        assert!(!e.answers(&digest("u"), 3, 100));
        assert!(!e.answers(&digest("t"), 4, 100));
        assert!(!e.answers(&digest("t"), 3, 101));
    }

    #[test]
    fn expiry_is_capped_by_token_and_ttl() {
        let mut i = identity();
        i.expires_at = Some(150);
        assert_eq!(
            expiry_for(&Verdict::Active(i.clone().into()), 100, 60, 5),
            150
        );
        i.expires_at = Some(500);
        assert_eq!(expiry_for(&Verdict::Active(i.into()), 100, 60, 5), 160);
        assert_eq!(expiry_for(&Verdict::Invalid, 100, 60, 5), 105);
    }

    #[test]
    fn the_local_cache_answers_like_shared_data_and_stays_bounded() {
        let mut local = LocalCache::new(2);
        let entry = |t: &str| Entry {
            digest: digest(t),
            epoch: 1,
            expires_at: 100,
            verdict: Verdict::Invalid,
        };
        local.put(entry("a"));
        local.put(entry("b"));
        assert_eq!(local.get(&digest("a"), 1, 100), Some(&Verdict::Invalid));
        assert_eq!(local.get(&digest("a"), 2, 100), None, "another epoch");
        assert_eq!(local.get(&digest("a"), 1, 101), None, "expired");
        local.remove(&digest("a"));
        assert_eq!(local.get(&digest("a"), 1, 100), None, "revoked");
        local.put(entry("c"));
        local.put(entry("d"));
        assert!(local.len() <= 2);
        local.clear();
        assert!(local.is_empty());
    }

    #[test]
    fn hex_digests_parse() {
        let d = digest("abc");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(digest_from_hex(&hex), Some(d));
        assert_eq!(digest_from_hex("zz"), None);
    }

    #[test]
    fn slots_stay_in_range() {
        for t in ["a", "b", "c", "d"] {
            let key = slot_key(&slot_prefix("ns"), &digest(t), 4);
            assert!([
                "oauth2.ns.cache.0",
                "oauth2.ns.cache.1",
                "oauth2.ns.cache.2",
                "oauth2.ns.cache.3"
            ]
            .contains(&key.as_str()));
        }
    }

    #[test]
    fn entries_beyond_the_byte_limit_are_not_cached() {
        let small = Entry {
            digest: digest("t"),
            epoch: 1,
            expires_at: 100,
            verdict: Verdict::Invalid,
        };
        assert_eq!(small.encode().len(), MIN_ENTRY_BYTES);
        assert!(small.encode_within(MIN_ENTRY_BYTES).is_some());
        let mut long = identity();
        long.consumer_username = Some("x".repeat(3000));
        let big = Entry {
            verdict: Verdict::Active(long.into()),
            ..small
        };
        assert!(big.encode_within(2048).is_none());
        assert!(big.encode_within(4096).is_some());
    }
}
