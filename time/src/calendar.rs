//! Working-day calendars loaded from data files: one TOML file per region and year.
//!
//! Layout: `<dir>/<region>/<year>.toml`, e.g. `workflows/calendars/cn-mainland/2025.toml`:
//!
//! ```toml
//! region = "cn-mainland"
//! year = 2025
//! # weekend days that are working days (调休上班)
//! make_up_workdays = [2025-01-26, 2025-02-08]
//!
//! [source]
//! title = "国务院办公厅关于2025年部分节假日安排的通知"
//! document = "国办发明电〔2024〕12号"   # optional
//! issued = 2024-11-12
//! url = "https://www.gov.cn/..."         # optional
//!
//! [[holiday]]
//! name = "春节 Spring Festival"
//! from = 2025-01-28                      # inclusive, non-working
//! to = 2025-02-04                        # inclusive
//! ```
//!
//! A day is a working day unless it is inside a holiday or is a Saturday or
//! Sunday; a make-up day is always a working day. A holiday must include at
//! least one day of the file's year (it may start in late December of the year
//! before, as some notices do); a make-up day must fall in the file's year, the
//! December before or the January after, and must be a Saturday or Sunday.
//!
//! [`load_dir`] is the only function in this crate that does IO. It reports every
//! problem in every file, each with the file and, where known, line and column;
//! a file with a TOML syntax or type error contributes that one error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, Weekday};
use serde::Deserialize;
use toml::Spanned;

/// Every calendar found by [`load_dir`], by region name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendars {
    regions: BTreeMap<String, Calendar>,
}

impl Calendars {
    /// The calendar of `region` (the folder name, e.g. `cn-mainland`).
    pub fn get(&self, region: &str) -> Option<&Calendar> {
        self.regions.get(region)
    }

    /// All calendars, ordered by region name.
    pub fn iter(&self) -> impl Iterator<Item = &Calendar> {
        self.regions.values()
    }
}

/// The working days of one region across the years it has files for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Calendar {
    region: String,
    years: BTreeMap<i32, CalendarYear>,
    /// Non-working days from holidays, with the holiday's name.
    off: BTreeMap<NaiveDate, String>,
    make_up: BTreeSet<NaiveDate>,
}

impl Calendar {
    /// Builds a calendar from validated years, checking conflicts between them.
    ///
    /// Each year comes with the path it was read from, used in error locations.
    pub fn from_years(
        region: &str,
        years: Vec<(PathBuf, CalendarYear)>,
    ) -> Result<Calendar, Vec<CalendarError>> {
        let mut errors = Vec::new();
        let mut calendar = Calendar {
            region: region.to_owned(),
            years: BTreeMap::new(),
            off: BTreeMap::new(),
            make_up: BTreeSet::new(),
        };
        let mut origin: BTreeMap<i32, PathBuf> = BTreeMap::new();
        let mut make_up_origin: BTreeMap<NaiveDate, PathBuf> = BTreeMap::new();
        for (path, year) in years {
            let here = Location::file(&path);
            if let Some(first) = origin.get(&year.year) {
                errors.push(here.error(ErrorKind::DuplicateYear {
                    year: year.year,
                    first: first.clone(),
                }));
                continue;
            }
            for holiday in &year.holidays {
                for date in holiday.days() {
                    if let Some(other) = calendar.off.insert(date, holiday.name.clone()) {
                        errors.push(here.error(ErrorKind::Overlap {
                            date,
                            first: other,
                            second: holiday.name.clone(),
                        }));
                    }
                }
            }
            for &date in &year.make_up_workdays {
                if make_up_origin.insert(date, path.clone()).is_some() {
                    errors.push(here.error(ErrorKind::RepeatedMakeUpDay { date }));
                }
            }
            origin.insert(year.year, path);
            calendar.years.insert(year.year, year);
        }
        // Checked after all years are in, as a holiday may be listed in the next year's file.
        for (date, path) in make_up_origin {
            if let Some(name) = calendar.off.get(&date) {
                errors.push(Location::file(&path).error(ErrorKind::MakeUpInHoliday {
                    date,
                    holiday: name.clone(),
                }));
            }
            calendar.make_up.insert(date);
        }
        if errors.is_empty() {
            Ok(calendar)
        } else {
            Err(errors)
        }
    }

    /// The region name, e.g. `cn-mainland`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The years this calendar has a file for, ascending.
    pub fn covered_years(&self) -> impl Iterator<Item = i32> + '_ {
        self.years.keys().copied()
    }

    /// The data of one year, with its source.
    pub fn year(&self, year: i32) -> Option<&CalendarYear> {
        self.years.get(&year)
    }

    /// Whether `date` is a working day; `None` when its year is not covered.
    pub fn is_working_day(&self, date: NaiveDate) -> Option<bool> {
        if !self.years.contains_key(&date.year()) {
            return None;
        }
        Some(if self.make_up.contains(&date) {
            true
        } else if self.off.contains_key(&date) {
            false
        } else {
            !is_weekend(date)
        })
    }

    /// The name of the holiday `date` falls in, if any (make-up days are not holidays).
    pub fn holiday_on(&self, date: NaiveDate) -> Option<&str> {
        self.off.get(&date).map(String::as_str)
    }
}

/// One year's data as read from its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarYear {
    /// The year the file describes.
    pub year: i32,
    /// Where the facts come from.
    pub source: Source,
    /// Non-working periods.
    pub holidays: Vec<Holiday>,
    /// Saturdays and Sundays that are working days.
    pub make_up_workdays: Vec<NaiveDate>,
}

/// The official notice a year's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The notice's title.
    pub title: String,
    /// The document number, e.g. `国办发明电〔2024〕12号`.
    #[serde(default)]
    pub document: Option<String>,
    /// The date the notice was issued.
    #[serde(deserialize_with = "de_date")]
    pub issued: NaiveDate,
    /// Where to read it.
    #[serde(default)]
    pub url: Option<String>,
}

/// A non-working period, both ends inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    /// The name, e.g. `国庆节 National Day`.
    pub name: String,
    /// The first day off.
    pub from: NaiveDate,
    /// The last day off.
    pub to: NaiveDate,
}

impl Holiday {
    fn days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.from.iter_days().take_while(|d| *d <= self.to)
    }
}

/// Where a problem is: a file and, when known, a 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file (or folder) concerned.
    pub path: PathBuf,
    /// 1-based line and column (in characters), when known.
    pub line_column: Option<(usize, usize)>,
}

impl Location {
    fn file(path: &Path) -> Location {
        Location {
            path: path.to_owned(),
            line_column: None,
        }
    }

    fn at(path: &Path, text: &str, span: Option<std::ops::Range<usize>>) -> Location {
        let line_column = span.map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            (line, before[line_start..].chars().count() + 1)
        });
        Location {
            path: path.to_owned(),
            line_column,
        }
    }

    fn error(&self, kind: ErrorKind) -> CalendarError {
        CalendarError {
            location: self.clone(),
            kind,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some((line, column)) = self.line_column {
            write!(f, ":{line}:{column}")?;
        }
        Ok(())
    }
}

/// A problem in the calendar files, with where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct CalendarError {
    /// The file and position.
    pub location: Location,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// What is wrong in a calendar file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The file or folder could not be read.
    #[error("cannot read: {0}")]
    Io(String),
    /// TOML syntax, a missing or unknown field, or a value of the wrong type.
    #[error("{0}")]
    Toml(String),
    /// The file is not named `<year>.toml`.
    #[error("file name must be `<year>.toml`, e.g. `2025.toml`")]
    FileName,
    /// `year` differs from the file name.
    #[error("`year = {declared}` does not match the file name `{file}.toml`")]
    YearMismatch {
        /// The year in the file name.
        file: i32,
        /// The year declared inside.
        declared: i32,
    },
    /// `region` differs from the folder name.
    #[error("`region = \"{declared}\"` does not match the folder `{folder}`")]
    RegionMismatch {
        /// The folder name.
        folder: String,
        /// The region declared inside.
        declared: String,
    },
    /// A value that should be a plain date (`2025-10-01`) is not.
    #[error("expected a date such as 2025-10-01, found `{0}`")]
    NotADate(String),
    /// A holiday ends before it starts.
    #[error("holiday `{name}` ends ({to}) before it starts ({from})")]
    Inverted {
        /// The holiday's name.
        name: String,
        /// Its first day.
        from: NaiveDate,
        /// Its last day.
        to: NaiveDate,
    },
    /// A holiday has no day in the file's year.
    #[error("holiday `{name}` ({from} to {to}) has no day in {year}")]
    HolidayOutsideYear {
        /// The holiday's name.
        name: String,
        /// Its first day.
        from: NaiveDate,
        /// Its last day.
        to: NaiveDate,
        /// The file's year.
        year: i32,
    },
    /// A make-up day is too far from the file's year.
    #[error(
        "make-up workday {date} is outside {year} (only the adjacent december and january are allowed)"
    )]
    MakeUpOutsideYear {
        /// The day.
        date: NaiveDate,
        /// The file's year.
        year: i32,
    },
    /// A make-up day is a weekday, which is a working day anyway.
    #[error("make-up workday {date} is a {weekday}, not a saturday or sunday")]
    MakeUpNotWeekend {
        /// The day.
        date: NaiveDate,
        /// Its weekday.
        weekday: Weekday,
    },
    /// A day is both a make-up working day and inside a holiday.
    #[error("{date} is both a make-up workday and part of holiday `{holiday}`")]
    MakeUpInHoliday {
        /// The day.
        date: NaiveDate,
        /// The holiday containing it.
        holiday: String,
    },
    /// Two holidays share a day.
    #[error("{date} is in both holiday `{first}` and holiday `{second}`")]
    Overlap {
        /// The day.
        date: NaiveDate,
        /// The holiday seen first.
        first: String,
        /// The holiday seen second.
        second: String,
    },
    /// A make-up day is listed twice.
    #[error("make-up workday {date} is listed twice")]
    RepeatedMakeUpDay {
        /// The day.
        date: NaiveDate,
    },
    /// Two files describe the same region and year.
    #[error("year {year} is already described by `{}`", first.display())]
    DuplicateYear {
        /// The year.
        year: i32,
        /// The file that described it first.
        first: PathBuf,
    },
}

/// Reads every `<region>/<year>.toml` under `dir` and reports every problem found.
///
/// Entries directly in `dir` that are not folders (a README, say) and files
/// inside region folders that do not end in `.toml` are ignored, as are
/// entries whose names start with `.`.
pub fn load_dir(dir: &Path) -> Result<Calendars, Vec<CalendarError>> {
    let mut errors = Vec::new();
    let mut calendars = Calendars::default();
    for region_dir in sorted_entries(dir, &mut errors) {
        if !region_dir.is_dir() {
            continue;
        }
        let Some(region) = region_dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let mut years = Vec::new();
        for path in sorted_entries(&region_dir, &mut errors) {
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse_year_file(region, &path, &text) {
                    Ok(year) => years.push((path, year)),
                    Err(mut found) => errors.append(&mut found),
                },
                Err(e) => errors.push(Location::file(&path).error(ErrorKind::Io(e.to_string()))),
            }
        }
        match Calendar::from_years(region, years) {
            Ok(calendar) => {
                calendars.regions.insert(region.to_owned(), calendar);
            }
            Err(mut found) => errors.append(&mut found),
        }
    }
    if errors.is_empty() {
        Ok(calendars)
    } else {
        Err(errors)
    }
}

/// Entries of `dir` sorted by name (so errors come in a stable order), skipping hidden ones.
fn sorted_entries(dir: &Path, errors: &mut Vec<CalendarError>) -> Vec<PathBuf> {
    let read = std::fs::read_dir(dir).and_then(|entries| {
        entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<Vec<_>, _>>()
    });
    match read {
        Ok(mut paths) => {
            paths.retain(|p| {
                !p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.'))
            });
            paths.sort();
            paths
        }
        Err(e) => {
            errors.push(Location::file(dir).error(ErrorKind::Io(e.to_string())));
            Vec::new()
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    region: Spanned<String>,
    year: Spanned<i32>,
    source: Source,
    #[serde(default)]
    holiday: Vec<RawHoliday>,
    #[serde(default)]
    make_up_workdays: Vec<Spanned<toml::value::Datetime>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoliday {
    name: String,
    from: Spanned<toml::value::Datetime>,
    to: Spanned<toml::value::Datetime>,
}

fn de_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    let value = toml::value::Datetime::deserialize(d)?;
    as_date(&value).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expected a date such as 2025-10-01, found `{value}`"
        ))
    })
}

fn as_date(value: &toml::value::Datetime) -> Option<NaiveDate> {
    match value {
        toml::value::Datetime {
            date: Some(date),
            time: None,
            offset: None,
        } => NaiveDate::from_ymd_opt(date.year.into(), date.month.into(), date.day.into()),
        _ => None,
    }
}

/// Parses and checks one year file's text; `region` is the folder it is in and
/// `path` names the file (its stem must be the year).
pub fn parse_year_file(
    region: &str,
    path: &Path,
    text: &str,
) -> Result<CalendarYear, Vec<CalendarError>> {
    let at = |span: std::ops::Range<usize>| Location::at(path, text, Some(span));
    let mut errors = Vec::new();
    let file_year = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse::<i32>().ok());
    if file_year.is_none() {
        errors.push(Location::file(path).error(ErrorKind::FileName));
    }
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            errors.push(
                Location::at(path, text, e.span()).error(ErrorKind::Toml(e.message().to_owned())),
            );
            return Err(errors);
        }
    };
    let year = *raw.year.get_ref();
    if let Some(file) = file_year.filter(|f| *f != year) {
        errors.push(at(raw.year.span()).error(ErrorKind::YearMismatch {
            file,
            declared: year,
        }));
    }
    if raw.region.get_ref() != region {
        errors.push(at(raw.region.span()).error(ErrorKind::RegionMismatch {
            folder: region.to_owned(),
            declared: raw.region.get_ref().clone(),
        }));
    }
    let date = |value: &Spanned<toml::value::Datetime>, errors: &mut Vec<CalendarError>| {
        let parsed = as_date(value.get_ref());
        if parsed.is_none() {
            errors.push(at(value.span()).error(ErrorKind::NotADate(value.get_ref().to_string())));
        }
        parsed
    };
    let mut holidays = Vec::new();
    for raw_holiday in &raw.holiday {
        let (Some(from), Some(to)) = (
            date(&raw_holiday.from, &mut errors),
            date(&raw_holiday.to, &mut errors),
        ) else {
            continue;
        };
        let name = raw_holiday.name.clone();
        if to < from {
            errors.push(at(raw_holiday.to.span()).error(ErrorKind::Inverted { name, from, to }));
        } else if from.year() > year || to.year() < year {
            errors.push(
                at(raw_holiday.from.span()).error(ErrorKind::HolidayOutsideYear {
                    name,
                    from,
                    to,
                    year,
                }),
            );
        } else {
            holidays.push(Holiday { name, from, to });
        }
    }
    let mut make_up_workdays = Vec::new();
    for raw_date in &raw.make_up_workdays {
        let Some(day) = date(raw_date, &mut errors) else {
            continue;
        };
        let adjacent = (day.year() == year - 1 && day.month() == 12)
            || (day.year() == year + 1 && day.month() == 1);
        if day.year() != year && !adjacent {
            errors
                .push(at(raw_date.span()).error(ErrorKind::MakeUpOutsideYear { date: day, year }));
        } else if !is_weekend(day) {
            errors.push(at(raw_date.span()).error(ErrorKind::MakeUpNotWeekend {
                date: day,
                weekday: day.weekday(),
            }));
        } else {
            make_up_workdays.push(day);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(CalendarYear {
        year,
        source: raw.source,
        holidays,
        make_up_workdays,
    })
}

fn is_weekend(date: NaiveDate) -> bool {
    matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "region = \"xx\"\nyear = 2025\n";
    const SOURCE: &str = "[source]\ntitle = \"t\"\nissued = 2024-11-12\n";

    /// Parses `body` as `xx/2025.toml` (with a valid header and source prepended
    /// unless `body` sets its own) and compares the errors, one per line.
    fn check(body: &str, expect: &str) {
        let text = if body.contains("region =") {
            body.to_owned()
        } else {
            format!("{HEADER}{body}\n{SOURCE}")
        };
        let got = match parse_year_file("xx", Path::new("xx/2025.toml"), &text) {
            Ok(year) => format!(
                "ok: {} holidays, {} make-up days",
                year.holidays.len(),
                year.make_up_workdays.len()
            ),
            Err(errors) => errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        };
        assert_eq!(got, expect, "\n--- text ---\n{text}");
    }

    #[test]
    fn valid_file() {
        check(
            "make_up_workdays = [2025-09-28, 2025-10-11]\n[[holiday]]\nname = \"国庆节 National Day\"\nfrom = 2025-10-01\nto = 2025-10-08\n",
            "ok: 1 holidays, 2 make-up days",
        );
    }

    #[test]
    fn reports_every_problem_with_positions() {
        check(
            concat!(
                "make_up_workdays = [2025-09-29, 2027-01-02, 2025-10-11T09:00:00]\n",
                "[[holiday]]\nname = \"a\"\nfrom = 2024-10-01\nto = 2024-10-08\n",
                "[[holiday]]\nname = \"b\"\nfrom = 2025-10-08\nto = 2025-10-01\n",
            ),
            concat!(
                "xx/2025.toml:6:8: holiday `a` (2024-10-01 to 2024-10-08) has no day in 2025\n",
                "xx/2025.toml:11:6: holiday `b` ends (2025-10-01) before it starts (2025-10-08)\n",
                "xx/2025.toml:3:21: make-up workday 2025-09-29 is a Mon, not a saturday or sunday\n",
                "xx/2025.toml:3:33: make-up workday 2027-01-02 is outside 2025 (only the adjacent december and january are allowed)\n",
                "xx/2025.toml:3:45: expected a date such as 2025-10-01, found `2025-10-11T09:00:00`",
            ),
        );
    }

    #[test]
    fn header_must_match_path() {
        check(
            &format!("region = \"yy\"\nyear = 2024\n{SOURCE}"),
            concat!(
                "xx/2025.toml:2:8: `year = 2024` does not match the file name `2025.toml`\n",
                "xx/2025.toml:1:10: `region = \"yy\"` does not match the folder `xx`",
            ),
        );
    }

    #[test]
    fn holiday_may_start_in_the_december_before() {
        check(
            "make_up_workdays = [2024-12-28]\n[[holiday]]\nname = \"元旦 New Year\"\nfrom = 2024-12-30\nto = 2025-01-01\n",
            "ok: 1 holidays, 1 make-up days",
        );
    }

    #[test]
    fn toml_errors_have_positions() {
        check(
            "[[holiday]]\nname = \"a\"\nfrom = 2025-10-01\n",
            "xx/2025.toml:3:1: missing field `to`",
        );
        check(
            "colour = 1\n",
            "xx/2025.toml:3:1: unknown field `colour`, expected one of `region`, `year`, `source`, `holiday`, `make_up_workdays`",
        );
        check(
            "[[holiday]]\nname = \"a\"\nfrom = \"2025-10-01\"\nto = 2025-10-01\n",
            "xx/2025.toml:5:8: invalid type: string \"2025-10-01\", expected a TOML datetime",
        );
    }

    fn year(y: i32, holidays: &[(&str, &str, &str)], make_up: &[&str]) -> (PathBuf, CalendarYear) {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let year = CalendarYear {
            year: y,
            source: Source {
                title: "t".into(),
                document: None,
                issued: d("2000-01-01"),
                url: None,
            },
            holidays: holidays
                .iter()
                .map(|(name, from, to)| Holiday {
                    name: (*name).into(),
                    from: d(from),
                    to: d(to),
                })
                .collect(),
            make_up_workdays: make_up.iter().map(|s| d(s)).collect(),
        };
        (PathBuf::from(format!("xx/{y}.toml")), year)
    }

    #[test]
    fn conflicts_between_years() {
        let errors = Calendar::from_years(
            "xx",
            vec![
                year(2018, &[("a", "2018-12-29", "2018-12-31")], &[]),
                year(2019, &[("b", "2018-12-31", "2019-01-01")], &["2018-12-29"]),
                year(2019, &[], &[]),
            ],
        )
        .unwrap_err();
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "xx/2019.toml: 2018-12-31 is in both holiday `a` and holiday `b`",
                "xx/2019.toml: year 2019 is already described by `xx/2019.toml`",
                "xx/2019.toml: 2018-12-29 is both a make-up workday and part of holiday `a`",
            ]
        );
    }

    #[test]
    fn working_days_and_coverage() {
        let calendar = Calendar::from_years(
            "xx",
            vec![year(
                2025,
                &[("national", "2025-10-01", "2025-10-08")],
                &["2025-09-28"],
            )],
        )
        .unwrap();
        let check_day = |s: &str, expect: Option<bool>| {
            let date: NaiveDate = s.parse().unwrap();
            assert_eq!(calendar.is_working_day(date), expect, "{s}");
        };
        check_day("2025-09-26", Some(true)); // Friday
        check_day("2025-09-27", Some(false)); // Saturday
        check_day("2025-09-28", Some(true)); // make-up Sunday
        check_day("2025-10-01", Some(false)); // holiday
        check_day("2025-10-08", Some(false)); // holiday, last day
        check_day("2025-10-09", Some(true));
        check_day("2026-01-05", None);
        check_day("2024-12-31", None);
        assert_eq!(calendar.covered_years().collect::<Vec<_>>(), [2025]);
        assert_eq!(
            calendar.holiday_on("2025-10-03".parse().unwrap()),
            Some("national")
        );
    }
}
