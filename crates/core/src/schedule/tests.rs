//! Expected times are robfig/cron v3's for the same expressions (the operator's parser), worked
//! out by hand from its rules; 2026-11-22 is a Sunday.

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

/// The day-of-month numbers of the first `n` days at 00:00 after the 21st of November 2026.
fn days(expr: &str, n: usize) -> Vec<i8> {
    let schedule = CronSchedule::parse(expr).unwrap();
    schedule
        .between(ts("2026-11-21T12:00:00Z"), ts("2027-01-01T00:00:00Z"), n)
        .into_iter()
        .map(|t| t.to_zoned(TimeZone::UTC).day())
        .collect()
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
fn sunday_is_day_zero_as_in_the_operator() {
    assert_eq!(days("0 0 * * 0", 2), vec![22, 29]);
    assert_eq!(days("0 0 * * sun", 2), vec![22, 29]);
    assert_eq!(days("0 0 * * 1", 2), vec![23, 30]);
    assert_eq!(days("0 0 * * 1-5", 6), vec![23, 24, 25, 26, 27, 30]);
    assert_eq!(days("0 0 * * MON-FRI", 5), vec![23, 24, 25, 26, 27]);
    assert_eq!(days("0 0 * * 6,0", 3), vec![22, 28, 29]);
    // Steps: */2 is Sun, Tue, Thu, Sat; 1/2 is Mon, Wed, Fri.
    assert_eq!(days("0 0 * * */2", 4), vec![22, 24, 26, 28]);
    assert_eq!(days("0 0 * * 1/2", 4), vec![23, 25, 27, 30]);
}

#[test]
fn restricted_day_fields_fire_on_either() {
    // The 25th (a Wednesday) or any Sunday: robfig ORs the two fields.
    assert_eq!(days("0 0 25 * 0", 3), vec![22, 25, 29]);
    // A star in either field makes them AND, which is every Sunday here.
    assert_eq!(days("0 0 * * 0", 1), vec![22]);
    assert_eq!(days("0 0 ? * 0", 1), vec![22]);
    // */2 in the day of month is not a star to robfig: odd days OR Mondays.
    assert_eq!(days("0 0 */2 * 1", 4), vec![23, 25, 27, 29]);
}

#[test]
fn descriptors_expand_as_robfig_does() {
    assert_eq!(days("@daily", 2), vec![22, 23]);
    assert_eq!(days("@weekly", 2), vec![22, 29]);
    let hourly = CronSchedule::parse("@hourly").unwrap();
    assert_eq!(
        hourly.next_after(ts("2026-11-24T03:15:00Z")),
        Some(ts("2026-11-24T04:00:00Z"))
    );
    let monthly = CronSchedule::parse("@monthly").unwrap();
    assert_eq!(
        monthly.next_after(ts("2026-11-24T03:15:00Z")),
        Some(ts("2026-12-01T00:00:00Z"))
    );
}

#[test]
fn between_respects_the_limit() {
    let minutely = CronSchedule::parse("* * * * *").unwrap();
    let got = minutely.between(ts("2026-11-24T00:00:00Z"), ts("2026-11-25T00:00:00Z"), 3);
    assert_eq!(got.len(), 3);
}

#[test]
fn what_the_operator_refuses_is_an_error_with_the_expression() {
    for (expr, why) in [
        ("every day", "fields"),
        ("0 0 * * 7", "above 6"),
        ("0 0 * * funday", "unknown day"),
        ("@every 1h", "@every"),
        ("@fortnightly", "unknown descriptor"),
        ("0 0 0 * * * 2027", "found 7"),
        ("61 * * * *", ""),
    ] {
        let e = CronSchedule::parse(expr).unwrap_err();
        let text = e.to_string();
        assert!(text.contains(expr) && text.contains(why), "{expr}: {text}");
    }
}
