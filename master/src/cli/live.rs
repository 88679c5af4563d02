//! A run followed live: one bar per agent and step on a terminal, one timestamped line per
//! event anywhere else (a pipe, a CI log, `-o json`), and a summary at the end
//! ([`super::summary`]).
//!
//! A bar shows the step's state, a percentage once the step reports one (downloads, OVFTool),
//! its elapsed time and the latest log line. A finished bar keeps a mark: a green ✓ for a step
//! that succeeded or was unchanged, a red ✗ for one that failed, a yellow ○ for one skipped,
//! and … for one still running when the CLI detached. Run-level events, failures (their whole
//! reason, wrapped to the terminal) and their last lines are printed above the bars, so they
//! stay on screen after the bars finish.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use pmesh_proto::event::{AgentEvent, Kind, RunEvent};
use pmesh_proto::v1;
use serde_json::json;

use super::output::Format;
use super::summary::{self, Failure, Marks};

/// Where a run's events are shown, and the failures seen so far for the summary.
pub struct Live {
    view: View,
    failures: Vec<Failure>,
}

enum View {
    Lines(Format),
    Bars(Bars),
}

impl Live {
    /// Bars when text goes to a terminal (and `TERM` is not `dumb`), lines otherwise.
    pub fn new(format: Format) -> Live {
        let view = if format == Format::Text && terminal() { View::Bars(Bars::new()) } else { View::Lines(format) };
        Live { view, failures: Vec::new() }
    }

    /// Shows one event.
    pub fn event(&mut self, envelope: &AgentEvent) {
        self.failures.extend(Failure::of(envelope));
        match &mut self.view {
            View::Lines(format) => print_line(envelope, *format),
            View::Bars(bars) => bars.event(envelope),
        }
    }

    /// A line of text outside the event stream (a summary, a hint).
    pub fn println(&self, text: &str) {
        match &self.view {
            View::Lines(_) => println!("{text}"),
            View::Bars(bars) => bars.println(text),
        }
    }

    /// Ends a run that ended: each agent's outcome and every failed step (text only; JSON
    /// lines stay JSON), then stops drawing.
    pub fn summary(self, run: &v1::RunSummary) {
        let (width, marks) = match &self.view {
            View::Lines(Format::Json) => return self.finish(),
            View::Lines(Format::Text) => (None, Marks::plain()),
            View::Bars(_) => (Some(console::Term::stdout().size().1 as usize), Marks::for_terminal()),
        };
        for line in summary::lines(run, &self.failures, width, &marks) {
            self.println(&line);
        }
        self.finish();
    }

    /// Stops drawing after a detach: a bar still running says so, and is left on screen.
    pub fn detach(self) {
        if let View::Bars(bars) = self.view {
            bars.finish(&console::style("…").cyan().to_string(), "still running (detached)");
        }
    }

    /// Stops drawing; a bar whose step never reported its end says so.
    pub fn finish(self) {
        if let View::Bars(bars) = self.view {
            bars.finish("…", "no end reported");
        }
    }
}

/// Whether stdout is a terminal worth drawing on.
fn terminal() -> bool {
    std::io::stdout().is_terminal() && std::env::var("TERM").map_or(true, |term| term != "dumb")
}

/// A watched event in the CLI's terms: decoded here once, shown by everything after. An event
/// this build cannot represent (a newer master's kind) is skipped with a word on stderr.
pub fn decode(message: v1::AgentRunEvent) -> Option<AgentEvent> {
    match AgentEvent::try_from(message) {
        Ok(event) => Some(event),
        Err(err) => {
            pmesh_rt::note!("skipping an event: {err}");
            None
        }
    }
}

/// The terminal view: a bar per agent and step.
pub struct Bars {
    multi: MultiProgress,
    steps: HashMap<(String, String), ProgressBar>,
}

/// The width of a bar's `AGENT STEP` label, so bars line up.
const PREFIX_WIDTH: usize = 24;

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {spinner:.cyan} {elapsed:>4} {wide_msg}")
        .expect("a valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:.bold} {spinner:.cyan} {elapsed:>4} [{bar:20.cyan/blue}] {pos:>3}% {wide_msg}")
        .expect("a valid template")
        .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
        .progress_chars("=> ")
}

/// A finished bar: its mark (already styled) in place of the spinner.
fn finished_style(mark: &str) -> ProgressStyle {
    // A mark holds no braces, so it cannot be taken for a template key.
    ProgressStyle::with_template(&format!("{{prefix:.bold}} {mark} {{elapsed:>4}} {{wide_msg}}")).expect("a valid template")
}

impl Bars {
    fn new() -> Bars {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stdout());
        Bars { multi, steps: HashMap::new() }
    }

    fn bar(&mut self, agent: &str, step: &str) -> &ProgressBar {
        let key = (agent.to_owned(), step.to_owned());
        let multi = &self.multi;
        self.steps.entry(key).or_insert_with(|| {
            let bar = multi.add(ProgressBar::new(100).with_style(spinner_style()));
            bar.set_prefix(format!("{:<PREFIX_WIDTH$}", format!("{agent} {step}")));
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
    }

    fn println(&self, text: &str) {
        // Printed above the bars; when nothing is drawn (a hidden target) it would be lost.
        if self.multi.println(text).is_err() || self.multi.is_hidden() {
            println!("{text}");
        }
    }

    /// Ends a step's bar with `mark` and `text`.
    fn end(&mut self, agent: &str, step: &str, mark: &str, text: String) {
        let bar = self.bar(agent, step);
        bar.set_style(finished_style(mark));
        bar.finish_with_message(text);
    }

    fn event(&mut self, envelope: &AgentEvent) {
        let event = &envelope.event;
        let agent = envelope.agent.as_str();
        let kind = event.kind;
        if event.step.is_empty() {
            self.println(&format!("{agent}: {}", describe(event)));
            return;
        }
        let step = event.step.as_str();
        match kind {
            Kind::StepStarted => {
                let bar = self.bar(agent, step);
                bar.set_style(spinner_style());
                bar.reset_elapsed();
                bar.set_message(describe(event));
            }
            Kind::Log => self.bar(agent, step).set_message(format!("| {}", event.text)),
            Kind::Progress => {
                let bar = self.bar(agent, step);
                bar.set_style(bar_style());
                bar.set_position(event.percent.clamp(0.0, 100.0) as u64);
                if !event.text.is_empty() {
                    bar.set_message(event.text.clone());
                }
            }
            Kind::StepRetrying => self.bar(agent, step).set_message(describe(event)),
            Kind::StepSucceeded | Kind::StepUnchanged => {
                let mark = console::style("✓").green().to_string();
                self.end(agent, step, &mark, describe(event));
            }
            Kind::StepSkipped => {
                let mark = console::style("○").yellow().to_string();
                self.end(agent, step, &mark, describe(event));
            }
            Kind::StepFailed => {
                let mark = console::style("✗").red().bold().to_string();
                self.end(agent, step, &mark, "failed (the reason is above)".to_owned());
                // The whole reason, wrapped: a bar's message is cut at the terminal's width.
                let width = Some(console::Term::stdout().size().1 as usize);
                let first = format!("{mark} {agent} {step} failed: ");
                for line in summary::wrapped(&event.text, width, &first, "    ") {
                    self.println(&line);
                }
                for line in &event.tail {
                    for part in summary::wrapped(line, width, &format!("    {agent} {step} | "), "      ") {
                        self.println(&part);
                    }
                }
            }
            _ => self.println(&format!("{agent} {step}: {}", describe(event))),
        }
    }

    /// Marks every bar still running with `mark` and `text`, and stops drawing.
    fn finish(self, mark: &str, text: &str) {
        for bar in self.steps.values() {
            if !bar.is_finished() {
                bar.set_style(finished_style(mark));
                bar.abandon_with_message(text.to_owned());
            }
        }
    }
}

/// An event in words, as both views show it.
pub fn describe(event: &RunEvent) -> String {
    match event.kind {
        Kind::RunStarted => format!("run started: {} on instance {} ({})", event.pattern, event.instance, event.text),
        Kind::ImageReady => format!("image {}", event.text),
        Kind::StepStarted if event.attempt > 1 => format!("started (attempt {})", event.attempt),
        Kind::StepStarted => "started".into(),
        Kind::StepUnchanged => "unchanged".into(),
        Kind::Log => format!("| {}", event.text),
        Kind::Progress if event.text.is_empty() => format!("{:.0}%", event.percent),
        Kind::Progress => format!("{:.0}% {}", event.percent, event.text),
        Kind::StepRetrying => format!("failed ({}); retrying, attempt {}", event.text, event.attempt),
        Kind::StepSucceeded => "succeeded".into(),
        Kind::StepFailed => {
            let mut text = format!("FAILED: {}", event.text);
            for line in &event.tail {
                text.push_str(&format!("\n      {line}"));
            }
            text
        }
        Kind::StepSkipped => format!("skipped: {}", event.text),
        Kind::RunFinished => format!("run {}", event.text),
    }
}

/// A time in milliseconds since the epoch as RFC 3339 (`2026-12-04T19:12:24.123Z`).
fn rfc3339_ms(unix_ms: i64) -> String {
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(unix_ms.max(0) as u64)).to_string()
}

/// One event as a timestamped line, or as a JSON object per line.
pub fn print_line(envelope: &AgentEvent, format: Format) {
    let event = &envelope.event;
    let transfer = event.transfer.unwrap_or(pmesh_proto::progress::Progress { done: 0, total: None, rate: 0.0, eta: None });
    match format {
        Format::Json => println!(
            "{}",
            json!({ "index": envelope.index, "agent": envelope.agent, "seq": event.seq, "at_unix_ms": event.at_unix_ms,
                    "at": rfc3339_ms(event.at_unix_ms), "kind": event.kind.name(),
                    "step": event.step, "text": event.text, "percent": event.percent,
                    "exit_code": event.exit_code, "tail": event.tail,
                    "done_bytes": transfer.done, "total_bytes": transfer.total.unwrap_or(0), "rate_bytes_per_second": transfer.rate })
        ),
        Format::Text => {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(event.at_unix_ms.max(0) as u64);
            let step = if event.step.is_empty() { "-" } else { event.step.as_str() };
            println!("{} {:<10} {:<14} {}", humantime::format_rfc3339_seconds(at), envelope.agent, step, describe(event));
        }
    }
}
