//! The address of a resource or of one of its instances, typed: `Kind/name`,
//! `Kind/tenant/name` for the kinds that belong to a tenant, and `@host` after either for the
//! instance on one host (`File/motd@web-1`). Parsed once, displayed the one way, carried as
//! its text in JSON and state; nothing else takes an address apart by hand.

use std::fmt;
use std::str::FromStr;

use crate::Kind;

/// A resource's or an instance's address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub kind: Kind,
    /// The tenant, for kinds that belong to one (Workload, Volume); `Tenant/acme` is the
    /// tenant itself (its name, with no tenant part).
    pub tenant: Option<String>,
    pub name: String,
    /// The host of an instance on one host (`@web-1`).
    pub host: Option<String>,
}

/// Why a text is not an address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not an address ({why}); addresses are Kind/name, Kind/tenant/name, with @host for one host's instance"
)]
pub struct AddressError {
    pub text: String,
    pub why: &'static str,
}

impl Address {
    /// A resource's address.
    pub fn resource(kind: Kind, tenant: Option<&str>, name: &str) -> Address {
        Address {
            kind,
            tenant: tenant
                .filter(|_| kind.is_tenant_scoped())
                .map(str::to_owned),
            name: name.to_owned(),
            host: None,
        }
    }

    /// The instance of this resource on `host`.
    pub fn on(&self, host: &str) -> Address {
        Address {
            host: Some(host.to_owned()),
            ..self.clone()
        }
    }

    /// The resource this instance belongs to (the address without `@host`).
    pub fn without_host(&self) -> Address {
        Address {
            host: None,
            ..self.clone()
        }
    }

    /// The tenant it belongs to: its tenant part, or its name for a Tenant.
    pub fn tenant(&self) -> Option<&str> {
        match self.kind {
            Kind::Tenant => Some(&self.name),
            _ => self.tenant.as_deref(),
        }
    }

    /// The host it is on: its `@host`, or its name for a Host (a Host is its own target).
    pub fn target(&self) -> Option<&str> {
        match (&self.host, self.kind) {
            (Some(host), _) => Some(host),
            (None, Kind::Host) => Some(&self.name),
            (None, _) => None,
        }
    }

    /// [`Address::target`] of an address held as text; `None` for text that is not one.
    pub fn target_of(text: &str) -> Option<String> {
        text.parse::<Address>()
            .ok()
            .and_then(|a| a.target().map(str::to_owned))
    }

    /// [`Address::tenant`] of an address held as text; `None` for text that is not one.
    pub fn tenant_of(text: &str) -> Option<String> {
        text.parse::<Address>()
            .ok()
            .and_then(|a| a.tenant().map(str::to_owned))
    }

    /// The resource of an address held as text (without `@host`); the text itself when it
    /// is not an address.
    pub fn resource_of(text: &str) -> String {
        text.parse::<Address>()
            .map_or_else(|_| text.to_owned(), |a| a.without_host().to_string())
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/", self.kind)?;
        if let Some(tenant) = &self.tenant {
            write!(f, "{tenant}/")?;
        }
        f.write_str(&self.name)?;
        if let Some(host) = &self.host {
            write!(f, "@{host}")?;
        }
        Ok(())
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Address, AddressError> {
        let error = |why| AddressError {
            text: text.to_owned(),
            why,
        };
        let (resource, host) = match text.split_once('@') {
            Some((_, "")) => return Err(error("nothing after @")),
            Some((_, host)) if host.contains(['@', '/']) => {
                return Err(error("a host name has no / or @"));
            }
            Some((resource, host)) => (resource, Some(host.to_owned())),
            None => (text, None),
        };
        let mut parts = resource.split('/');
        let kind = parts
            .next()
            .and_then(Kind::from_yaml_name)
            .ok_or_else(|| error("no kind nimbus knows before the first /"))?;
        let (tenant, name) = match (parts.next(), parts.next(), parts.next()) {
            (Some(name), None, None) if !kind.is_tenant_scoped() => (None, name),
            (Some(tenant), Some(name), None) if kind.is_tenant_scoped() => {
                (Some(tenant.to_owned()), name)
            }
            _ if kind.is_tenant_scoped() => {
                return Err(error("this kind belongs to a tenant: Kind/tenant/name"));
            }
            _ => return Err(error("Kind/name")),
        };
        if name.is_empty() || tenant.as_deref() == Some("") {
            return Err(error("an empty name"));
        }
        Ok(Address {
            kind,
            tenant,
            name: name.to_owned(),
            host,
        })
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Address, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_displays_as_it_was_written() {
        for text in [
            "Host/web-1",
            "File/motd@web-1",
            "Service/nginx@web-1",
            "Network/mesh@h2",
            "Cluster/apps",
            "Tenant/acme",
            "Workload/acme/api",
            "Volume/acme/data",
            "VM/build-1",
        ] {
            let address: Address = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(address.to_string(), text);
            let json = serde_json::to_string(&address).unwrap_or_default();
            assert_eq!(json, format!("\"{text}\""));
            let back: Address = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, address);
        }
    }

    #[test]
    fn parts_and_targets() {
        let file: Address = "File/motd@web-1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(file.kind, Kind::File);
        assert_eq!(file.target(), Some("web-1"));
        assert_eq!(file.without_host().to_string(), "File/motd");
        let host: Address = "Host/web-1".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(host.target(), Some("web-1"));
        let workload: Address = "Workload/acme/api"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(workload.tenant(), Some("acme"));
        assert_eq!(workload.target(), None);
        let tenant: Address = "Tenant/acme".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(tenant.tenant(), Some("acme"));
        assert_eq!(
            Address::target_of("Service/nginx@web-1").as_deref(),
            Some("web-1")
        );
        assert_eq!(
            Address::tenant_of("Workload/acme/api").as_deref(),
            Some("acme")
        );
        assert_eq!(Address::resource_of("File/motd@web-1"), "File/motd");
        assert_eq!(Address::resource_of("not an address"), "not an address");
        assert_eq!(Address::target_of("not an address"), None);
        assert_eq!(
            Address::resource(Kind::Volume, Some("acme"), "data")
                .on("h1")
                .to_string(),
            "Volume/acme/data@h1"
        );
        assert_eq!(
            Address::resource(Kind::Host, Some("ignored"), "h1").to_string(),
            "Host/h1"
        );
    }

    #[test]
    fn what_is_not_an_address_says_why() {
        for (text, why) in [
            ("Frobnicator/x", "no kind"),
            ("Workload/api", "belongs to a tenant"),
            ("File/a/b", "Kind/name"),
            ("File/motd@", "nothing after @"),
            ("File/motd@a@b", "no / or @"),
            ("Host/", "empty name"),
            ("Volume//data", "empty name"),
        ] {
            let error = text
                .parse::<Address>()
                .err()
                .unwrap_or_else(|| panic!("{text} parsed"));
            assert!(error.to_string().contains(why), "{text}: {error}");
        }
    }
}
