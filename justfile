# stkd task runner (https://github.com/casey/just). Every recipe is a plain cargo command, so
# the same works without just.

# Run an experiment file (the main job: `just sweep experiments/quickstart.yaml`).
sweep file *args:
    cargo run --release -- sweep {{file}} {{args}}

# The whole paper (every table, seeds 1-3 where a claim is judged); runs only what the records lack.
paper *args:
    cargo run --release -- sweep experiments/paper.yaml {{args}}

# The plan of an experiment file without running it (with the machine time left, estimated).
plan file:
    cargo run --release -- sweep {{file}} --dry-run

# Runs in the store and their state.
status *args:
    cargo run --release -- status {{args}}

# The test suite (what CI runs).
test:
    cargo test --release

# Training-step and forward timings for teacher / base / student at N = 228 (PeMSD7's graph),
# and the STCD step; `just bench --compare-generic` also times burn's generic ops in the same run.
bench *args:
    cargo run --release -- bench {{args}}

# Does a GPU compute what the CPU computes? (needs a build with --features cuda)
device-check device="cuda:0":
    cargo run --release --features cuda -- device-check {{device}}

# Dataset facts as JSON.
info dataset="pemsd7":
    cargo run --release -- data info {{dataset}} --json

# Build with the CUDA backend (needs no GPU to build).
build-cuda:
    cargo build --release --features cuda

fmt:
    cargo fmt --all
