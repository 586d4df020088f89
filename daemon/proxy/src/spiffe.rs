//! SPIFFE IDs of services and reading them out of a certificate's URI SAN.
//!
//! The DER walk is deliberately tiny: it only descends the fixed path
//! Certificate → TBSCertificate → extensions → subjectAltName → URI, after
//! webpki has already verified the certificate, so it needs no general parser.

pub use mesh_types::SpiffeId;

/// The URI SANs of a DER certificate (empty if it has none or is malformed).
pub fn uri_sans(cert_der: &[u8]) -> Vec<String> {
    try_uri_sans(cert_der).unwrap_or_default()
}

/// The SPIFFE URI SAN of a certificate, if it has exactly one.
pub fn spiffe_id_of(cert_der: &[u8]) -> Option<String> {
    let uris: Vec<String> = uri_sans(cert_der)
        .into_iter()
        .filter(|u| u.starts_with("spiffe://"))
        .collect();
    match uris.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

// === DER walking ===

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT
const URI: u8 = 0x86; // [6] IMPLICIT IA5String
const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11]; // 2.5.29.17

/// Splits one TLV off the front: (tag, value, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        rest = &rest[n..];
        len
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn try_uri_sans(der: &[u8]) -> Option<Vec<String>> {
    let (tag, cert, _) = tlv(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // Skip version, serial, signature, issuer, validity, subject, spki,
    // optional unique IDs, until the [3] extensions wrapper.
    let exts = loop {
        let (tag, value, rest) = tlv(tbs)?;
        if tag == EXTENSIONS {
            break value;
        }
        tbs = rest;
    };
    let (tag, mut exts, _) = tlv(exts)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut out = Vec::new();
    while !exts.is_empty() {
        let (_, ext, rest) = tlv(exts)?;
        exts = rest;
        let (tag, oid, mut fields) = tlv(ext)?;
        if tag != OID || oid != SAN_OID {
            continue;
        }
        // Optional `critical` BOOLEAN, then the OCTET STRING.
        let value = loop {
            let (tag, value, rest) = tlv(fields)?;
            if tag == OCTET_STRING {
                break value;
            }
            fields = rest;
        };
        let (_, mut names, _) = tlv(value)?;
        while !names.is_empty() {
            let (tag, name, rest) = tlv(names)?;
            names = rest;
            if tag == URI {
                out.push(String::from_utf8(name.to_vec()).ok()?);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_uri_san_from_a_real_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["web.local".into()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            rcgen::string::Ia5String::try_from("spiffe://td.consul/ns/default/dc/dc1/svc/web")
                .unwrap(),
        ));
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            spiffe_id_of(cert.der()).as_deref(),
            Some("spiffe://td.consul/ns/default/dc/dc1/svc/web")
        );
        assert!(uri_sans(b"\x30\x03\x02\x01").is_empty());
    }
}
