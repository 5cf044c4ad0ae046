#!/usr/bin/env bash
# Every way a C++ build takes childproc in, each from a clean directory, each building and running
# consumer.cpp: the installed CMake package (and again with the install moved elsewhere), the
# installed pkg-config file, a Meson subproject through a .wrap, and include/ copied in.
# Prints "consumer <way>: OK" or "!! consumer <way> failed" per way; exits with the failures.
set -u
src=$(cd "$(dirname "$0")/../.." && pwd)
here="$src/tests/packaging"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
way() {  # way <name> <command...>: runs the command in a subshell, quietly unless it fails
  local name="$1"; shift
  if ( "$@" ) > "$work/$name.log" 2>&1; then
    echo "consumer $name: OK"
  else
    echo "!! consumer $name failed:"; tail -20 "$work/$name.log"; fails=$((fails + 1))
  fi
}

# The install: the headers, the CMake package and the pkg-config file under one prefix.
install() {
  meson setup "$work/build" "$src" --prefix="$work/prefix" -Dtests=false -Dexamples=false -Dbenchmarks=false &&
    meson install -C "$work/build"
}
cmake_consumer() {  # cmake_consumer <prefix> <build dir> [version asked for]
  cmake -S "$here/cmake" -B "$2" -DCMAKE_PREFIX_PATH="$1" -DCMAKE_BUILD_TYPE=Release -DCHILDPROC_WANT="${3-0.1}" &&
    cmake --build "$2" && "$2/consumer"
}
cmake_versions() {  # any version and a range holding 0.1.0 are taken; a newer one, another major or a range below, refused
  cmake_consumer "$work/prefix" "$work/cmake-any" "" &&
    cmake_consumer "$work/prefix" "$work/cmake-range" "0.1...0.3" &&
    ! cmake -S "$here/cmake" -B "$work/cmake-below" -DCMAKE_PREFIX_PATH="$work/prefix" "-DCHILDPROC_WANT=0.0...<0.1" &&
    ! cmake -S "$here/cmake" -B "$work/cmake-0.2" -DCMAKE_PREFIX_PATH="$work/prefix" -DCHILDPROC_WANT=0.2 &&
    ! cmake -S "$here/cmake" -B "$work/cmake-1.0" -DCMAKE_PREFIX_PATH="$work/prefix" -DCHILDPROC_WANT=1.0
}
pkg_config_consumer() {
  g++ "$here/consumer.cpp" -std=c++20 $(PKG_CONFIG_PATH="$work/prefix/share/pkgconfig" pkg-config --cflags --libs childproc) \
      -o "$work/pc-consumer" && "$work/pc-consumer"
}
moved_consumer() {  # the prefix comes back even if the consumer fails, for the ways after it
  mv "$work/prefix" "$work/moved" || return 1
  cmake_consumer "$work/moved" "$work/cmake-moved"
  local r=$?
  mv "$work/moved" "$work/prefix" && return $r
}
# The wrap clones the repository: it builds what is committed (HEAD), not uncommitted edits.
meson_consumer() {
  mkdir -p "$work/meson/subprojects" && cp "$here/meson/meson.build" "$here/consumer.cpp" "$work/meson/" &&
    sed -i 's|../consumer.cpp|consumer.cpp|' "$work/meson/meson.build" &&
    printf '[wrap-git]\nurl = file://%s\nrevision = head\ndepth = 1\n\n[provide]\ndependency_names = childproc\n' "$src" \
      > "$work/meson/subprojects/childproc.wrap" &&
    meson setup "$work/meson/build" "$work/meson" && meson compile -C "$work/meson/build" && "$work/meson/build/consumer"
}
copy_consumer() {
  mkdir -p "$work/copy" && cp -r "$src/include" "$work/copy/" &&
    g++ "$here/consumer.cpp" -std=c++20 -I"$work/copy/include" -pthread -o "$work/copy/consumer" && "$work/copy/consumer"
}

way install install
way cmake cmake_consumer "$work/prefix" "$work/cmake"
way cmake-versions cmake_versions
way cmake-moved moved_consumer
way pkg-config pkg_config_consumer
way meson-wrap meson_consumer
way copy-include copy_consumer
exit "$fails"
