//! Configuration layering: a TOML file (`--config FILE` / `ANALYTICS_CONFIG`) under
//! environment variables and flags, and the effective configuration with secrets redacted
//! (`analytics-server config show`). Precedence: flags > environment > file > defaults.
//!
//! The file's keys are the settings' names (the flag without `--`, `-` or `_` alike), e.g.
//! `bind = "0.0.0.0:8080"` or `alert_interval_secs = 30`; each value becomes that setting's
//! default, so clap's own order (command line, then environment, then default) gives the
//! precedence. An unknown key is an error, so that a typo never goes unnoticed. Every
//! setting, its default and its variable: `docs/CONFIGURATION.md`.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::parser::ValueSource;
use clap::{ArgMatches, Command};

/// The settings that are not configuration (clap's own, and the file itself).
const NOT_SETTINGS: &[&str] = &["help", "version", "config"];

/// The file named by `--config FILE` / `--config=FILE` in `args` (before a `--`), else by
/// `ANALYTICS_CONFIG` in `env`.
pub fn config_path(args: &[OsString], env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let arg = arg.to_string_lossy();
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    env("ANALYTICS_CONFIG")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The configuration settings of `cmd`: its global arguments, less help, version and the
/// file itself.
pub fn settings(cmd: &Command) -> impl Iterator<Item = &clap::Arg> {
    cmd.get_arguments()
        .filter(|a| a.is_global_set() && !NOT_SETTINGS.contains(&a.get_id().as_str()))
}

/// Reads the TOML file at `path` and makes each of its values the default of its setting
/// in `cmd`; returns the command and the settings the file set.
pub fn apply_file(cmd: Command, path: &Path) -> anyhow::Result<(Command, BTreeSet<String>)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the configuration file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .with_context(|| format!("parsing the configuration file {}", path.display()))?;
    let known: BTreeSet<String> = settings(&cmd).map(|a| a.get_id().to_string()).collect();
    let mut from_file = BTreeSet::new();
    let mut cmd = cmd;
    for (key, value) in table {
        let id = key.replace('-', "_");
        anyhow::ensure!(
            known.contains(&id),
            "unknown setting `{key}` in {} (every setting: docs/CONFIGURATION.md)",
            path.display()
        );
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => anyhow::bail!(
                "setting `{key}` in {}: expected a string, number or boolean, found {}",
                path.display(),
                other.type_str()
            ),
        };
        // Read once at start; clap keeps defaults as `'static`.
        let value: &'static str = Box::leak(value.into_boxed_str());
        cmd = cmd.mut_arg(id.as_str(), |a| a.default_value(value));
        from_file.insert(id);
    }
    Ok((cmd, from_file))
}

/// One setting's effective value and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    /// The setting's name (the file key).
    pub name: String,
    /// Its environment variable, if it has one.
    pub env: Option<String>,
    /// The value, secrets redacted; `None` when unset.
    pub value: Option<String>,
    /// `flag`, `env`, `file`, `default` or `unset`.
    pub source: &'static str,
}

/// Settings whose values may carry a password in a URL but are otherwise worth showing.
const URL_SETTINGS: &[&str] = &["database_url", "redis_url", "prometheus_url"];

/// The effective value of every setting of `cmd` in `matches`, secrets redacted: a setting
/// whose environment value clap hides (`hide_env_values`) prints as `***`, and a password in
/// any URL as `***`; sorted by name.
pub fn effective(
    cmd: &Command,
    matches: &ArgMatches,
    from_file: &BTreeSet<String>,
) -> Vec<Effective> {
    let mut all: Vec<Effective> = settings(cmd)
        .map(|arg| {
            let id = arg.get_id().as_str();
            let raw = matches.get_raw(id).map(|vals| {
                vals.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(",")
            });
            let secret = arg.is_hide_env_values_set() && !URL_SETTINGS.contains(&id);
            let value = raw.map(|v| {
                if secret {
                    "***".to_owned()
                } else if v.contains("://") {
                    crate::startup::redact_url(&v)
                } else {
                    v
                }
            });
            let source = match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "env",
                Some(ValueSource::DefaultValue) if from_file.contains(id) => "file",
                Some(ValueSource::DefaultValue) => "default",
                _ => "unset",
            };
            Effective {
                name: id.to_owned(),
                env: arg.get_env().map(|e| e.to_string_lossy().into_owned()),
                value,
                source,
            }
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// The effective configuration as a TOML file (usable as `--config`), each line commented
/// with the value's source and variable.
pub fn render(settings: &[Effective]) -> String {
    let mut out = String::new();
    for s in settings {
        let env = s.env.as_deref().unwrap_or("-");
        match &s.value {
            Some(v) => out.push_str(&format!(
                "{} = {}  # {}, {env}\n",
                s.name,
                serde_json::Value::String(v.clone()), // a JSON string is a TOML basic string
                s.source
            )),
            None => out.push_str(&format!("# {} (unset)  # {env}\n", s.name)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_comes_from_the_flag_before_the_variable() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let env = |_: &str| Some(OsString::from("/from/env.toml"));
        let none = |_: &str| None;
        assert_eq!(
            config_path(&args(&["bin", "--config", "/a.toml", "serve"]), env),
            Some(PathBuf::from("/a.toml"))
        );
        assert_eq!(
            config_path(&args(&["bin", "serve", "--config=/b.toml"]), env),
            Some(PathBuf::from("/b.toml"))
        );
        assert_eq!(
            config_path(&args(&["bin", "serve"]), env),
            Some(PathBuf::from("/from/env.toml"))
        );
        assert_eq!(
            config_path(&args(&["bin", "--", "--config", "/c.toml"]), none),
            None
        );
    }
}
