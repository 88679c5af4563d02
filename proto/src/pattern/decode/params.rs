//! Decoding `params`: names, types, validation that applies to the type, and defaults that
//! fit both.

use std::collections::BTreeMap;

use super::super::formats;
use super::super::param_value::ParamValue;
use super::super::spec::{Param, ParamType, Validation};
use super::super::values;
use super::super::yaml::Node;
use super::{Decoder, ParamInfo};

const PARAM_FIELDS: [&str; 5] = ["type", "required", "default", "description", "validation"];
const VALIDATION_FIELDS: [&str; 7] = ["min", "max", "pattern", "values", "items", "multiline", "fields"];

/// The types each validation field applies to.
fn applies(field: &str, kind: ParamType) -> bool {
    match field {
        "min" | "max" => matches!(kind, ParamType::Integer | ParamType::Port),
        "pattern" | "multiline" => matches!(kind, ParamType::String | ParamType::Secret | ParamType::List | ParamType::Map),
        "values" => kind == ParamType::Enum,
        _ => matches!(kind, ParamType::List | ParamType::Map),
    }
}

impl Decoder<'_> {
    /// A param name: an identifier, so templates can use it as a variable.
    pub(super) fn identifier(&mut self, key: &Node) -> Option<String> {
        let name = self.string(key)?;
        if formats::is_identifier(&name) {
            return Some(name);
        }
        self.report.error(key.mark, format!("`{name}` is not a valid param name: use letters, digits and `_`, not starting with a digit"));
        None
    }

    /// Decodes one param and declares it, so later fields can refer to it.
    pub(super) fn param(&mut self, name: &str, key: &Node, node: &Node) -> Option<Param> {
        let param = self.param_fields(name, key, node);
        let info = match &param {
            Some(param) => ParamInfo { kind: Some(param.kind), always_set: param.required || param.default.is_some() },
            None => ParamInfo { kind: None, always_set: true },
        };
        self.scope.params.insert(name.to_owned(), info);
        param
    }

    fn param_fields(&mut self, name: &str, key: &Node, node: &Node) -> Option<Param> {
        if super::super::repeat::RUN_PLACEHOLDERS.contains(&name) {
            self.report.error(key.mark, format!("`{name}` is the name of a run's own placeholder; give the param another name"));
            return None;
        }
        let fields = self.fields(node, key.mark, &PARAM_FIELDS, &format!("param `{name}`"))?;
        let (_, type_node) = fields.required(self, "type")?;
        let type_name = self.string(type_node)?;
        let Some(kind) = ParamType::from_name(&type_name) else {
            return self.one_of(type_node, &type_name, "param type", &ParamType::ALL);
        };
        let required = match fields.get("required") {
            Some((_, node)) => self.boolean(node),
            None => Some(false),
        };
        let description = match fields.get("description") {
            Some((_, node)) => self.string(node),
            None => Some(String::new()),
        };
        let validation = match fields.get("validation") {
            Some((key, node)) => self.validation(name, kind, key, node),
            None => Some(Validation::default()),
        };
        if kind == ParamType::Enum && fields.get("validation").is_none() {
            self.report.error(key.mark, format!("enum param `{name}` needs `validation.values`"));
        }
        let default = match (fields.get("default"), &validation) {
            (None, _) => Some(None),
            (Some((default_key, _)), _) if kind == ParamType::Secret => {
                self.report.error(default_key.mark, format!("secret param `{name}` must not have a default; supply it at run time"));
                None
            }
            (Some((default_key, _)), _) if required == Some(true) => {
                self.report.error(default_key.mark, format!("param `{name}` is required, so its default would never be used"));
                None
            }
            // An enum without values already has its problem reported; every default would fail.
            (Some(_), Some(validation)) if kind == ParamType::Enum && validation.values.is_empty() => None,
            (Some((_, default)), Some(validation)) => self.default(kind, validation, default).map(Some),
            (Some(_), None) => None,
        };
        Some(Param { kind, required: required?, default: default?, description: description?, validation: validation? })
    }

    fn default(&mut self, kind: ParamType, validation: &Validation, node: &Node) -> Option<ParamValue> {
        let value = match ParamValue::from_node(node) {
            Ok(value) => value,
            Err((mark, problem)) => {
                self.report.error(mark, format!("default: {problem}"));
                return None;
            }
        };
        match values::coerce(kind, validation, &value) {
            Ok(value) => Some(value),
            Err(problems) => {
                for problem in problems {
                    self.report.error(node.mark, format!("default does not fit the {} type: {problem}", kind.name()));
                }
                None
            }
        }
    }

    fn validation(&mut self, name: &str, kind: ParamType, key: &Node, node: &Node) -> Option<Validation> {
        let fields = self.fields(node, key.mark, &VALIDATION_FIELDS, &format!("validation of `{name}`"))?;
        let mut ok = true;
        for field in VALIDATION_FIELDS {
            if let Some((field_key, _)) = fields.get(field).filter(|_| !applies(field, kind)) {
                self.report.error(field_key.mark, format!("`{field}` does not apply to {} param", super::fields::article(kind.name())));
                ok = false;
            }
        }
        let bound = |decoder: &mut Self, field: &str| match fields.get(field).filter(|_| applies(field, kind)) {
            Some((_, node)) => decoder.integer(node, i64::MIN, i64::MAX).map(Some),
            None => Some(None),
        };
        let (min, max) = (bound(self, "min"), bound(self, "max"));
        if let (Some(Some(min)), Some(Some(max)), Some((max_key, _))) = (min, max, fields.get("max")) {
            if min > max {
                self.report.error(max_key.mark, format!("`max` ({max}) is less than `min` ({min})"));
                ok = false;
            }
        }
        let pattern = match fields.get("pattern").filter(|_| applies("pattern", kind)) {
            Some((_, node)) => self.string(node).and_then(|text| match values::anchored(&text) {
                Ok(_) => Some(Some(text)),
                Err(problem) => {
                    self.report.error(node.mark, problem);
                    None
                }
            }),
            None => Some(None),
        };
        let allowed = match fields.get("values").filter(|_| applies("values", kind)) {
            Some((_, node)) => self.enum_values(node),
            None if kind == ParamType::Enum => {
                self.report.error(key.mark, format!("enum param `{name}` needs `validation.values`"));
                None
            }
            None => Some(Vec::new()),
        };
        let items = match fields.get("items").filter(|_| applies("items", kind)) {
            Some((_, node)) => self.string(node).and_then(|text| match ParamType::from_name(&text) {
                Some(item) if ParamType::ITEMS.contains(&item.name()) => Some(Some(item)),
                _ => self.one_of(node, &text, "item type", &ParamType::ITEMS),
            }),
            None => Some(None),
        };
        let multiline = match fields.get("multiline").filter(|_| applies("multiline", kind)) {
            Some((_, node)) => self.boolean(node),
            None => Some(false),
        };
        let item_fields = match fields.get("fields").filter(|_| applies("fields", kind)) {
            Some((fields_key, node)) => {
                if let Some((items_key, _)) = fields.get("items") {
                    self.report.error(items_key.mark, "`items` and `fields` exclude each other: with `fields`, items are mappings");
                    ok = false;
                }
                self.item_fields(name, fields_key, node)
            }
            None => Some(BTreeMap::new()),
        };
        let validation = Validation {
            min: min?,
            max: max?,
            pattern: pattern?,
            values: allowed?,
            items: items?,
            multiline: multiline?,
            fields: item_fields?,
        };
        ok.then_some(validation)
    }

    /// `validation.fields`: the fields of mapping items, each a scalar param that is not a
    /// secret.
    fn item_fields(&mut self, name: &str, key: &Node, node: &Node) -> Option<BTreeMap<String, Param>> {
        let entries = self.mapping(node)?;
        if entries.is_empty() {
            self.report.error(key.mark, "`fields` needs at least one field");
            return None;
        }
        let mut decoded = Some(BTreeMap::new());
        for (field_key, field_node) in entries {
            let field = self.identifier(field_key).and_then(|field| {
                let param = self.param_fields(&format!("{name}.{field}"), field_key, field_node)?;
                if !param.kind.is_scalar() || param.kind == ParamType::Secret {
                    self.report.error(field_key.mark, format!("field `{field}` must have a scalar type that is not a secret"));
                    return None;
                }
                Some((field, param))
            });
            match (field, decoded.as_mut()) {
                (Some((field, param)), Some(map)) => {
                    map.insert(field, param);
                }
                _ => decoded = None,
            }
        }
        decoded
    }

    fn enum_values(&mut self, node: &Node) -> Option<Vec<String>> {
        let items = self.sequence(node)?;
        if items.is_empty() {
            self.report.error(node.mark, "`values` needs at least one value");
            return None;
        }
        let mut allowed: Vec<String> = Vec::new();
        for item in items {
            let text = self.string(item)?;
            if allowed.contains(&text) {
                self.report.error(item.mark, format!("`{text}` is listed twice"));
                return None;
            }
            allowed.push(text);
        }
        Some(allowed)
    }
}
