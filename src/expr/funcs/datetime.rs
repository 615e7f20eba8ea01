//! Date and time functions: timestamp, formatdate, timeadd.

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};
use hcl::eval::{FuncArgs, FuncDef};
use hcl::Value;

use super::{encoding, fixed, str_arg, R};

pub(super) fn defs(all: &mut Vec<(&'static str, FuncDef)>) {
    all.extend([
        (
            "timestamp",
            fixed(0, |_| {
                Ok(Value::String(
                    DateTime::<Utc>::from(std::time::SystemTime::now())
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string(),
                ))
            }),
        ),
        ("formatdate", fixed(2, formatdate)),
        ("timeadd", fixed(2, timeadd)),
    ]);
}

/// A strict RFC 3339 timestamp (`T` and an offset required), read as Go's
/// `time.Parse(time.RFC3339, …)` reads it, with go-cty's words for errors.
pub(crate) fn parse_timestamp(s: &str) -> R<DateTime<FixedOffset>> {
    let err = |m: String| format!("not a valid RFC3339 timestamp: {m}");
    // What is left of the input at an element Go could not read.
    let cannot = |rest: &str, what: &str| {
        if rest.is_empty() {
            err(format!("end of string before {what}"))
        } else {
            err(format!(
                "cannot use {} as {what}",
                encoding::json_string(rest)
            ))
        }
    };
    let lit = |rest: &str, want: &str| -> R<()> {
        if rest.starts_with(want) {
            Ok(())
        } else if want == "T" {
            Err(err("missing required time introducer 'T'".into()))
        } else if rest.is_empty() {
            Err(err(format!("end of string where \"{want}\" is expected")))
        } else {
            Err(err(format!(
                "found {} where \"{want}\" is expected",
                encoding::json_string(rest)
            )))
        }
    };
    // A fixed-width number in [lo, hi].
    let num = |rest: &str, width: usize, lo: u32, hi: u32, what: &str| -> R<u32> {
        let digits = rest
            .get(..width)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        let Some(d) = digits else {
            return Err(cannot(rest, what));
        };
        let v: u32 = d.parse().expect("digits");
        if v < lo || v > hi {
            return Err(cannot(&rest[width..], what));
        }
        Ok(v)
    };
    let mut rest = s;
    let year = num(rest, 4, 0, 9999, "year")?;
    rest = &rest[4..];
    lit(rest, "-")?;
    rest = &rest[1..];
    let month = num(rest, 2, 1, 12, "month")?;
    rest = &rest[2..];
    lit(rest, "-")?;
    rest = &rest[1..];
    let day = num(rest, 2, 1, 31, "day of month")?;
    rest = &rest[2..];
    lit(rest, "T")?;
    rest = &rest[1..];
    let hour = num(rest, 2, 0, 23, "hour")?;
    rest = &rest[2..];
    lit(rest, ":")?;
    rest = &rest[1..];
    let minute = num(rest, 2, 0, 59, "minute")?;
    rest = &rest[2..];
    lit(rest, ":")?;
    rest = &rest[1..];
    let second = num(rest, 2, 0, 59, "second")?;
    rest = &rest[2..];
    let mut nanos = 0u32;
    if rest.starts_with('.') && rest[1..].starts_with(|c: char| c.is_ascii_digit()) {
        let n = rest[1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len() - 1);
        let frac = &rest[1..1 + n];
        let nine: String = frac.chars().chain(std::iter::repeat('0')).take(9).collect();
        nanos = nine.parse().expect("digits");
        rest = &rest[1 + n..];
    }
    let offset = if let Some(r) = rest.strip_prefix('Z') {
        rest = r;
        0
    } else {
        let b = rest.as_bytes();
        let ok = b.len() >= 6
            && (b[0] == b'+' || b[0] == b'-')
            && b[1..3].iter().all(u8::is_ascii_digit)
            && b[3] == b':'
            && b[4..6].iter().all(u8::is_ascii_digit);
        if !ok {
            return Err(cannot(rest, "UTC offset"));
        }
        let hh: i32 = rest[1..3].parse().expect("digits");
        let mm: i32 = rest[4..6].parse().expect("digits");
        if hh >= 24 {
            return Err(err("timezone hour out of range".into()));
        }
        if mm >= 60 {
            return Err(err("timezone minute out of range".into()));
        }
        let secs = (hh * 60 + mm) * 60;
        let secs = if b[0] == b'-' { -secs } else { secs };
        rest = &rest[6..];
        secs
    };
    if !rest.is_empty() {
        return Err(err(format!("extra text: {}", encoding::json_string(rest))));
    }
    let tz = FixedOffset::east_opt(offset).expect("offset under 24h");
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, month, day)
        .ok_or_else(|| err("day out of range".into()))?;
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)
        .ok_or_else(|| err("second out of range".into()))?;
    date.and_time(time)
        .and_local_timezone(tz)
        .single()
        .ok_or_else(|| err("time out of range".into()))
}

/// Go's time.RFC3339 layout: seconds, `Z` for UTC or the offset.
fn rfc3339(t: &DateTime<FixedOffset>) -> String {
    if t.offset().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

fn timeadd(a: FuncArgs) -> R<Value> {
    let t = parse_timestamp(&str_arg(&a, 0)?)?;
    let d = parse_duration(&str_arg(&a, 1)?)?;
    let t = t
        .checked_add_signed(chrono::TimeDelta::nanoseconds(d))
        .ok_or_else(|| "the resulting time is out of range".to_string())?;
    Ok(Value::String(rfc3339(&t)))
}

/// Go's time.ParseDuration, in nanoseconds.
fn parse_duration(s: &str) -> R<i64> {
    let bad = || format!("time: invalid duration {}", encoding::json_string(s));
    let (neg, mut rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..n];
        if number.is_empty() || number == "." {
            return Err(bad());
        }
        let v: f64 = number.parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => {
                return Err(format!(
                    "time: missing unit in duration {}",
                    encoding::json_string(s)
                ))
            }
            other => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    encoding::json_string(other),
                    encoding::json_string(s)
                ))
            }
        };
        rest = &rest[u..];
        total += v * unit;
        if total > 9.2e18 {
            return Err(bad());
        }
    }
    Ok(if neg {
        -(total.round() as i64)
    } else {
        total.round() as i64
    })
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

fn formatdate(a: FuncArgs) -> R<Value> {
    let f = str_arg(&a, 0)?;
    let t = parse_timestamp(&str_arg(&a, 1)?).map_err(|e| format!("argument 2: {e}"))?;
    let mut out = String::new();
    let chars: Vec<char> = f.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\'' {
            if chars.get(i + 1) == Some(&'\'') {
                out.push('\'');
                i += 2;
                continue;
            }
            let mut j = i + 1;
            let mut closed = false;
            while j < chars.len() {
                if chars[j] == '\'' {
                    if chars.get(j + 1) == Some(&'\'') {
                        out.push('\'');
                        j += 2;
                        continue;
                    }
                    closed = true;
                    break;
                }
                out.push(chars[j]);
                j += 1;
            }
            if !closed {
                return Err("argument 1: unterminated literal '".into());
            }
            i = j + 1;
            continue;
        }
        if !c.is_ascii_alphabetic() {
            out.push(c);
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && chars[j] == c {
            j += 1;
        }
        let n = j - i;
        let tok: String = chars[i..j].iter().collect();
        i = j;
        let bad = |what: &str| {
            format!(
                "argument 1: invalid date format verb {}: {what}",
                encoding::json_string(&tok)
            )
        };
        let two = |v: u32, n: usize, what: &str| match n {
            1 => Ok(v.to_string()),
            2 => Ok(format!("{v:02}")),
            _ => Err(bad(what)),
        };
        let s = match c {
            'Y' => match n {
                2 => format!("{:02}", t.year().rem_euclid(100)),
                4 => format!("{:04}", t.year()),
                _ => return Err(bad("year must either be \"YY\" or \"YYYY\"")),
            },
            'M' => match n {
                1 | 2 => two(t.month(), n, "")?,
                3 => MONTHS[t.month0() as usize][..3].to_owned(),
                4 => MONTHS[t.month0() as usize].to_owned(),
                _ => return Err(bad("month must be \"M\", \"MM\", \"MMM\", or \"MMMM\"")),
            },
            'D' => two(t.day(), n, "day of month must either be \"D\" or \"DD\"")?,
            'E' => {
                let d = DAYS[t.weekday().num_days_from_monday() as usize];
                match n {
                    3 => d[..3].to_owned(),
                    4 => d.to_owned(),
                    _ => return Err(bad("day of week must either be \"EEE\" or \"EEEE\"")),
                }
            }
            'h' => two(t.hour(), n, "24-hour must either be \"h\" or \"hh\"")?,
            'H' => {
                let h = match t.hour() % 12 {
                    0 => 12,
                    h => h,
                };
                two(h, n, "12-hour must either be \"H\" or \"HH\"")?
            }
            'A' | 'a' => {
                if n != 2 {
                    return Err(bad(&format!("must be \"{c}{c}\"")));
                }
                let pm = t.hour() >= 12;
                match (c, pm) {
                    ('A', false) => "AM",
                    ('A', true) => "PM",
                    (_, false) => "am",
                    (_, true) => "pm",
                }
                .to_owned()
            }
            'm' => two(t.minute(), n, "minute must either be \"m\" or \"mm\"")?,
            's' => two(t.second(), n, "second must either be \"s\" or \"ss\"")?,
            'Z' => {
                let off = t.offset().local_minus_utc();
                let (sign, off) = if off < 0 { ('-', -off) } else { ('+', off) };
                let (hh, mm) = (off / 3600, (off % 3600) / 60);
                match n {
                    1 if off == 0 => "Z".to_owned(),
                    1 | 5 => format!("{sign}{hh:02}:{mm:02}"),
                    3 if off == 0 => "UTC".to_owned(),
                    3 | 4 => format!("{sign}{hh:02}{mm:02}"),
                    _ => return Err(bad("timezone must be Z, ZZZZ, or ZZZZZ")),
                }
            }
            _ => {
                return Err(format!(
                    "argument 1: invalid date format verb {}",
                    encoding::json_string(&tok)
                ))
            }
        };
        out.push_str(&s);
        super::check_len(out.len())?;
    }
    Ok(Value::String(out))
}
