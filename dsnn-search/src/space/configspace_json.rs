//! Reading and writing the JSON format of the Python `ConfigSpace` library.
//!
//! Reads both the 1.x layout (`default_value`, `format_version`) and the older
//! 0.x layout (`default`, `q`, `json_format_version`, `RELATION` with `lambda`).
//! Normal and beta priors are read as uniform ranges over their bounds (with a
//! warning), because this crate samples uniformly. Writes the 1.x layout.

use serde_json::{json, Map, Value as Json};

use super::{Condition, ConfigurationSpace, Forbidden, Hyperparameter, SpaceError, Value};

/// The ConfigSpace version written into the `python_module_version` field.
const WRITTEN_MODULE_VERSION: &str = "1.2.0";

fn invalid(msg: impl Into<String>) -> SpaceError {
    SpaceError::Invalid(msg.into())
}

fn field<'a>(obj: &'a Map<String, Json>, key: &str, what: &str) -> Result<&'a Json, SpaceError> {
    obj.get(key)
        .ok_or_else(|| invalid(format!("{what}: missing field `{key}`")))
}

fn string(obj: &Map<String, Json>, key: &str, what: &str) -> Result<String, SpaceError> {
    field(obj, key, what)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| invalid(format!("{what}: `{key}` must be a string")))
}

fn number(obj: &Map<String, Json>, key: &str, what: &str) -> Result<f64, SpaceError> {
    field(obj, key, what)?
        .as_f64()
        .ok_or_else(|| invalid(format!("{what}: `{key}` must be a number")))
}

fn integer(obj: &Map<String, Json>, key: &str, what: &str) -> Result<i64, SpaceError> {
    let v = field(obj, key, what)?;
    v.as_i64()
        .or_else(|| v.as_f64().filter(|x| x.fract() == 0.0).map(|x| x as i64))
        .ok_or_else(|| invalid(format!("{what}: `{key}` must be an integer")))
}

fn value(v: &Json, what: &str) -> Result<Value, SpaceError> {
    Ok(match v {
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(
                n.as_f64()
                    .ok_or_else(|| invalid(format!("{what}: number out of range")))?,
            ),
        },
        Json::String(s) => Value::Str(s.clone()),
        other => return Err(invalid(format!("{what}: unsupported value {other}"))),
    })
}

fn values(v: &Json, what: &str) -> Result<Vec<Value>, SpaceError> {
    v.as_array()
        .ok_or_else(|| invalid(format!("{what}: expected a list")))?
        .iter()
        .map(|x| value(x, what))
        .collect()
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Float(f) => json!(f),
        Value::Str(s) => json!(s),
    }
}

fn default_of(obj: &Map<String, Json>) -> Option<&Json> {
    obj.get("default_value")
        .or_else(|| obj.get("default"))
        .filter(|v| !v.is_null())
}

fn read_hyperparameter(item: &Json) -> Result<Hyperparameter, SpaceError> {
    let obj = item
        .as_object()
        .ok_or_else(|| invalid("hyperparameter must be an object"))?;
    let name = string(obj, "name", "hyperparameter")?;
    let what = format!("hyperparameter `{name}`");
    let kind = string(obj, "type", &what)?;
    if obj.get("q").is_some_and(|q| !q.is_null()) {
        log::warn!("{what}: quantisation `q` is not supported and is ignored");
    }
    let log = obj.get("log").and_then(Json::as_bool).unwrap_or(false);
    let hp = match kind.as_str() {
        "uniform_float" | "normal_float" | "beta_float" => {
            if kind != "uniform_float" {
                log::warn!("{what}: `{kind}` prior read as uniform over its bounds");
            }
            Hyperparameter::Float {
                lower: number(obj, "lower", &what)?,
                upper: number(obj, "upper", &what)?,
                log,
                default: default_of(obj).and_then(Json::as_f64),
                name,
            }
        }
        "uniform_int" | "normal_int" | "beta_int" => {
            if kind != "uniform_int" {
                log::warn!("{what}: `{kind}` prior read as uniform over its bounds");
            }
            Hyperparameter::Int {
                lower: integer(obj, "lower", &what)?,
                upper: integer(obj, "upper", &what)?,
                log,
                default: default_of(obj).and_then(|d| value(d, &what).ok()?.as_i64()),
                name,
            }
        }
        "categorical" => {
            let weights = obj
                .get("weights")
                .or_else(|| obj.get("probabilities"))
                .filter(|w| !w.is_null())
                .map(|w| {
                    w.as_array()
                        .ok_or_else(|| invalid(format!("{what}: weights must be a list")))?
                        .iter()
                        .map(|x| {
                            x.as_f64()
                                .ok_or_else(|| invalid(format!("{what}: weights must be numbers")))
                        })
                        .collect::<Result<Vec<f64>, _>>()
                })
                .transpose()?;
            Hyperparameter::Categorical {
                choices: values(field(obj, "choices", &what)?, &what)?,
                default: default_of(obj).map(|d| value(d, &what)).transpose()?,
                weights,
                name,
            }
        }
        "ordinal" => Hyperparameter::Ordinal {
            sequence: values(field(obj, "sequence", &what)?, &what)?,
            default: default_of(obj).map(|d| value(d, &what)).transpose()?,
            name,
        },
        "constant" | "unparametrized" => Hyperparameter::Constant {
            value: value(field(obj, "value", &what)?, &what)?,
            name,
        },
        other => return Err(invalid(format!("{what}: unknown type `{other}`"))),
    };
    Ok(hp)
}

fn read_condition(item: &Json) -> Result<Condition, SpaceError> {
    let obj = item
        .as_object()
        .ok_or_else(|| invalid("condition must be an object"))?;
    let kind = string(obj, "type", "condition")?;
    let leaf = |obj: &Map<String, Json>| -> Result<(String, String), SpaceError> {
        Ok((
            string(obj, "child", "condition")?,
            string(obj, "parent", "condition")?,
        ))
    };
    let what = "condition";
    Ok(match kind.as_str() {
        "EQ" => {
            let (child, parent) = leaf(obj)?;
            Condition::Equals {
                child,
                parent,
                value: value(field(obj, "value", what)?, what)?,
            }
        }
        "NEQ" => {
            let (child, parent) = leaf(obj)?;
            Condition::NotEquals {
                child,
                parent,
                value: value(field(obj, "value", what)?, what)?,
            }
        }
        "LT" => {
            let (child, parent) = leaf(obj)?;
            Condition::LessThan {
                child,
                parent,
                value: value(field(obj, "value", what)?, what)?,
            }
        }
        "GT" => {
            let (child, parent) = leaf(obj)?;
            Condition::GreaterThan {
                child,
                parent,
                value: value(field(obj, "value", what)?, what)?,
            }
        }
        "IN" => {
            let (child, parent) = leaf(obj)?;
            Condition::In {
                child,
                parent,
                values: values(field(obj, "values", what)?, what)?,
            }
        }
        "AND" | "OR" => {
            let parts = field(obj, "conditions", what)?
                .as_array()
                .ok_or_else(|| invalid("condition: `conditions` must be a list"))?
                .iter()
                .map(read_condition)
                .collect::<Result<Vec<_>, _>>()?;
            if kind == "AND" {
                Condition::And { conditions: parts }
            } else {
                Condition::Or { conditions: parts }
            }
        }
        other => return Err(invalid(format!("unknown condition type `{other}`"))),
    })
}

fn read_forbidden(item: &Json) -> Result<Forbidden, SpaceError> {
    let obj = item
        .as_object()
        .ok_or_else(|| invalid("forbidden clause must be an object"))?;
    let what = "forbidden clause";
    let kind = string(obj, "type", what)?;
    let relation = |lambda: &str| -> Result<Forbidden, SpaceError> {
        let left = string(obj, "left", what)?;
        let right = string(obj, "right", what)?;
        Ok(match lambda {
            "LT" => Forbidden::LessThanRelation { left, right },
            "EQ" => Forbidden::EqualsRelation { left, right },
            "GT" => Forbidden::GreaterThanRelation { left, right },
            other => return Err(invalid(format!("unknown forbidden relation `{other}`"))),
        })
    };
    Ok(match kind.as_str() {
        "EQUALS" => Forbidden::Equals {
            name: string(obj, "name", what)?,
            value: value(field(obj, "value", what)?, what)?,
        },
        "IN" => Forbidden::In {
            name: string(obj, "name", what)?,
            values: values(field(obj, "values", what)?, what)?,
        },
        "AND" => Forbidden::And {
            clauses: field(obj, "clauses", what)?
                .as_array()
                .ok_or_else(|| invalid("forbidden clause: `clauses` must be a list"))?
                .iter()
                .map(read_forbidden)
                .collect::<Result<Vec<_>, _>>()?,
        },
        "RELATION_LT" => relation("LT")?,
        "RELATION_EQ" => relation("EQ")?,
        "RELATION_GT" => relation("GT")?,
        "RELATION" => relation(&string(obj, "lambda", what)?)?,
        other => return Err(invalid(format!("unknown forbidden type `{other}`"))),
    })
}

fn write_hyperparameter(hp: &Hyperparameter) -> Json {
    match hp {
        Hyperparameter::Float {
            name,
            lower,
            upper,
            log,
            ..
        } => json!({"type": "uniform_float", "name": name, "lower": lower, "upper": upper,
            "default_value": hp.default_value().as_f64(), "log": log, "meta": null}),
        Hyperparameter::Int {
            name,
            lower,
            upper,
            log,
            ..
        } => json!({"type": "uniform_int", "name": name, "lower": lower, "upper": upper,
            "default_value": hp.default_value().as_i64(), "log": log, "meta": null}),
        Hyperparameter::Categorical {
            name,
            choices,
            weights,
            ..
        } => json!({"type": "categorical", "name": name,
            "choices": choices.iter().map(to_json).collect::<Vec<_>>(),
            "weights": weights, "default_value": to_json(&hp.default_value()), "meta": null}),
        Hyperparameter::Ordinal { name, sequence, .. } => json!({"type": "ordinal", "name": name,
            "sequence": sequence.iter().map(to_json).collect::<Vec<_>>(),
            "default_value": to_json(&hp.default_value()), "meta": null}),
        Hyperparameter::Constant { name, value } => {
            json!({"type": "constant", "name": name, "value": to_json(value), "meta": null})
        }
    }
}

fn write_condition(c: &Condition) -> Json {
    let leaf = |t: &str, child: &str, parent: &str, v: &Value| json!({"type": t, "child": child, "parent": parent, "value": to_json(v)});
    match c {
        Condition::Equals {
            child,
            parent,
            value,
        } => leaf("EQ", child, parent, value),
        Condition::NotEquals {
            child,
            parent,
            value,
        } => leaf("NEQ", child, parent, value),
        Condition::LessThan {
            child,
            parent,
            value,
        } => leaf("LT", child, parent, value),
        Condition::GreaterThan {
            child,
            parent,
            value,
        } => leaf("GT", child, parent, value),
        Condition::In {
            child,
            parent,
            values,
        } => json!({"type": "IN", "child": child, "parent": parent,
            "values": values.iter().map(to_json).collect::<Vec<_>>()}),
        Condition::And { conditions } | Condition::Or { conditions } => {
            let t = if matches!(c, Condition::And { .. }) {
                "AND"
            } else {
                "OR"
            };
            json!({"type": t, "child": c.child(),
                "conditions": conditions.iter().map(write_condition).collect::<Vec<_>>()})
        }
    }
}

fn write_forbidden(f: &Forbidden) -> Json {
    match f {
        Forbidden::Equals { name, value } => {
            json!({"type": "EQUALS", "name": name, "value": to_json(value)})
        }
        Forbidden::In { name, values } => json!({"type": "IN", "name": name,
            "values": values.iter().map(to_json).collect::<Vec<_>>()}),
        Forbidden::And { clauses } => json!({"type": "AND",
            "clauses": clauses.iter().map(write_forbidden).collect::<Vec<_>>()}),
        Forbidden::LessThanRelation { left, right } => {
            json!({"type": "RELATION_LT", "left": left, "right": right})
        }
        Forbidden::EqualsRelation { left, right } => {
            json!({"type": "RELATION_EQ", "left": left, "right": right})
        }
        Forbidden::GreaterThanRelation { left, right } => {
            json!({"type": "RELATION_GT", "left": left, "right": right})
        }
    }
}

impl ConfigurationSpace {
    /// Parse a space written by Python `ConfigSpace` (`ConfigSpace.read_and_write.json`
    /// or `ConfigurationSpace.to_json`).
    pub fn from_configspace_json(text: &str) -> Result<Self, SpaceError> {
        let doc: Json = serde_json::from_str(text)?;
        let obj = doc
            .as_object()
            .ok_or_else(|| invalid("ConfigSpace JSON must be an object"))?;
        let list = |key: &str| -> Vec<Json> {
            obj.get(key)
                .and_then(Json::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let hps = list("hyperparameters")
            .iter()
            .map(read_hyperparameter)
            .collect::<Result<Vec<_>, _>>()?;
        let conds = list("conditions")
            .iter()
            .map(read_condition)
            .collect::<Result<Vec<_>, _>>()?;
        let forb = list("forbiddens")
            .iter()
            .map(read_forbidden)
            .collect::<Result<Vec<_>, _>>()?;
        let space = ConfigurationSpace::new(hps, conds, forb)?;
        Ok(match obj.get("name").and_then(Json::as_str) {
            Some(n) => space.with_name(n),
            None => space,
        })
    }

    /// Write the space in ConfigSpace's JSON layout (1.x, `format_version` 0.4).
    pub fn to_configspace_json(&self) -> Result<String, SpaceError> {
        let doc = json!({
            "name": self.name,
            "hyperparameters": self.hyperparameters.iter().map(write_hyperparameter).collect::<Vec<_>>(),
            "conditions": self.conditions.iter().map(write_condition).collect::<Vec<_>>(),
            "forbiddens": self.forbidden.iter().map(write_forbidden).collect::<Vec<_>>(),
            "python_module_version": WRITTEN_MODULE_VERSION,
            "format_version": 0.4,
        });
        Ok(serde_json::to_string_pretty(&doc)?)
    }
}
