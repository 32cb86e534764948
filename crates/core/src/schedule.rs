//! Cron schedules of `spec.backup.schedule[].schedule`, as the operator reads them.
//!
//! The operator parses schedules with robfig/cron v3 (seconds optional, descriptors allowed).
//! Iteration is jiff-cron's, which speaks a different dialect (Quartz: seconds required, Sunday
//! is day 1, and a day must match both the day of month and the day of week). This module
//! translates, so that every expression means here what it means to the operator:
//!
//! - five fields get a leading `0` seconds field; six are taken as they are; other counts fail;
//! - days of the week are 0–6 (or `sun`–`sat`) with Sunday 0, and 7 is refused, as robfig does;
//! - when both day fields are restricted, a day matching either one fires (robfig's rule),
//!   computed as the earlier of two schedules, one per day field;
//! - `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly` expand as in
//!   robfig; `@every` is refused, because its times depend on when the operator started.

use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use jiff_cron::Schedule;

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
    /// One schedule, or two whose union is the expression (day of month OR day of week).
    parts: Vec<Schedule>,
}

/// The days of the week by robfig's names, Sunday first, so a name's index is its number.
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl CronSchedule {
    /// Parses a five- or six-field expression or a descriptor.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let fail = |reason: String| ScheduleError {
            expr: expr.to_owned(),
            reason,
        };
        let expanded = expand_descriptor(expr.trim()).map_err(fail)?;
        let mut fields: Vec<&str> = expanded.split_whitespace().collect();
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 => {}
            n => return Err(fail(format!("expected 5 or 6 fields, found {n}"))),
        }
        let [sec, min, hour, dom, month, dow] = fields[..] else {
            return Err(fail("expected 5 or 6 fields".to_owned()));
        };
        let dow_quartz = weekdays_to_quartz(dow).map_err(fail)?;
        let dom = dom.replace('?', "*");
        let build = |dom: &str, dow: &str| {
            Schedule::from_str(&format!("{sec} {min} {hour} {dom} {month} {dow}"))
                .map_err(|e| fail(e.to_string()))
        };
        let parts = if is_star(&dom) || is_star(dow) {
            vec![build(&dom, &dow_quartz)?]
        } else {
            vec![build(&dom, "*")?, build("*", &dow_quartz)?]
        };
        Ok(Self { parts })
    }

    /// The first occurrence strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let start = t.to_zoned(TimeZone::UTC);
        self.parts
            .iter()
            .filter_map(|part| part.after(start.clone()).next())
            .map(|next| next.timestamp())
            .min()
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

/// robfig's descriptors as six-field expressions; anything else is returned as it is.
fn expand_descriptor(expr: &str) -> Result<String, String> {
    let Some(name) = expr.strip_prefix('@') else {
        return Ok(expr.to_owned());
    };
    let expanded = match name.to_ascii_lowercase().as_str() {
        "yearly" | "annually" => "0 0 0 1 1 *",
        "monthly" => "0 0 0 1 * *",
        "weekly" => "0 0 0 * * 0",
        "daily" | "midnight" => "0 0 0 * * *",
        "hourly" => "0 0 * * * *",
        other if other.starts_with("every") => {
            return Err(
                "@every is not supported: its times depend on when the operator \
                 started, so no one else can predict them"
                    .to_owned(),
            );
        }
        _ => return Err(format!("unknown descriptor @{name}")),
    };
    Ok(expanded.to_owned())
}

/// robfig marks a field "all" when one of its parts is `*` or `?` without a step above 1; only
/// then do the two day fields combine with AND.
fn is_star(field: &str) -> bool {
    field.split(',').any(|part| {
        let (range, step) = part.split_once('/').unwrap_or((part, "1"));
        (range == "*" || range == "?") && step.parse::<u32>().is_ok_and(|s| s <= 1)
    })
}

/// Rewrites a day-of-week field from robfig's numbering (Sunday 0, names `sun`–`sat`) to
/// jiff-cron's (Sunday 1). Steps carry over unchanged: `*/2` is Sun, Tue, Thu, Sat in both.
fn weekdays_to_quartz(field: &str) -> Result<String, String> {
    let day = |token: &str| -> Result<String, String> {
        if token == "*" || token == "?" {
            return Ok("*".to_owned());
        }
        let number = match token.parse::<usize>() {
            Ok(n) => n,
            Err(_) => WEEKDAYS
                .iter()
                .position(|name| name.eq_ignore_ascii_case(token))
                .ok_or_else(|| format!("unknown day of week {token:?}"))?,
        };
        if number > 6 {
            return Err(format!("day of week {number} is above 6 (Sunday is 0)"));
        }
        Ok((number + 1).to_string())
    };
    let mut parts = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (part, None),
        };
        let mut out = match range.split_once('-') {
            Some((low, high)) => format!("{}-{}", day(low)?, day(high)?),
            None => day(range)?,
        };
        if let Some(step) = step {
            out = format!("{out}/{step}");
        }
        parts.push(out);
    }
    Ok(parts.join(","))
}

#[cfg(test)]
mod tests;
