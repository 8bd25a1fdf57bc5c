//! What the webhook does to a pod: the `snug.dev/mode` annotation.

use std::{fmt, str::FromStr};

use crate::Error;

/// The webhook's mode for a pod: from the pod's `snug.dev/mode` annotation, else the
/// namespace's, else [`Mode::Observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Inject the sidecar, leave resources alone, write the recommendation as an annotation.
    #[default]
    Observe,
    /// Inject the sidecar and set requests/limits from a confident profile.
    Apply,
    /// Change nothing.
    Off,
}

impl Mode {
    /// The annotation value of this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Apply => "apply",
            Mode::Off => "off",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        [Mode::Observe, Mode::Apply, Mode::Off]
            .into_iter()
            .find(|mode| mode.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| Error::Mode(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_round_trips() {
        assert_eq!("Apply".parse::<Mode>(), Ok(Mode::Apply));
        for mode in [Mode::Observe, Mode::Apply, Mode::Off] {
            assert_eq!(mode.as_str().parse::<Mode>(), Ok(mode));
        }
        assert!("enforce".parse::<Mode>().is_err());
    }
}
