//! Resource quantities: cpu in cores or millicores, sizes in bytes with binary or decimal suffixes.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A cpu quantity, kept in millicores: `2` is 2000, `500m` is 500, `0.25` is 250.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cpu {
    pub millicores: u64,
}

/// A size in bytes: `512Mi`, `2Gi`, `1G`, `1500`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes {
    pub bytes: u64,
}

/// Why a quantity did not parse; the message is meant for a diagnostic label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuantityError {
    pub message: String,
}

impl fmt::Display for QuantityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for QuantityError {}

fn quantity_error(message: String) -> QuantityError {
    QuantityError { message }
}

/// Splits `"12.5Gi"` into the number `12.5` and the suffix `Gi`.
fn split_number(text: &str) -> (&str, &str) {
    let end = text
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_digit() || c == '.'))
        .map_or(text.len(), |(i, _)| i);
    (&text[..end], &text[end..])
}

/// Multiplies a decimal number written as text by `scale` and divides by `divisor`, exactly,
/// without floating point. Returns `None` when the result is not a whole number or overflows.
fn scaled_integer(number: &str, scale: u128, divisor: u128) -> Option<u64> {
    let (whole, fraction) = match number.split_once('.') {
        Some((w, f)) => (w, f),
        None => (number, ""),
    };
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    if fraction.len() > 18 || whole.len() > 30 {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let mantissa: u128 = digits.parse().ok()?;
    let denominator = 10u128
        .checked_pow(fraction.len() as u32)?
        .checked_mul(divisor)?;
    let numerator = mantissa.checked_mul(scale)?;
    if numerator % denominator != 0 {
        return None;
    }
    u64::try_from(numerator / denominator).ok()
}

impl Cpu {
    pub fn from_millicores(millicores: u64) -> Self {
        Cpu { millicores }
    }

    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        let help = "write cores (`2`, `0.5`) or millicores (`500m`)";
        if text.starts_with('-') {
            return Err(quantity_error(format!("cpu `{text}` is negative; {help}")));
        }
        let (number, suffix) = split_number(text);
        let millicores = match suffix {
            "" => scaled_integer(number, 1000, 1),
            "m" => scaled_integer(number, 1, 1),
            _ => {
                return Err(quantity_error(format!(
                    "cpu `{text}` has an unknown suffix `{suffix}`; {help}"
                )));
            }
        };
        millicores.map(Cpu::from_millicores).ok_or_else(|| {
            quantity_error(format!(
                "cpu `{text}` is not a whole number of millicores; {help}"
            ))
        })
    }

    fn from_f64(value: f64) -> Result<Self, QuantityError> {
        if !value.is_finite() || value < 0.0 {
            return Err(quantity_error(format!(
                "cpu {value} must be a positive number of cores"
            )));
        }
        Cpu::parse(&value.to_string())
    }
}

impl fmt::Display for Cpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millicores.is_multiple_of(1000) {
            write!(f, "{}", self.millicores / 1000)
        } else {
            write!(f, "{}m", self.millicores)
        }
    }
}

const BINARY_SUFFIXES: [(&str, u32); 6] = [
    ("Ki", 1),
    ("Mi", 2),
    ("Gi", 3),
    ("Ti", 4),
    ("Pi", 5),
    ("Ei", 6),
];
const DECIMAL_SUFFIXES: [(&str, u32); 7] = [
    ("k", 1),
    ("K", 1),
    ("M", 2),
    ("G", 3),
    ("T", 4),
    ("P", 5),
    ("E", 6),
];

impl Bytes {
    pub fn from_bytes(bytes: u64) -> Self {
        Bytes { bytes }
    }

    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        let text = text.trim();
        let help = "write bytes with a binary (`512Mi`, `2Gi`) or decimal (`500M`, `1G`) suffix";
        if text.starts_with('-') {
            return Err(quantity_error(format!("size `{text}` is negative; {help}")));
        }
        let (number, suffix) = split_number(text);
        // `MiB` and `GB` are common spellings of `Mi` and `G`.
        let suffix = suffix
            .strip_suffix('B')
            .filter(|s| !s.is_empty())
            .unwrap_or(suffix);
        let scale: Option<u128> = if suffix.is_empty() || suffix == "B" {
            Some(1)
        } else if let Some((_, power)) = BINARY_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            Some(1024u128.pow(*power))
        } else if let Some((_, power)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
            Some(1000u128.pow(*power))
        } else {
            None
        };
        let Some(scale) = scale else {
            let hint = match suffix {
                "m" | "mi" | "mb" => " (`m` would mean thousandths; did you mean `Mi`?)",
                "g" | "gi" | "gb" => " (did you mean `Gi`?)",
                "ki" | "kb" => " (did you mean `Ki`?)",
                _ => "",
            };
            return Err(quantity_error(format!(
                "size `{text}` has an unknown suffix `{suffix}`{hint}; {help}"
            )));
        };
        scaled_integer(number, scale, 1)
            .map(Bytes::from_bytes)
            .ok_or_else(|| {
                quantity_error(format!(
                    "size `{text}` is not a whole number of bytes; {help}"
                ))
            })
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.bytes;
        if bytes > 0 {
            for (suffix, power) in BINARY_SUFFIXES.iter().rev() {
                let unit = 1024u64.pow(*power);
                if bytes.is_multiple_of(unit) {
                    return write!(f, "{}{suffix}", bytes / unit);
                }
            }
        }
        write!(f, "{bytes}")
    }
}

struct QuantityVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, QuantityError>,
    from_f64: fn(f64) -> Result<T, QuantityError>,
}

impl<T> Visitor<'_> for QuantityVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        (self.parse)(&v.to_string()).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        (self.from_f64)(v).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for Cpu {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor {
            expecting: "a cpu quantity such as `2` or `500m`",
            parse: Cpu::parse,
            from_f64: Cpu::from_f64,
        })
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor {
            expecting: "a size such as `512Mi` or `2G`",
            parse: Bytes::parse,
            from_f64: |v| Bytes::parse(&v.to_string()),
        })
    }
}

impl Serialize for Cpu {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for Cpu {
    fn schema_name() -> Cow<'static, str> {
        "Cpu".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "cpu in cores (`2`, `0.5`) or millicores (`500m`)",
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?m?$"}
            ]
        })
    }
}

impl JsonSchema for Bytes {
    fn schema_name() -> Cow<'static, str> {
        "Bytes".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "a size in bytes, with a binary (`512Mi`, `2Gi`) or decimal (`500M`, `1G`) suffix",
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?([KMGTPE]i?B?|k|B)?$"}
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_in_cores_and_millicores() {
        assert_eq!(Cpu::parse("2").map(|c| c.millicores), Ok(2000));
        assert_eq!(Cpu::parse("500m").map(|c| c.millicores), Ok(500));
        assert_eq!(Cpu::parse("0.25").map(|c| c.millicores), Ok(250));
        assert_eq!(Cpu::parse("1.5").map(|c| c.to_string()), Ok("1500m".into()));
        assert!(Cpu::parse("2x").is_err());
        assert!(Cpu::parse("-1").is_err());
        assert!(Cpu::parse("0.0001").is_err());
        assert!(Cpu::parse("").is_err());
        assert!(Cpu::parse("m").is_err());
    }

    #[test]
    fn sizes_with_binary_and_decimal_suffixes() {
        assert_eq!(
            Bytes::parse("512Mi").map(|b| b.bytes),
            Ok(512 * 1024 * 1024)
        );
        assert_eq!(Bytes::parse("2Gi").map(|b| b.bytes), Ok(2 << 30));
        assert_eq!(Bytes::parse("1G").map(|b| b.bytes), Ok(1_000_000_000));
        assert_eq!(Bytes::parse("1.5Gi").map(|b| b.bytes), Ok(3 << 29));
        assert_eq!(Bytes::parse("100").map(|b| b.bytes), Ok(100));
        assert_eq!(Bytes::parse("64MiB").map(|b| b.bytes), Ok(64 << 20));
        assert_eq!(Bytes::from_bytes(2 << 30).to_string(), "2Gi");
        let error = Bytes::parse("512m").unwrap_err();
        assert!(error.message.contains("did you mean `Mi`"), "{error}");
        assert!(Bytes::parse("12XB").is_err());
        assert!(Bytes::parse("99999999999999999999Ei").is_err());
    }
}
