//! Validated domain types. Request bodies are converted into these at the edge
//! (see [`message::NewMessage`]); everything inside the relay takes these only.

pub mod message;
pub mod outcome;

// Addresses and streams are shared with list-hygiene, whose suppression
// and policy decisions are scoped by them: one grammar, one type.
pub use list_hygiene::email as address;
pub use list_hygiene::stream;

pub use address::{Domain, EmailAddress, Sender};
pub use message::{
    Attachment, CustomHeader, MessageId, NewMessage, RecipientKind, ValidationError,
};
pub use outcome::{Outcome, RecipientState, Reply};
pub use stream::Stream;
