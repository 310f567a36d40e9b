//! `Format=XML` answers in the seeds' shape: `<?xml …?>` then `<{Action}Response>` (errors:
//! `<Error>`), one element per field, an array as its name repeated once per item.
use serde_json::Value;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn element(out: &mut String, name: &str, v: &Value) {
    match v {
        Value::Null => {}
        Value::Array(items) => {
            for i in items {
                element(out, name, i);
            }
        }
        Value::Object(m) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in m {
                element(out, k, v);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

/// The whole document for an answer whose root element is `root`.
pub(crate) fn document(root: &str, v: &Value) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\" ?>");
    element(&mut out, root, v);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_repeat_and_text_is_escaped() {
        let v = serde_json::json!({"TotalCount": 2, "L": [{"A": "x<&"}, {"A": "y"}], "N": null});
        assert_eq!(
            document("ListResponse", &v),
            "<?xml version=\"1.0\" encoding=\"UTF-8\" ?><ListResponse><L><A>x&lt;&amp;</A></L><L><A>y</A></L><TotalCount>2</TotalCount></ListResponse>"
        );
    }
}
