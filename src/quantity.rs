//! Kubernetes quantities (`resource.Quantity` of k8s.io/apimachinery v0.36.3):
//! parsed and printed exactly as the Go code does, so kftenant writes quota
//! values the Kubeflow controller writes back unchanged, and compares live
//! values by what they mean (`0` is `"0"`, `1Gi` is `1024Mi`).
//!
//! A leaf module: no I/O, nothing of kftenant's formats.
//!
//! # What Go does, and this module with it
//! - **Grammar** (`parseQuantityString`): an optional sign, digits with an
//!   optional `.` (`1.`, `.5` and even `.` are numbers), then a suffix: the
//!   longest run of `eEinumkKMGTP`, an optional sign and digits. `-`, `m` and
//!   `e3` parse (to 0); whitespace, `1K` and `1e` do not.
//! - **Suffixes**: `n u m "" k M G T P E` (DecimalSI), `Ki Mi Gi Ti Pi Ei`
//!   (BinarySI), `e<int>`/`E<int>` other than a lone `E` (DecimalExponent).
//! - **Value**: exact, except that the slow path rounds magnitudes *up* (away
//!   from zero) to 10^-9 and caps BinarySI magnitudes at 2^63-1; a BinarySI
//!   value between 0 and 1 becomes DecimalSI.
//! - **Remembered input** (the fast path, `quantity.go` 332-342): when the
//!   number has at most 18 digits and a scale of at least 10^-9, Go keeps the
//!   input text as the quantity's string if it is "canonical enough" (decimal:
//!   scale a multiple of 3, digits not ending in `000` and not starting with
//!   `0`; binary: the number not divisible by 8). So `+1`, `1.`, `1E3` and
//!   `100.035k` print as written; `1.5` prints `1500m`.
//! - **Canonical form** (`CanonicalizeBytes`): zero is `0`; BinarySI uses
//!   `Ki`…`Ei` for whole values of at least 1024 (else it prints as DecimalSI);
//!   decimal formats move factors of ten into the exponent, lower it to a
//!   multiple of 3 and print the SI suffix or `e<exp>`. Go's bug is kept:
//!   a DecimalSI exponent above 18 has no suffix, so `1000E` prints `1`
//!   ([`Quantity::round_trips`] is false for those).
//!
//! # Where this module refuses what Go accepts
//! An exponent of more than nine digits ([`ParseError::Exponent`]). Go keeps
//! exponents in 32 bits and wraps larger ones (`1e4294967296` is 1), and takes
//! minutes to round exponents near the limit; no quota needs one.
//!
//! `tests/fixtures/quantities.tsv` holds thousands of Go results (made by
//! `testenv/quantity-vectors`); a unit test checks every row.

use serde::{Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;

/// How Go prints a quantity, chosen by the suffix it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `e<exp>` suffixes: `12e6`.
    DecimalExponent,
    /// Powers of 1024: `Ki` … `Ei`.
    BinarySI,
    /// Powers of 1000: `n u m k M G T P E`, or none.
    DecimalSI,
}

impl Format {
    /// Go's name of the format.
    pub fn name(self) -> &'static str {
        match self {
            Format::DecimalExponent => "DecimalExponent",
            Format::BinarySI => "BinarySI",
            Format::DecimalSI => "DecimalSI",
        }
    }
}

/// Why a string is not a quantity. The first three are Go's errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Go's `ErrFormatWrong`: empty, or characters the grammar does not allow.
    #[error("not a number with an optional suffix")]
    Format,
    /// Go's `ErrNumeric`: a suffix without digits where Go needs some (`.Pi`).
    #[error("the number has no digits")]
    Numeric,
    /// Go's `ErrSuffix`: an unknown suffix (`1K`, `1Mi3`, `1e`).
    #[error("unknown suffix")]
    Suffix,
    /// An exponent of more than nine digits: Go wraps those at 32 bits.
    #[error("the exponent has more than 9 digits")]
    Exponent,
}

/// An exact decimal number: `digits × 10^exp`.
///
/// Kept normalised (no leading or trailing zeros in `digits`; zero is empty
/// and never negative), so equal numbers are equal values.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Value {
    negative: bool,
    digits: String,
    exp: i64,
}

/// Exponents of more than nine digits are refused (see the module docs).
const MAX_EXPONENT: i64 = 999_999_999;
/// Go's `maxAllowed`: the cap of BinarySI magnitudes (2^63-1).
const BINARY_CAP: i64 = i64::MAX;

impl Value {
    fn zero() -> Value {
        Value {
            negative: false,
            digits: String::new(),
            exp: 0,
        }
    }

    /// `digits × 10^exp`; `digits` may have leading and trailing zeros.
    fn new(negative: bool, digits: &str, exp: i64) -> Value {
        let digits = digits.trim_start_matches('0');
        let kept = digits.trim_end_matches('0');
        if kept.is_empty() {
            return Value::zero();
        }
        Value {
            negative,
            digits: kept.to_string(),
            exp: exp + (digits.len() - kept.len()) as i64,
        }
    }

    fn from_i128(n: i128, exp: i64) -> Value {
        Value::new(n < 0, &n.unsigned_abs().to_string(), exp)
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// True below zero.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// True for whole numbers (zero included).
    pub fn is_integer(&self) -> bool {
        self.is_zero() || self.exp >= 0
    }

    /// The magnitudes compared (signs ignored).
    pub fn cmp_abs(&self, other: &Value) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // The position of the leading digit decides, then the digits from
        // the left (no trailing zeros: a longer tail is a larger number).
        let top = |v: &Value| v.digits.len() as i64 + v.exp;
        top(self)
            .cmp(&top(other))
            .then_with(|| self.digits.as_bytes().cmp(other.digits.as_bytes()))
    }

    /// `self × 2^n`.
    fn times_pow2(&self, n: u32) -> Value {
        let mut digits: Vec<u8> = self.digits.bytes().map(|b| b - b'0').collect();
        for _ in 0..n {
            let mut carry = 0;
            for d in digits.iter_mut().rev() {
                let x = *d * 2 + carry;
                *d = x % 10;
                carry = x / 10;
            }
            if carry > 0 {
                digits.insert(0, carry);
            }
        }
        let text: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        Value::new(self.negative, &text, self.exp)
    }

    /// Rounds the magnitude up to a multiple of 10^-9, as Go's slow path does
    /// (`inf.RoundUp`: away from zero). True when the value changed.
    fn round_up_to_nano(&mut self) -> bool {
        if self.is_zero() || self.exp >= -9 {
            return false;
        }
        // Normalised: the dropped digits end in a non-zero digit.
        let drop = (-9 - self.exp) as usize;
        let kept = if drop >= self.digits.len() {
            "1".to_string()
        } else {
            increment(&self.digits[..self.digits.len() - drop])
        };
        *self = Value::new(self.negative, &kept, -9);
        true
    }

    /// The value as an integer, when it is one and fits.
    fn to_i128(&self) -> Option<i128> {
        if !self.is_integer() {
            return None;
        }
        if self.is_zero() {
            return Some(0);
        }
        let mut n: i128 = self.digits.parse().ok()?;
        for _ in 0..self.exp {
            n = n.checked_mul(10)?;
        }
        Some(if self.negative { -n } else { n })
    }
}

/// A decimal digit string plus one.
fn increment(digits: &str) -> String {
    let mut out: Vec<u8> = digits.bytes().collect();
    for d in out.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            return String::from_utf8(out).expect("ASCII digits");
        }
    }
    out.insert(0, b'1');
    String::from_utf8(out).expect("ASCII digits")
}

/// `<digits>e<exp>`, or `0`: exact, for messages and test vectors.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0");
        }
        let sign = if self.negative { "-" } else { "" };
        write!(f, "{sign}{}e{}", self.digits, self.exp)
    }
}

/// How parsing changed a written value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adjustment {
    /// Rounded up (away from zero) to a multiple of 10^-9: `0.5n` is `1n`.
    RoundedUp,
    /// A BinarySI magnitude above 2^63-1, capped there: `9Ei`.
    Capped,
}

/// A parsed quantity: its value, its format, and the string Go prints for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity {
    /// The value after Go's rounding and capping.
    value: Value,
    /// The format Go keeps (it decides the canonical suffix).
    format: Format,
    /// What `String()` and `MarshalJSON` return: the input itself when Go
    /// remembers it, else the canonical form.
    text: String,
    /// Whether parsing rounded or capped the value written.
    adjusted: Option<Adjustment>,
}

impl Quantity {
    /// Parses `s` as Go's `resource.ParseQuantity` does.
    pub fn parse(s: &str) -> Result<Quantity, ParseError> {
        if s.is_empty() {
            return Err(ParseError::Format);
        }
        let sc = scan(s)?;
        let (base, exp, format) = interpret(sc.suffix)?;
        if let Some(q) = fast_path(s, &sc, base, exp, format) {
            return Ok(q);
        }
        slow_path(&sc, base, exp, format)
    }

    /// The string Go prints (`String()`, and `MarshalJSON` without the quotes).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The exact value.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Go's canonical form of the value (`CanonicalizeBytes`), ignoring any
    /// remembered input.
    pub fn canonical(&self) -> String {
        canonical(&self.value, self.format)
    }

    /// False when Kubernetes rounded the written value up to 10^-9 (`0.5n`
    /// is `1n`) or capped it at 2^63-1 (`9Ei`).
    pub fn is_exact(&self) -> bool {
        self.adjusted.is_none()
    }

    /// How parsing changed the written value, if it did.
    pub fn adjustment(&self) -> Option<Adjustment> {
        self.adjusted
    }

    /// True when Go reads back what it prints: the same value. False only for
    /// DecimalSI values whose canonical exponent is above 18 (`1000E` prints `1`).
    pub fn round_trips(&self) -> bool {
        Quantity::parse(&self.text).is_ok_and(|q| q.value == self.value)
    }

    /// True when both mean the same amount (Go's `Cmp(...) == 0`).
    pub fn same_value(&self, other: &Quantity) -> bool {
        self.value == other.value
    }

    /// The magnitude is above 2^63-1, where Kubernetes' 64-bit arithmetic
    /// on quantities (`Value()`, `MilliValue()`) overflows.
    pub fn exceeds_int64(&self) -> bool {
        self.value.cmp_abs(&Value::from_i128(BINARY_CAP.into(), 0)) == Ordering::Greater
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// As Go marshals it: a JSON string.
impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// The parts `parseQuantityString` finds.
struct Scanned<'a> {
    positive: bool,
    /// The sign and number as written (what the slow path reads).
    number: &'a str,
    /// Integer digits without leading zeros, `0` when there are none.
    num: &'a str,
    /// Fraction digits.
    denom: &'a str,
    suffix: &'a str,
}

/// Go's `parseQuantityString`, step by step.
fn scan(s: &str) -> Result<Scanned<'_>, ParseError> {
    let b = s.as_bytes();
    let end = b.len();
    let mut out = Scanned {
        positive: true,
        number: "",
        num: "",
        denom: "",
        suffix: "",
    };
    let mut pos = 0;
    match b.first() {
        Some(b'-') => {
            out.positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        out.num = "0";
        out.number = "0";
        return Ok(out);
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos >= end {
        out.num = &s[start..];
        out.number = s;
        return Ok(out);
    }
    out.num = if pos == start { "0" } else { &s[start..pos] };
    if b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        out.denom = &s[start..pos];
        if pos >= end {
            out.number = s;
            return Ok(out);
        }
    }
    out.number = &s[..pos];
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    if pos < end {
        return Err(ParseError::Format);
    }
    out.suffix = &s[suffix_start..];
    Ok(out)
}

/// Go's `quantitySuffixer.interpret`: base, exponent and format of a suffix.
fn interpret(suffix: &str) -> Result<(u32, i64, Format), ParseError> {
    let decimal = |e| Ok((10, e, Format::DecimalSI));
    let binary = |e| Ok((2, e, Format::BinarySI));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ if suffix.len() > 1 && suffix.starts_with(['e', 'E']) => {
            // strconv.ParseInt(rest, 10, 64): an optional sign, then digits.
            let rest = &suffix[1..];
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return Err(ParseError::Suffix);
            }
            let e: i64 = rest.parse().map_err(|_| ParseError::Suffix)?;
            if e.abs() > MAX_EXPONENT {
                return Err(ParseError::Exponent);
            }
            Ok((10, e, Format::DecimalExponent))
        }
        _ => Err(ParseError::Suffix),
    }
}

/// `ParseQuantity`'s int64 path (quantity.go 296-346), or `None` where Go
/// falls through to the exact one.
fn fast_path(s: &str, sc: &Scanned, base: u32, exp: i64, format: Format) -> Option<Quantity> {
    let (num, denom) = (sc.num.len() as i64, sc.denom.len() as i64);
    let (mut scale, precision, mantissa) = if base == 10 {
        (exp, 18 - num - denom, 1i64)
    } else if denom == 0 {
        // Go: 15 - len(num) - int32(float32(exponent)*3/10) - 1.
        (0, 15 - num - exp * 3 / 10 - 1, 1i64 << exp)
    } else {
        (0, -1, 1)
    };
    if precision < 0 {
        return None;
    }
    scale -= denom;
    if scale < -9 {
        return None;
    }
    let shifted = format!("{}{}", sc.num, sc.denom);
    let number: i64 = shifted.parse().expect("at most 18 digits");
    let magnitude = number.checked_mul(mantissa)?;
    let result = if sc.positive { magnitude } else { -magnitude };
    let value = Value::from_i128(result.into(), scale);
    let remembered = if base == 2 {
        number & 7 != 0
    } else {
        scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0')
    };
    let text = if remembered {
        s.to_string()
    } else {
        canonical(&value, format)
    };
    Some(Quantity {
        value,
        format,
        text,
        adjusted: None,
    })
}

/// `ParseQuantity`'s exact path (quantity.go 348-391): inf.Dec arithmetic,
/// rounding to 10^-9 and the BinarySI cap.
fn slow_path(
    sc: &Scanned,
    base: u32,
    exp: i64,
    mut format: Format,
) -> Result<Quantity, ParseError> {
    // inf.Dec.SetString(number): a sign, digits, at most one `.`; a digit needed.
    let unsigned = sc.number.trim_start_matches(['+', '-']);
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if int.is_empty() && frac.is_empty() {
        return Err(ParseError::Numeric);
    }
    let mut value = Value::new(!sc.positive, &format!("{int}{frac}"), -(frac.len() as i64));
    if base == 10 {
        if !value.is_zero() {
            value.exp += exp;
        }
    } else {
        value = value.times_pow2(exp as u32);
    }
    let mut adjusted = value.round_up_to_nano().then_some(Adjustment::RoundedUp);
    let cap = Value::from_i128(BINARY_CAP.into(), 0);
    if format == Format::BinarySI && value.cmp_abs(&cap) == Ordering::Greater {
        value = Value {
            negative: value.negative,
            ..cap
        };
        adjusted = Some(Adjustment::Capped);
    }
    if format == Format::BinarySI
        && !value.is_zero()
        && value.cmp_abs(&Value::from_i128(1, 0)) == Ordering::Less
    {
        format = Format::DecimalSI;
    }
    let text = canonical(&value, format);
    Ok(Quantity {
        value,
        format,
        text,
        adjusted,
    })
}

/// Go's `CanonicalizeBytes`: the string of a value in a format.
fn canonical(value: &Value, format: Format) -> String {
    if value.is_zero() {
        return "0".to_string();
    }
    let sign = if value.negative { "-" } else { "" };
    let whole_binary = (format == Format::BinarySI
        && value.cmp_abs(&Value::from_i128(1024, 0)) != Ordering::Less)
        .then(|| value.to_i128())
        .flatten();
    if let Some(n) = whole_binary {
        let (mut m, mut times) = (n.unsigned_abs(), 0);
        while m >= 1024 && m % 1024 == 0 {
            m /= 1024;
            times += 1;
        }
        // No suffix for 1024^0, nor (as in Go) for any power it has no name for.
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
            .get(times)
            .unwrap_or(&"");
        return format!("{sign}{m}{suffix}");
    }
    // Decimal (and BinarySI below 1024 or with a fraction): the exponent is
    // lowered to a multiple of 3.
    let mut digits = value.digits.clone();
    let mut exp = value.exp;
    for _ in 0..exp.rem_euclid(3) {
        digits.push('0');
        exp -= 1;
    }
    let suffix = if format == Format::DecimalExponent {
        if exp == 0 {
            String::new()
        } else {
            format!("e{exp}")
        }
    } else {
        // Go's bug, kept: no suffix above E, so 1000E prints as 1.
        match exp {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => "",
        }
        .to_string()
    };
    format!("{sign}{digits}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn prints_as_go_does() {
        for (input, out) in [
            ("0", "0"),
            ("1.5", "1500m"),
            ("1024Mi", "1Gi"),
            ("1000m", "1"),
            ("100.035k", "100.035k"),
            ("+1", "+1"),
            ("1.", "1."),
            ("1E3", "1E3"),
            ("1e4", "10e3"),
            ("0.1m", "100u"),
            ("0.5n", "1n"),
            ("-0.0000000001", "-1n"),
            ("1.5Ki", "1536"),
            ("1.1Ki", "1126400m"),
            ("9Ei", "9223372036854775807"),
            ("1000E", "1"),
            (".000000000001Ki", "2n"),
            ("-", "0"),
            ("e3", "0"),
        ] {
            assert_eq!(q(input).as_str(), out, "{input}");
        }
    }

    #[test]
    fn errors_are_gos() {
        for (input, err) in [
            ("", ParseError::Format),
            (" 1", ParseError::Format),
            ("1 ", ParseError::Format),
            ("1.1.1", ParseError::Format),
            ("1K", ParseError::Suffix),
            ("1e", ParseError::Suffix),
            ("1Mi3", ParseError::Suffix),
            (".Pi", ParseError::Numeric),
            ("1e4294967296", ParseError::Exponent),
            ("1e9223372036854775808", ParseError::Suffix),
        ] {
            assert_eq!(Quantity::parse(input), Err(err), "{input}");
        }
    }

    #[test]
    fn values_compare_by_meaning() {
        assert!(q("1Gi").same_value(&q("1024Mi")));
        assert!(q("0").same_value(&q("0m")));
        assert!(q("1k").same_value(&q("1e3")));
        assert!(!q("1k").same_value(&q("1Ki")));
        assert!(q("1Gi").is_exact() && q("1.5").is_exact() && q("1e-9").is_exact());
        assert_eq!(q("0.5n").adjustment(), Some(Adjustment::RoundedUp));
        assert_eq!(
            q("1.0000000000001Ki").adjustment(),
            Some(Adjustment::RoundedUp)
        );
        assert_eq!(q("8Ei").adjustment(), Some(Adjustment::Capped));
        assert!(!q("8Ei").exceeds_int64());
        assert!(q("1e19").exceeds_int64());
        assert!(!q("9223372036854775807").exceeds_int64());
        assert!(!q("1000E").round_trips());
        assert!(q("999E").round_trips());
        assert_eq!(q("1.5").value().to_string(), "15e-1");
    }

    #[test]
    fn every_go_vector() {
        let text = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quantities.tsv"
        ));
        let (mut rows, mut refused) = (0, Vec::new());
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 7, "{line}");
            let input = cols[0]
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .expect("a quoted input");
            rows += 1;
            let got = Quantity::parse(input);
            if let Some(err) = cols[1].strip_prefix('!') {
                let want = match err {
                    "format" => ParseError::Format,
                    "numeric" => ParseError::Numeric,
                    "suffix" => ParseError::Suffix,
                    other => panic!("unknown error {other}"),
                };
                assert_eq!(got, Err(want), "{input}");
                continue;
            }
            let got = match got {
                Err(ParseError::Exponent) => {
                    refused.push(input);
                    continue;
                }
                Err(e) => panic!("{input}: Go parses it, we say {e}"),
                Ok(got) => got,
            };
            let [_, string, format, value, canonical, reparsed, same] = cols[..] else {
                unreachable!()
            };
            assert_eq!(got.as_str(), string, "String() of {input}");
            assert_eq!(got.format().name(), format, "format of {input}");
            assert_eq!(got.value().to_string(), value, "value of {input}");
            assert_eq!(got.canonical(), canonical, "canonical form of {input}");
            assert_eq!(q(got.as_str()).as_str(), reparsed, "reparsed {input}");
            assert_eq!(got.round_trips(), same == "yes", "round trip of {input}");
        }
        assert!(rows > 9000, "{rows} vectors");
        assert_eq!(
            refused,
            [
                "1e4294967296",
                "1e4294967297",
                "1e2147483647",
                "5e1000000000",
                "1e1000000001",
                "-1e2000000000",
                "1e9223372036854775807"
            ]
        );
    }
}
