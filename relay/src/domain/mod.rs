//! Validated domain types. Request bodies are converted into these at the edge
//! (see [`message::NewMessage`]); everything inside the relay takes these only.

pub mod address;
pub mod message;
pub mod stream;

pub use address::{Domain, EmailAddress, Sender};
pub use message::{
    Attachment, CustomHeader, MessageId, NewMessage, RecipientKind, ValidationError,
};
pub use stream::Stream;
