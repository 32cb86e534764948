//! The retention window of a schedule: how far back the kept backups reach.
//!
//! Rule: a schedule keeping N backups taken every I covers about N·I. For irregular
//! expressions (lists such as `0 1,13 * * *`, or weekday sets) I is the **shortest** gap between
//! two consecutive runs within the next year, because that is the worst case: the window is
//! never overestimated. `count` 0 keeps every backup (the operator applies no retention), so the
//! window is unbounded.

use jiff::{SignedDuration, Timestamp};

use crate::schedule::CronSchedule;

/// Runs examined when looking for the shortest gap (enough for a year of hourly runs).
const SAMPLE_RUNS: usize = 10_000;

/// The retention window of `count` backups on `schedule`, looking ahead from `from`; `None`
/// when unbounded (count 0) or when the schedule never runs.
pub fn retention_window(
    schedule: &CronSchedule,
    count: i64,
    from: Timestamp,
) -> Option<SignedDuration> {
    window_from_gap(shortest_gap(schedule, from)?, count)
}

/// The window of `count` backups taken at least `gap` apart; `None` when unbounded (count 0).
pub fn window_from_gap(gap: SignedDuration, count: i64) -> Option<SignedDuration> {
    if count <= 0 {
        return None;
    }
    gap.checked_mul(i32::try_from(count).unwrap_or(i32::MAX))
}

/// The shortest time between two consecutive runs within the next year.
pub fn shortest_gap(schedule: &CronSchedule, from: Timestamp) -> Option<SignedDuration> {
    let horizon = from
        .checked_add(SignedDuration::from_hours(24 * 366))
        .ok()?;
    let runs = schedule.between(from, horizon, SAMPLE_RUNS);
    runs.windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .filter(|gap| gap.is_positive())
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(expr: &str, count: i64) -> Option<i64> {
        let from: Timestamp = "2026-11-24T00:00:00Z".parse().unwrap();
        retention_window(&CronSchedule::parse(expr).unwrap(), count, from).map(|d| d.as_secs())
    }

    #[test]
    fn windows_for_common_schedules() {
        let hour = 3600;
        let day = 24 * hour;
        let cases: &[(&str, i64, Option<i64>)] = &[
            ("0 * * * *", 24, Some(24 * hour)),  // hourly, a day of backups
            ("0 4 * * *", 7, Some(7 * day)),     // daily
            ("0 0 * * 0", 4, Some(28 * day)),    // weekly
            ("*/15 * * * *", 8, Some(2 * hour)), // every 15 minutes
            ("*/30 * * * * *", 10, Some(300)),   // seconds field: every 30 s
            ("0 1,13 * * *", 6, Some(3 * day)),  // twice a day, regular
            ("0 1,5 * * *", 10, Some(10 * 4 * hour)), // irregular: shortest gap (4 h) wins
            ("0 2 * * 1-5", 5, Some(5 * day)),   // weekdays: shortest gap is a day
            ("0 4 * * *", 0, None),              // count 0 keeps everything
        ];
        for (expr, count, expected) in cases {
            assert_eq!(window(expr, *count), *expected, "{expr} × {count}");
        }
    }
}
