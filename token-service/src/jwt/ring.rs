//! What the signing keys' times mean (docs/jwt-access-tokens.md §3), as pure functions of
//! the rows and the clock, so every replica reading the same rows at the same second agrees:
//!
//! - a key whose `retired_at` has passed is `retired`;
//! - otherwise, a key whose `activates_at` is still to come is `next` (published, not signing);
//! - otherwise it is `active`. Writes keep at most one key active at any second: whenever the
//!   keys change, [`reschedule`] gives every key that is not retired yet the `retired_at` of
//!   the moment the key after it activates.
//!
//! A retired key stays published until `expires_at` (its retirement plus the longest token
//! lifetime then) and `signed_until` (the latest `exp` it signed, rounded up) have both passed.

use crate::store::SigningKeyRow;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Next,
    Active,
    Retired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Next => "next",
            Status::Active => "active",
            Status::Retired => "retired",
        }
    }
}

pub fn status(key: &SigningKeyRow, now: i64) -> Status {
    if key.retired_at.is_some_and(|retired| retired <= now) {
        Status::Retired
    } else if key.activates_at > now {
        Status::Next
    } else {
        Status::Active
    }
}

/// When a key stops being published: `None` while it is not retired.
pub fn published_until(key: &SigningKeyRow) -> Option<i64> {
    let expires = key.expires_at.or(key.retired_at)?;
    Some(expires.max(key.signed_until.unwrap_or(i64::MIN)))
}

pub fn is_published(key: &SigningKeyRow, now: i64) -> bool {
    match published_until(key) {
        Some(until) => now < until,
        None => true,
    }
}

/// The key that signs at `now`: the active one (the latest to activate, should writes ever
/// have left two).
pub fn active(keys: &[SigningKeyRow], now: i64) -> Option<&SigningKeyRow> {
    keys.iter()
        .filter(|key| status(key, now) == Status::Active)
        .max_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)))
}

/// The earliest key waiting to activate (not retired before it did).
pub fn first_next(keys: &[SigningKeyRow], now: i64) -> Option<&SigningKeyRow> {
    keys.iter()
        .filter(|key| status(key, now) == Status::Next)
        .min_by(|a, b| (a.activates_at, &a.kid).cmp(&(b.activates_at, &b.kid)))
}

/// When a key retired at `retired_at` expires: at once if it never signed (retired before it
/// activated), else once a token it signed last may have expired.
pub fn expiry(key: &SigningKeyRow, retired_at: i64, longest_lifetime_s: i64) -> i64 {
    if retired_at <= key.activates_at {
        retired_at
    } else {
        retired_at.saturating_add(longest_lifetime_s)
    }
}

/// Gives every key not yet retired at `now` the retirement its successor's activation means
/// (none for the last), and the matching `expires_at`. Answers the keys whose times changed
/// (the rows to write).
pub fn reschedule(
    keys: &mut [SigningKeyRow],
    now: i64,
    longest_lifetime_s: i64,
) -> Vec<SigningKeyRow> {
    let mut live: Vec<usize> = (0..keys.len())
        .filter(|&i| status(&keys[i], now) != Status::Retired)
        .collect();
    live.sort_by(|&a, &b| {
        (keys[a].activates_at, &keys[a].kid).cmp(&(keys[b].activates_at, &keys[b].kid))
    });
    let mut changed = Vec::new();
    for (position, &index) in live.iter().enumerate() {
        let retired_at = live
            .get(position + 1)
            .map(|&after| keys[after].activates_at);
        let expires_at = retired_at.map(|at| expiry(&keys[index], at, longest_lifetime_s));
        let key = &mut keys[index];
        if key.retired_at != retired_at || key.expires_at != expires_at {
            key.retired_at = retired_at;
            key.expires_at = expires_at;
            changed.push(key.clone());
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, activates_at: i64) -> SigningKeyRow {
        SigningKeyRow {
            kid: kid.into(),
            alg: "RS256".into(),
            private_key: String::new(),
            public_jwk: "{}".into(),
            created_at: activates_at,
            activates_at,
            retired_at: None,
            expires_at: None,
            signed_until: None,
        }
    }

    #[test]
    fn a_new_key_retires_the_active_one_the_second_it_activates() {
        let mut keys = vec![key("a", 100), key("b", 205)];
        let changed = reschedule(&mut keys, 200, 7200);
        assert_eq!(changed.len(), 1);
        assert_eq!(keys[0].retired_at, Some(205));
        assert_eq!(keys[0].expires_at, Some(205 + 7200));
        assert_eq!(status(&keys[0], 204), Status::Active);
        assert_eq!(status(&keys[1], 204), Status::Next);
        assert_eq!(status(&keys[0], 205), Status::Retired);
        assert_eq!(status(&keys[1], 205), Status::Active);
        for now in 200..210 {
            let actives = keys
                .iter()
                .filter(|k| status(k, now) == Status::Active)
                .count();
            assert_eq!(actives, 1, "at {now}");
        }
    }

    #[test]
    fn retiring_a_next_key_gives_the_active_one_back_its_open_end() {
        let mut keys = vec![key("a", 100), key("b", 205)];
        reschedule(&mut keys, 200, 7200);
        keys[1].retired_at = Some(201);
        keys[1].expires_at = Some(expiry(&keys[1], 201, 7200));
        reschedule(&mut keys, 201, 7200);
        assert_eq!(keys[0].retired_at, None);
        assert_eq!(active(&keys, 300).map(|k| k.kid.as_str()), Some("a"));
        assert_eq!(
            keys[1].expires_at,
            Some(201),
            "a key that never signed expires at once"
        );
        assert!(!is_published(&keys[1], 201));
    }

    #[test]
    fn a_retired_key_stays_published_until_its_last_token_expired() {
        let mut retired = key("a", 100);
        retired.retired_at = Some(200);
        retired.expires_at = Some(expiry(&retired, 200, 60));
        assert!(is_published(&retired, 259));
        assert!(!is_published(&retired, 260));
        retired.signed_until = Some(400);
        assert!(is_published(&retired, 399));
        assert!(!is_published(&retired, 400));
    }
}
