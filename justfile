# stkd task runner (https://github.com/casey/just). Every recipe is a plain cargo command, so
# the same works without just.

# Train a teacher on PeMSD7 for a few epochs (the main job until sweeps land).
main epochs="3":
    cargo run --release -- train --dataset pemsd7 --model teacher --epochs {{epochs}}

# The test suite (what CI runs).
test:
    cargo test --release

# Training-step and forward timings for teacher / base / student at N = 228.
bench:
    cargo run --release -- bench

# Dataset facts as JSON.
info dataset="pemsd7":
    cargo run --release -- data info {{dataset}} --json

# Build with the CUDA backend (needs no GPU to build).
build-cuda:
    cargo build --release --features cuda

fmt:
    cargo fmt --all
