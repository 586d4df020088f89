//! A test that needs a tool fails without it, naming the tool; it never
//! passes without having run. Each case runs one real test again with an
//! empty `PATH` under `CI=true`.

use mesh_testkit::run_test_without_tools;

fn fails_naming(test: &str, tool: &str) {
    let (passed, out) = run_test_without_tools(test);
    assert!(!passed, "{test} passed without {tool} on PATH:\n{out}");
    assert!(
        out.contains(&format!("{tool} is not on PATH, and this test needs it")),
        "{test} failed without naming {tool}:\n{out}"
    );
    // The child really ran that test (a filter matching nothing also "fails"
    // nothing): libtest reports one test run.
    assert!(out.contains("running 1 test"), "{out}");
}

#[test]
fn without_terraform_the_terraform_tests_fail_naming_it() {
    fails_naming("terraform::terraform_manages_mesh_end_to_end", "terraform");
}

#[test]
fn without_dig_the_dns_tests_fail_naming_it() {
    fails_naming(
        "dns::registered_services_answer_by_dns_and_critical_ones_do_not",
        "dig",
    );
}
