//! Tests of CA configuration parsing and validation.

use super::*;

fn valid(json: &str) -> Result<ValidCaConfig, ConfigError> {
    CaConfig::from_json(json)?.validate()
}

#[test]
fn defaults_match_consul() {
    let cfg = valid(r#"{"Provider":"consul","Config":{}}"#).unwrap();
    assert_eq!(cfg.leaf_ttl, Duration::from_secs(72 * 3600));
    assert_eq!(cfg.root_ttl, Duration::from_secs(87600 * 3600));
    assert_eq!(cfg.intermediate_ttl, Duration::from_secs(8760 * 3600));
    assert_eq!(cfg.key_type, KeyType::EcP256);
    assert!(!cfg.key_type_declared && cfg.user_root.is_none() && !cfg.force_without_cross_signing);
    assert_eq!(cfg, ValidCaConfig::default());
}

#[test]
fn consul_body_parses() {
    let cfg = valid(
        r#"{"Provider":"consul","Config":{"LeafCertTTL":"1h30m","RootCertTTL":"8760h","IntermediateCertTTL":"4380h",
        "PrivateKeyType":"rsa","PrivateKeyBits":4096,"RotationPeriod":"2160h","CSRMaxPerSecond":0},
        "ForceWithoutCrossSigning":false,"CreateIndex":5,"ModifyIndex":7}"#,
    )
    .unwrap();
    assert_eq!(cfg.leaf_ttl, Duration::from_secs(5400));
    assert_eq!(cfg.key_type, KeyType::Rsa4096);
    assert!(cfg.key_type_declared);
    assert_eq!(cfg.rotation_period, Some(Duration::from_secs(2160 * 3600)));
    assert_eq!(cfg.csr_max_per_second, 0.0);
}

#[test]
fn keys_are_case_insensitive_and_snake_case_works() {
    let cfg = valid(r#"{"provider":"consul","config":{"leaf_cert_ttl":"2h","private_key_type":"ec","private_key_bits":"384"},"force_without_cross_signing":true}"#).unwrap();
    assert_eq!(cfg.leaf_ttl, Duration::from_secs(7200));
    assert_eq!(cfg.key_type, KeyType::EcP384);
    assert!(cfg.force_without_cross_signing);
    let cfg = valid(r#"{"Config":{"ForceWithoutCrossSigning":true}}"#).unwrap();
    assert!(cfg.force_without_cross_signing);
}

#[test]
fn nanosecond_numbers_are_durations() {
    let cfg = valid(r#"{"Config":{"LeafCertTTL":7200000000000}}"#).unwrap();
    assert_eq!(cfg.leaf_ttl, Duration::from_secs(7200));
}

#[test]
fn bad_duration_says_which_field() {
    let err = valid(r#"{"Config":{"LeafCertTTL":"3 days"}}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::BadDuration {
                field: "LeafCertTTL",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("\"3 days\""));
}

#[test]
fn leaf_ttl_bounds() {
    for bad in ["59m", "8761h", "0"] {
        let err = valid(&format!(r#"{{"Config":{{"LeafCertTTL":"{bad}"}}}}"#)).unwrap_err();
        assert!(
            matches!(err, ConfigError::LeafTtlOutOfRange { .. }),
            "{bad}: {err}"
        );
    }
    valid(r#"{"Config":{"LeafCertTTL":"1h"}}"#).unwrap();
    valid(r#"{"Config":{"LeafCertTTL":"8760h","IntermediateCertTTL":"26280h"}}"#).unwrap();
}

#[test]
fn ttl_ordering() {
    let err =
        valid(r#"{"Config":{"LeafCertTTL":"72h","IntermediateCertTTL":"100h"}}"#).unwrap_err();
    assert!(
        matches!(err, ConfigError::IntermediateTtlTooShort { .. }),
        "{err}"
    );
    let err = valid(
        r#"{"Config":{"LeafCertTTL":"72h","IntermediateCertTTL":"216h","RootCertTTL":"72h"}}"#,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::RootTtlTooShort {
                other_name: "LeafCertTTL",
                ..
            }
        ),
        "{err}"
    );
    let err = valid(r#"{"Config":{"RootCertTTL":"1000h"}}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::RootTtlTooShort {
                other_name: "IntermediateCertTTL",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn key_type_errors() {
    let err = valid(r#"{"Config":{"PrivateKeyType":"ec","PrivateKeyBits":521}}"#).unwrap_err();
    assert!(
        matches!(err, ConfigError::KeyType { bits: 521, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("P-521"));
    let err = valid(r#"{"Config":{"PrivateKeyType":"dsa"}}"#).unwrap_err();
    assert!(matches!(err, ConfigError::KeyType { .. }), "{err}");
}

#[test]
fn structural_errors() {
    assert!(matches!(
        CaConfig::from_json("[1]").unwrap_err(),
        ConfigError::Json(_)
    ));
    assert!(matches!(
        CaConfig::from_json("{").unwrap_err(),
        ConfigError::Json(_)
    ));
    let err = CaConfig::from_json(r#"{"Config":{"LeafTTL":"1h"}}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::UnknownField {
                section: "Config",
                ..
            }
        ),
        "{err}"
    );
    let err = CaConfig::from_json(r#"{"Config":{"PrivateKeyBits":true}}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::WrongType {
                field: "PrivateKeyBits",
                ..
            }
        ),
        "{err}"
    );
    let err = valid(r#"{"Provider":"vault"}"#).unwrap_err();
    assert_eq!(err, ConfigError::UnsupportedProvider("vault".into()));
    let err = valid(r#"{"Config":{"RootCert":"-----BEGIN CERTIFICATE-----"}}"#).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::IncompleteUserRoot {
                missing: "PrivateKey",
                ..
            }
        ),
        "{err}"
    );
    // Empty strings mean unset, as Consul's GET returns them.
    valid(r#"{"Config":{"RootCert":"","PrivateKey":""}}"#).unwrap();
}

#[test]
fn user_root_from_config_checks_declared_type() {
    let body = serde_json::json!({
        "Provider": "consul",
        "Config": {
            "PrivateKeyType": "ec",
            "RootCert": include_str!("../tests/fixtures/pkcs1.crt"),
            "PrivateKey": include_str!("../tests/fixtures/pkcs1.key"),
        }
    });
    let cfg = valid(&body.to_string()).unwrap();
    let err = cfg.build_root("td.consul", 1_800_000_000).unwrap_err();
    assert!(matches!(err, CaError::KeyTypeMismatch { .. }), "{err}");
    assert!(!format!("{cfg:?}").contains("PRIVATE KEY"));
}

#[test]
fn serializes_in_consul_shape() {
    let cfg =
        CaConfig::from_json(r#"{"Provider":"consul","Config":{"LeafCertTTL":"72h"}}"#).unwrap();
    let json = serde_json::to_value(&cfg).unwrap();
    assert_eq!(json["Provider"], "consul");
    assert_eq!(json["Config"]["LeafCertTTL"], "72h");
    let back: CaConfig = serde_json::from_value(json).unwrap();
    assert_eq!(back, cfg);
    assert_eq!(
        postcard::from_bytes::<CaConfig>(&postcard::to_allocvec(&cfg).unwrap()).unwrap(),
        cfg
    );
}

#[test]
fn a_csr_rate_no_limiter_can_hold_is_refused() {
    for bad in [1e-300, -1.0, f64::NAN, f64::INFINITY, 1e7] {
        let mut cfg = CaConfig::default();
        cfg.config.csr_max_per_second = Some(bad);
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("CSRMaxPerSecond"), "{bad}: {err}");
    }
    for good in [0.0, 0.5, 50.0, 1e6] {
        let mut cfg = CaConfig::default();
        cfg.config.csr_max_per_second = Some(good);
        assert_eq!(cfg.validate().unwrap().csr_max_per_second, good);
    }
}
