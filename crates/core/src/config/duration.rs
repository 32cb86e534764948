//! Human-readable durations (`30s`, `5m`, `1h 30m`) for the configuration file.
//!
//! A newtype rather than `humantime_serde` so the JSON Schema can carry a `pattern`: the schema
//! check then reports a malformed duration together with every other error, with its path.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern a duration must match: one or more `<number><unit>` groups, optionally
/// separated by spaces, with every unit humantime parses. That includes `months`/`M` and
/// `years`/`y`, which humantime also *writes* for durations over a month: without them a
/// loaded configuration with `interval: 400d` could not be loaded again once written back
/// (found by the `config_loader` fuzz target).
pub const DURATION_PATTERN: &str = r"^\s*([0-9]+\s*(nsec|ns|usec|us|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|w|months|month|M|years|year|y)\s*)+$";

/// A duration written as text in the configuration, e.g. `30s` or `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The wrapped [`Duration`].
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<HumanDuration> for Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text)
            .map(HumanDuration)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {text:?}: {e}")))
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration such as `30s`, `5m` or `1h 30m`.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        let d: HumanDuration = serde_json::from_str("\"1h 30m\"").unwrap();
        assert_eq!(d.get(), Duration::from_secs(5400));
    }

    #[test]
    fn long_unit_names_match_the_schema_pattern_too() {
        let d: HumanDuration = serde_json::from_str("\"5 minutes\"").unwrap();
        assert_eq!(d.get(), Duration::from_secs(300));
        let re = regex_lite_match(DURATION_PATTERN, "5 minutes");
        assert!(re, "pattern must accept what humantime accepts");
    }

    fn regex_lite_match(pattern: &str, text: &str) -> bool {
        let schema = serde_json::json!({"type": "string", "pattern": pattern});
        jsonschema::is_valid(&schema, &serde_json::json!(text))
    }

    #[test]
    fn what_humantime_writes_matches_the_pattern() {
        for secs in [
            0,
            1,
            59,
            90,
            3600,
            86_400 * 40,
            86_400 * 400,
            86_400 * 365 * 30 + 7,
        ] {
            let d = HumanDuration::from_secs(secs);
            let text = d.to_string();
            assert!(regex_lite_match(DURATION_PATTERN, &text), "{text}");
            assert_eq!(
                serde_json::from_value::<HumanDuration>(text.into()).unwrap(),
                d
            );
        }
        let d = HumanDuration(Duration::new(1, 5));
        assert!(regex_lite_match(DURATION_PATTERN, &d.to_string()), "{d}");
    }

    #[test]
    fn rejects_unitless_numbers() {
        let err = serde_json::from_str::<HumanDuration>("\"30\"").unwrap_err();
        assert!(err.to_string().contains("invalid duration"), "{err}");
    }

    #[test]
    fn round_trips_through_display() {
        let d = HumanDuration::from_secs(90);
        let text = serde_json::to_string(&d).unwrap();
        assert_eq!(text, "\"1m 30s\"");
        assert_eq!(serde_json::from_str::<HumanDuration>(&text).unwrap(), d);
    }
}
