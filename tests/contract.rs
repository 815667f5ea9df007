//! The request contract without tmux: the fixture catalogue through the
//! parser and a dry-run daemon, the JSON Schema, and parser properties.

mod support;

mod contract {
    mod fixtures;
    mod props;
    mod schema;
}
