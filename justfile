# The whole test suite (what CI runs, with fmt and clippy: bash .ci/run).
test:
    cargo test

# The daemon on a demo town, in dry run (validates and files requests, never touches tmux).
demo:
    mkdir -p demo-town && cargo run --release -- --town demo-town daemon start --dry-run

# Benchmark the daemon against inotifywait+jq (skipped, loudly, when they are missing) and the filesystem limit; prints a markdown table (`just bench --quick` for a smoke run)
bench *ARGS:
    cargo bench --bench daemon -- {{ARGS}}
