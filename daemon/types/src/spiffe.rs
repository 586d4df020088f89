//! SPIFFE IDs of services: the one place they are written and read.

use std::fmt;

/// The namespace of every service while mesh has no namespaces.
pub const DEFAULT_NAMESPACE: &str = "default";

/// `spiffe://<trust-domain>/ns/<ns>/dc/<dc>/svc/<service>`: the identity a
/// leaf certificate carries and a proxy authorizes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SpiffeId {
    /// Trust domain (the URI's host).
    pub trust_domain: String,
    /// Namespace (`default` without namespaces).
    pub namespace: String,
    /// Datacenter.
    pub datacenter: String,
    /// Service name.
    pub service: String,
}

impl SpiffeId {
    /// The ID of `service` in the default namespace of `datacenter`.
    pub fn service(trust_domain: &str, datacenter: &str, service: &str) -> Self {
        Self {
            trust_domain: trust_domain.to_string(),
            namespace: DEFAULT_NAMESPACE.to_string(),
            datacenter: datacenter.to_string(),
            service: service.to_string(),
        }
    }

    /// Parses a service SPIFFE ID; `None` if `uri` is not of the service
    /// form or has an empty part.
    pub fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix("spiffe://")?;
        let (td, path) = rest.split_once('/')?;
        let parts: Vec<&str> = path.split('/').collect();
        match parts.as_slice() {
            ["ns", ns, "dc", dc, "svc", svc]
                if !td.is_empty() && !ns.is_empty() && !dc.is_empty() && !svc.is_empty() =>
            {
                Some(Self {
                    trust_domain: td.to_string(),
                    namespace: ns.to_string(),
                    datacenter: dc.to_string(),
                    service: svc.to_string(),
                })
            }
            _ => None,
        }
    }

    /// The trust domain's own ID, `spiffe://<trust-domain>` (a root's URI SAN).
    pub fn trust_domain_uri(trust_domain: &str) -> String {
        format!("spiffe://{trust_domain}")
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "spiffe://{}/ns/{}/dc/{}/svc/{}",
            self.trust_domain, self.namespace, self.datacenter, self.service
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display_round_trip() {
        let id = SpiffeId::service("abc.consul", "dc1", "web");
        let uri = id.to_string();
        assert_eq!(uri, "spiffe://abc.consul/ns/default/dc/dc1/svc/web");
        assert_eq!(SpiffeId::parse(&uri), Some(id));
    }

    #[test]
    fn other_forms_are_not_service_ids() {
        for uri in [
            "spiffe://abc.consul",
            "spiffe://abc.consul/agent/client/dc/dc1/id/x",
            "spiffe://abc.consul/ns/default/dc/dc1/svc/",
            "spiffe:///ns/default/dc/dc1/svc/web",
            "spiffe://abc.consul/ns/default/dc/dc1/svc/web/extra",
            "https://abc.consul/ns/default/dc/dc1/svc/web",
        ] {
            assert_eq!(SpiffeId::parse(uri), None, "{uri}");
        }
    }
}
