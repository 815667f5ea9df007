# The whole test suite (what CI runs, with fmt and clippy: bash .ci/run).
test:
    cargo test

# The daemon on a demo town, in dry run (validates and files requests, never touches tmux).
demo:
    mkdir -p demo-town && cargo run --release -- --town demo-town daemon start --dry-run

# Benchmark the daemon against inotifywait+jq and the filesystem limit; prints a markdown table (`just bench --quick` for a smoke run)
bench *ARGS:
    command -v inotifywait >/dev/null && command -v jq >/dev/null || apt-get install -y inotify-tools jq || echo "bench: install inotify-tools and jq to run the baseline"
    cargo build --release --bin gt --bin bench
    cargo run --release --bin bench -- {{ARGS}}
