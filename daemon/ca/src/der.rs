//! Just enough DER to re-wrap SEC1 / PKCS#1 private keys as PKCS#8 (which
//! ring requires) and to read a PKCS#8 key's algorithm. Structure only: no
//! cryptography happens here.

/// DER tag of SEQUENCE.
pub(crate) const SEQUENCE: u8 = 0x30;
/// DER tag of INTEGER.
const INTEGER: u8 = 0x02;
/// DER tag of OCTET STRING.
const OCTET_STRING: u8 = 0x04;
/// DER tag of OBJECT IDENTIFIER.
pub(crate) const OID: u8 = 0x06;
/// Context-specific constructed [0], as in ECPrivateKey's `parameters`.
const CONTEXT_0: u8 = 0xa0;

/// rsaEncryption (1.2.840.113549.1.1.1), content bytes.
pub(crate) const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey (1.2.840.10045.2.1), content bytes.
pub(crate) const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (1.2.840.10045.3.1.7), content bytes.
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// secp384r1 (1.3.132.0.34), content bytes.
pub(crate) const OID_P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
/// secp521r1 (1.3.132.0.35), content bytes.
pub(crate) const OID_P521: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x23];

/// Encodes one TLV.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// Reads one TLV from the front of `input`: `(tag, content, rest)`.
pub(crate) fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Wraps a PKCS#1 RSAPrivateKey in a PKCS#8 PrivateKeyInfo.
pub(crate) fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Vec<u8> {
    let alg = [tlv(OID, OID_RSA), vec![0x05, 0x00]].concat();
    pkcs8(&alg, pkcs1)
}

/// Wraps a SEC1 ECPrivateKey for `curve` (OID content bytes) in a PKCS#8 PrivateKeyInfo.
pub(crate) fn sec1_to_pkcs8(sec1: &[u8], curve: &[u8]) -> Vec<u8> {
    let alg = [tlv(OID, OID_EC), tlv(OID, curve)].concat();
    pkcs8(&alg, sec1)
}

fn pkcs8(alg_content: &[u8], private_key: &[u8]) -> Vec<u8> {
    let body = [
        tlv(INTEGER, &[0]),
        tlv(SEQUENCE, alg_content),
        tlv(OCTET_STRING, private_key),
    ]
    .concat();
    tlv(SEQUENCE, &body)
}

/// The curve OID in a SEC1 ECPrivateKey's optional `[0] parameters`, if present.
pub(crate) fn sec1_curve(sec1: &[u8]) -> Option<&[u8]> {
    let (tag, mut body, _) = read_tlv(sec1)?;
    if tag != SEQUENCE {
        return None;
    }
    while let Some((tag, content, rest)) = read_tlv(body) {
        if tag == CONTEXT_0 {
            let (t, oid, _) = read_tlv(content)?;
            return (t == OID).then_some(oid);
        }
        body = rest;
    }
    None
}

/// The algorithm OID and (for EC) the curve OID of a PKCS#8 PrivateKeyInfo.
pub(crate) fn pkcs8_algorithm(pkcs8: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let (tag, body, _) = read_tlv(pkcs8)?;
    if tag != SEQUENCE {
        return None;
    }
    let (_version, _, rest) = read_tlv(body)?;
    let (tag, alg, _) = read_tlv(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, oid, params) = read_tlv(alg)?;
    if tag != OID {
        return None;
    }
    let curve = read_tlv(params).and_then(|(t, c, _)| (t == OID).then_some(c));
    Some((oid, curve))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70_000] {
            let content = vec![7u8; len];
            let enc = tlv(OCTET_STRING, &content);
            let (tag, got, rest) = read_tlv(&enc).unwrap();
            assert_eq!((tag, got.len(), rest.len()), (OCTET_STRING, len, 0));
        }
    }

    #[test]
    fn pkcs8_wrapping_exposes_algorithm() {
        let wrapped = sec1_to_pkcs8(&tlv(SEQUENCE, &[]), OID_P384);
        assert_eq!(pkcs8_algorithm(&wrapped), Some((OID_EC, Some(OID_P384))));
        let wrapped = pkcs1_to_pkcs8(&tlv(SEQUENCE, &[]));
        assert_eq!(pkcs8_algorithm(&wrapped).map(|a| a.0), Some(OID_RSA));
    }

    #[test]
    fn truncated_input_is_rejected() {
        assert!(read_tlv(&[0x30, 0x05, 1, 2]).is_none());
        assert!(read_tlv(&[0x30, 0x85, 1, 2, 3, 4, 5]).is_none());
    }
}
