//! Process-wide shared data (the native counterpart of proxy-wasm's shared data): one map for
//! every worker thread, with the same compare-and-swap semantics the flow relies on (the cache
//! epoch is bumped with CAS). Sharded so workers rarely wait on one another, and bounded: a key
//! count per shard and a value size, so no input can grow it without limit. The filter's own
//! keys are already bounded (the epoch, and `cache.slots` slot keys of at most
//! `cache.max_entry_bytes` each); these bounds only hold if that ever stops being true.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

const SHARDS: usize = 64;
/// Keys one shard holds at most (1,048,576 in all: well above the largest slot count).
const KEYS_PER_SHARD: usize = 16_384;
/// Largest value stored (cache entries are capped far below this by `max_entry_bytes`).
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

#[derive(Default)]
struct Slot {
    value: Vec<u8>,
    /// Changes on every write; never 0 (0 means "no CAS" to callers).
    cas: u32,
}

pub struct SharedData {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Slot>>>,
    keys_per_shard: usize,
}

impl Default for SharedData {
    fn default() -> SharedData {
        SharedData::new()
    }
}

impl SharedData {
    pub fn new() -> SharedData {
        SharedData::with_bound(KEYS_PER_SHARD)
    }

    fn with_bound(keys_per_shard: usize) -> SharedData {
        SharedData {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            keys_per_shard,
        }
    }

    fn shard(&self, key: &str) -> Option<MutexGuard<'_, HashMap<String, Slot>>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        let shard = self.shards.get(index)?;
        // A panic while a shard was locked leaves a map that is still a valid map: keep going
        // (the cache only ever answers what the entries' own digests and epochs vouch for).
        Some(
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    /// The value and its CAS version; `(None, None)` for a key never written.
    pub fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>) {
        let Some(shard) = self.shard(key) else {
            return (None, None);
        };
        match shard.get(key) {
            Some(slot) => (Some(slot.value.clone()), Some(slot.cas)),
            None => (None, None),
        }
    }

    /// Writes `value` unless `cas` (non-zero) no longer matches the key's version, as Envoy's
    /// shared data does (a key not yet written accepts any `cas`). `false` when refused: a CAS
    /// mismatch, a value over the size bound, or a new key in a full shard.
    pub fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool {
        if value.len() > MAX_VALUE_BYTES {
            return false;
        }
        let Some(mut shard) = self.shard(key) else {
            return false;
        };
        if let Some(slot) = shard.get_mut(key) {
            if cas.is_some_and(|c| c != 0 && c != slot.cas) {
                return false;
            }
            slot.value.clear();
            slot.value.extend_from_slice(value);
            slot.cas = next_cas(slot.cas);
            return true;
        }
        if shard.len() >= self.keys_per_shard {
            return false;
        }
        shard.insert(
            key.to_string(),
            Slot {
                value: value.to_vec(),
                cas: 1,
            },
        );
        true
    }
}

fn next_cas(cas: u32) -> u32 {
    cas.wrapping_add(1).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_guards_concurrent_writers() {
        let data = SharedData::new();
        assert_eq!(data.get("k"), (None, None));
        assert!(data.set("k", b"1", None));
        let (value, cas) = data.get("k");
        assert_eq!(value.as_deref(), Some(&b"1"[..]));
        assert!(data.set("k", b"2", cas));
        // The version moved on: the stale writer loses.
        assert!(!data.set("k", b"3", cas));
        assert_eq!(data.get("k").0.as_deref(), Some(&b"2"[..]));
        // No CAS (or 0): unconditional, like proxy-wasm's.
        assert!(data.set("k", b"4", Some(0)));
        assert!(data.set("k", b"5", None));
        assert_eq!(data.get("k").0.as_deref(), Some(&b"5"[..]));
    }

    #[test]
    fn bounded_in_keys_and_value_size() {
        let data = SharedData::with_bound(2);
        let written = (0..SHARDS * 4)
            .filter(|i| data.set(&format!("key-{i}"), b"v", None))
            .count();
        assert!(written <= SHARDS * 2, "{written}");
        assert!(!data.set("big", &vec![0; MAX_VALUE_BYTES + 1], None));
        // An existing key can always be rewritten (evictions must work when full).
        assert!(data.set("key-0", b"", None) || data.get("key-0").0.is_none());
    }

    #[test]
    fn shared_across_threads() {
        let data = std::sync::Arc::new(SharedData::new());
        let writers: Vec<_> = (0..4)
            .map(|t| {
                let data = data.clone();
                std::thread::spawn(move || {
                    for i in 0..100 {
                        assert!(data.set(&format!("{t}-{i}"), b"x", None));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        assert_eq!(data.get("3-99").0.as_deref(), Some(&b"x"[..]));
    }
}
