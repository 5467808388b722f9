//! Days, months and ranges as users write them (`202405`, `20240515`, `20240510 20240520`),
//! and the UTC window each day covers.

use crate::error::{DateProblem, Error, Result};
use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};

/// An inclusive range of UTC days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// First day.
    pub start: NaiveDate,
    /// Last day (inclusive).
    pub end: NaiveDate,
}

impl DayRange {
    /// A range from `start` to `end`, both included; an error if `start` is after `end`.
    pub fn new(start: NaiveDate, end: NaiveDate) -> Result<DayRange> {
        if start > end {
            return Err(Error::ReversedRange { start, end });
        }
        Ok(DayRange { start, end })
    }

    /// Every day of a month.
    pub fn month(month: Month) -> DayRange {
        DayRange {
            start: month.first_day(),
            end: month.last_day(),
        }
    }

    /// Parses what users type: `YYYYMM` (a month), `YYYYMMDD` (a day) or two `YYYYMMDD`
    /// (an inclusive range). ISO forms (`2024-05`, `2024-05-15`) are accepted too.
    ///
    /// ```
    /// use hls_flow::period::DayRange;
    /// let r = DayRange::parse(&["202402"]).unwrap();
    /// assert_eq!(r.days().count(), 29);
    /// assert!(DayRange::parse(&["20240230"]).is_err());
    /// assert!(DayRange::parse(&["20240520", "20240510"]).is_err());
    /// ```
    pub fn parse<S: AsRef<str>>(args: &[S]) -> Result<DayRange> {
        match args {
            [one] => {
                let s = one.as_ref().trim();
                let digits: String = s.chars().filter(|c| *c != '-').collect();
                if digits.len() == 6 {
                    Ok(DayRange::month(s.parse()?))
                } else {
                    let d = parse_day(s)?;
                    Ok(DayRange { start: d, end: d })
                }
            }
            [a, b] => DayRange::new(parse_day(a.as_ref())?, parse_day(b.as_ref())?),
            _ => Err(Error::InvalidDate {
                input: args
                    .iter()
                    .map(|a| a.as_ref())
                    .collect::<Vec<_>>()
                    .join(" "),
                problem: DateProblem::Arguments,
            }),
        }
    }

    /// The days of the range, in order.
    pub fn days(&self) -> impl Iterator<Item = NaiveDate> + use<> {
        let end = self.end;
        self.start.iter_days().take_while(move |d| *d <= end)
    }

    /// Number of days.
    pub fn len(&self) -> usize {
        (self.end - self.start).num_days() as usize + 1
    }

    /// Never empty; present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Parses `YYYYMMDD` (or `YYYY-MM-DD`).
pub fn parse_day(s: &str) -> Result<NaiveDate> {
    let s = s.trim();
    let err = |problem: DateProblem| Error::InvalidDate {
        input: s.to_string(),
        problem,
    };
    let digits: String = s.chars().filter(|c| *c != '-').collect();
    if digits.len() != 8 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(err(DateProblem::NotADay));
    }
    let y: i32 = digits[..4].parse().map_err(|e| err(DateProblem::Year(e)))?;
    let m: u32 = digits[4..6]
        .parse()
        .map_err(|e| err(DateProblem::Month(e)))?;
    let d: u32 = digits[6..].parse().map_err(|e| err(DateProblem::Day(e)))?;
    if !(1..=12).contains(&m) {
        return Err(err(DateProblem::MonthOutOfRange));
    }
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| err(DateProblem::NoSuchDay))
}

/// A calendar month: the unit of a repartition task and of a hive partition
/// (`year=2024/month=05`). Always a valid month of a year chrono can represent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    first: NaiveDate,
}

impl Month {
    /// The month `month` (1–12) of `year`; an error if there is no such month.
    pub fn new(year: i32, month: u32) -> Result<Month> {
        NaiveDate::from_ymd_opt(year, month, 1)
            .map(|first| Month { first })
            .ok_or_else(|| Error::InvalidDate {
                input: format!("{year:04}{month:02}"),
                problem: DateProblem::NoSuchMonth,
            })
    }

    /// The month `day` is in.
    pub fn of(day: NaiveDate) -> Month {
        Month {
            first: day.with_day(1).unwrap_or(day),
        }
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.first.year()
    }

    /// The month of the year, 1–12.
    pub fn number(self) -> u32 {
        self.first.month()
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        self.first
    }

    /// Its last day.
    pub fn last_day(self) -> NaiveDate {
        last_day_of_month(self.first)
    }

    /// Its days, in order.
    pub fn days(self) -> impl Iterator<Item = NaiveDate> {
        DayRange::month(self).days()
    }

    /// The months that `range` touches, in order.
    pub fn spanning(range: DayRange) -> impl Iterator<Item = Month> {
        let last = Month::of(range.end);
        std::iter::successors(Some(Month::of(range.start)), move |m| {
            (*m < last).then(|| Month::of(m.last_day().succ_opt().unwrap_or(m.first)))
        })
    }
}

/// `YYYY-MM`, as the state file and `status` show a month.
impl std::fmt::Display for Month {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.number())
    }
}

/// Parses `YYYYMM` (or `YYYY-MM`).
///
/// ```
/// use hls_flow::period::Month;
/// let m: Month = "202402".parse().unwrap();
/// assert_eq!((m.year(), m.number(), m.days().count()), (2024, 2, 29));
/// assert_eq!("2024-02".parse::<Month>().unwrap(), m);
/// assert!("202413".parse::<Month>().is_err());
/// ```
impl std::str::FromStr for Month {
    type Err = Error;

    fn from_str(s: &str) -> Result<Month> {
        let s = s.trim();
        let err = |problem: DateProblem| Error::InvalidDate {
            input: s.to_string(),
            problem,
        };
        let digits: String = s.chars().filter(|c| *c != '-').collect();
        if digits.len() != 6 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(err(DateProblem::NotAMonth));
        }
        let y: i32 = digits[..4].parse().map_err(|e| err(DateProblem::Year(e)))?;
        let m: u32 = digits[4..]
            .parse()
            .map_err(|e| err(DateProblem::Month(e)))?;
        if !(1..=12).contains(&m) {
            return Err(err(DateProblem::MonthOutOfRange));
        }
        Month::new(y, m)
    }
}

/// The last day of the month `d` is in.
pub fn last_day_of_month(d: NaiveDate) -> NaiveDate {
    let (y, m) = if d.month() == 12 {
        (d.year() + 1, 1)
    } else {
        (d.year(), d.month() + 1)
    };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|first| first.pred_opt())
        .unwrap_or(d)
}

/// `[day 00:00:00Z, next day 00:00:00Z)`: the instants whose granules belong to `day`.
pub fn day_window(day: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc.from_utc_datetime(&day.and_time(chrono::NaiveTime::MIN));
    (start, start + chrono::Duration::days(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn months_days_and_ranges() {
        assert_eq!(
            DayRange::parse(&["202405"]).unwrap(),
            DayRange {
                start: d(2024, 5, 1),
                end: d(2024, 5, 31)
            }
        );
        assert_eq!(DayRange::parse(&["2023-02"]).unwrap().len(), 28);
        assert_eq!(DayRange::parse(&["202412"]).unwrap().end, d(2024, 12, 31));
        assert_eq!(DayRange::parse(&["20240515"]).unwrap().len(), 1);
        assert_eq!(
            DayRange::parse(&["20240510", "20240520"])
                .unwrap()
                .days()
                .count(),
            11
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "20240230", "202413", "2024", "abcdefgh", "20241301", "", "2024051",
        ] {
            assert!(DayRange::parse(&[bad]).is_err(), "{bad}");
        }
        let e = DayRange::parse(&["20240520", "20240510"]).unwrap_err();
        assert!(matches!(e, Error::ReversedRange { .. }));
        assert!(e.is_usage());
        assert!(DayRange::parse::<&str>(&[]).is_err());
        assert!(DayRange::parse(&["202405", "202406"]).is_err());
    }

    #[test]
    fn months_know_their_days_and_the_months_of_a_range() {
        let feb: Month = "202402".parse().unwrap();
        assert_eq!(feb.last_day(), d(2024, 2, 29));
        assert_eq!(feb.to_string(), "2024-02");
        assert_eq!(Month::of(d(2024, 2, 17)), feb);
        let range = DayRange::parse(&["20231230", "20240302"]).unwrap();
        let months: Vec<String> = Month::spanning(range).map(|m| m.to_string()).collect();
        assert_eq!(months, ["2023-12", "2024-01", "2024-02", "2024-03"]);
        assert!(Month::new(2024, 0).is_err());
    }

    #[test]
    fn windows_cover_the_whole_day() {
        let (s, e) = day_window(d(2024, 12, 31));
        assert_eq!(s.to_rfc3339(), "2024-12-31T00:00:00+00:00");
        assert_eq!(e.to_rfc3339(), "2025-01-01T00:00:00+00:00");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_date_arguments_never_panic(a in ".{0,12}", b in ".{0,12}") {
            let _ = DayRange::parse(&[a.as_str()]);
            let _ = DayRange::parse(&[a.as_str(), b.as_str()]);
            let _ = a.parse::<Month>();
        }

        #[test]
        fn valid_days_round_trip(y in 2013i32..2100, m in 1u32..=12, d in 1u32..=31) {
            match NaiveDate::from_ymd_opt(y, m, d) {
                Some(day) => {
                    let r = DayRange::parse(&[day.format("%Y%m%d").to_string()]).unwrap();
                    proptest::prop_assert_eq!(r.start, day);
                }
                None => {
                    let text = format!("{:04}{:02}{:02}", y, m, d);
                    proptest::prop_assert!(parse_day(&text).is_err());
                }
            }
        }
    }
}
