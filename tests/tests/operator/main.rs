//! What an operator sees when things go wrong, with the real binaries: output into a closed
//! pipe, failed steps and their summary, and the documented exit codes.
//!
//! One binary, a module per part, so the suite links once:
//! - `config`: a missing `--config` file, the configuration each daemon logs, durations as written;
//! - `docs`: completions, man pages, examples in help, `--version`;
//! - `exit_codes`: the README's exit codes, a row per documented case, and "did you mean";
//! - `failures`: a port clash, from `--plan` to the summary, `runs show` and `runs logs`;
//! - `json`: lowercase event kinds, RFC 3339 times, `ca fingerprint -o json`, `runs ls` order and filters;
//! - `logs`: JSON logs from both daemons, no colour in files, `-v`/`-q`/`RUST_LOG` for the CLI;
//! - `pipes`: every kind of command into a pipe whose reader has gone exits quietly;
//! - `lab` (a master, agents and the test patterns) serves the others.

mod config;
mod docs;
mod exit_codes;
mod failures;
mod json;
mod lab;
mod logs;
mod pipes;
