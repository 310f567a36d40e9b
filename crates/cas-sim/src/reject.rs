//! An Alibaba-style error answer: HTTP status plus `Code` and `Message`.

/// A refused request, rendered as `{RequestId, HostId, Code, Message, Recommend}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reject {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Reject {
    pub(crate) fn new(status: u16, code: &str, message: impl Into<String>) -> Reject {
        Reject {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }
    pub(crate) fn missing(name: &str) -> Reject {
        Reject::new(
            400,
            "MissingParameter",
            format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
        )
    }
    pub(crate) fn invalid(name: &str, why: &str) -> Reject {
        Reject::new(
            400,
            "InvalidParameter",
            format!("The specified parameter \"{name}\" is not valid: {why}"),
        )
    }
    /// An optional integer parameter in `min..=max` (Alibaba refuses `abc`, 0, and the out of
    /// range rather than falling back to a default).
    pub(crate) fn int_param(
        value: Option<&str>,
        name: &str,
        default: usize,
        min: usize,
        max: usize,
    ) -> Result<usize, Reject> {
        let Some(v) = value else {
            return Ok(default);
        };
        match v.trim().parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(Reject::invalid(
                name,
                &format!("{v:?}: give an integer from {min} to {max}"),
            )),
        }
    }
    pub(crate) fn no_order() -> Reject {
        Reject::new(404, "NotFoundOrder", "The order does not exist.")
    }
    /// CAS's answer to a failure on its side (seed error table: 500 `Error`).
    pub(crate) fn cas_error(detail: impl std::fmt::Display) -> Reject {
        Reject::new(500, "Error", format!("An error occurred: {detail}"))
    }
    pub(crate) fn order_state(why: &str) -> Reject {
        Reject::new(403, "OrderStateError", why)
    }
}
