//! Repeated steps: one planned step per item of the list (or per number of the count), named
//! `STEP[ITEM]`, compiled with `${item}` and `${index}` (from 1) among the params, and grouped
//! so the runner keeps at most `parallel` of them running. A step that needs the repeated one
//! needs every repetition.

use std::collections::{BTreeMap, BTreeSet};

use pmesh_proto::pattern::repeat::{item_problem, repetition_name, MAX_REPETITIONS};
use pmesh_proto::pattern::step::{Count, Repeat, Step};
use pmesh_proto::pattern::{ParamValue, Params};

use super::{CompileError, Compiler, Inputs, Placeholders};
use crate::executor::plan::{Group, PlannedStep};

impl Compiler<'_> {
    /// The repetitions of step `name`.
    pub(super) fn repeated(&mut self, name: &str, step: &Step, repeat: &Repeat) -> Result<Vec<PlannedStep>, CompileError> {
        let place = format!("steps.{name}.repeat");
        let items = self.repeat_items(repeat, &place)?;
        let mut planned = Vec::with_capacity(items.len());
        for (idx, item) in items.iter().enumerate() {
            let mut values: BTreeMap<String, ParamValue> =
                self.placeholders.params.iter().map(|(param, value)| (param.clone(), value.clone())).collect();
            values.insert("item".to_owned(), ParamValue::String(item.clone()));
            values.insert("index".to_owned(), ParamValue::Integer(idx as i64 + 1));
            let own = Placeholders::new(std::borrow::Cow::Owned(Params::from_values(values)));
            let shared = std::mem::replace(&mut self.placeholders, own);
            let compiled = self.step(name, step);
            self.placeholders = shared;
            let mut repetition = compiled?;
            repetition.name = repetition_name(name, item);
            repetition.group = Some(Group { step: name.to_owned(), parallel: repeat.parallel.max(1) as usize });
            planned.push(repetition);
        }
        Ok(planned)
    }

    /// The items: the list param's, or `1..=count`; each must be able to name a step.
    fn repeat_items(&self, repeat: &Repeat, place: &str) -> Result<Vec<String>, CompileError> {
        let params = self.inputs.params;
        let items: Vec<String> = match (&repeat.over, &repeat.count) {
            (Some(list), _) => match params.get(list) {
                Some(ParamValue::List(items)) => items
                    .iter()
                    .map(|item| item.as_text().ok_or_else(|| CompileError(format!("{place}: an item of {list} is not text"))))
                    .collect::<Result<_, _>>()?,
                _ => return Err(CompileError(format!("{place}: param {list} has no list value"))),
            },
            (None, Some(Count::Number(count))) => (1..=*count).map(|index| index.to_string()).collect(),
            (None, Some(Count::Param(param))) => {
                let count = match params.get(param) {
                    Some(ParamValue::Integer(count)) if (0..=MAX_REPETITIONS as i64).contains(count) => *count as u64,
                    Some(other) => {
                        return Err(CompileError(format!(
                            "{place}: param {param} = {} is not a count from 0 to {MAX_REPETITIONS}",
                            other.as_text().unwrap_or_default()
                        )))
                    }
                    None => return Err(CompileError(format!("{place}: param {param} has no value"))),
                };
                (1..=count).map(|index| index.to_string()).collect()
            }
            (None, None) => return Err(CompileError(format!("{place}: neither `over` nor `count`"))),
        };
        if items.len() as u64 > MAX_REPETITIONS {
            return Err(CompileError(format!("{place}: {} repetitions; at most {MAX_REPETITIONS}", items.len())));
        }
        let mut seen = BTreeSet::new();
        for item in &items {
            if let Some(problem) = item_problem(item) {
                return Err(CompileError(format!("{place}: {problem}")));
            }
            if !seen.insert(item) {
                return Err(CompileError(format!("{place}: item `{item}` is listed twice, and names one repetition only")));
            }
        }
        Ok(items)
    }
}

/// The params with the run's own placeholders, `${pmesh_instance}` and `${pmesh_agent}`.
pub(super) fn with_run_facts(inputs: &Inputs<'_>) -> Params {
    let mut values: BTreeMap<String, ParamValue> = inputs.params.iter().map(|(name, value)| (name.clone(), value.clone())).collect();
    values.insert("pmesh_instance".to_owned(), ParamValue::String(inputs.instance.to_owned()));
    values.insert("pmesh_agent".to_owned(), ParamValue::String(inputs.agent.to_owned()));
    Params::from_values(values)
}

/// Rewrites `needs` naming a repeated step into every one of its repetitions.
pub(super) fn expand_needs(steps: &mut [PlannedStep]) {
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for step in steps.iter() {
        if let Some(group) = &step.group {
            groups.entry(group.step.clone()).or_default().push(step.name.clone());
        }
    }
    for step in steps.iter_mut() {
        step.needs = std::mem::take(&mut step.needs)
            .into_iter()
            .flat_map(|need| match groups.get(&need) {
                Some(repetitions) => repetitions.clone(),
                None => vec![need],
            })
            .collect();
    }
}
