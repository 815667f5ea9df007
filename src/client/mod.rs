//! What `gt` does to a town from outside its daemon: start and stop it
//! ([`control`]), publish requests ([`publish`]), read outcomes back
//! ([`history`]).

pub(crate) mod control;
pub(crate) mod history;
pub(crate) mod publish;
