//! Small value types shared by several kinds: ports, file modes, labels, CIDRs, secret references.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A TCP or UDP port, 1 to 65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number from 1 to 65535")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Port, E> {
                match u16::try_from(v) {
                    Ok(port) if port > 0 => Ok(Port(port)),
                    _ => Err(E::custom(format!(
                        "port {v} is out of range: use 1 to 65535"
                    ))),
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Port, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Port, E> {
                match v.trim().parse::<i64>() {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::custom(format!(
                        "`{v}` is not a port number: use 1 to 65535"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

impl JsonSchema for Port {
    fn schema_name() -> Cow<'static, str> {
        "Port".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 1, "maximum": 65535})
    }
}

/// Unix permission bits, written in octal as a string (`"0644"`) or as a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileMode {
    pub bits: u32,
    /// The mode was written as a plain decimal number whose digits look octal (`644`),
    /// which almost always means the author meant `"0644"`; validation warns about it.
    pub decimal_looks_octal: bool,
}

impl FileMode {
    pub fn parse_octal(text: &str) -> Result<Self, String> {
        let digits = text.trim();
        let digits = digits.strip_prefix("0o").unwrap_or(digits);
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if bits <= 0o7777 && !digits.is_empty() => Ok(FileMode {
                bits,
                decimal_looks_octal: false,
            }),
            _ => Err(format!(
                "mode `{text}` is not an octal permission such as \"0644\" or \"0755\""
            )),
        }
    }
}

impl fmt::Display for FileMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.bits)
    }
}

impl Serialize for FileMode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FileMode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModeVisitor;
        impl Visitor<'_> for ModeVisitor {
            type Value = FileMode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal file mode such as \"0644\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileMode, E> {
                FileMode::parse_octal(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<FileMode, E> {
                let digits = v.to_string();
                let looks_octal = digits.chars().all(|c| ('0'..='7').contains(&c));
                match u32::try_from(v) {
                    Ok(bits) if bits <= 0o7777 => Ok(FileMode {
                        bits,
                        decimal_looks_octal: looks_octal && bits > 0o777,
                    }),
                    // `644` as a number cannot be meant as decimal (it is above 0o7777 for
                    // most octal-looking spellings); read its digits as octal.
                    _ if looks_octal => FileMode::parse_octal(&digits).map_err(E::custom),
                    _ => Err(E::custom(format!(
                        "mode {v} is out of range; write it in octal as a string, such as \"0644\""
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<FileMode, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!("mode {v} is negative"))),
                }
            }
        }
        deserializer.deserialize_any(ModeVisitor)
    }
}

impl JsonSchema for FileMode {
    fn schema_name() -> Cow<'static, str> {
        "FileMode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "octal permission bits, such as \"0644\"",
            "anyOf": [
                {"type": "string", "pattern": "^(0o)?[0-7]{1,4}$"},
                {"type": "integer", "minimum": 0, "maximum": 4095}
            ]
        })
    }
}

/// Label keys and values; values written as numbers or booleans are kept as their text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Labels(pub BTreeMap<String, String>);

impl Labels {
    /// A selector matches a set of labels when every key of the selector is present with the
    /// same value. The empty selector matches everything.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(k, v)| labels.0.get(k) == Some(v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (k, v) in &self.0 {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// A scalar written in YAML or KDL, taken as its text.
pub(crate) struct ScalarText(pub String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        deserializer.deserialize_string(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of labels, such as `{role: web}`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut labels = BTreeMap::new();
                while let Some((key, value)) = map.next_entry::<String, ScalarText>()? {
                    labels.insert(key, value.0);
                }
                Ok(Labels(labels))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Labels, E> {
                Ok(Labels::default())
            }
        }
        deserializer.deserialize_map(LabelsVisitor)
    }
}

impl JsonSchema for Labels {
    fn schema_name() -> Cow<'static, str> {
        "Labels".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]}
        })
    }
}

/// Plain text, or a list of texts: `command: "nginx -g 'daemon off;'"` or `command: [nginx]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum StringOrList {
    String(String),
    List(Vec<String>),
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Either;
        impl<'de> Visitor<'de> for Either {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StringOrList, E> {
                Ok(StringOrList::String(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrList, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<ScalarText>()? {
                    items.push(item.0);
                }
                Ok(StringOrList::List(items))
            }
        }
        deserializer.deserialize_any(Either)
    }
}

impl JsonSchema for StringOrList {
    fn schema_name() -> Cow<'static, str> {
        "StringOrList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        })
    }
}

/// An IP network in CIDR notation, `10.106.103.0/24`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    fn max_prefix(address: IpAddr) -> u8 {
        if address.is_ipv4() { 32 } else { 128 }
    }

    fn bits(address: IpAddr) -> u128 {
        match address {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        }
    }

    fn mask(&self) -> u128 {
        let width = u32::from(Self::max_prefix(self.address));
        let host_bits = width - u32::from(self.prefix);
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        if host_bits >= 128 {
            0
        } else {
            all & !((1u128 << host_bits) - 1)
        }
    }

    /// Whether `address` lies inside this network.
    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.address.is_ipv4()
            && Self::bits(address) & self.mask() == Self::bits(self.address) & self.mask()
    }

    /// The network's own address (all host bits zero).
    pub fn network_address(&self) -> IpAddr {
        Self::from_bits(self.address, Self::bits(self.address) & self.mask())
    }

    /// The last address of the network (all host bits one): the IPv4 broadcast address.
    pub fn last_address(&self) -> IpAddr {
        let width = u32::from(Self::max_prefix(self.address));
        let all = if width == 128 {
            u128::MAX
        } else {
            (1u128 << width) - 1
        };
        Self::from_bits(
            self.address,
            (Self::bits(self.address) & self.mask()) | (all & !self.mask()),
        )
    }

    fn from_bits(like: IpAddr, bits: u128) -> IpAddr {
        match like {
            IpAddr::V4(_) => IpAddr::V4((u32::try_from(bits).unwrap_or(u32::MAX)).into()),
            IpAddr::V6(_) => IpAddr::V6(bits.into()),
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let help = "write a network in CIDR notation, such as `10.106.103.0/24`";
        let Some((address, prefix)) = text.split_once('/') else {
            return Err(format!(
                "`{text}` is not in CIDR notation (no `/prefix`); {help}"
            ));
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("`{address}` in `{text}` is not an IP address; {help}"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= Self::max_prefix(address))
            .ok_or_else(|| {
                format!(
                    "prefix `/{prefix}` is out of range for `{text}`: use /0 to /{}",
                    Self::max_prefix(address)
                )
            })?;
        let cidr = Cidr { address, prefix };
        if cidr.network_address() != address {
            return Err(format!(
                "`{text}` has host bits set; did you mean `{}/{prefix}`?",
                cidr.network_address()
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "description": "an IP network in CIDR notation, such as 10.106.103.0/24"})
    }
}

/// A reference to an age-encrypted secret: `NAME` (the file `secrets/NAME.age`) or `NAME#key`
/// for one key of a YAML-formatted secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct SecretRef(pub String);

impl SecretRef {
    /// The secret's name, without any `#key`.
    pub fn name(&self) -> &str {
        self.0
            .split_once('#')
            .map_or(self.0.as_str(), |(name, _)| name)
    }

    /// The key inside a YAML-formatted secret, if any.
    pub fn key(&self) -> Option<&str> {
        self.0.split_once('#').map(|(_, key)| key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parses_and_contains() {
        let net: Cidr = "10.106.103.0/24".parse().unwrap_or_else(|e| panic!("{e}"));
        assert!(net.contains("10.106.103.7".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert!(!net.contains("10.106.104.7".parse().unwrap_or_else(|e| panic!("{e}"))));
        assert_eq!(net.last_address().to_string(), "10.106.103.255");
        assert!(
            "10.106.103.1/24"
                .parse::<Cidr>()
                .unwrap_err()
                .contains("10.106.103.0/24")
        );
        assert!("10.106.103.0/33".parse::<Cidr>().is_err());
        assert!("10.106.103.0".parse::<Cidr>().is_err());
        assert!("fd00::/64".parse::<Cidr>().is_ok());
        assert!("0.0.0.0/0".parse::<Cidr>().is_ok());
    }

    #[test]
    fn octal_modes() {
        assert_eq!(FileMode::parse_octal("0644").map(|m| m.bits), Ok(0o644));
        assert_eq!(FileMode::parse_octal("0o755").map(|m| m.bits), Ok(0o755));
        assert!(FileMode::parse_octal("0999").is_err());
        assert!(FileMode::parse_octal("77777").is_err());
    }

    #[test]
    fn secret_ref_with_key() {
        let r = SecretRef("db#password".into());
        assert_eq!((r.name(), r.key()), ("db", Some("password")));
        let r = SecretRef("tls".into());
        assert_eq!((r.name(), r.key()), ("tls", None));
    }
}
