//! Protocol revisions and eras.

use std::fmt;

/// The two ways a client and server agree on a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Era {
    /// 2024-11-05 … 2025-11-25: `initialize` handshake, sessions, server→client requests.
    Handshake,
    /// 2026-07-28: no handshake; every request carries its version and capabilities in `_meta`.
    PerRequest,
}

/// A protocol revision this crate knows.
///
/// Ordered by date, so `v >= ProtocolVersion::V2025_11_25` reads as "at least 2025-11-25".
///
/// ```
/// use taskwire_protocol::{Era, ProtocolVersion};
/// let v: ProtocolVersion = "2025-06-18".parse().unwrap();
/// assert_eq!(v.era(), Era::Handshake);
/// assert!(ProtocolVersion::LATEST > v);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProtocolVersion {
    /// 2024-11-05 (HTTP+SSE transport era).
    V2024_11_05,
    /// 2025-03-26 (Streamable HTTP, batching).
    V2025_03_26,
    /// 2025-06-18 (`MCP-Protocol-Version` header, elicitation).
    V2025_06_18,
    /// 2025-11-25 (experimental tasks, SSE polling).
    V2025_11_25,
    /// 2026-07-28 (per-request metadata, MRTR, tasks extension).
    V2026_07_28,
}

impl ProtocolVersion {
    /// Every known revision, newest first (the order `server/discover` lists them in).
    pub const ALL: [ProtocolVersion; 5] =
        [Self::V2026_07_28, Self::V2025_11_25, Self::V2025_06_18, Self::V2025_03_26, Self::V2024_11_05];
    /// The newest revision.
    pub const LATEST: ProtocolVersion = Self::V2026_07_28;
    /// The newest revision that has an `initialize` handshake.
    pub const LATEST_HANDSHAKE: ProtocolVersion = Self::V2025_11_25;
    /// What a handshake-era HTTP request without `MCP-Protocol-Version` is assumed to speak.
    pub const HTTP_DEFAULT: ProtocolVersion = Self::V2025_03_26;

    /// The wire spelling, e.g. `"2025-11-25"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::V2024_11_05 => "2024-11-05",
            Self::V2025_03_26 => "2025-03-26",
            Self::V2025_06_18 => "2025-06-18",
            Self::V2025_11_25 => "2025-11-25",
            Self::V2026_07_28 => "2026-07-28",
        }
    }

    /// The era this revision belongs to.
    pub const fn era(self) -> Era {
        match self {
            Self::V2026_07_28 => Era::PerRequest,
            _ => Era::Handshake,
        }
    }

    /// The version a server answers to an `initialize` that asked for `requested`: the same
    /// one when it is a known handshake revision, else the newest handshake revision.
    pub fn negotiate_handshake(requested: &str) -> ProtocolVersion {
        match requested.parse::<ProtocolVersion>() {
            Ok(v) if v.era() == Era::Handshake => v,
            _ => Self::LATEST_HANDSHAKE,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown revision string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownVersion;

impl std::str::FromStr for ProtocolVersion {
    type Err = UnknownVersion;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or(UnknownVersion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_echoes_known_handshake_versions_and_never_offers_per_request_era() {
        assert_eq!(ProtocolVersion::negotiate_handshake("2025-06-18"), ProtocolVersion::V2025_06_18);
        assert_eq!(ProtocolVersion::negotiate_handshake("2026-07-28"), ProtocolVersion::V2025_11_25);
        assert_eq!(ProtocolVersion::negotiate_handshake("1999-01-01"), ProtocolVersion::V2025_11_25);
    }

    #[test]
    fn all_versions_round_trip_through_their_spelling() {
        for v in ProtocolVersion::ALL {
            assert_eq!(v.as_str().parse::<ProtocolVersion>(), Ok(v));
        }
    }
}
