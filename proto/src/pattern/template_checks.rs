//! Checks a template can make on its values, for what a param's validation cannot say (a
//! record's value that depends on its type): the test `matching(regex)` and the function
//! `fail(message)`, which stops rendering with that message. A run whose template fails is
//! refused before anything changes, as a failed validation is.

use minijinja::{Environment, Error, ErrorKind};

use super::values::anchored;

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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::super::param_value::ParamValue;
    use super::super::template::{check, render};
    use super::super::values::Params;

    fn params() -> Params {
        Params::from_values(BTreeMap::from([("name".to_owned(), ParamValue::String("www.lab".to_owned()))]))
    }

    #[test]
    fn matching_tests_the_whole_value() {
        let text = "{{ name is matching('[a-z.]+') }} {{ name is matching('www') }} {{ 3 is matching('3') }}";
        assert_eq!(render(text, &params()).as_deref(), Ok("True False False"));
        let bad = render("{{ name is matching('(') }}", &params()).expect_err("a bad regex");
        assert!(bad.message.starts_with("invalid operation: invalid regex `(`"), "{}", bad.message);
    }

    #[test]
    fn fail_stops_rendering_with_its_message() {
        let text = "ok\n{% if name is not matching('[0-9.]+') %}{{ fail('record 1: `' ~ name ~ '` is not an IPv4 address') }}{% endif %}";
        let err = render(text, &params()).expect_err("fails");
        assert_eq!(err.to_string(), "2:44: invalid operation: record 1: `www.lab` is not an IPv4 address");
    }

    #[test]
    fn lint_knows_both() {
        let params = BTreeSet::from(["name".to_owned()]);
        let text = "{% if name is not matching('x') %}{{ fail('no') }}{% endif %}";
        assert!(check("t.j2", text, &params).is_empty());
    }
}
