//! The environment layer: `STRATA_<FLAG>` for every flag of `strata serve`, the flag's name in
//! upper case with `-` as `_` (`--kafka-addr` is `STRATA_KAFKA_ADDR`, `--config` is
//! `STRATA_CONFIG`). Each variable is parsed by the flag's own parser, so a value means what it
//! means on the command line. An empty variable counts as unset. The repeatable `--mqtt-map`
//! takes several rules separated by commas (`STRATA_MQTT_MAP=a/#=a,b/#=b`).

use anyhow::{Result, bail};
use clap::{ArgAction, Args, Command, FromArgMatches};

use super::ServeArgs;

/// The variable that sets the flag `--long`.
pub fn var_name(long: &str) -> String {
    format!("STRATA_{}", long.to_uppercase().replace('-', "_"))
}

/// The settings given by the variables that `lookup` finds; unknown `STRATA_*` variables are
/// ignored (tools use some of their own).
pub fn layer(lookup: impl Fn(&str) -> Option<String>) -> Result<ServeArgs> {
    let command = ServeArgs::augment_args(Command::new("strata-serve").no_binary_name(true));
    let mut argv = Vec::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let name = var_name(long);
        let Some(value) = lookup(&name).filter(|v| !v.is_empty()) else {
            continue;
        };
        let values = match arg.get_action() {
            ArgAction::Append => split_list(&value),
            _ => vec![value],
        };
        // Parsed one variable at a time, so that an error names the variable.
        let one: Vec<String> = values.iter().map(|v| format!("--{long}={v}")).collect();
        if let Err(e) = command.clone().try_get_matches_from(&one) {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            bail!(
                "environment variable {name}: {}",
                first.trim_start_matches("error: ")
            );
        }
        argv.extend(one);
    }
    let matches = command.try_get_matches_from(argv)?;
    Ok(ServeArgs::from_arg_matches(&matches)?)
}

/// `a/#=a,b,c/#=c` as `["a/#=a", "b,c/#=c"]`: a comma ends a rule only after the rule's
/// `=TOPIC` (topic names have no commas; filters may).
fn split_list(value: &str) -> Vec<String> {
    let mut rules: Vec<String> = Vec::new();
    let mut pending = String::new();
    for piece in value.split(',') {
        if !pending.is_empty() {
            pending.push(',');
        }
        pending.push_str(piece);
        if piece.contains('=') {
            rules.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        rules.push(pending);
    }
    rules
}
