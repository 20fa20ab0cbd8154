#!/bin/sh
# meson custom_target: build the plugin's cdylib with cargo, copy it to meson's output.
# usage: meson-cargo.sh CARGO SOURCE_DIR TARGET_DIR debug|release OUTPUT
# (CARGO_TARGET_DIR, when set, replaces TARGET_DIR: the tests share cargo's build)
set -eu
cargo=$1 src=$2 target=${CARGO_TARGET_DIR:-$3} profile=$4 out=$5
flag=""
[ "$profile" = release ] && flag=--release
"$cargo" build $flag --lib --manifest-path "$src/Cargo.toml" --target-dir "$target"
cp "$target/$profile/libgstlivetalk.so" "$out"
