//! Cron schedules of `spec.backup.schedule[].schedule`, as the operator reads them: five
//! fields, or six with a leading seconds field. Parsing and iteration are croner's; this module
//! converts to and from the project's time type.

use chrono::{DateTime, Utc};
use croner::Cron;
use jiff::Timestamp;

/// Why a cron expression was refused.
#[derive(Debug, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {reason}")]
pub struct ScheduleError {
    /// The expression.
    pub expr: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
}

impl CronSchedule {
    /// Parses a five- or six-field expression.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        expr.parse::<Cron>()
            .map(|cron| Self { cron })
            .map_err(|e| ScheduleError {
                expr: expr.to_owned(),
                reason: e.to_string(),
            })
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = to_chrono(t)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .and_then(|next| from_chrono(&next))
    }

    /// Occurrences in `(after, until]`, oldest first, at most `limit` of them.
    pub fn between(&self, after: Timestamp, until: Timestamp, limit: usize) -> Vec<Timestamp> {
        let mut out = Vec::new();
        let mut cursor = after;
        while out.len() < limit {
            match self.next_after(cursor) {
                Some(next) if next <= until => {
                    out.push(next);
                    cursor = next;
                }
                _ => break,
            }
        }
        out
    }
}

fn to_chrono(t: Timestamp) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.as_second(), u32::try_from(t.subsec_nanosecond()).ok()?)
}

fn from_chrono(t: &DateTime<Utc>) -> Option<Timestamp> {
    Timestamp::new(
        t.timestamp(),
        i32::try_from(t.timestamp_subsec_nanos()).ok()?,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn five_and_six_field_expressions() {
        let daily = CronSchedule::parse("0 4 * * *").unwrap();
        assert_eq!(
            daily.next_after(ts("2026-11-24T03:59:00Z")),
            Some(ts("2026-11-24T04:00:00Z"))
        );
        let every_30s = CronSchedule::parse("*/30 * * * * *").unwrap();
        assert_eq!(
            every_30s.between(ts("2026-11-24T00:00:00Z"), ts("2026-11-24T00:01:00Z"), 10),
            vec![ts("2026-11-24T00:00:30Z"), ts("2026-11-24T00:01:00Z")]
        );
    }

    #[test]
    fn between_respects_the_limit() {
        let minutely = CronSchedule::parse("* * * * *").unwrap();
        let got = minutely.between(ts("2026-11-24T00:00:00Z"), ts("2026-11-25T00:00:00Z"), 3);
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn garbage_is_an_error_with_the_expression() {
        let e = CronSchedule::parse("every day").unwrap_err();
        assert!(e.to_string().contains("every day"));
    }
}
