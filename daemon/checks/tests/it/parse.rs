use std::time::Duration;

use mesh_checks::{parse_duration, CheckDefinition, CheckError, CheckKind, CheckStatus};
use serde_json::json;

fn parse(v: serde_json::Value) -> Result<CheckDefinition, CheckError> {
    CheckDefinition::from_consul_json(&v, "")
}

fn err(v: serde_json::Value) -> String {
    parse(v).unwrap_err().to_string()
}

#[test]
fn consul_camel_case_http_check() {
    let def = parse(json!({
        "ID": "api-health",
        "Name": "API health",
        "ServiceID": "api-1",
        "Notes": "checks /health",
        "HTTP": "https://127.0.0.1:8443/health",
        "Method": "POST",
        "Header": {"X-Token": ["a", "b"], "Accept": ["application/json"]},
        "Body": "{}",
        "TLSSkipVerify": true,
        "Interval": "15s",
        "Timeout": "2s",
        "Status": "passing",
        "SuccessBeforePassing": 2,
        "FailuresBeforeWarning": 1,
        "FailuresBeforeCritical": 3,
        "DeregisterCriticalServiceAfter": "90m"
    }))
    .unwrap();
    assert_eq!(def.id, "api-health");
    assert_eq!(def.name, "API health");
    assert_eq!(def.service_id, "api-1");
    assert_eq!(def.notes, "checks /health");
    assert_eq!(def.type_name(), "http");
    let CheckKind::Http {
        url,
        method,
        headers,
        body,
        tls_skip_verify,
    } = &def.kind
    else {
        panic!("{:?}", def.kind)
    };
    assert_eq!(url, "https://127.0.0.1:8443/health");
    assert_eq!(method, "POST");
    assert_eq!(headers["X-Token"], vec!["a", "b"]);
    assert_eq!(body, "{}");
    assert!(tls_skip_verify);
    assert_eq!(def.interval, Duration::from_secs(15));
    assert_eq!(def.timeout, Duration::from_secs(2));
    assert_eq!(def.status, CheckStatus::Passing);
    assert_eq!(
        (
            def.success_before_passing,
            def.failures_before_warning,
            def.failures_before_critical
        ),
        (2, 1, 3)
    );
    assert_eq!(
        def.deregister_critical_service_after,
        Some(Duration::from_secs(90 * 60))
    );
}

#[test]
fn python_consul_lowercase_keys() {
    // What python-consul's Check.tcp(...) and agent.check.register(...) send.
    let def = parse(json!({
        "name": "db", "checkid": "db-tcp", "serviceid": "db-1",
        "tcp": "localhost:5432", "interval": "10s", "timeout": "1s",
        "deregistercriticalserviceafter": "1m"
    }))
    .unwrap();
    assert_eq!(
        (def.id.as_str(), def.name.as_str(), def.service_id.as_str()),
        ("db-tcp", "db", "db-1")
    );
    assert_eq!(
        def.kind,
        CheckKind::Tcp {
            addr: "localhost:5432".into()
        }
    );
    assert_eq!(def.type_name(), "tcp");
    assert_eq!(def.timeout, Duration::from_secs(1));
    assert_eq!(
        def.deregister_critical_service_after,
        Some(Duration::from_secs(60))
    );
}

#[test]
fn hcl_snake_case_keys() {
    let def = parse(json!({
        "id": "app-ttl", "name": "app", "service_id": "app-1", "ttl": "30s",
        "status": "warning"
    }))
    .unwrap();
    assert_eq!(
        def.kind,
        CheckKind::Ttl {
            ttl: Duration::from_secs(30)
        }
    );
    assert_eq!(def.type_name(), "ttl");
    assert_eq!(def.service_id, "app-1");
    assert_eq!(def.status, CheckStatus::Warning);

    let def = parse(json!({
        "name": "api", "grpc": "127.0.0.1:9090/api.v1", "grpc_use_tls": true,
        "tls_skip_verify": true, "interval": "5s", "success_before_passing": 2,
        "failures_before_critical": 4, "deregister_critical_service_after": "10m"
    }))
    .unwrap();
    assert_eq!(
        def.kind,
        CheckKind::Grpc {
            target: "127.0.0.1:9090/api.v1".into(),
            use_tls: true,
            tls_skip_verify: true
        }
    );
    assert_eq!(def.type_name(), "grpc");
    assert_eq!(def.id, "api", "ID defaults to Name");
    assert_eq!(
        (def.success_before_passing, def.failures_before_critical),
        (2, 4)
    );
}

#[test]
fn durations_as_nanosecond_integers() {
    let def = parse(json!({
        "Name": "web", "HTTP": "http://localhost/", "Interval": 10_000_000_000u64,
        "Timeout": 500_000_000, "DeregisterCriticalServiceAfter": 60_000_000_000u64
    }))
    .unwrap();
    assert_eq!(def.interval, Duration::from_secs(10));
    assert_eq!(def.timeout, Duration::from_millis(500));
    assert_eq!(
        def.deregister_critical_service_after,
        Some(Duration::from_secs(60))
    );
}

#[test]
fn defaults_follow_consul() {
    let def = CheckDefinition::from_consul_json(
        &json!({"HTTP": "http://localhost:8080/health", "Interval": "10s"}),
        "service:web",
    )
    .unwrap();
    assert_eq!(
        def.id, "service:web",
        "default_id is used without ID or CheckID"
    );
    assert_eq!(def.name, "", "the caller fills Consul's default name");
    assert_eq!(def.status, CheckStatus::Critical);
    assert_eq!(def.timeout, Duration::from_secs(10));
    assert!(matches!(&def.kind, CheckKind::Http { method, .. } if method == "GET"));
    assert_eq!(def.deregister_critical_service_after, None);

    let script =
        parse(json!({"Name": "disk", "Args": ["/bin/check-disk", "-w", "80"], "Interval": "30s"}))
            .unwrap();
    assert_eq!(script.type_name(), "script");
    assert_eq!(
        script.timeout,
        Duration::from_secs(30),
        "scripts get Consul's 30s"
    );
    let legacy =
        parse(json!({"Name": "disk", "ScriptArgs": ["/bin/true"], "Interval": "30s"})).unwrap();
    assert_eq!(
        legacy.kind,
        CheckKind::Script {
            args: vec!["/bin/true".into()]
        }
    );

    let fast = parse(json!({"Name": "x", "TCP": "127.0.0.1:1", "Interval": "100ms"})).unwrap();
    assert_eq!(
        fast.interval,
        Duration::from_secs(1),
        "raised to Consul's minimum"
    );

    let nulls = parse(
        json!({"Name": "x", "TCP": "127.0.0.1:1", "Interval": "5s", "Notes": null, "HTTP": ""}),
    )
    .unwrap();
    assert_eq!(
        nulls.type_name(),
        "tcp",
        "null and empty values count as absent"
    );
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        err(json!({"Name": "x", "TCP": "h:1", "Interval": "5x"})),
        "Check.Interval: invalid duration \"5x\": unknown unit \"x\""
    );
    assert_eq!(
        err(json!({"Name": "x", "TCP": "h:1", "interval": "10"})),
        "Check.Interval: invalid duration \"10\": missing unit"
    );
    assert_eq!(
        err(json!({"Name": "x", "HTTP": "http://h/"})),
        "Check.Interval: required for HTTP checks (e.g. \"10s\")"
    );
    assert_eq!(
        err(json!({"Name": "x", "TTL": "10s", "Interval": "10s"})),
        "Check.Interval: must not be set on a TTL check: its status is pushed, not probed"
    );
    assert_eq!(
        err(json!({"Name": "x", "HTTP": "http://h/", "TCP": "h:1", "Interval": "1s"})),
        "Check: exactly one of HTTP, TCP, TTL, Args, GRPC may be set, got HTTP and TCP"
    );
    assert_eq!(
        err(json!({"Name": "x", "Interval": "1s"})),
        "Check: no check type: set one of HTTP, TCP, TTL, Args (script) or GRPC"
    );
    assert_eq!(
        err(json!({"Name": "x", "AliasService": "web"})),
        "Check.AliasService: alias checks are not supported by mesh; use HTTP, TCP, TTL, Args or GRPC"
    );
    assert_eq!(
        err(json!({"Name": "x", "TTL": "10s", "Status": "ok"})),
        "Check.Status: unknown status \"ok\"; expected passing, warning or critical"
    );
    assert_eq!(
        err(json!({"Name": "x", "TTL": "10s", "FailuresBeforeCritical": -1})),
        "Check.FailuresBeforeCritical: expected a non-negative integer, got -1"
    );
    assert_eq!(
        err(json!({"Name": "x", "TTL": "10s", "Timeout": "-5s"})),
        "Check.Timeout: invalid duration \"-5s\": must not be negative"
    );
    assert_eq!(
        err(json!({"Name": "x", "TCP": "localhost", "Interval": "1s"})),
        "Check.TCP: expected host:port, got \"localhost\""
    );
    assert_eq!(
        err(json!({"Name": "x", "HTTP": "ftp://h/", "Interval": "1s"})),
        "Check.HTTP: invalid URL \"ftp://h/\": scheme must be http or https"
    );
    assert_eq!(
        err(json!({"Name": "x", "HTTP": "http://h/", "Interval": "1s", "Header": {"X": [1]}})),
        "Check.Header.X: expected a list of strings, got a number in it"
    );
    assert_eq!(
        err(json!({"Name": "x", "Args": ["/bin/true", 3], "Interval": "1s"})),
        "Check.Args[1]: expected a string, got a number"
    );
    assert_eq!(
        err(json!({"Name": 7, "TTL": "10s"})),
        "Check.Name: expected a string, got a number"
    );
    assert_eq!(
        err(json!({"TTL": "10s"})),
        "Check.ID: missing: give the check an ID or a Name"
    );
    assert_eq!(
        err(json!(["TTL"])),
        "Check: expected a JSON object, got an array"
    );
}

#[test]
fn go_durations() {
    let ok = [
        ("0", Duration::ZERO),
        ("10s", Duration::from_secs(10)),
        ("1m30s", Duration::from_secs(90)),
        ("1.5h", Duration::from_secs(5400)),
        ("500ms", Duration::from_millis(500)),
        ("250us", Duration::from_micros(250)),
        ("250µs", Duration::from_micros(250)),
        ("42ns", Duration::from_nanos(42)),
        (".5s", Duration::from_millis(500)),
        (
            "2h45m0.5s",
            Duration::from_millis(2 * 3_600_000 + 45 * 60_000 + 500),
        ),
    ];
    for (text, want) in ok {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
    for bad in ["", "s", "10", "1.2.3s", "10d", "-1s", "5x", "1e3s"] {
        assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
    }
}
