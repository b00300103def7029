//! Identifier newtypes. Each wraps a `String` so ids of different kinds cannot be mixed up.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps an existing id string.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// A fresh, time-ordered random id (UUID v7).
            pub fn random() -> Self {
                Self(uuid::Uuid::now_v7().to_string())
            }
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

string_id!(
    /// Identifies one task (a compile, an agent activation, a workflow step).
    TaskId
);
string_id!(
    /// Identifies one worker (a compile worker, an agent runner).
    WorkerId
);
string_id!(
    /// Identifies one item in a [`crate::Queue`].
    WorkId
);
string_id!(
    /// Proves the holder of a queue claim; a stale token is refused by `ack`/`nack`/`extend`.
    LeaseToken
);
string_id!(
    /// Identifies a stored workflow definition.
    WorkflowId
);
string_id!(
    /// Identifies one run (of a workflow, or a standalone activation) in a [`crate::Store`].
    RunId
);
