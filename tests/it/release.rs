//! The release's packaging (docs/release.md): `.goreleaser.yml` meets the
//! Terraform Registry's rules (scripts/release-check.py), and a local
//! snapshot of the provider's release (scripts/release-snapshot.sh) is what
//! the registry and Terraform take: its SHA256SUMS checks and lists the
//! manifest, its GPG signature verifies, and `terraform init` installs its
//! zip from a filesystem mirror, offline.
//! Needs python3 (with PyYAML, which the check installs if missing), gpg,
//! sha256sum and terraform on PATH; without them these tests fail, naming
//! the tool.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh_testkit::require_tool;
use tokio::process::Command;

use crate::terraform::{provider_bin, terraform};

const VERSION: &str = "0.0.1";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python() -> PathBuf {
    require_tool(
        "python3",
        "apt-get install python3 python3-yaml (the release scripts are Python)",
    )
}

/// Runs `cmd` to its end, killing it past `limit`: its exit code and its
/// stdout followed by its stderr.
async fn run(cmd: &mut Command, limit: Duration) -> (i32, String) {
    let what = format!("{:?}", cmd.as_std());
    let out = tokio::time::timeout(limit, cmd.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} still running after {limit:?}"))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// A throwaway GnuPG home; its agent is stopped when it goes.
struct GnuPgHome {
    dir: PathBuf,
}

impl Drop for GnuPgHome {
    fn drop(&mut self) {
        let _ = std::process::Command::new("gpgconf")
            .args(["--kill", "all"])
            .env("GNUPGHOME", &self.dir)
            .status();
    }
}

impl GnuPgHome {
    /// A new home in `dir` with one RSA signing key (the registry takes RSA
    /// and DSA keys only) and no passphrase; returns it and the key's
    /// fingerprint.
    async fn with_signing_key(dir: PathBuf) -> (GnuPgHome, String) {
        let gpg = require_tool("gpg", "apt-get install gnupg");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let home = GnuPgHome { dir };
        let (code, out) = run(
            Command::new(&gpg)
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args([
                    "--quick-gen-key",
                    "mesh release test <release-test@example.invalid>",
                ])
                .args(["rsa2048", "sign", "never"])
                .env("GNUPGHOME", &home.dir),
            Duration::from_secs(120),
        )
        .await;
        assert_eq!(code, 0, "gpg --quick-gen-key:\n{out}");
        let (code, out) = run(
            Command::new(&gpg)
                .args(["--batch", "--with-colons", "--list-secret-keys"])
                .env("GNUPGHOME", &home.dir),
            Duration::from_secs(30),
        )
        .await;
        assert_eq!(code, 0, "gpg --list-secret-keys:\n{out}");
        let fingerprint = out
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|rest| rest.split(':').nth(8))
            .unwrap_or_else(|| panic!("no fingerprint in:\n{out}"))
            .to_string();
        (home, fingerprint)
    }
}

/// This machine's platform as Terraform and the registry name it.
fn platform() -> String {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        other => other,
    };
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    format!("{os}_{arch}")
}

#[tokio::test]
async fn release_config_meets_registry_rules() {
    let python = python();
    let check = repo().join("scripts/release-check.py");
    let (code, out) = run(
        Command::new(&python).arg(&check).current_dir(repo()),
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(code, 0, "scripts/release-check.py:\n{out}");

    // The same config with the checksum file misnamed and the provider's
    // binary named as cargo never names it (both as in issue #23): the check
    // fails, naming each rule.
    let yaml = std::fs::read_to_string(repo().join(".goreleaser.yml")).unwrap();
    let sums = "name_template: \"terraform-provider-mesh_{{ .Version }}_SHA256SUMS\"";
    let binary = "binary: terraform-provider-mesh\n";
    assert!(yaml.contains(sums), "no `{sums}` in .goreleaser.yml");
    assert!(yaml.contains(binary), "no `{binary}` in .goreleaser.yml");
    let broken = yaml
        .replace(sums, "name_template: \"mesh_{{ .Version }}_SHA256SUMS\"")
        .replace(
            binary,
            "binary: \"terraform-provider-mesh_v{{ .Version }}\"\n",
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("goreleaser.yml");
    std::fs::write(&path, broken).unwrap();
    let (code, out) = run(
        Command::new(&python).arg(&check).arg(&path),
        Duration::from_secs(180),
    )
    .await;
    assert_eq!(code, 1, "the broken config passed:\n{out}");
    assert!(out.contains("2 violations"), "{out}");
    assert!(
        out.contains("[checksum.name_template] checksum.name_template must be 'terraform-provider-mesh_{{ .Version }}_SHA256SUMS'"),
        "{out}"
    );
    assert!(
        out.contains("[builds.binary]") && out.contains("is not a name cargo produces"),
        "{out}"
    );
}

#[tokio::test]
async fn provider_snapshot_installs_from_a_filesystem_mirror() {
    let terraform = terraform();
    let gpg = require_tool("gpg", "apt-get install gnupg");
    let sha256sum = require_tool("sha256sum", "apt-get install coreutils");
    python();
    let provider = provider_bin();
    assert!(
        provider.exists(),
        "{} not built (cargo build -p terraform-provider-mesh)",
        provider.display()
    );
    let root = tempfile::tempdir().unwrap();
    let (gnupg, fingerprint) = GnuPgHome::with_signing_key(root.path().join("gnupg")).await;
    let dist = root.path().join("dist");

    let (code, out) = run(
        Command::new("bash")
            .arg(repo().join("scripts/release-snapshot.sh"))
            .env("VERSION", VERSION)
            .env("PROVIDER_BIN", &provider)
            .env("DIST", &dist)
            .env("GNUPGHOME", &gnupg.dir)
            .env("GPG_FINGERPRINT", &fingerprint),
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(code, 0, "scripts/release-snapshot.sh:\n{out}");

    let zip = format!("terraform-provider-mesh_{VERSION}_{}.zip", platform());
    let manifest = format!("terraform-provider-mesh_{VERSION}_manifest.json");
    let sums = format!("terraform-provider-mesh_{VERSION}_SHA256SUMS");
    let sig = format!("{sums}.sig");
    let mut made: Vec<String> = std::fs::read_dir(&dist)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    made.sort();
    let mut expected = vec![zip.clone(), manifest.clone(), sums.clone(), sig.clone()];
    expected.sort();
    assert_eq!(made, expected, "{out}");
    for name in &expected {
        assert!(
            out.contains(name.as_str()),
            "the script did not print {name}:\n{out}"
        );
    }

    // The checksums hold, and list the zip and the manifest (the registry
    // rejects a release whose SHA256SUMS leaves the manifest out).
    let (code, check) = run(
        Command::new(&sha256sum)
            .args(["--check", "--strict", sums.as_str()])
            .current_dir(&dist),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code, 0, "sha256sum --check:\n{check}");
    let listed: Vec<String> = std::fs::read_to_string(dist.join(&sums))
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().nth(1).unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, vec![zip.clone(), manifest.clone()], "{sums}");
    let shipped: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dist.join(&manifest)).unwrap()).unwrap();
    assert_eq!(
        shipped,
        serde_json::json!({"version": 1, "metadata": {"protocol_versions": ["6.0"]}})
    );

    // A binary detached signature by the key, over exactly those bytes.
    let signature = std::fs::read(dist.join(&sig)).unwrap();
    assert!(!signature.starts_with(b"-----BEGIN"), "{sig} is armored");
    let (code, verified) = run(
        Command::new(&gpg)
            .args([
                "--batch",
                "--status-fd",
                "1",
                "--verify",
                sig.as_str(),
                sums.as_str(),
            ])
            .current_dir(&dist)
            .env("GNUPGHOME", &gnupg.dir),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code, 0, "gpg --verify:\n{verified}");
    assert!(
        verified.contains(&format!("VALIDSIG {fingerprint}")),
        "{verified}"
    );
    let tampered = root.path().join("tampered");
    let mut text = std::fs::read(dist.join(&sums)).unwrap();
    text.extend_from_slice(b"0000  extra\n");
    std::fs::write(&tampered, text).unwrap();
    let (code, out) = run(
        Command::new(&gpg)
            .args(["--batch", "--verify"])
            .arg(dist.join(&sig))
            .arg(&tampered)
            .env("GNUPGHOME", &gnupg.dir),
        Duration::from_secs(60),
    )
    .await;
    assert_ne!(
        code, 0,
        "gpg accepted the signature over other bytes:\n{out}"
    );

    // Terraform installs the zip from a packed filesystem mirror, with no
    // other source (nothing reaches the network), and starts the provider in
    // it: `validate` reads the provider's schema over the plugin protocol.
    let mirror = root.path().join("mirror");
    let packages = mirror.join("registry.terraform.io/mesh/mesh");
    std::fs::create_dir_all(&packages).unwrap();
    std::fs::copy(dist.join(&zip), packages.join(&zip)).unwrap();
    let cli_config = root.path().join("cli.tfrc");
    std::fs::write(
        &cli_config,
        format!(
            "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/mesh/mesh\"]\n  }}\n}}\n",
            mirror.display()
        ),
    )
    .unwrap();
    let work = root.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(
        work.join("main.tf"),
        format!(
            "terraform {{\n  required_providers {{\n    mesh = {{\n      source  = \"mesh/mesh\"\n      version = \"{VERSION}\"\n    }}\n  }}\n}}\n\nprovider \"mesh\" {{\n  address = \"127.0.0.1:1\"\n}}\n\nresource \"mesh_kv\" \"x\" {{\n  path  = \"release/check\"\n  value = \"1\"\n}}\n"
        ),
    )
    .unwrap();
    let tf = |args: &[&str]| {
        let mut cmd = Command::new(&terraform);
        cmd.args(args)
            .arg("-no-color")
            .current_dir(&work)
            .env("TF_CLI_CONFIG_FILE", &cli_config)
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env_remove("TF_LOG")
            .env_remove("TF_PLUGIN_CACHE_DIR");
        cmd
    };
    let (code, out) = run(&mut tf(&["init", "-input=false"]), Duration::from_secs(120)).await;
    assert_eq!(code, 0, "terraform init:\n{out}");
    assert!(
        out.contains(&format!("Installed mesh/mesh v{VERSION}")),
        "{out}"
    );
    let installed = work.join(format!(
        ".terraform/providers/registry.terraform.io/mesh/mesh/{VERSION}/{}/terraform-provider-mesh",
        platform()
    ));
    let mode = std::fs::metadata(&installed)
        .unwrap_or_else(|e| panic!("{}: {e}", installed.display()))
        .permissions()
        .mode();
    assert_ne!(mode & 0o111, 0, "{} is not executable", installed.display());
    assert!(
        std::fs::read(&installed).unwrap() == std::fs::read(&provider).unwrap(),
        "the installed provider is not the packaged binary"
    );
    let (code, out) = run(&mut tf(&["validate"]), Duration::from_secs(120)).await;
    assert_eq!(code, 0, "terraform validate:\n{out}");
}
