#!/bin/sh
# man-and-completions.sh WEIR DIR: the man page and the bash, zsh and fish
# completions, as WEIR prints them from its command table, into DIR (run
# by the build: CMakeLists.txt).
set -eu
w=$1 d=$2
mkdir -p "$d"
# a sanitizer build's leak report is not the output wanted here
export ASAN_OPTIONS=detect_leaks=0
"$w" man >"$d/weir.1"
"$w" completion bash >"$d/weir.bash"
"$w" completion zsh >"$d/_weir"
"$w" completion fish >"$d/weir.fish"
