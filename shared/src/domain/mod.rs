//! Values parsed once at the edge into newtypes; past the edge nothing is a raw string.

mod email;
mod password;
mod role;
mod user_id;

pub use email::Email;
pub use password::Password;
pub use role::Role;
pub use user_id::UserId;
