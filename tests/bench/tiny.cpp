// SPDX-License-Identifier: BSL-1.0
// The child of the spawn benchmark: starts and exits 0, so what is measured is the spawn itself.
// Linked statically where the static libc exists, so no dynamic loader time is added.
int main() { return 0; }
