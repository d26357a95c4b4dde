//! `impact-period`: the impact period of a sanction (处分影响期), the date to remind personnel before it ends, and the follow-up visit dates (回访教育).
//!
//! A discipline taking effect on date D affects the official's promotion for a
//! period fixed by its type: Party warning 1 year, serious warning 18 months,
//! removal from Party post 2 years, probation 1 or 2 years, expulsion 5 years;
//! government sanctions: warning 6 months, demerit 12 months, major demerit 18
//! months, demotion and dismissal 24 months. The table is plugin config.
//!
//! - `impact_end` is the last day of the period. By default it is the day before
//!   the anniversary (a Party warning effective 2024-03-01 ends with 2025-02-28);
//!   `end_rule = "anniversary"` makes it the anniversary itself. When the
//!   anniversary has no corresponding day (2024-01-31 + 1 month), the period ends
//!   with the last day of that month under both rules, as `clearflow-time`'s
//!   `period_end` does.
//! - `remind_on` is `lead_days` (30) before `impact_end`: personnel are told the
//!   official may be considered for promotion again.
//! - `visits` are the follow-up visits: every `visit_interval_months` (3) after
//!   D, strictly before `impact_end`, at most `max_visits` (4), each with a
//!   `remind_on` `visit_lead_days` (5) before it.
//!
//! Dates are `YYYY-MM-DD` calendar dates; the workflow waits until them in its own
//! time zone. The plugin is pure date arithmetic: no clock, no calendar.

use std::collections::BTreeMap;

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};

/// The sanction to compute for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The sanction type's id in the `periods` table, e.g. `party_warning`.
    pub sanction: String,
    /// The day the sanction takes effect, `YYYY-MM-DD`.
    pub effective_on: String,
}

/// One sanction type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Period {
    /// Length of the impact period in months.
    pub months: u32,
    /// Human label, e.g. `党内警告 Party warning`.
    pub label: String,
}

/// Which day ends a period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndRule {
    /// The day before the anniversary (the default).
    DayBeforeAnniversary,
    /// The anniversary itself.
    Anniversary,
}

/// Rules; every field has a default.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Sanction types by id.
    pub periods: BTreeMap<String, Period>,
    /// Which day ends a period.
    pub end_rule: EndRule,
    /// Days before the end that personnel are reminded.
    pub lead_days: u32,
    /// Months between follow-up visits (0: no visits).
    pub visit_interval_months: u32,
    /// Days before a visit that the handler is reminded.
    pub visit_lead_days: u32,
    /// Visits at most.
    pub max_visits: u32,
}

impl Default for Config {
    fn default() -> Self {
        let p = |months: u32, label: &str| Period {
            months,
            label: label.to_owned(),
        };
        let periods = [
            ("party_warning", p(12, "党内警告 Party warning")),
            (
                "party_serious_warning",
                p(18, "党内严重警告 serious Party warning"),
            ),
            (
                "party_post_removal",
                p(24, "撤销党内职务 removal from Party post"),
            ),
            (
                "party_probation_1y",
                p(12, "留党察看一年 Party probation, one year"),
            ),
            (
                "party_probation_2y",
                p(24, "留党察看二年 Party probation, two years"),
            ),
            (
                "party_expulsion",
                p(60, "开除党籍 expulsion from the Party"),
            ),
            ("gov_warning", p(6, "警告 warning (government sanction)")),
            ("gov_demerit", p(12, "记过 demerit")),
            ("gov_major_demerit", p(18, "记大过 major demerit")),
            ("gov_demotion", p(24, "降级 demotion")),
            ("gov_dismissal", p(24, "撤职 dismissal from post")),
        ]
        .into_iter()
        .map(|(id, p)| (id.to_owned(), p))
        .collect();
        Config {
            periods,
            end_rule: EndRule::DayBeforeAnniversary,
            lead_days: 30,
            visit_interval_months: 3,
            visit_lead_days: 5,
            max_visits: 4,
        }
    }
}

/// One follow-up visit.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Visit {
    /// 1, 2, …
    pub number: u32,
    /// The day of the visit.
    pub on: String,
    /// The day the handler is reminded.
    pub remind_on: String,
}

/// The computed dates.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The sanction type's id.
    pub sanction: String,
    /// Its label.
    pub label: String,
    /// The period's length in months.
    pub months: u32,
    /// The first day of the period.
    pub effective_on: String,
    /// The last day of the period.
    pub impact_end: String,
    /// The day personnel are reminded.
    pub remind_on: String,
    /// The follow-up visits, in order.
    pub visits: Vec<Visit>,
}

/// A calendar date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    y: i32,
    m: u32,
    d: u32,
}

fn leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if leap(y) => 29,
        _ => 28,
    }
}

impl Date {
    /// Parses `YYYY-MM-DD`.
    pub fn parse(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        if !(digits(0..4) && digits(5..7) && digits(8..10)) {
            return None;
        }
        let y: i32 = s[0..4].parse().ok()?;
        let m: u32 = s[5..7].parse().ok()?;
        let d: u32 = s[8..10].parse().ok()?;
        ((1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d)).then_some(Date {
            y,
            m,
            d,
        })
    }

    /// The date `months` later, and whether the day had to be clamped to the month's end.
    pub fn add_months(self, months: u32) -> (Date, bool) {
        let total = self.m - 1 + months;
        let y = self.y + (total / 12) as i32;
        let m = total % 12 + 1;
        let last = days_in_month(y, m);
        (
            Date {
                y,
                m,
                d: self.d.min(last),
            },
            self.d > last,
        )
    }

    /// Days since 1970-01-01 (proleptic Gregorian).
    fn to_days(self) -> i64 {
        let y = i64::from(self.y) - i64::from(self.m <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.m);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.d) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn from_days(z: i64) -> Date {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
        let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
        Date { y, m, d }
    }

    /// The date `days` earlier.
    pub fn minus_days(self, days: u32) -> Date {
        Date::from_days(self.to_days() - i64::from(days))
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.y, self.m, self.d)
    }
}

/// Computes the dates for `input` under `config`.
pub fn compute(config: &Config, input: &Input) -> Result<Output, StepError> {
    let Some(period) = config.periods.get(input.sanction.trim()) else {
        let known: Vec<&str> = config.periods.keys().map(String::as_str).collect();
        return Err(StepError::invalid_input(format!(
            "unknown sanction {}, expected one of {}",
            input.sanction,
            known.join(", ")
        )));
    };
    if period.months == 0 {
        return Err(StepError::permanent(format!(
            "the period of {} is 0 months",
            input.sanction
        )));
    }
    let start = Date::parse(&input.effective_on).ok_or_else(|| {
        StepError::invalid_input(format!(
            "effective_on {} is not YYYY-MM-DD",
            input.effective_on
        ))
    })?;
    if start.y > 9000 {
        return Err(StepError::invalid_input("effective_on is out of range"));
    }
    let (anniversary, clamped) = start.add_months(period.months);
    let end = match config.end_rule {
        EndRule::DayBeforeAnniversary if !clamped => anniversary.minus_days(1),
        _ => anniversary,
    };
    let mut visits = Vec::new();
    if config.visit_interval_months > 0 {
        for number in 1..=config.max_visits {
            let (on, _) = start.add_months(number * config.visit_interval_months);
            if on >= end {
                break;
            }
            visits.push(Visit {
                number,
                on: on.to_string(),
                remind_on: on.minus_days(config.visit_lead_days).to_string(),
            });
        }
    }
    Ok(Output {
        sanction: input.sanction.trim().to_owned(),
        label: period.label.clone(),
        months: period.months,
        effective_on: start.to_string(),
        impact_end: end.to_string(),
        remind_on: end.minus_days(config.lead_days).to_string(),
        visits,
    })
}

/// The step: reads the config and computes the dates.
pub fn run(ctx: &Context, input: Input) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    compute(&config, &input)
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;
    use clearflow_plugin_sdk::testing::call;
    use serde_json::{Value, json};

    fn check(config: &str, sanction: &str, effective_on: &str) -> Result<Value, StepError> {
        let input = json!({ "sanction": sanction, "effective_on": effective_on });
        call(run, config, &input.to_string())
    }

    /// (impact_end, remind_on) for a sanction under the default config.
    fn ends(sanction: &str, effective_on: &str) -> (String, String) {
        let out = check("", sanction, effective_on).unwrap();
        (
            out["impact_end"].as_str().unwrap().to_owned(),
            out["remind_on"].as_str().unwrap().to_owned(),
        )
    }

    #[test]
    fn party_warning_from_the_domain_example() {
        let out = check("", "party_warning", "2024-03-01").unwrap();
        assert_eq!(out["impact_end"], "2025-02-28");
        assert_eq!(out["remind_on"], "2025-01-29");
        assert_eq!(out["months"], 12);
        assert_eq!(out["label"], "党内警告 Party warning");
        assert_eq!(
            out["visits"],
            json!([
                { "number": 1, "on": "2024-06-01", "remind_on": "2024-05-27" },
                { "number": 2, "on": "2024-09-01", "remind_on": "2024-08-27" },
                { "number": 3, "on": "2024-12-01", "remind_on": "2024-11-26" },
            ])
        );
    }

    #[test]
    fn every_sanction_type() {
        let cases = [
            ("party_warning", "2025-02-28", "2025-01-29"),
            ("party_serious_warning", "2025-08-31", "2025-08-01"),
            ("party_post_removal", "2026-02-28", "2026-01-29"),
            ("party_probation_1y", "2025-02-28", "2025-01-29"),
            ("party_probation_2y", "2026-02-28", "2026-01-29"),
            ("party_expulsion", "2029-02-28", "2029-01-29"),
            ("gov_warning", "2024-08-31", "2024-08-01"),
            ("gov_demerit", "2025-02-28", "2025-01-29"),
            ("gov_major_demerit", "2025-08-31", "2025-08-01"),
            ("gov_demotion", "2026-02-28", "2026-01-29"),
            ("gov_dismissal", "2026-02-28", "2026-01-29"),
        ];
        for (sanction, end, remind) in cases {
            assert_eq!(
                ends(sanction, "2024-03-01"),
                (end.to_owned(), remind.to_owned()),
                "{sanction}"
            );
        }
        assert_eq!(Config::default().periods.len(), cases.len());
    }

    #[test]
    fn leap_days_and_month_ends() {
        // 2024-02-29 + 1 year has no corresponding day: the period ends with 2025-02-28.
        assert_eq!(ends("party_warning", "2024-02-29").0, "2025-02-28");
        // 2024-08-31 + 6 months is clamped to 2025-02-28, which ends the period.
        assert_eq!(ends("gov_warning", "2024-08-31").0, "2025-02-28");
        // Across a leap February: 30 days before 2024-03-15 is 2024-02-14.
        assert_eq!(
            ends("gov_warning", "2023-09-16"),
            ("2024-03-15".to_owned(), "2024-02-14".to_owned())
        );
        assert_eq!(ends("gov_demerit", "2025-01-01").0, "2025-12-31");
    }

    #[test]
    fn anniversary_rule_and_lead_days_are_config() {
        let config = r#"{"end_rule": "anniversary", "lead_days": 10}"#;
        let out = check(config, "party_warning", "2024-03-01").unwrap();
        assert_eq!(out["impact_end"], "2025-03-01");
        assert_eq!(out["remind_on"], "2025-02-19");
        let out = check(config, "party_warning", "2024-02-29").unwrap();
        assert_eq!(out["impact_end"], "2025-02-28");
    }

    #[test]
    fn visits_stop_before_the_end_and_at_the_cap() {
        let out = check("", "gov_warning", "2024-03-01").unwrap();
        assert_eq!(
            out["visits"],
            json!([{ "number": 1, "on": "2024-06-01", "remind_on": "2024-05-27" }])
        );
        let out = check("", "party_expulsion", "2024-03-01").unwrap();
        assert_eq!(out["visits"].as_array().unwrap().len(), 4);
        let out = check(
            r#"{"visit_interval_months": 6, "max_visits": 10, "visit_lead_days": 0}"#,
            "party_post_removal",
            "2024-03-01",
        )
        .unwrap();
        let on: Vec<&str> = out["visits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["on"].as_str().unwrap())
            .collect();
        assert_eq!(on, ["2024-09-01", "2025-03-01", "2025-09-01"]);
        assert_eq!(out["visits"][0]["remind_on"], "2024-09-01");
        let out = check(
            r#"{"visit_interval_months": 0}"#,
            "party_warning",
            "2024-03-01",
        )
        .unwrap();
        assert_eq!(out["visits"], json!([]));
    }

    #[test]
    fn periods_table_is_config() {
        let config = r#"{"periods": {"admonition": {"months": 3, "label": "诫勉"}}}"#;
        let out = check(config, "admonition", "2024-11-30").unwrap();
        assert_eq!(out["impact_end"], "2025-02-28");
        let err = check(config, "party_warning", "2024-03-01").unwrap_err();
        assert_eq!(
            err,
            StepError::invalid_input("unknown sanction party_warning, expected one of admonition")
        );
    }

    #[test]
    fn invalid_inputs_and_config() {
        for date in ["2023-02-29", "2024-13-01", "2024-3-1", "01/03/2024"] {
            assert!(
                matches!(check("", "party_warning", date), Err(StepError::InvalidInput(m)) if m.contains("YYYY-MM-DD")),
                "{date}"
            );
        }
        assert!(matches!(
            check("", "reprimand", "2024-03-01"),
            Err(StepError::InvalidInput(m)) if m.contains("unknown sanction reprimand")
        ));
        let extra =
            json!({ "sanction": "party_warning", "effective_on": "2024-03-01", "reporter": "x" });
        assert!(matches!(
            call(run, "", &extra.to_string()),
            Err(StepError::InvalidInput(m)) if m.contains("unknown field")
        ));
        assert!(matches!(
            check(r#"{"end_rule": "someday"}"#, "party_warning", "2024-03-01"),
            Err(StepError::Permanent(_))
        ));
        assert!(matches!(
            check(
                r#"{"periods": {"x": {"months": 0, "label": "x"}}}"#,
                "x",
                "2024-03-01"
            ),
            Err(StepError::Permanent(_))
        ));
    }

    #[test]
    fn day_numbers_round_trip() {
        let mut d = Date::parse("1999-12-25").unwrap();
        for _ in 0..3000 {
            let back = Date::from_days(d.to_days());
            assert_eq!(back, d);
            let next = Date::from_days(d.to_days() + 1);
            assert!(next > d);
            d = next;
        }
        assert_eq!(Date::parse("1970-01-01").unwrap().to_days(), 0);
        assert_eq!(
            Date::parse("2000-03-01").unwrap().minus_days(1).to_string(),
            "2000-02-29"
        );
    }
}
