//! A code or refresh token presented again after it was redeemed (RFC 9700 §4.14, RFC 6819
//! §5.2.2.3): a client racing itself, or a stolen copy?
//!
//! Redemption is atomic: of several requests carrying the same code or refresh token, exactly
//! one gets tokens. Requests that arrive within `grace` seconds of that redemption are the
//! client racing itself (two tabs refreshing at once, a retry fired before the first answer):
//! they get the ordinary error and revoke nothing, so a race never kills the winner's fresh
//! tokens. A presentation later than that is no race: the credential was copied, so the whole
//! family it produced is revoked. The window never issues anything (unlike Hydra's refresh
//! grace period, which re-issues): it only spares revocation, and it is short so that a
//! thief's replay long after the client's redemption is still detected.

/// The default window, in seconds: longer than one redemption takes under load, shorter than
/// a human or a scheduled job would take to replay a copied credential.
pub const DEFAULT_GRACE_S: i64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// Within the window of the winning redemption: refuse, revoke nothing.
    LostRace,
    /// After the window (or redeemed at an unknown time): revoke the family.
    Theft,
}

/// `redeemed_at` is when the winning redemption happened (`None`: unknown, e.g. a refresh
/// token retired before that time was recorded).
pub fn classify(redeemed_at: Option<i64>, now: i64, grace_s: i64) -> Replay {
    match redeemed_at {
        Some(at) if now.saturating_sub(at) < grace_s => Replay::LostRace,
        _ => Replay::Theft,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_presentations_within_the_window_are_races() {
        assert_eq!(classify(Some(100), 100, 5), Replay::LostRace);
        assert_eq!(classify(Some(100), 104, 5), Replay::LostRace);
        assert_eq!(classify(Some(100), 105, 5), Replay::Theft);
        assert_eq!(classify(Some(100), 5000, 5), Replay::Theft);
        assert_eq!(classify(None, 100, 5), Replay::Theft);
        // A zero window makes every later presentation a theft.
        assert_eq!(classify(Some(100), 100, 0), Replay::Theft);
        // A clock that stepped back is still within the window, not a theft.
        assert_eq!(classify(Some(100), 90, 5), Replay::LostRace);
    }
}
