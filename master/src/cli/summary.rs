//! How a followed run ends on screen: each agent's outcome, then, for every step that failed,
//! on which agent, why (the whole reason, wrapped to the terminal rather than cut), and the
//! command that shows more. Ansible's recap and Nomad's monitor end the same way.

use pmesh_proto::event::{AgentEvent, Kind};
use pmesh_proto::v1;

/// A step that failed on an agent, as its `step_failed` event said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub agent: String,
    pub step: String,
    pub reason: String,
}

impl Failure {
    /// The failure an event reports, if it reports one.
    pub fn of(envelope: &AgentEvent) -> Option<Failure> {
        let event = &envelope.event;
        (event.kind == Kind::StepFailed).then(|| Failure {
            agent: envelope.agent.clone(),
            step: event.step.clone(),
            reason: if event.text.is_empty() { "no reason given".to_owned() } else { event.text.clone() },
        })
    }
}

/// The marks a finished step gets on a terminal; plain words elsewhere.
pub struct Marks {
    pub failed: String,
}

impl Marks {
    /// A red ✗ where colour is on (a terminal), a plain one elsewhere.
    pub fn for_terminal() -> Marks {
        Marks { failed: console::style("✗").red().bold().to_string() }
    }

    pub fn plain() -> Marks {
        Marks { failed: "✗".to_owned() }
    }
}

/// `text` wrapped to `width` columns after `first` (the first line's prefix) and `indent`
/// (the others'); unwrapped when `width` is `None` (a pipe: lines stay whole for grep).
pub fn wrapped(text: &str, width: Option<usize>, first: &str, indent: &str) -> Vec<String> {
    match width {
        Some(width) => {
            let options = textwrap::Options::new(width.max(40)).initial_indent(first).subsequent_indent(indent);
            textwrap::wrap(text, options).into_iter().map(|line| line.into_owned()).collect()
        }
        None => vec![format!("{first}{text}")],
    }
}

/// The lines that end a followed run: one per agent (`AGENT STATE`, with the agent's error
/// unless a failed step below explains it), then a block per failed step.
pub fn lines(run: &v1::RunSummary, failures: &[Failure], width: Option<usize>, marks: &Marks) -> Vec<String> {
    let mut out = Vec::new();
    for agent in &run.agents {
        let explained = failures.iter().any(|failure| failure.agent == agent.agent);
        let error = if agent.error.is_empty() || explained { String::new() } else { format!(": {}", agent.error) };
        out.push(format!("{:<12} {}{error}", agent.agent, agent.state));
    }
    if failures.is_empty() {
        return out;
    }
    let agents: Vec<&str> = run.agents.iter().filter(|agent| agent.state != "succeeded").map(|agent| agent.agent.as_str()).collect();
    out.push(String::new());
    out.push(format!("run {} {} on {}:", run.run_id, run.state, agents.join(", ")));
    for failure in failures {
        let first = format!("  {} {} step {}: ", marks.failed, failure.agent, failure.step);
        out.extend(wrapped(&failure.reason, width, &first, "      "));
        out.push(format!("      more: pmesh runs logs {} --step {}", run.run_id, failure.step));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(agents: &[(&str, &str, &str)]) -> v1::RunSummary {
        v1::RunSummary {
            run_id: "r1-ab".into(),
            state: "failed".into(),
            agents: agents
                .iter()
                .map(|(agent, state, error)| v1::AgentRunState {
                    agent: (*agent).into(),
                    state: (*state).into(),
                    error: (*error).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn failure(agent: &str, step: &str, reason: &str) -> Failure {
        Failure { agent: agent.into(), step: step.into(), reason: reason.into() }
    }

    #[test]
    fn a_failed_step_says_where_why_and_what_next() {
        let run = run(&[("pc-1", "failed", "step named: port taken"), ("pc-2", "succeeded", "")]);
        let lines = lines(&run, &[failure("pc-1", "named", "port taken")], None, &Marks::plain());
        assert_eq!(
            lines,
            [
                "pc-1         failed",
                "pc-2         succeeded",
                "",
                "run r1-ab failed on pc-1:",
                "  ✗ pc-1 step named: port taken",
                "      more: pmesh runs logs r1-ab --step named",
            ]
        );
    }

    #[test]
    fn a_long_reason_wraps_on_a_terminal_and_stays_whole_in_a_pipe() {
        let reason = "starting container 34ee2fdd: driver failed programming external connectivity: Bind for 0.0.0.0:7453 failed: port is already allocated";
        let wrapped_lines = wrapped(reason, Some(50), "  ✗ pc-1 step named: ", "      ");
        assert!(wrapped_lines.len() > 2, "{wrapped_lines:?}");
        assert!(wrapped_lines.iter().all(|line| console::measure_text_width(line) <= 50), "{wrapped_lines:?}");
        let rejoined: Vec<&str> = wrapped_lines.iter().flat_map(|line| line.split_whitespace()).collect();
        let whole = format!("✗ pc-1 step named: {reason}");
        let words: Vec<&str> = whole.split_whitespace().collect();
        assert_eq!(rejoined, words, "nothing is cut");
        assert_eq!(wrapped(reason, None, "> ", "  "), [format!("> {reason}")]);
    }

    #[test]
    fn an_agent_error_without_a_failed_step_is_on_its_line() {
        let run = run(&[("pc-1", "unreachable", "connection refused")]);
        assert_eq!(lines(&run, &[], None, &Marks::plain()), ["pc-1         unreachable: connection refused"]);
    }
}
