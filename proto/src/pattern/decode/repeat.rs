//! Decoding `repeat` (a `run` step repeated over a list param or a count): exactly one of
//! `over` and `count`, a list param for `over`, an integer or integer param for `count`, and
//! `parallel` in range. Inside a repeated step, `${item}` and `${index}` are placeholders.

use super::super::placeholder;
use super::super::repeat::{Count, Repeat, MAX_REPETITIONS};
use super::super::spec::ParamType;
use super::super::yaml::Node;
use super::Decoder;

const REPEAT_FIELDS: [&str; 3] = ["over", "count", "parallel"];

impl Decoder<'_> {
    pub(super) fn repeat(&mut self, key: &Node, node: &Node) -> Option<Repeat> {
        let fields = self.fields(node, key.mark, &REPEAT_FIELDS, "repeat")?;
        let parallel = match fields.get("parallel") {
            Some((_, node)) => self.integer(node, 1, MAX_REPETITIONS as i64).map(|parallel| parallel as u32),
            None => Some(1),
        };
        let (over, count) = (fields.get("over"), fields.get("count"));
        let (over, count) = match (over, count) {
            (Some((_, over)), None) => (Some(self.repeat_over(over)?), None),
            (None, Some((_, count))) => (None, Some(self.repeat_count(count)?)),
            (None, None) => {
                self.report.error(key.mark, "`repeat` needs one of `over` (a list param) and `count`");
                return None;
            }
            (Some(_), Some((count_key, _))) => {
                self.report.error(count_key.mark, "`repeat` takes one of `over` and `count`, not both");
                return None;
            }
        };
        Some(Repeat { over, count, parallel: parallel? })
    }

    /// `over: "${list_param}"`: the name of a list param that always has a value.
    fn repeat_over(&mut self, node: &Node) -> Option<String> {
        let Some(name) = node.as_str().and_then(placeholder::whole) else {
            self.report.error(node.mark, format!("`over` takes a list param as `\"${{name}}\"`, found {}", node.describe()));
            return None;
        };
        let problem = match self.scope.params.get(&name) {
            None => Some(format!("`${{{name}}}` refers to `{name}`, which is not a param")),
            Some(info) if info.kind.is_some_and(|kind| kind != ParamType::List) => Some(format!(
                "`${{{name}}}`: param `{name}` is a {}, but `over` needs a list param",
                info.kind.map(ParamType::name).unwrap_or_default()
            )),
            Some(info) if !info.always_set => {
                Some(format!("`${{{name}}}`: param `{name}` may have no value; make it required or give it a default"))
            }
            Some(_) => None,
        };
        match problem {
            Some(problem) => {
                self.report.error(node.mark_at(0), problem);
                None
            }
            None => Some(name),
        }
    }

    /// `count: 3` or `count: "${n}"` (an integer param that always has a value).
    fn repeat_count(&mut self, node: &Node) -> Option<Count> {
        if node.as_int().is_some() || node.is_integer_out_of_range() {
            return self.integer(node, 1, MAX_REPETITIONS as i64).map(|count| Count::Number(count as u64));
        }
        let Some(name) = node.as_str().and_then(placeholder::whole) else {
            self.report.error(node.mark, format!("expected a count (1 to {MAX_REPETITIONS}) or `${{param}}`, found {}", node.describe()));
            return None;
        };
        let problem = match self.scope.params.get(&name).and_then(|info| info.kind) {
            Some(kind) if kind != ParamType::Integer => {
                Some(format!("`${{{name}}}`: param `{name}` is a {}, but a count needs an integer param", kind.name()))
            }
            _ => self.placeholder_problem(&name, false),
        };
        match problem {
            Some(problem) => {
                self.report.error(node.mark_at(0), problem);
                None
            }
            None => Some(Count::Param(name)),
        }
    }
}
