//! What Stash writes on a raw plugin's stdin (`PluginInput`), parsed leniently:
//! unknown fields are ignored, missing ones take Stash's defaults, and the
//! lower-case spellings some clients use are accepted too.

use crate::text::{clip, without_values};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum InputError {
    #[error("stdin is empty: stash2plex expects the JSON object Stash sends to raw plugins")]
    Empty,
    #[error("stdin is not valid JSON ({0}); stash2plex expects the JSON object Stash sends to raw plugins")]
    NotJson(serde_json::Error),
    #[error("stdin JSON must be an object with `server_connection` and `args`, got {0}")]
    NotObject(&'static str),
    #[error("stdin field `{field}` has the wrong type: {detail}")]
    BadField { field: &'static str, detail: String },
}

#[derive(Clone, Default, Deserialize, Serialize)]
pub struct SessionCookie {
    #[serde(rename = "Name", alias = "name", default)]
    pub name: Option<String>,
    #[serde(rename = "Value", alias = "value", default)]
    pub value: Option<String>,
}

#[derive(Clone, Default, Deserialize, Serialize)]
pub struct ServerConnection {
    #[serde(rename = "Scheme", alias = "scheme", default)]
    pub scheme: Option<String>,
    #[serde(rename = "Host", alias = "host", default)]
    pub host: Option<String>,
    #[serde(rename = "Port", alias = "port", default)]
    pub port: Option<u16>,
    #[serde(rename = "SessionCookie", alias = "sessionCookie", default)]
    pub session_cookie: Option<SessionCookie>,
    /// Not sent by Stash itself, but accepted from other callers.
    #[serde(rename = "ApiKey", alias = "apiKey", default)]
    pub api_key: Option<String>,
    #[serde(rename = "Dir", alias = "dir", default)]
    pub dir: Option<String>,
    #[serde(rename = "PluginDir", alias = "pluginDir", default)]
    pub plugin_dir: Option<String>,
}

impl std::fmt::Debug for SessionCookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not even the name: a cookie sent as a list (`["session=…"]`) is
        // read field by field, its value landing in `name`.
        f.debug_struct("SessionCookie")
            .field("name", &self.name.as_ref().map(|_| "****"))
            .field("value", &self.value.as_ref().map(|_| "****"))
            .finish()
    }
}

impl std::fmt::Debug for ServerConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConnection")
            .field("base_url", &self.base_url())
            .field("session_cookie", &self.session_cookie)
            .field("api_key", &self.api_key.as_ref().map(|_| "****"))
            .field("plugin_dir", &self.plugin_dir)
            .finish()
    }
}

impl ServerConnection {
    /// `scheme://host:port` with Stash's bind-all addresses mapped to loopback.
    pub fn base_url(&self) -> String {
        let scheme = match self.scheme.as_deref() {
            Some("https") => "https",
            _ => "http",
        };
        let host = match self.host.as_deref().map(str::trim) {
            None | Some("") | Some("0.0.0.0") | Some("::") | Some("[::]") => "127.0.0.1".to_string(),
            Some(h) if h.contains(':') && !h.starts_with('[') => format!("[{h}]"),
            Some(h) => h.to_string(),
        };
        format!("{scheme}://{host}:{}", self.port.unwrap_or(9999))
    }

    pub fn cookie_value(&self) -> Option<&str> {
        self.session_cookie.as_ref().and_then(|c| c.value.as_deref()).filter(|v| !v.is_empty())
    }
}

/// A hook's `hookContext`.
#[derive(Debug, Clone, Default)]
pub struct HookContext {
    pub trigger: String,
    pub id: Option<String>,
    pub input: Option<Value>,
    pub input_fields: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Invocation {
    Hook(HookContext),
    Task { mode: Option<String>, args: Map<String, Value> },
}

#[derive(Debug, Clone)]
pub struct PluginInput {
    pub connection: ServerConnection,
    pub invocation: Invocation,
}

pub fn parse(raw: &[u8]) -> Result<PluginInput, InputError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(InputError::Empty);
    }
    let value: Value = serde_json::from_slice(raw).map_err(InputError::NotJson)?;
    let Value::Object(mut top) = value else {
        return Err(InputError::NotObject(json_kind(&value)));
    };
    let connection = match top.remove("server_connection") {
        None | Some(Value::Null) => ServerConnection::default(),
        Some(v) => serde_json::from_value(v)
            .map_err(|e| InputError::BadField { field: "server_connection", detail: without_values(&e.to_string()) })?,
    };
    let args = match top.remove("args") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(InputError::BadField {
                field: "args",
                detail: format!("expected an object, got {}", json_kind(&other)),
            });
        }
    };
    let invocation = match args.get("hookContext") {
        Some(ctx) => Invocation::Hook(parse_hook_context(ctx)?),
        None => {
            let mode = match args.get("mode") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.trim().to_string()),
                Some(other) => {
                    return Err(InputError::BadField {
                        field: "args.mode",
                        detail: format!("expected a string, got {}", json_kind(other)),
                    });
                }
            };
            Invocation::Task { mode, args }
        }
    };
    Ok(PluginInput { connection, invocation })
}

fn parse_hook_context(ctx: &Value) -> Result<HookContext, InputError> {
    let Value::Object(ctx) = ctx else {
        return Err(InputError::BadField {
            field: "args.hookContext",
            detail: format!("expected an object, got {}", json_kind(ctx)),
        });
    };
    let trigger = match ctx.get("type") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => {
            return Err(InputError::BadField {
                field: "args.hookContext.type",
                detail: format!("expected a string, got {}", json_kind(other)),
            });
        }
    };
    let id = match ctx.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().map(|n| n.to_string()),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.clone()),
        Some(other) => {
            return Err(InputError::BadField {
                field: "args.hookContext.id",
                detail: format!("expected a positive integer id, got {}", clip(&other.to_string(), 40)),
            });
        }
    };
    let input = match ctx.get("input") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.clone()),
    };
    let input_fields = match ctx.get("inputFields") {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    };
    Ok(HookContext { trigger, id, input, input_fields })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
#[path = "../fuzz/stdin.rs"]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const TASK: &str = r#"{"server_connection":{"Scheme":"http","Host":"0.0.0.0","Port":9999,"SessionCookie":{"Name":"session","Value":"MTc2ODA0=","Quoted":false,"Path":"","Domain":"","Expires":"0001-01-01T00:00:00Z","RawExpires":"","MaxAge":0,"Secure":false,"HttpOnly":false,"SameSite":0,"Partitioned":false,"Raw":"","Unparsed":null},"Dir":"/home/user/.stash","PluginDir":"/home/user/.stash/plugins/x"},"args":{"mode":"process_queue"}}"#;

    #[test]
    fn parses_a_task_and_maps_bind_all_to_loopback() {
        let input = parse(TASK.as_bytes()).unwrap();
        assert_eq!(input.connection.base_url(), "http://127.0.0.1:9999");
        assert_eq!(input.connection.cookie_value(), Some("MTc2ODA0="));
        match input.invocation {
            Invocation::Task { mode, .. } => assert_eq!(mode.as_deref(), Some("process_queue")),
            other => panic!("expected a task, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_hook_with_input_fields() {
        let raw = r#"{"server_connection":{"Scheme":"https","Host":"::1","Port":9998,"SessionCookie":null},"args":{"hookContext":{"id":45,"type":"Scene.Update.Post","input":{"id":"45","title":"New"},"inputFields":["id","title"]}}}"#;
        let input = parse(raw.as_bytes()).unwrap();
        assert_eq!(input.connection.base_url(), "https://[::1]:9998");
        assert_eq!(input.connection.cookie_value(), None);
        let Invocation::Hook(h) = input.invocation else { panic!("expected a hook") };
        assert_eq!(h.trigger, "Scene.Update.Post");
        assert_eq!(h.id.as_deref(), Some("45"));
        assert_eq!(h.input_fields, vec!["id", "title"]);
    }

    #[test]
    fn scan_hook_without_input_is_fine() {
        let raw = r#"{"args":{"hookContext":{"id":7,"type":"Scene.Create.Post","input":null}}}"#;
        let Invocation::Hook(h) = parse(raw.as_bytes()).unwrap().invocation else { panic!() };
        assert!(h.input.is_none());
        assert!(h.input_fields.is_empty());
    }

    #[test]
    fn a_malformed_cookie_is_never_echoed() {
        let raw = r#"{"server_connection":{"SessionCookie":{"Name":"session","Value":12345678901234}},"args":{}}"#;
        let e = parse(raw.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("server_connection") && e.contains("(value not shown)"), "{e}");
        assert!(!e.contains("12345678901234"), "{e}");
        let input = parse(TASK.as_bytes()).unwrap();
        let shown = format!("{:?}", input.connection);
        assert!(!shown.contains("MTc2ODA0="), "{shown}");
        // Found by the stdin fuzz target (long run): a cookie as a list.
        let raw = r#"{"server_connection":{"SessionCookie":["session=MTc2ODA0OTk5"]},"args":{}}"#;
        let shown = format!("{:?}", parse(raw.as_bytes()).unwrap().connection);
        assert!(!shown.contains("MTc2ODA0OTk5"), "{shown}");
    }

    /// Found by the stdin fuzz target: a cookie sent as text (not as
    /// Go's cookie object) was repeated in the error, since serde quotes
    /// strings with `"` and only backticks were removed; a huge id was
    /// repeated whole.
    #[test]
    fn a_cookie_as_text_and_a_huge_id_are_not_repeated() {
        let raw = r#"{"server_connection":{"SessionCookie":"session=MTc2ODA0OTk5OXxEdi1"},"args":{}}"#;
        let e = parse(raw.as_bytes()).unwrap_err().to_string();
        assert!(!e.contains("MTc2ODA0OTk5OXxEdi1") && e.contains("(value not shown)"), "{e}");
        let raw =
            format!(r#"{{"args":{{"hookContext":{{"id":"{}x","type":"Scene.Update.Post"}}}}}}"#, "9".repeat(100_000));
        let e = parse(raw.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("hookContext.id") && e.len() < 300, "{} chars", e.len());
    }

    #[test]
    fn bad_input_gets_clear_errors() {
        assert!(matches!(parse(b"  "), Err(InputError::Empty)));
        assert!(matches!(parse(b"{not json"), Err(InputError::NotJson(_))));
        assert!(matches!(parse(b"[1]"), Err(InputError::NotObject("an array"))));
        let e = parse(br#"{"args":{"hookContext":{"id":-3,"type":"Scene.Update.Post"}}}"#).unwrap_err();
        assert!(e.to_string().contains("hookContext.id"), "{e}");
        let e = parse(br#"{"args":"mode"}"#).unwrap_err();
        assert!(e.to_string().contains("args"), "{e}");
    }
}
