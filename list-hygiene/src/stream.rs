//! The two streams of mail, which every suppression, limit and policy is
//! scoped by.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The two kinds of mail mailroom keeps apart in every respect: queues,
/// workers, limits, routes, keys and reputation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Receipts, password resets: mail the recipient is waiting for.
    Transactional,
    /// Newsletters and campaigns.
    Marketing,
}

impl Stream {
    pub const ALL: [Stream; 2] = [Stream::Transactional, Stream::Marketing];

    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Transactional => "transactional",
            Stream::Marketing => "marketing",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown stream {0:?}: expected \"transactional\" or \"marketing\"")]
pub struct UnknownStream(pub String);

impl FromStr for Stream {
    type Err = UnknownStream;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "transactional" => Ok(Stream::Transactional),
            "marketing" => Ok(Stream::Marketing),
            other => Err(UnknownStream(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_round_trips_through_its_name() {
        for s in Stream::ALL {
            assert_eq!(s.as_str().parse::<Stream>(), Ok(s));
        }
    }

    #[test]
    fn an_unknown_stream_names_the_accepted_values() {
        let err = "bulk".parse::<Stream>().unwrap_err();
        assert!(err.to_string().contains("transactional"), "{err}");
        assert!(err.to_string().contains("marketing"), "{err}");
        assert!("Transactional".parse::<Stream>().is_err());
    }
}
