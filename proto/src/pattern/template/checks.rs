//! Checks a template can make on its values, for what a param's validation cannot say (a
//! record's value that depends on its type): the test `matching(regex)` and the function
//! `fail(message)`, which stops rendering with that message. A run whose template fails is
//! refused before anything changes, as a failed validation is. Tested in `template.rs`.

use minijinja::{Environment, Error, ErrorKind};

use super::super::values::anchored;

/// Adds `matching` and `fail` to a template environment.
pub(crate) fn add(env: &mut Environment<'_>) {
    env.add_test("matching", matching);
    env.add_function("fail", fail);
}

/// `value is matching("[a-z]+")`: the whole value is a string matching the regex.
fn matching(value: &minijinja::Value, pattern: &str) -> Result<bool, Error> {
    let regex = anchored(pattern).map_err(|message| Error::new(ErrorKind::InvalidOperation, message))?;
    Ok(value.as_str().is_some_and(|text| regex.is_match(text)))
}

/// `{{ fail("why") }}`: rendering stops with the message.
fn fail(message: &str) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message.to_owned()))
}
