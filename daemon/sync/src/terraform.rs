//! Running the terraform CLI in a task's working directory.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use crate::config::{MeshConn, TerraformSettings};

/// Most terraform output kept per command (the tail is what explains a failure).
pub const MAX_OUTPUT_BYTES: usize = 256 * 1024;
/// How long a run waits for the state lock another process holds.
pub const LOCK_TIMEOUT: &str = "5m";
/// The longest one terraform command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What a terraform command printed and how it ended.
#[derive(Debug, Clone)]
pub struct Output {
    pub code: i32,
    pub text: String,
}

/// The terraform CLI with mesh sync's environment.
#[derive(Debug, Clone)]
pub struct Terraform {
    binary: PathBuf,
    log: bool,
    persist_log: bool,
    token: Option<String>,
}

/// The result of `plan`.
#[derive(Debug, Clone)]
pub struct Plan {
    pub changes_present: bool,
    pub text: String,
    pub summary: String,
}

impl Terraform {
    pub fn new(settings: &TerraformSettings, mesh: &MeshConn) -> Terraform {
        Terraform {
            binary: settings.binary.clone(),
            log: settings.log,
            persist_log: settings.persist_log,
            token: mesh.token.clone(),
        }
    }

    /// Fails with a clear message when the binary cannot run.
    pub async fn check(&self) -> Result<String, String> {
        let out = Command::new(&self.binary)
            .arg("version")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                format!(
                    "cannot run terraform ({}): {e}; put terraform on PATH or set driver \"terraform\" {{ path = \"DIR\" }}",
                    self.binary.display()
                )
            })?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or_default().to_string())
    }

    async fn run(&self, dir: &Path, args: &[&str]) -> Result<Output, String> {
        // Output goes to a file, not a pipe: if mesh sync dies, terraform
        // finishes (and releases the state lock) instead of dying on SIGPIPE
        // mid-apply with the lock held until its session expires.
        let out_path = dir.join(format!(".mesh-sync-{}.out", args[0]));
        let io_err = |e: std::io::Error| format!("{}: {e}", out_path.display());
        let out_file = std::fs::File::create(&out_path).map_err(io_err)?;
        let err_file = out_file.try_clone().map_err(io_err)?;
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out_file)
            .stderr(err_file)
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_INPUT", "0")
            .kill_on_drop(true);
        // The consul backend reads its token here; it never lands in a file.
        if let Some(t) = &self.token {
            cmd.env("CONSUL_HTTP_TOKEN", t);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        let status = tokio::time::timeout(COMMAND_TIMEOUT, child.wait())
            .await
            .map_err(|_| format!("terraform {} ran longer than {COMMAND_TIMEOUT:?}", args[0]))?
            .map_err(|e| format!("terraform {}: {e}", args[0]))?;
        let bytes = std::fs::read(&out_path).map_err(io_err)?;
        let _ = std::fs::remove_file(&out_path);
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if text.len() > MAX_OUTPUT_BYTES {
            let cut = text.ceil_char_boundary(text.len() - MAX_OUTPUT_BYTES);
            text = format!(
                "[output cut to its last {MAX_OUTPUT_BYTES} bytes]\n{}",
                &text[cut..]
            );
        }
        let code = status.code().unwrap_or(-1);
        if self.log {
            tracing::info!(dir = %dir.display(), command = args[0], code, "terraform output:\n{text}");
        }
        if self.persist_log {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join("terraform.log"))
            {
                let _ = writeln!(f, "$ terraform {}\n{text}", args.join(" "));
            }
        }
        Ok(Output { code, text })
    }

    async fn must(&self, dir: &Path, args: &[&str]) -> Result<Output, String> {
        let out = self.run(dir, args).await?;
        if out.code != 0 {
            return Err(format!(
                "terraform {} failed (exit {}):\n{}",
                args[0],
                out.code,
                tail(&out.text, 4096)
            ));
        }
        Ok(out)
    }

    /// `terraform init` when the root module's main.tf changed since the
    /// last init, then the task's workspace (created when missing).
    pub async fn init(&self, dir: &Path, workspace: &str) -> Result<(), String> {
        let main = std::fs::read(dir.join("main.tf")).unwrap_or_default();
        let digest = hex(&Sha256::digest(&main));
        let marker = dir.join(".terraform").join("mesh-sync-init");
        if std::fs::read_to_string(&marker).ok().as_deref() != Some(digest.as_str()) {
            self.must(dir, &["init", "-input=false", "-no-color"])
                .await?;
            self.must(
                dir,
                &[
                    "workspace",
                    "select",
                    "-or-create=true",
                    "-no-color",
                    workspace,
                ],
            )
            .await?;
            std::fs::write(&marker, &digest).map_err(|e| format!("{}: {e}", marker.display()))?;
        }
        Ok(())
    }

    /// `terraform apply`: the summary line on success.
    pub async fn apply(&self, dir: &Path, var_files: &[PathBuf]) -> Result<String, String> {
        let lock = format!("-lock-timeout={LOCK_TIMEOUT}");
        let mut args = vec!["apply", "-auto-approve", "-input=false", "-no-color", &lock];
        let files: Vec<String> = var_files
            .iter()
            .map(|f| format!("-var-file={}", f.display()))
            .collect();
        args.extend(files.iter().map(String::as_str));
        let out = self.must(dir, &args).await?;
        Ok(summary_line(&out.text, "Apply complete!").unwrap_or_else(|| "Apply complete".into()))
    }

    /// `terraform plan -detailed-exitcode`.
    pub async fn plan(&self, dir: &Path, var_files: &[PathBuf]) -> Result<Plan, String> {
        let lock = format!("-lock-timeout={LOCK_TIMEOUT}");
        let mut args = vec![
            "plan",
            "-detailed-exitcode",
            "-input=false",
            "-no-color",
            &lock,
        ];
        let files: Vec<String> = var_files
            .iter()
            .map(|f| format!("-var-file={}", f.display()))
            .collect();
        args.extend(files.iter().map(String::as_str));
        let out = self.run(dir, &args).await?;
        match out.code {
            0 | 2 => Ok(Plan {
                changes_present: out.code == 2,
                summary: summary_line(&out.text, "Plan:")
                    .or_else(|| summary_line(&out.text, "No changes."))
                    .unwrap_or_default(),
                text: out.text,
            }),
            code => Err(format!(
                "terraform plan failed (exit {code}):\n{}",
                tail(&out.text, 4096)
            )),
        }
    }
}

fn summary_line(text: &str, prefix: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with(prefix))
        .map(str::to_string)
}

/// The last `max` bytes of `text`.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    &text[text.ceil_char_boundary(text.len() - max)..]
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
