//! The one error type of the tool: a line for the user, naming the cause.

/// A failure to report to the user: one line, naming the cause.
#[derive(Debug)]
pub(crate) struct Error(String);

impl Error {
    pub(crate) fn msg(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<secure_link::LinkError> for Error {
    fn from(err: secure_link::LinkError) -> Self {
        Error(crate::files::explain(&err))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error(err.to_string())
    }
}
